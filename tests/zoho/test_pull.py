"""Pulls: paging past 2,000 records, incremental cursors, 304/204, deletions, datetimes, currencies, rejects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from crmsync.connector import Stream
from crmsync.models import Member, Order, OrderStatus

from .fake import FakeZoho


def pull_all(connector, stream: Stream, cursor: str | None = None) -> tuple[list, list, list, str | None]:
    records, deleted, rejects = [], [], []
    for batch in connector.pull(stream, cursor):
        records += batch.records
        deleted += batch.deleted
        rejects += batch.rejects
        cursor = batch.cursor or cursor
    return records, deleted, rejects, cursor


def test_empty_module_answers_204_and_yields_nothing(fake: FakeZoho, connect) -> None:
    records, _, _, cursor = pull_all(connect(), Stream.MEMBERS)
    assert records == [] and cursor is None
    assert fake.calls("read Contacts") == 1


def test_paging_past_2000_uses_page_token(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(2150)
    connector = connect()
    records, _, _, cursor = pull_all(connector, Stream.MEMBERS)
    assert sorted(r.external_id for r in records) == sorted(ids)
    reads = [r for r in fake.requests if r.url.path.endswith("/Contacts")]
    assert len(reads) == 11  # ceil(2150 / 200): pages of the maximum size
    assert all(r.url.params["per_page"] == "200" for r in reads)
    assert [r.url.params.get("page") for r in reads[:10]] == [str(i) for i in range(1, 11)]
    assert "page" not in reads[10].url.params and reads[10].url.params["page_token"]
    assert context.api_calls["read Contacts"] == 11
    assert json.loads(cursor)["v"] == 2


def test_fields_requested_explicitly_and_chunked_over_50(fake: FakeZoho, connect) -> None:
    extra = [f"Custom_{i}" for i in range(60)]
    fake.add("Contacts", Email="a@example.com", Last_Name="A", **{f: f"v{f}" for f in extra})
    records, _, _, _ = pull_all(connect(member_attributes=extra), Stream.MEMBERS)
    assert records[0].attributes == {f: f"v{f}" for f in extra}
    reads = [r for r in fake.requests if r.url.path.endswith("/Contacts")]
    assert len(reads) == 2
    assert all(len(r.url.params["fields"].split(",")) <= 50 for r in reads)
    assert reads[0].url.params["fields"].split(",")[0] == "Modified_Time"
    assert reads[1].url.params["ids"] == records[0].external_id


def test_incremental_pull_uses_if_modified_since_and_304(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(5)
    connector = connect()
    _, _, _, cursor = pull_all(connector, Stream.MEMBERS)
    # right after the pull the window may still hold late commits: it is re-read, nothing is delivered twice
    records, deleted, _, cursor2 = pull_all(connector, Stream.MEMBERS, cursor)
    assert records == [] and deleted == []
    reads = [r for r in fake.requests if r.url.path.endswith("/Contacts")]
    newest = datetime.fromisoformat(json.loads(cursor)["records"]["at"])
    assert datetime.fromisoformat(reads[-1].headers["If-Modified-Since"]) == newest - timedelta(seconds=60)
    # once a read began a full overlap after the newest change, the window is settled: the next asks from the
    # newest change itself and gets 304
    fake.tick(120)
    records, _, _, cursor3 = pull_all(connector, Stream.MEMBERS, cursor2)
    fake.tick(120)
    records, _, _, cursor3 = pull_all(connector, Stream.MEMBERS, cursor3)
    assert records == []
    last = [r for r in fake.requests if r.url.path.endswith("/Contacts")][-1]
    assert last.headers["If-Modified-Since"].endswith("+00:00")
    assert datetime.fromisoformat(last.headers["If-Modified-Since"]) == newest
    assert fake.answers_to("read Contacts")[-1] == 304
    fake.modify("Contacts", ids[2], Email="new@example.com")
    records, _, _, cursor4 = pull_all(connector, Stream.MEMBERS, cursor3)
    assert [(r.external_id, r.email) for r in records] == [(ids[2], "new@example.com")]
    assert json.loads(cursor4)["records"]["at"] > json.loads(cursor3)["records"]["at"]


def test_304_is_not_parsed(fake: FakeZoho, connect) -> None:
    fake.seed_contacts(2)
    connector = connect()
    _, _, _, cursor = pull_all(connector, Stream.MEMBERS)
    fake.tick(300)
    fake.fail_next("read Contacts", httpx.Response(304))
    fake.fail_next("deleted Contacts", httpx.Response(204))
    records, deleted, _, new_cursor = pull_all(connector, Stream.MEMBERS, cursor)
    assert records == [] and deleted == []
    before, after = json.loads(cursor)["records"], json.loads(new_cursor)["records"]
    assert after["at"] == before["at"]
    assert datetime.fromisoformat(after["checked"]) == fake.now  # the 304's Date: the window is settled
    # versions older than the newest change are no longer re-read, so no longer kept
    assert after["seen"] == {before["at"]: before["seen"][before["at"]]}


def test_deleted_records_leave_through_batch_deleted(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(4)
    connector = connect()
    _, _, _, cursor = pull_all(connector, Stream.MEMBERS)
    fake.delete("Contacts", ids[1])
    fake.delete("Contacts", ids[3])
    _, deleted, _, cursor2 = pull_all(connector, Stream.MEMBERS, cursor)
    assert sorted(deleted) == sorted([ids[1], ids[3]])
    request = [r for r in fake.requests if r.url.path.endswith("/Contacts/deleted")][-1]
    assert request.url.params["type"] == "all" and "If-Modified-Since" in request.headers
    _, deleted_again, _, _ = pull_all(connector, Stream.MEMBERS, cursor2)
    assert deleted_again == []


def test_cursor_survives_restart_and_only_moves_forward(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(3)
    _, _, _, cursor = pull_all(connect(), Stream.MEMBERS)
    fake.modify("Contacts", ids[0], Last_Name="Changed")
    # a fresh connector (a new process) resumes from the stored string
    records, _, _, cursor2 = pull_all(connect(), Stream.MEMBERS, cursor)
    assert [r.external_id for r in records] == [ids[0]]
    assert json.loads(cursor2)["records"]["at"] >= json.loads(cursor)["records"]["at"]


def test_member_mapping_and_timezone_offsets(fake: FakeZoho, connect) -> None:
    rid = fake.add("Contacts", Email=" Zoe.Rossi@Example.com ", First_Name="Zoë", Last_Name="Rossi",
                   Email_Opt_Out=True, Phone="+39 06 1234")  # fmt: skip
    fake.records["Contacts"][rid]["Created_Time"] = "2025-06-30T17:30:00+05:30"
    (member,), _, _, _ = pull_all(connect(), Stream.MEMBERS)
    assert isinstance(member, Member)
    assert member.email == "zoe.rossi@example.com" and member.first_name == "Zoë"
    assert member.created_at == datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    assert member.opt_in is False and member.source == "crm"


def test_bad_contact_is_rejected_with_field_not_lost(fake: FakeZoho, connect) -> None:
    good = fake.add("Contacts", Email="ok@example.com", Last_Name="Ok")
    bad = fake.add("Contacts", Email="not-an-email", Last_Name="Bad")
    records, _, rejects, _ = pull_all(connect(), Stream.MEMBERS)
    assert [r.external_id for r in records] == [good]
    assert len(rejects) == 1
    assert rejects[0].record_id == bad and rejects[0].field == "Email"
    assert rejects[0].locator == f"Contacts {bad}" and rejects[0].raw["Email"] == "not-an-email"


def test_orders_with_multi_currency(fake: FakeZoho, connect) -> None:
    contact = fake.add("Contacts", Email="m@example.com", Last_Name="M")
    gbp = fake.add_order(contact, "80.03", Currency="GBP", Exchange_Rate=Decimal("0.79"))
    eur = fake.add_order(contact, "100.50", Currency="EUR", Exchange_Rate=Decimal("1"), Status="Cancelled")
    fake.records["Sales_Orders"][gbp]["Created_Time"] = "2025-06-30T16:50:54+05:30"
    records, _, _, _ = pull_all(connect(), Stream.ORDERS)
    orders = {o.external_id: o for o in records}
    assert all(isinstance(o, Order) for o in records)
    o = orders[gbp]
    assert o.amount == Decimal("80.03") and o.currency == "GBP" and o.member_external_id == contact
    # Zoho: home amount = amount / Exchange_Rate; canonical: base = amount * exchange_rate
    assert (o.amount * o.exchange_rate).quantize(Decimal("0.0001")) == Decimal("101.3038")
    assert o.placed_at == datetime(2025, 6, 30, 11, 20, 54, tzinfo=UTC)
    assert orders[eur].exchange_rate is None and orders[eur].status is OrderStatus.CANCELLED
    request = next(r for r in fake.requests if r.url.path.endswith("/Sales_Orders"))
    assert set(request.url.params["fields"].split(",")) >= {"Grand_Total", "Contact_Name", "Exchange_Rate"}


def test_orders_from_deals_with_configured_fields(fake: FakeZoho, connect) -> None:
    contact = fake.add("Contacts", Email="d@example.com", Last_Name="D")
    won = fake.add("Deals", Deal_Name="Big", Amount=Decimal("999.99"), Stage="Closed Won",
                   Closing_Date="2025-06-15", Contact_Name={"name": "D", "id": contact})  # fmt: skip
    lost = fake.add("Deals", Deal_Name="Lost", Amount=Decimal("5"), Stage="Closed Lost", Closing_Date="2025-06-16",
                    Contact_Name={"name": "D", "id": contact})  # fmt: skip
    records, _, _, _ = pull_all(connect(orders={"module": "Deals"}), Stream.ORDERS)
    orders = {o.external_id: o for o in records}
    assert orders[won].status is OrderStatus.PAID and orders[won].amount == Decimal("999.99")
    assert orders[won].placed_at == datetime(2025, 6, 15, tzinfo=UTC)
    assert orders[lost].status is OrderStatus.CANCELLED


def test_order_without_amount_is_rejected(fake: FakeZoho, connect) -> None:
    rid = fake.add("Sales_Orders", Subject="SO-1", Grand_Total=None, Status="Delivered")
    records, _, rejects, _ = pull_all(connect(), Stream.ORDERS)
    assert records == [] and rejects[0].record_id == rid and rejects[0].field == "Grand_Total"


def test_activities_from_a_configured_module(fake: FakeZoho, connect) -> None:
    contact = fake.add("Contacts", Email="c@example.com", Last_Name="C")
    fake.add("Calls", Who_Id={"name": "C", "id": contact}, Call_Start_Time="2025-06-01T10:00:00+02:00")
    settings = {"module": "Calls", "kind": "call", "date_field": "Call_Start_Time"}
    records, _, _, _ = pull_all(connect(activities=settings), Stream.ACTIVITIES)
    assert [(a.kind, a.member_external_id, a.occurred_at) for a in records] == [
        ("call", contact, datetime(2025, 6, 1, 8, 0, tzinfo=UTC))
    ]
