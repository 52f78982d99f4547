"""Bulk Read for large first pulls and Bulk Write for large pushes, against realistic job and file answers."""

from __future__ import annotations

import io
import zipfile

import httpx
from crmsync_zoho.connector import ZohoConnector

from crmsync.connector import ProfileChange, Stream

from .conftest import make_settings
from .fake import FakeZoho


def test_large_initial_pull_uses_bulk_read_across_result_pages(context) -> None:
    fake = FakeZoho(bulk_page_size=40, bulk_polls=2)
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
    assert fake.sleeps == [connector.settings.bulk_poll_seconds] * 6
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
    assert context.api_calls.get("count Sales_Orders") == 1


def test_small_initial_pull_stays_on_rest(fake: FakeZoho, connect, context) -> None:
    fake.seed_contacts(3)
    list(connect(bulk_threshold=10).pull(Stream.MEMBERS, None))
    assert context.api_calls["count Contacts"] == 1 and "bulk_read create" not in context.api_calls


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
    assert not results[ids[4]].ok and results[ids[4]].field == "Loyalty_Tier" and not results[ids[4]].retryable
    assert not results[ids[5]].ok
    upload = next(r for r in fake.requests if r.url.path.endswith("/upload"))
    assert upload.url.host == "content.zohoapis.com"
    assert upload.headers["feature"] == "bulk-write" and upload.headers["X-CRM-ORG"] == "700000001"
    job = next(r for r in fake.requests if r.url.path == "/crm/bulk/v8/write" and r.method == "POST")
    body = httpx.Response(200, content=job.content).json()
    assert body["operation"] == "update" and body["resource"][0]["find_by"] == "id"
    assert [m["api_name"] for m in body["resource"][0]["field_mappings"]] == ["id", "Loyalty_Tier", "Loyalty_Tags"]
    assert context.api_calls["bulk_write upload"] == 1 and "update Contacts" not in context.api_calls
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
