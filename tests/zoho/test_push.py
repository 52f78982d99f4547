"""Pushes: changed fields only, 100 per call, no automations, per-record rejects, retries, minimal calls."""

from __future__ import annotations

import json

import httpx
import pytest

from crmsync.connector import ProfileChange, Stream
from crmsync.errors import RetryableError

from .fake import FakeZoho

FULL = {"tier": "Gold", "points": 1250, "tags": ["loyal", "big_spender"], "rfm_segment": "Champions",
        "lifecycle": "loyal"}  # fmt: skip


def change(member_id: str, changed: set[str], **values) -> ProfileChange:
    return ProfileChange(member_id, FULL | values, previous={}, changed=frozenset(changed))


def test_only_changed_fields_are_sent_with_trigger_off(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    results = connect().push([change(cid, {"tier", "points"})])
    assert [(r.member_id, r.ok) for r in results] == [(cid, True)]
    body = fake.updates[-1]
    assert body == {"data": [{"id": cid, "Loyalty_Tier": "Gold", "Loyalty_Points": 1250}], "trigger": []}
    assert fake.contact(cid)["Loyalty_Tier"] == "Gold" and "Loyalty_Tags" not in fake.contact(cid)


def test_configured_trigger_and_field_names(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    fake.fields["Contacts"].append(dict(fake.fields["Contacts"][0], api_name="Member_Level"))
    connector = connect(trigger=["workflow"], push_fields={"tier": "Member_Level", "lifecycle": ""})
    connector.push([change(cid, {"tier", "lifecycle"})])
    assert fake.updates[-1] == {"data": [{"id": cid, "Member_Level": "Gold"}], "trigger": ["workflow"]}


def test_tags_are_a_json_array_and_empty_clears(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    connector = connect()
    connector.push([change(cid, {"tags"})])
    assert fake.contact(cid)["Loyalty_Tags"] == ["big_spender", "loyal"]
    connector.push([change(cid, {"tags"}, tags=[])])
    assert fake.contact(cid)["Loyalty_Tags"] == []


def test_per_record_rejects_from_a_207(fake: FakeZoho, connect) -> None:
    ok_id, bad_tier, bad_tags, gone = fake.seed_contacts(4)
    fake.delete("Contacts", gone)
    results = connect().push([
        change(ok_id, {"tier"}), change(bad_tier, {"tier"}, tier="Titanium"),
        change(bad_tags, {"tags"}, tags=["loyal", "vip_2025"]), change(gone, {"points"}),
    ])  # fmt: skip
    by_id = {r.member_id: r for r in results}
    assert by_id[ok_id].ok and fake.contact(ok_id)["Loyalty_Tier"] == "Gold"
    # an off-list value: the field, the value and the options are named; an admin can add the option, so it is
    # retried on a later run
    tier = by_id[bad_tier]
    assert not tier.ok and tier.field == "Loyalty_Tier" and tier.retryable is True
    assert "'Titanium'" in tier.reason and "Platinum" in tier.reason and "--create-fields" in tier.reason
    tags = by_id[bad_tags]
    assert tags.field == "Loyalty_Tags" and "'vip_2025'" in tags.reason and "'loyal'" not in tags.reason
    assert tags.retryable is True
    # a contact deleted meanwhile cannot be fixed by anyone: given up at once
    assert not by_id[gone].ok and by_id[gone].retryable is False and "deleted" in by_id[gone].reason
    assert "Loyalty_Tier" not in fake.contact(bad_tier)


@pytest.mark.parametrize(
    ("answer", "retryable", "words"),
    [
        ({"code": "RECORD_LOCKED", "details": {"api_name": "id", "action": "record_locking"}}, True, ["RECORD_LOCKED"]),
        ({"code": "INVALID_DATA", "details": {"api_name": "Loyalty_Points", "expected_data_type": "integer"}}, True,
         ["Loyalty_Points", "integer", "1250"]),
        ({"code": "INVALID_DATA", "details": {"api_name": "Loyalty_Tier", "maximum_length": 3}}, True,
         ["Loyalty_Tier", "3 characters", "'Gold'"]),
        ({"code": "INVALID_DATA", "details": {"api_name": "id"}}, False, ["deleted"]),
        ({"code": "NOT_APPROVED", "details": {}}, True, ["NOT_APPROVED"]),
    ],
)  # fmt: skip
def test_refusal_reasons_and_what_is_retried(fake: FakeZoho, connect, answer, retryable, words) -> None:
    (cid,) = fake.seed_contacts(1)
    body = {"message": "refused", "status": "error", **answer}
    fake.fail_next("update Contacts", httpx.Response(400, json={"data": [body]}))
    (result,) = connect().push([change(cid, {"tier", "points"})])
    assert not result.ok and result.retryable is retryable
    assert all(w in result.reason for w in words), result.reason


def test_all_rejected_answer_400_is_read_per_record(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    (result,) = connect().push([change(cid, {"tier"}, tier="Titanium")])
    assert not result.ok and result.field == "Loyalty_Tier"


def test_unknown_field_is_rejected_with_its_name(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    (result,) = connect(push_fields={"rfm_segment": "RFM_Nope"}).push([change(cid, {"rfm_segment"})])
    assert not result.ok and result.field == "RFM_Nope"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(429, json={"code": "TOO_MANY_REQUESTS", "details": {}, "message": "x", "status": "error"}),
        httpx.Response(500, json={"code": "INTERNAL_ERROR", "details": {}, "message": "x", "status": "error"}),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("connection reset"),
    ],
)
def test_transient_failures_retry_and_resume(fake: FakeZoho, connect, failure, caplog) -> None:
    (cid,) = fake.seed_contacts(1)
    fake.fail_next("update Contacts", failure)
    with caplog.at_level("INFO", logger="crmsync.connector"):
        (result,) = connect().push([change(cid, {"tier"})])
    assert result.ok and fake.contact(cid)["Loyalty_Tier"] == "Gold"
    assert fake.calls("update Contacts") == 2 and len(fake.sleeps) == 1
    assert "PUT www.zohoapis.com/crm/v8/Contacts" in caplog.text and "retried" in caplog.text  # logged, redacted
    assert "Zoho-oauthtoken" not in caplog.text and not any(t in caplog.text for t in fake.access)


def test_429_retry_after_is_honoured(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    fake.fail_next("update Contacts", httpx.Response(429, headers={"Retry-After": "17"}, json={}))
    connect().push([change(cid, {"tier"})])
    assert fake.sleeps == [17.0]


def test_persistent_5xx_raises_retryable_after_bounded_attempts(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    fake.fail_next("update Contacts", *[httpx.Response(503) for _ in range(10)])
    with pytest.raises(RetryableError) as info:
        connect(max_retries=3).push([change(cid, {"tier"})])
    assert fake.calls("update Contacts") == 4
    assert "PUT www.zohoapis.com/crm/v8/Contacts" in str(info.value)


def test_api_calls_are_the_minimum(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(450)
    connector = connect()
    list(connector.pull(Stream.MEMBERS, None))
    assert context.api_calls == {"oauth token": 1, "read Contacts": 3}  # 450 / 200 per page
    context.api_calls.clear()
    results = connector.push_many([change(i, {"tier"}) for i in ids[:250]])
    assert len(results) == 250 and all(r.ok for r in results)
    assert context.api_calls == {"update Contacts": 3}  # 100 per update call
    assert all(len(u["data"]) <= 100 for u in fake.updates)
    context.api_calls.clear()
    assert connector.push([]) == []
    assert connector.push([change(ids[0], set())])[0].ok
    assert context.api_calls == {}  # nothing changed: no call


def test_push_many_runs_batches_concurrently_within_the_cap(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(300)
    results = connect(concurrency=3).push_many([change(i, {"points"}, points=7) for i in ids])
    assert sorted(r.member_id for r in results) == sorted(ids)
    assert all(fake.contact(i)["Loyalty_Points"] == 7 for i in ids)
    assert sorted(len(u["data"]) for u in fake.updates) == [100, 100, 100]


def test_update_payload_serialises_points_as_integer(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    connect().push([change(cid, {"points"}, points=42)])
    sent = [r for r in fake.requests if r.method == "PUT"][-1]
    assert json.loads(sent.content)["data"][0]["Loyalty_Points"] == 42
