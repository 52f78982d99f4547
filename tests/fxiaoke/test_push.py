"""Pushes: one update per changed customer, option values from describe, triggers off, per-record failures."""

from __future__ import annotations

import pytest

from crmsync.connector import ProfileChange

from .conftest import POINTS, RFM, STAGE, TAGS, TIER
from .fake import PARAM_ERROR, FakeFxiaoke

GRADE = {"tier": "Gold", "points": 2380, "tags": ["vip", "newsletter"], "rfm_segment": "Champions",
         "lifecycle": "loyal"}  # fmt: skip


def change(member_id: str, values=GRADE, previous=None) -> ProfileChange:
    previous = previous or {}
    changed = frozenset(k for k, v in values.items() if previous.get(k) != v)
    return ProfileChange(member_id, dict(values), dict(previous), changed)


def updates(fake: FakeFxiaoke) -> list[dict]:
    return [c["body"] for c in fake.calls if c["path"].endswith("/data/update")]


@pytest.fixture
def accounts(fake: FakeFxiaoke) -> list[str]:
    ids = ["a1", "a2", "a3"]
    for i in ids:
        fake.put("AccountObj", {"_id": i, "name": i})
    return ids


def test_one_update_per_customer_with_option_values_and_triggers_off(fake: FakeFxiaoke, connect, accounts) -> None:
    results = connect().push([change("a1"), change("a2")])
    assert [(r.member_id, r.ok) for r in results] == [("a1", True), ("a2", True)]
    first, second = updates(fake)
    assert first == {
        "triggerWorkFlow": False,
        "triggerApprovalFlow": False,
        "data": {"object_data": {"dataObjectApiName": "AccountObj", "_id": "a1", TIER: "opt_gold", POINTS: "2380",
                                 TAGS: ["tag_3", "tag_1"], RFM: "Champions", STAGE: "stage_loyal"}},
    }  # fmt: skip
    assert second["data"]["object_data"]["_id"] == "a2"
    assert fake.objects["AccountObj"]["a1"][TIER] == "opt_gold"
    paths = [c["path"] for c in fake.calls]
    assert paths == ["/oauth2.0/token", "/cgi/crm/v2/object/describe", "/cgi/crm/v2/data/update",
                     "/cgi/crm/v2/data/update"]  # fmt: skip


def test_only_changed_fields_are_sent_and_unchanged_customers_cost_no_call(fake: FakeFxiaoke, connect, accounts):
    previous = dict(GRADE, tier="Silver")
    conn = connect()
    results = conn.push([change("a1", GRADE, previous), change("a2", GRADE, GRADE)])
    assert all(r.ok for r in results)
    (body,) = updates(fake)
    assert body["data"]["object_data"] == {"dataObjectApiName": "AccountObj", "_id": "a1", TIER: "opt_gold"}
    assert conn.push([]) == []


def test_triggers_and_option_map_follow_the_settings(fake: FakeFxiaoke, connect, accounts) -> None:
    fake.describes["AccountObj"][TIER]["options"].append({"label": "金卡", "value": "opt_jin"})
    conn = connect(trigger_workflow=True, option_map={"tier": {"Gold": "金卡"}})
    assert conn.push([change("a1", {"tier": "Gold"})])[0].ok
    (body,) = updates(fake)
    assert body["triggerWorkFlow"] is True and body["triggerApprovalFlow"] is False
    assert body["data"]["object_data"][TIER] == "opt_jin"


def test_refused_records_are_reported_and_the_others_still_written(fake: FakeFxiaoke, connect, accounts) -> None:
    fake.refuse["a2"] = (PARAM_ERROR, "无此操作的数据权限")
    results = {r.member_id: r for r in connect().push([change(i) for i in accounts])}
    assert results["a1"].ok and results["a3"].ok
    assert not results["a2"].ok and results["a2"].retryable
    assert results["a2"].reason == f"errorCode {PARAM_ERROR}: 无此操作的数据权限"
    assert fake.objects["AccountObj"]["a3"][TIER] == "opt_gold"
    assert len(updates(fake)) == 3


def test_a_grade_without_an_option_fails_that_record_without_a_call(fake: FakeFxiaoke, connect, accounts) -> None:
    results = connect().push([change("a1", {"tier": "Platinum"}), change("a2", {"tier": "Silver"})])
    bad, good = results
    assert not bad.ok and bad.field == TIER and "Platinum" in bad.reason and "Gold=opt_gold" in bad.reason
    assert bad.retryable  # an administrator can add the option; the next run writes it
    assert good.ok
    assert [u["data"]["object_data"]["_id"] for u in updates(fake)] == ["a2"]


def test_a_missing_field_fails_records_naming_it(fake: FakeFxiaoke, connect, accounts) -> None:
    del fake.describes["AccountObj"][POINTS]
    (result,) = connect().push([change("a1", {"points": 3})])
    assert not result.ok and result.field == POINTS and "no field" in result.reason
    assert updates(fake) == []


def test_an_unknown_customer_is_a_record_failure(fake: FakeFxiaoke, connect, accounts) -> None:
    (result,) = connect().push([change("gone", {"points": 3})])
    assert not result.ok and str(PARAM_ERROR) in result.reason


def test_refusals_an_admin_can_fix_are_retryable_and_gone_customers_are_not(fake: FakeFxiaoke, connect) -> None:
    """Only a customer invalidated or deleted in the CRM is given up; one lookup answers for the whole batch."""
    for i in range(6):
        fake.put("AccountObj", {"_id": f"a{i}", "name": f"客户{i}"})
    fake.objects["AccountObj"]["a1"]["life_status"] = "invalid"  # 作废 after the last pull
    fake.objects["AccountObj"]["a2"]["lock_status"] = "1"
    del fake.objects["AccountObj"]["a3"]
    fake.refuse["a4"] = (PARAM_ERROR, "无此操作的数据权限")
    conn = connect()
    conn.describe("AccountObj")
    fake.describes["AccountObj"][STAGE]["options"] = [{"label": "new", "value": "stage_new"}]  # removed meanwhile
    tier_only = {"tier": "Gold"}
    changes = [change("a0", tier_only), *(change(f"a{i}", tier_only) for i in range(1, 5)), change("a5")]
    results = {r.member_id: r for r in conn.push(changes)}
    assert {i: (r.ok, r.retryable) for i, r in results.items()} == {
        "a0": (True, True), "a1": (False, False), "a2": (False, True), "a3": (False, False), "a4": (False, True),
        "a5": (False, True),
    }  # fmt: skip
    assert "invalidated (作废)" in results["a1"].reason and "deleted" in results["a3"].reason
    assert STAGE in results["a5"].reason and "'stage_loyal'" in results["a5"].reason and results["a5"].field == STAGE
    lookups = [c["body"]["data"]["search_query_info"] for c in fake.calls if c["path"].endswith("/data/query")]
    refused = ["a1", "a2", "a3", "a4", "a5"]
    assert [q["filters"] for q in lookups] == [[{"field_name": "_id", "operator": "IN", "field_values": refused}]]


def test_unpushed_fields_are_not_in_push_fields(connect) -> None:
    conn = connect(push_fields={"tier": TIER})
    assert conn.push_fields == ("tier",)


def test_push_field_names_must_be_custom_fields() -> None:
    from pydantic import ValidationError

    from .conftest import make_settings

    with pytest.raises(ValidationError, match="__c"):
        make_settings(push_fields={"tier": "account_level"})
