"""Bulk Read for large first pulls and Bulk Write for large pushes, against realistic job and file answers."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta

import httpx
import pytest
from crmsync_zoho.connector import ZohoConnector

from crmsync.connector import ProfileChange, Stream
from crmsync.errors import FatalAPIError, RetryableError

from .conftest import make_settings
from .fake import FakeZoho


def test_large_initial_pull_uses_bulk_read_across_result_pages(context) -> None:
    fake = FakeZoho(bulk_page_size=40, bulk_job_seconds=25)  # still running at the first two status calls
    ids = fake.seed_contacts(100)
    connector = ZohoConnector(make_settings(bulk_threshold=50), context, transport=fake.transport, sleep=fake.sleep)
    batches = list(connector.pull(Stream.MEMBERS, None))
    members = [r for b in batches for r in b.records]
    assert sorted(m.external_id for m in members) == sorted(ids)
    assert all(m.email and m.email.endswith("@example.com") for m in members)
    # the unordered export hands its cursor over only at the end
    assert all(b.cursor is None for b in batches[:-1]) and batches[-1].cursor
    jobs = [r for r in fake.requests if r.method == "POST" and r.url.path == "/crm/bulk/v8/read"]
    assert len(jobs) == 3  # 100 records in result pages of 40
    assert context.api_calls["bulk_read download"] == 3
    assert context.api_calls["bulk_read status"] == 9  # two "IN PROGRESS" polls, then COMPLETED, per job
    assert fake.sleeps == [connector.settings.bulk_poll_seconds] * 9  # each status call waits a poll interval
    assert "read Contacts" not in context.api_calls
    # incremental pulls after it go through REST with If-Modified-Since
    fake.modify("Contacts", ids[5], Last_Name="Changed")
    again = [r for b in connector.pull(Stream.MEMBERS, batches[-1].cursor) for r in b.records]
    assert [m.external_id for m in again] == [ids[5]]


def test_bulk_read_orders_keep_lookups_and_decimals(context, fake: FakeZoho, connect) -> None:
    contact = fake.add("Contacts", Email="b@example.com", Last_Name="B")
    for amount in ("10.10", "20.20", "30.30"):
        fake.add_order(contact, amount, Currency="EUR", Exchange_Rate=1)
    orders = [r for b in connect(bulk_threshold=2).pull(Stream.ORDERS, None) for r in b.records]
    assert sorted(str(o.amount) for o in orders) == ["10.1000", "20.2000", "30.3000"]
    assert {o.member_external_id for o in orders} == {contact}
    assert "count Sales_Orders" not in context.api_calls


def test_first_pull_goes_straight_to_bulk_read_with_one_status_call(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(3)
    connector = connect(bulk_threshold=2000)
    members = [r for b in connector.pull(Stream.MEMBERS, None) for r in b.records]
    assert sorted(m.external_id for m in members) == sorted(ids)
    # no count call: an export costs three calls whatever the module's size
    assert context.api_calls == {"oauth token": 1, "bulk_read create": 1, "bulk_read status": 1,
                                 "bulk_read download": 1}  # fmt: skip
    # the job is given one poll interval before its status is asked (it runs 5 s in the fake)
    assert fake.sleeps == [connector.settings.bulk_poll_seconds]


def test_first_pull_without_bulk_read_stays_on_rest(fake: FakeZoho, connect, context) -> None:
    fake.seed_contacts(3)
    list(connect(bulk_read=False, bulk_threshold=10).pull(Stream.MEMBERS, None))
    assert context.api_calls == {"oauth token": 1, "read Contacts": 1}


def test_bulk_read_of_an_empty_module_fetches_no_file_and_sets_the_cursor(fake: FakeZoho, connect, context) -> None:
    connector = connect(bulk_threshold=2000)
    batches = list(connector.pull(Stream.ORDERS, None))
    assert len(batches) == 1 and not batches[0].records and batches[0].cursor
    assert "bulk_read download" not in context.api_calls
    # the cursor is the export's start: the next pull asks REST for what changed since then
    order = fake.add_order(None, "10.00")
    again = [r for b in connector.pull(Stream.ORDERS, batches[0].cursor) for r in b.records]
    assert [o.external_id for o in again] == [order]
    assert context.api_calls["read Sales_Orders"] == 1 and context.api_calls["bulk_read create"] == 1


def test_cursor_of_an_export_stops_at_the_job_start(fake: FakeZoho, context) -> None:
    ids = fake.seed_contacts(3)
    started = fake.now

    def sleep(seconds: float) -> None:  # a person edits a contact while the export runs
        fake.sleep(seconds)
        if len(fake.sleeps) == 1:
            fake.modify("Contacts", ids[0], Last_Name="Edited")

    connector = ZohoConnector(make_settings(bulk_threshold=2000), context, transport=fake.transport, sleep=sleep)
    cursor = [b.cursor for b in connector.pull(Stream.MEMBERS, None) if b.cursor][-1]
    assert datetime.fromisoformat(json.loads(cursor)["records"]["at"]) == started
    list(connector.pull(Stream.MEMBERS, cursor))
    read = next(r for r in fake.requests if r.url.path.endswith("/Contacts"))
    assert datetime.fromisoformat(read.headers["If-Modified-Since"]) == started - timedelta(seconds=60)


def test_rerun_reads_back_a_bulk_write_with_bulk_read(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(30)
    connector = connect(bulk_threshold=20, bulk_write_threshold=20)
    cursor = [b.cursor for b in connector.pull(Stream.MEMBERS, None) if b.cursor][-1]
    # a person changes a contact after the read and before the write: the write moves its Modified_Time again
    fake.modify("Contacts", ids[3], Email="new.address@example.com")
    values = {"tier": "Gold", "points": 10, "tags": [], "rfm_segment": None, "lifecycle": None}
    connector.push_many([ProfileChange(i, values, {}, frozenset({"tier"})) for i in ids])
    assert connector.written == 30
    fake.tick(1800)  # the next scheduled run
    before = dict(context.api_calls)
    batches = list(connector.pull(Stream.MEMBERS, cursor))
    members = {m.external_id: m for b in batches for m in b.records}
    # all 30 are read back (the write hid the person's edit of ids[3] behind its Modified_Time); only the edited
    # one is delivered, the others are recognised by value as the connector's own writes
    assert set(members) == {ids[3]} and members[ids[3]].email == "new.address@example.com"
    calls = {k: v - before.get(k, 0) for k, v in context.api_calls.items() if v != before.get(k, 0)}
    assert calls == {"bulk_read create": 1, "bulk_read status": 1, "bulk_read download": 1, "deleted Contacts": 1}
    job = [r for r in fake.requests if r.method == "POST" and r.url.path == "/crm/bulk/v8/read"][-1]
    since = datetime.fromisoformat(json.loads(cursor)["records"]["at"]) - timedelta(seconds=60)
    assert json.loads(job.content)["query"]["criteria"] == {
        "group_operator": "and",
        "group": [{"field": {"api_name": "Modified_Time"}, "comparator": "greater_equal",
                   "value": since.isoformat(timespec="seconds")}],
    }  # fmt: skip
    assert connector.written == 0  # read back: the next rerun reads only what changed after
    cursor = [b.cursor for b in batches if b.cursor][-1]
    fake.tick(600)
    assert [r for b in connector.pull(Stream.MEMBERS, cursor) for r in b.records] == []
    assert context.api_calls["read Contacts"] == 1 and context.api_calls["bulk_read create"] == 2
    assert fake.answers_to("read Contacts") == [304]  # the export settled the window


def test_small_read_back_stays_on_rest(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(5)
    connector = connect(bulk_threshold=20)
    cursor = [b.cursor for b in connector.pull(Stream.MEMBERS, None) if b.cursor][-1]
    values = {"tier": "Gold", "points": 10, "tags": [], "rfm_segment": None, "lifecycle": None}
    changes = [ProfileChange(i, values, {}, frozenset({"tier"})) for i in ids[:3]]
    changes.append(ProfileChange(ids[3], values, values, frozenset()))  # nothing to send: no write
    connector.push_many(changes)
    assert connector.written == 3
    fake.modify("Contacts", ids[1], First_Name="Changed")  # a person's edit after the write
    again = [m.external_id for b in connector.pull(Stream.MEMBERS, cursor) for m in b.records]
    assert again == [ids[1]]  # the three written are read back on REST; the two unchanged are echoes
    assert context.api_calls["read Contacts"] == 1 and context.api_calls["bulk_read create"] == 1
    assert connector.written == 0


def test_bulk_write_updates_and_reports_rejects(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(6)
    fake.delete("Contacts", ids[5])
    values = {"tier": "Gold", "points": 10, "tags": ["loyal"], "rfm_segment": "Champions", "lifecycle": "new"}
    changes = [ProfileChange(i, values, {}, frozenset({"tier", "tags"})) for i in ids[:4]]
    changes.append(ProfileChange(ids[4], values | {"tier": "Titanium"}, {}, frozenset({"tier"})))
    changes.append(ProfileChange(ids[5], values, {}, frozenset({"tier"})))
    results = {r.member_id: r for r in connect(bulk_write_threshold=5).push_many(changes)}
    assert all(results[i].ok for i in ids[:4])
    assert all(fake.contact(i)["Loyalty_Tier"] == "Gold" and fake.contact(i)["Loyalty_Tags"] == ["loyal"]
               for i in ids[:4])  # fmt: skip
    refused = results[ids[4]]  # an off-list value: an admin can add it, so it is retried on a later run
    assert not refused.ok and refused.field == "Loyalty_Tier" and refused.retryable and "'Titanium'" in refused.reason
    assert not results[ids[5]].ok and not results[ids[5]].retryable and "deleted" in results[ids[5]].reason
    upload = next(r for r in fake.requests if r.url.path.endswith("/upload"))
    assert upload.url.host == "content.zohoapis.com"
    assert upload.headers["feature"] == "bulk-write" and upload.headers["X-CRM-ORG"] == "700000001"
    job = next(r for r in fake.requests if r.url.path == "/crm/bulk/v8/write" and r.method == "POST")
    body = httpx.Response(200, content=job.content).json()
    assert body["operation"] == "update" and body["resource"][0]["find_by"] == "id"
    assert [m["api_name"] for m in body["resource"][0]["field_mappings"]] == ["id", "Loyalty_Tier", "Loyalty_Tags"]
    assert context.api_calls["bulk_write upload"] == 1 and "update Contacts" not in context.api_calls
    assert context.api_calls["bulk_write status"] == 1  # asked once, a poll interval after the job was created
    download = next(r for r in fake.requests if r.url.host == "download.zohocrm.com")
    assert download.headers["Authorization"].startswith("Zoho-oauthtoken")


def test_bulk_write_csv_is_zipped_with_joined_multiselect(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(2)
    values = {"tier": "Silver", "points": 3, "tags": ["loyal", "big_spender"], "rfm_segment": None, "lifecycle": None}
    connect(bulk_write_threshold=1).push_many([ProfileChange(i, values, {}, frozenset({"tags"})) for i in ids])
    file_id = next(j for j in fake.jobs.values() if j["op"] == "file")
    with zipfile.ZipFile(io.BytesIO(file_id["zip"])) as archive:
        text = archive.read("contacts.csv").decode()
    assert text.splitlines() == ["id,Loyalty_Tags", f"{ids[0]},big_spender;loyal", f"{ids[1]},big_spender;loyal"]


def test_org_id_is_looked_up_once_and_kept(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(2)
    values = {"tier": "Silver", "points": 3, "tags": [], "rfm_segment": None, "lifecycle": None}
    changes = [ProfileChange(i, values, {}, frozenset({"tier"})) for i in ids]
    connect(bulk_write_threshold=1).push_many(changes)
    connect(bulk_write_threshold=1).push_many(changes)  # a later run: the store still holds the zgid
    assert context.api_calls["org"] == 1 and context.api_calls["bulk_write upload"] == 2
    assert all(r.headers["X-CRM-ORG"] == "700000001" for r in fake.requests if r.url.path.endswith("/upload"))


def test_org_id_setting_skips_the_look_up(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(1)
    values = {"tier": "Silver", "points": 3, "tags": [], "rfm_segment": None, "lifecycle": None}
    connect(bulk_write_threshold=1, org_id="700000001").push_many(
        [ProfileChange(ids[0], values, {}, frozenset({"tier"}))]
    )
    assert "org" not in context.api_calls and context.api_calls["bulk_write upload"] == 1


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        ("org", httpx.Response(200, json={"org": [{"company_name": "Zylker"}]})),  # no zgid
        ("org", httpx.Response(401, json={"code": "OAUTH_SCOPE_MISMATCH", "details": {}, "message": "Unauthorized",
                                          "status": "error"})),
        ("bulk_write upload", httpx.Response(401, json={"code": "OAUTH_SCOPE_MISMATCH", "details": {},
                                                        "message": "Unauthorized", "status": "error"})),
        ("bulk_write upload", httpx.Response(400, json={"code": "INVALID_DATA", "details": {},
                                                        "message": "invalid file format", "status": "error"})),
        ("bulk_write create", httpx.Response(403, json={"code": "NO_PERMISSION", "details": {"permissions": []},
                                                        "message": "permission denied", "status": "error"})),
        ("bulk_write status", httpx.Response(200, json={"id": "1", "status": "FAILED", "operation": "update"})),
    ],
)  # fmt: skip
def test_refused_bulk_write_falls_back_to_updates_of_100(fake: FakeZoho, connect, context, caplog, kind, answer):
    ids = fake.seed_contacts(250)
    fake.fail_next(kind, answer)
    values = {"tier": "Silver", "points": 3, "tags": [], "rfm_segment": None, "lifecycle": None}
    changes = [ProfileChange(i, values, {}, frozenset({"tier", "points"})) for i in ids]
    with caplog.at_level("WARNING", logger="crmsync.connector"):
        results = connect(bulk_write_threshold=200).push_many(changes)
    assert sorted(r.member_id for r in results if r.ok) == sorted(ids)  # nothing lost
    assert all(fake.contact(i)["Loyalty_Tier"] == "Silver" and fake.contact(i)["Loyalty_Points"] == 3 for i in ids)
    assert context.api_calls["update Contacts"] == 3
    assert "Bulk Write refused" in caplog.text and "updates of 100" in caplog.text


def test_bulk_write_still_running_is_not_pushed_twice(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(3)
    values = {"tier": "Silver", "points": 3, "tags": [], "rfm_segment": None, "lifecycle": None}
    slow = connect(bulk_write_threshold=2, bulk_poll_seconds=10, bulk_max_wait_seconds=20)
    fake.bulk_job_seconds = 3600
    with pytest.raises(RetryableError, match="still IN PROGRESS"):
        slow.push_many([ProfileChange(i, values, {}, frozenset({"tier"})) for i in ids])
    assert "update Contacts" not in context.api_calls  # the job may still finish: no second write meanwhile


def test_read_back_crosses_result_pages_with_its_criteria(context) -> None:
    fake = FakeZoho(bulk_page_size=10)
    ids = fake.seed_contacts(25)
    connector = ZohoConnector(
        make_settings(bulk_threshold=20, bulk_write_threshold=20), context, transport=fake.transport, sleep=fake.sleep
    )
    cursor = [b.cursor for b in connector.pull(Stream.MEMBERS, None) if b.cursor][-1]
    values = {"tier": "Gold", "points": 1, "tags": [], "rfm_segment": None, "lifecycle": None}
    connector.push_many([ProfileChange(i, values, {}, frozenset({"tier"})) for i in ids])
    fake.mass_update("Contacts", ids[::2], Last_Name="Renamed")  # an admin renames every other contact
    members = [m.external_id for b in connector.pull(Stream.MEMBERS, cursor) for m in b.records]
    assert sorted(members) == sorted(ids[::2])  # the others are the connector's own writes coming back
    jobs = [json.loads(r.content)["query"] for r in fake.requests if r.url.path == "/crm/bulk/v8/read"]
    assert len(jobs) == 6  # three result pages of 10 for the first pull, three for the read-back
    assert all("criteria" in q for q in jobs[3:]) and "page_token" in jobs[4] and "page_token" in jobs[5]


def test_a_failed_read_back_is_tried_again_by_the_next_run(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(3)
    connector = connect(bulk_threshold=2, bulk_write_threshold=2)
    cursor = [b.cursor for b in connector.pull(Stream.MEMBERS, None) if b.cursor][-1]
    values = {"tier": "Gold", "points": 1, "tags": [], "rfm_segment": None, "lifecycle": None}
    connector.push_many([ProfileChange(i, values, {}, frozenset({"tier"})) for i in ids])
    failed = {"id": "554023000000568002", "operation": "read", "state": "FAILURE", "file_type": "csv"}
    fake.fail_next("bulk_read status", httpx.Response(200, json={"data": [failed]}))
    with pytest.raises(FatalAPIError, match="FAILURE"):
        list(connector.pull(Stream.MEMBERS, cursor))
    assert connector.written == 3  # still owed: the next run reads them back
    fake.modify("Contacts", ids[0], Email="moved@example.com")
    assert [m.external_id for b in connector.pull(Stream.MEMBERS, cursor) for m in b.records] == [ids[0]]
    assert context.api_calls["bulk_read create"] == 3  # the first export, the failed read-back, the retry
    assert connector.written == 0
