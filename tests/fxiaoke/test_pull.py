"""Pulls: customers and sales orders in canonical form, _id-cursor paging, incremental windows, echoes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from crmsync_fxiaoke.connector import FxiaokeConnector
from crmsync_fxiaoke.cursor import CHECKPOINT_ALWAYS, FxCursor
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.connector import Rejection, Stream
from crmsync.models import Member, Order, OrderStatus

from .conftest import make_context, make_settings
from .fake import USER_ID, FakeFxiaoke, account_describe


def connector(fake: FakeFxiaoke, **overrides) -> FxiaokeConnector:
    return FxiaokeConnector(make_settings(**overrides), make_context(), transport=fake.transport, sleep=fake.sleep,
                            clock=lambda: fake.now, monotonic=lambda: fake.now)  # fmt: skip


def pull(conn, stream, cursor=None):
    batches = list(conn.pull(stream, cursor))
    return batches, [r for b in batches for r in b.records], batches[-1].cursor


def queries(fake: FakeFxiaoke) -> list[dict]:
    return [c["body"]["data"] for c in fake.calls if c["path"].endswith("/data/query")]


def seed_accounts(fake: FakeFxiaoke, n: int) -> list[str]:
    ids = [f"65a0c1e2f3a4b5c6d7e8{i:04x}" for i in range(n)]
    for i, rid in enumerate(ids):
        fake.put("AccountObj", {"_id": rid, "name": f"客户{i}", "email": f"c{i}@example.cn", "tel": f"021-{i:04d}"})
    return ids


def test_customers_become_members(fake: FakeFxiaoke, connect) -> None:
    record = {"_id": "65a0c1e2f3a4b5c6d7e8f901", "name": "上海示例贸易有限公司", "email": " Ops@Example.CN ",
              "tel": "021-5555", "create_time": 1704067200000, "last_modified_time": 1718000000123,
              "owner": ["1000"], "field_Tier1__c": "opt_silver"}  # fmt: skip
    fake.put("AccountObj", record)
    _, records, _ = pull(connect(), Stream.MEMBERS)
    assert records == [
        Member(source="fx", external_id="65a0c1e2f3a4b5c6d7e8f901", email="ops@example.cn", phone="021-5555",
               last_name="上海示例贸易有限公司", created_at=datetime(2024, 1, 1, tzinfo=UTC),
               updated_at=datetime(2024, 6, 10, 6, 13, 20, 123000, tzinfo=UTC))
    ]  # fmt: skip


def test_query_body_follows_the_documented_shape(fake: FakeFxiaoke, connect) -> None:
    seed_accounts(fake, 1)
    fake.describes["AccountObj"]["account_level"] = {"api_name": "account_level", "type": "select_one"}
    pull(connect(members={"attributes": ["account_level"]}), Stream.MEMBERS)
    (body,) = queries(fake)
    assert body == {
        "dataObjectApiName": "AccountObj",
        "find_explicit_total_num": False,
        "search_query_info": {
            "limit": 100,
            "offset": 0,
            "filters": [],
            "orders": [{"fieldName": "_id", "isAsc": True}],
            "fieldProjection": ["_id", "create_time", "last_modified_time", "last_modified_by", "life_status", "name",
                                "email", "tel", "account_level"],
        },
    }  # fmt: skip


def test_paging_uses_the_id_cursor_at_the_maximum_page_size(fake: FakeFxiaoke, connect) -> None:
    ids = seed_accounts(fake, 230)
    batches, records, _ = pull(connect(), Stream.MEMBERS)
    assert [r.external_id for r in records] == ids
    assert [len(b.records) for b in batches] == [100, 100, 30]
    sent = queries(fake)
    assert [q["search_query_info"]["offset"] for q in sent] == [0, 0, 0]  # never an offset: no 10,000 ceiling
    assert [q["search_query_info"]["filters"] for q in sent] == [
        [],
        [{"field_name": "_id", "operator": "GT", "field_values": [ids[99]]}],
        [{"field_name": "_id", "operator": "GT", "field_values": [ids[199]]}],
    ]


def test_more_than_ten_thousand_customers_are_read_past_the_offset_ceiling(fake: FakeFxiaoke, connect) -> None:
    ids = seed_accounts(fake, 10_050)
    conn = connect()
    _, records, _ = pull(conn, Stream.MEMBERS)
    assert [r.external_id for r in records] == ids
    sent = queries(fake)
    assert len(sent) == 101 and {q["search_query_info"]["offset"] for q in sent} == {0}
    assert sent[-1]["search_query_info"]["filters"][-1]["field_values"] == [ids[9_999]]
    # 101 queries on one path: the client waited for the 20 s window instead of being refused
    assert fake.now > 1_718_000_000 and "retries" not in conn.context.api_calls


def test_exact_page_multiple_ends_with_an_empty_page(fake: FakeFxiaoke, connect) -> None:
    seed_accounts(fake, 6)
    batches, records, cursor = pull(connect(page_size=3), Stream.MEMBERS)
    assert len(records) == 6 and len(queries(fake)) == 3
    assert batches[-1].records == [] and json.loads(cursor)["wm"] == fake.now_ms


def test_resuming_from_a_mid_pull_cursor_continues_after_its_id(fake: FakeFxiaoke, connect, context) -> None:
    ids = seed_accounts(fake, 7)
    batches, _, _ = pull(connect(page_size=3), Stream.MEMBERS)
    _, resumed, _ = pull(connect(page_size=3), Stream.MEMBERS, batches[0].cursor)
    assert [r.external_id for r in resumed] == ids[3:]


def test_sales_orders_become_orders(fake: FakeFxiaoke, connect) -> None:
    fake.put("SalesOrderObj", {"_id": "o1", "name": "20240610-000001", "account_id": "a1", "order_amount": "1280.10",
                               "order_time": 1717948800000, "order_status": "7"})  # fmt: skip
    fake.put("SalesOrderObj", {"_id": "o2", "account_id": "a1", "order_amount": "99", "order_time": 1717948800000,
                               "order_status": "6"})  # fmt: skip
    fake.put("SalesOrderObj", {"_id": "o3", "account_id": "a2", "order_amount": "50.5", "order_time": 1717948800000,
                               "order_status": "7", "life_status": "invalid"})  # fmt: skip
    _, records, _ = pull(connect(), Stream.ORDERS)
    first = records[0]
    assert isinstance(first, Order)
    assert (first.amount, first.currency, first.member_external_id) == (Decimal("1280.10"), "CNY", "a1")
    assert first.placed_at == datetime(2024, 6, 9, 16, 0, tzinfo=UTC)  # 2024-06-10 00:00 in Beijing
    assert [r.status for r in records] == [OrderStatus.PAID, OrderStatus.PENDING, OrderStatus.CANCELLED]


def test_bad_orders_are_rejected_naming_record_and_field(fake: FakeFxiaoke, connect) -> None:
    fake.put("SalesOrderObj", {"_id": "o1", "account_id": "a1", "order_amount": "12,80x", "order_time": 1717948800000})
    fake.put("SalesOrderObj", {"_id": "o2", "account_id": "a1", "order_amount": "10"})
    fake.put("SalesOrderObj", {"_id": "o3", "account_id": "a1", "order_amount": "10", "order_time": 1717948800000})
    batches, records, _ = pull(connect(), Stream.ORDERS)
    rejects = [r for b in batches for r in b.rejects]
    assert [r.external_id for r in records] == ["o3"]
    assert [(r.locator, r.field) for r in rejects] == [("SalesOrderObj o1", "order_amount"),
                                                       ("SalesOrderObj o2", "order_time")]  # fmt: skip
    assert all(isinstance(r, Rejection) and r.raw and r.record_id for r in rejects)


def test_bad_email_is_rejected_naming_record_and_field(fake: FakeFxiaoke, connect) -> None:
    fake.put("AccountObj", {"_id": "a1", "name": "甲", "email": "not-an-email"})
    fake.put("AccountObj", {"_id": "a2", "name": "乙", "email": "b@example.cn"})
    batches, records, _ = pull(connect(), Stream.MEMBERS)
    (reject,) = [r for b in batches for r in b.rejects]
    assert (reject.locator, reject.field) == ("AccountObj a1", "email")
    assert [r.external_id for r in records] == ["a2"]


def test_incremental_pull_reads_from_the_watermark_and_skips_what_it_delivered(fake: FakeFxiaoke, connect) -> None:
    ids = seed_accounts(fake, 3)
    _, _, cursor = pull(connect(), Stream.MEMBERS)
    watermark = json.loads(cursor)["wm"]
    _, again, cursor2 = pull(connect(), Stream.MEMBERS, cursor)
    assert again == [] and json.loads(cursor2)["wm"] == watermark
    fake.now += 60
    fake.objects["AccountObj"][ids[1]].update(email="new@example.cn", last_modified_time=fake.now_ms)
    _, changed, cursor3 = pull(connect(), Stream.MEMBERS, cursor2)
    assert [(r.external_id, r.email) for r in changed] == [(ids[1], "new@example.cn")]
    assert queries(fake)[-1]["search_query_info"]["filters"] == [
        {"field_name": "last_modified_time", "operator": "GTE", "field_values": [str(watermark - 120_000)]}
    ]
    assert json.loads(cursor3)["wm"] == fake.now_ms


def test_our_write_backs_do_not_come_back_as_customer_changes(fake: FakeFxiaoke, connect, context) -> None:
    from crmsync.connector import ProfileChange

    ids = seed_accounts(fake, 3)
    conn = connect()
    _, _, cursor = pull(conn, Stream.MEMBERS)
    fake.now += 60
    grades = [ProfileChange(i, {"tier": "Gold", "points": 5}, {}, frozenset({"tier", "points"})) for i in ids[:2]]
    assert all(r.ok for r in conn.push(grades))
    assert fake.objects["AccountObj"][ids[0]]["last_modified_by"] == [USER_ID]
    fake.now += 60  # a person edits the third customer's phone
    fake.objects["AccountObj"][ids[2]].update(tel="021-9999", last_modified_time=fake.now_ms)
    _, changed, cursor2 = pull(connect(), Stream.MEMBERS, cursor)
    assert [(r.external_id, r.phone) for r in changed] == [(ids[2], "021-9999")]
    # the operator itself changing a field crmsync reads is a real change
    fake.now += 60
    fake.objects["AccountObj"][ids[0]].update(email="x@example.cn", last_modified_time=fake.now_ms,
                                              last_modified_by=[USER_ID])  # fmt: skip
    _, changed, _ = pull(connect(), Stream.MEMBERS, cursor2)
    assert [r.external_id for r in changed] == [ids[0]]


def test_cursor_keeps_only_the_ids_inside_the_overlap(fake: FakeFxiaoke, connect) -> None:
    ids = seed_accounts(fake, 300)
    for i, rid in enumerate(reversed(ids)):  # modified one second apart, newest first in _id order
        fake.objects["AccountObj"][rid]["last_modified_time"] = fake.now_ms + i * 1000
    _, records, cursor = pull(connect(), Stream.MEMBERS)
    state = FxCursor.loads(cursor)
    assert len(records) == 300 and not state.active
    assert state.watermark == fake.now_ms + 299_000
    assert sorted(state.seen) == sorted(ids[:121])  # the 121 customers changed in the last 120 s
    fake.now += 1
    _, again, _ = pull(connect(), Stream.MEMBERS, cursor)
    assert again == []


def test_invalidated_customers_are_deletions_and_come_back_when_recovered(fake: FakeFxiaoke, connect) -> None:
    ids = seed_accounts(fake, 5)
    fake.objects["AccountObj"][ids[0]]["life_status"] = "invalid"
    batches, records, cursor = pull(connect(), Stream.MEMBERS)
    assert [r.external_id for r in records] == ids[1:]
    assert [i for b in batches for i in b.deleted] == [ids[0]]
    fake.now += 60  # an employee invalidates (作废) two customers and recovers the first one
    fake.mass_update("AccountObj", ids[2:4], life_status="invalid")
    fake.mass_update("AccountObj", ids[:1], life_status="normal")
    batches, records, cursor = pull(connect(), Stream.MEMBERS, cursor)
    assert [r.external_id for r in records] == ids[:1] and not records[0].deleted
    assert [i for b in batches for i in b.deleted] == ids[2:4]
    batches, records, _ = pull(connect(), Stream.MEMBERS, cursor)  # delivered once: nothing again
    assert records == [] and [i for b in batches for i in b.deleted] == []


def distinct_times(fake: FakeFxiaoke, ids: list[str], times: list[int]) -> None:
    for rid, t in zip(ids, times, strict=True):
        fake.objects["AccountObj"][rid]["last_modified_time"] = t


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(0, 700),
    shape=st.sampled_from(["one time", "rising", "falling", "clusters", "spread"]),
    page=st.sampled_from([100, 37]),
    seed=st.integers(0, 2**16),
)
def test_any_spread_of_modification_times_is_delivered_exactly_once_in_linear_work(n, shape, page, seed) -> None:
    """Rows read and ids written into cursors grow linearly with the records, whatever their times.

    The checkpoint threshold is lowered so that a few hundred records exercise the large-map paths.
    """
    import random
    from unittest import mock

    fake = FakeFxiaoke()
    fake.per_window = None
    fake.describes["AccountObj"] = account_describe()
    ids = seed_accounts(fake, n)
    rng, base = random.Random(seed), fake.now_ms - 3_600_000
    times = {
        "one time": [base] * n,
        "rising": [base + i for i in range(n)],
        "falling": [base + n - i for i in range(n)],
        "clusters": [base + 1000 * rng.randrange(4) for _ in range(n)],
        "spread": [base + rng.randrange(600_000) for _ in range(n)],
    }[shape]
    distinct_times(fake, ids, times)
    make = lambda: connector(fake, page_size=page, calls_per_window=None)  # noqa: E731
    with mock.patch("crmsync_fxiaoke.cursor.CHECKPOINT_ALWAYS", 20):
        batches, records, cursor = pull(make(), Stream.MEMBERS)
        assert sorted(r.external_id for r in records) == ids  # each once
        written = [FxCursor.loads(b.cursor) for b in batches if b.cursor is not None]
        assert sum(len(c.seen) for c in written) <= 3 * n + 20 * len(batches)
        assert written[-1].watermark == max(times, default=None) and not written[-1].active
        _, rerun, _ = pull(make(), Stream.MEMBERS, cursor)
    in_window = sum(t >= max(times) - 120_000 for t in times)
    assert rerun == [] and len(queries(fake)) == (n // page + 1) + (in_window // page + 1)


@pytest.mark.slow
def test_twenty_thousand_customers_with_one_modification_time(fake: FakeFxiaoke) -> None:
    """A mass update stamps one time on 20,000 customers: each is delivered once, at the documented call count."""
    ids = seed_accounts(fake, 20_000)
    stamp = fake.mass_update("AccountObj", ids, name="改名")
    conn = connector(fake)
    batches, records, cursor = pull(conn, Stream.MEMBERS)
    assert [r.external_id for r in records] == ids and {r.last_name for r in records} == {"改名"}
    assert conn.context.api_calls == {"token": 1, "query AccountObj": 201}  # 200 full pages and the last, empty
    checkpoints = [b.cursor for b in batches if b.cursor is not None]
    # a cursor with every batch while it is small, then at doubling sizes: O(records) written in all
    assert len(checkpoints) <= CHECKPOINT_ALWAYS // 100 + 5 and FxCursor.loads(cursor).watermark == stamp
    assert sum(len(FxCursor.loads(c).seen) for c in checkpoints) <= 3 * 20_000 + CHECKPOINT_ALWAYS**2 // 100

    fake.now += 60  # a rerun, nothing changed: the 20,000 inside the overlap are read again, none delivered
    rerun = connector(fake)
    _, again, cursor2 = pull(rerun, Stream.MEMBERS, cursor)
    assert again == [] and rerun.context.api_calls == {"token": 1, "query AccountObj": 201}

    fake.now += 30  # a second mass update within the overlap: each changed customer once more, as its new version
    fake.mass_update("AccountObj", ids[::2], name="再改")
    _, changed, cursor3 = pull(connector(fake), Stream.MEMBERS, cursor2)
    assert [(r.external_id, r.last_name) for r in changed] == [(i, "再改") for i in ids[::2]]
    fake.now += 60
    _, none, _ = pull(connector(fake), Stream.MEMBERS, cursor3)
    assert none == []


@pytest.mark.slow
def test_a_crash_inside_a_cluster_resumes_from_the_last_stored_cursor(fake: FakeFxiaoke) -> None:
    """Batches between cursors are re-read after a crash; nothing is lost and the rerun delivers nothing."""
    fake.per_window = None
    ids = seed_accounts(fake, 6_000)
    fake.mass_update("AccountObj", ids)
    stored, delivered = None, []
    for k, batch in enumerate(connector(fake, calls_per_window=None).pull(Stream.MEMBERS, None)):
        if k == 45:
            break  # the process dies before this batch is stored
        delivered += [r.external_id for r in batch.records]
        stored = batch.cursor or stored
    assert stored is not None and FxCursor.loads(stored).active
    _, rest, cursor = pull(connector(fake, calls_per_window=None), Stream.MEMBERS, stored)
    assert set(delivered) | {r.external_id for r in rest} == set(ids)
    assert len(delivered) + len(rest) - len(ids) <= len(FxCursor.loads(stored).seen)  # re-read: at most that
    _, none, _ = pull(connector(fake, calls_per_window=None), Stream.MEMBERS, cursor)
    assert none == []


@pytest.mark.parametrize("n", [3, 5, 250])
def test_a_page_the_api_serves_again_stops_the_pull_instead_of_reading_it_forever(
    fake: FakeFxiaoke, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API (or a proxy) that ignores the ``_id GT`` filter answers the first page again: the pull stops with an
    error after delivering what it read once, never looping and never moving the cursor past unread records."""
    from crmsync import FatalAPIError

    seed_accounts(fake, n)
    conn = connector(fake, page_size=2)
    query = conn.client.query
    monkeypatch.setattr(conn.client, "query", lambda obj, **kw: query(obj, **{**kw, "after_id": None}))
    delivered = []
    with pytest.raises(FatalAPIError, match="page 2 repeats the records of the page before it"):
        for batch in conn.pull(Stream.MEMBERS, None):
            delivered += [r.external_id for r in batch.records]
    assert len(delivered) == len(set(delivered)) == 2
    assert len(queries(fake)) == 2
