"""The store package: opening and locking, migrations and extensions, the record tables as declared, the rules an
incoming row passes, quarantine, erasure, profiles, the outbox and run records."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.connector import Batch, ProfileChange, RecordResult, Rejection, Stream
from crmsync.errors import StoreLockedError
from crmsync.models import PUSHED_FIELDS, Activity, Member, Order
from crmsync.report import RunReport, RunStatus
from crmsync.store import Store, StoreExtension, erasure, outbox, profiles, quarantine, runs
from crmsync.store.db import get_meta, meta_like, set_meta, table_exists
from crmsync.store.outbox import Outbox
from crmsync.store.records import FILLED_BY_STORE, SCHEMAS, TABLES, to_arrow
from crmsync.store.schema import SCHEMA_VERSION, extension_member_tables
from tests.support import T0, member, order

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def write(store: Store, batch: Batch, run: str = "r1", **kw):  # type: ignore[no-untyped-def]
    return store.write_batch("crm", batch, run_id=run, base_currency="EUR", rates=kw.get("rates", {}))


def test_new_store_is_migrated_and_private(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with Store.open(path) as store:  # reopening does not migrate twice
        assert store.count("meta", "key = 'schema_version'") == 1


def test_second_opener_fails_fast_with_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path):
        code = (
            "import sys\nfrom crmsync.store import Store\nfrom crmsync.errors import StoreLockedError\n"
            f"try:\n    Store.open({str(path)!r})\nexcept StoreLockedError as e:\n    print(e); sys.exit(7)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 7, proc.stderr
        assert "in use by another crmsync run" in proc.stdout
        assert f"pid {os.getpid()}" in proc.stdout
        with pytest.raises(StoreLockedError):
            Store.open(path)
    Store.open(path).close()  # released on close


def test_batch_and_cursor_commit_together_and_orders_replace_by_id(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        write(store, Batch(Stream.ORDERS, [order("o1", "m1", "10.00", 1), order("o2", "m1", "5", 2)], cursor="c1"))
        assert store.get_cursor("crm", Stream.ORDERS) == "c1"
        # the same order again, now refunded: replaced, never counted twice
        write(store, Batch(Stream.ORDERS, [order("o1", "m1", "10.00", 1, status="refunded")], cursor="c2"), "r2")
        rows = store.con.execute("SELECT external_id, status, amount_base FROM orders ORDER BY 1").fetchall()
        assert rows == [("o1", "refunded", Decimal("10.0000")), ("o2", "paid", Decimal("5.0000"))]
        assert store.get_cursor("crm", Stream.ORDERS) == "c2"


def test_failed_batch_write_leaves_records_and_cursor_unchanged(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with Store.open(tmp_path / "s.duckdb") as store:
        write(store, Batch(Stream.MEMBERS, [member(1)], cursor="c1"))

        def boom(*a, **k):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk full")

        monkeypatch.setattr(store, "set_cursor", boom)
        with pytest.raises(RuntimeError):
            write(store, Batch(Stream.MEMBERS, [member(2), member(3)], cursor="c2"), "r2")
        monkeypatch.undo()
        assert store.count("members") == 1
        assert store.get_cursor("crm", Stream.MEMBERS) == "c1"


def test_deletions_snapshots_and_quarantine(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        write(store, Batch(Stream.MEMBERS, [member(1), member(2), member(3)]))
        write(store, Batch(Stream.MEMBERS, deleted=["m2"]), "r2")
        assert store.count("members", "deleted") == 1
        # a full snapshot without m3 marks it deleted
        write(store, Batch(Stream.MEMBERS, [member(1)], snapshot_complete=True), "r3")
        assert {r[0] for r in store.con.execute("SELECT external_id FROM members WHERE NOT deleted").fetchall()} == {
            "m1"
        }
        bad = Rejection(Stream.ORDERS, "orders.csv:7", "amount", "not a number: 'abc'", record_id="o9")
        rejects = write(store, Batch(Stream.ORDERS, rejects=[bad]), "r4")
        assert rejects == [bad]
        assert store.count("quarantine", "NOT resolved AND field = 'amount'") == 1
        # the fixed record arrives: the quarantine entry is resolved, nothing lost
        write(store, Batch(Stream.ORDERS, [order("o9", "m1", "3", 1)]), "r5")
        assert store.count("quarantine", "resolved AND resolved_run = 'r5'") == 1


def test_order_in_unknown_currency_is_quarantined_not_guessed(tmp_path: Path) -> None:
    o = order("o1", "m1", "100", 1).model_copy(update={"currency": "USD"})
    with Store.open(tmp_path / "s.duckdb") as store:
        rejects = write(store, Batch(Stream.ORDERS, [o]))
        assert store.count("orders") == 0
        assert rejects[0].field == "currency" and "sync.exchange_rates.USD" in rejects[0].reason
        write(store, Batch(Stream.ORDERS, [o]), "r2", rates={"USD": Decimal("0.5")})
        assert store.scalar("SELECT amount_base FROM orders") == Decimal("50.0000")


def test_connector_state_round_trip(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        state = store.state("crm")
        assert state.get("token") is None
        state.set("token", "abc")
        state.set("token", "def")
        assert state.get("token") == "def"
        state.set("token", None)
        assert state.get("token") is None


def test_snapshot_keeps_a_record_rejected_by_the_same_pull(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        write(store, Batch(Stream.ORDERS, [order("o1", "m1", "10", 1), order("o2", "m1", "20", 2)]))
        bad = Rejection(Stream.ORDERS, "orders.csv:3", "amount", "not an amount: 'x'", record_id="o2")
        write(store, Batch(Stream.ORDERS, rejects=[bad]), "r2")
        write(store, Batch(Stream.ORDERS, [order("o1", "m1", "10", 1)], snapshot_complete=True), "r2")
        rows = dict(store.con.execute("SELECT external_id, deleted FROM orders").fetchall())
        assert rows == {"o1": False, "o2": False}  # o2 keeps its last good version until fixed
        write(store, Batch(Stream.ORDERS, [order("o1", "m1", "10", 1)], snapshot_complete=True), "r3")
        assert store.count("orders", "deleted AND external_id = 'o2'") == 1  # gone from the file: deleted


def test_store_from_a_newer_crmsync_is_refused(tmp_path: Path) -> None:
    from crmsync.errors import StoreError

    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        store.con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999, newer than this crmsync understands"):
        Store.open(path)
    with pytest.raises(StoreError, match="newer than"):  # not "in use": the refused open released its lock
        Store.open(path)


# ---------------------------------------------------------------------------------------------- the record tables
Q4, Q8 = Decimal("0.0001"), Decimal("0.00000001")
DUCKDB_TYPES = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}


@pytest.mark.parametrize("stream", list(Stream))
def test_record_tables_are_created_as_declared_and_hold_every_field_of_the_model(stream: Stream) -> None:
    table = TABLES[stream]
    # every field of the canonical record is stored; amounts in the base currency are derived, the locator is not data
    assert set(table.names) - {"amount_base", "refunded_amount_base"} == set(table.model.model_fields) - {"locator"}
    assert set(FILLED_BY_STORE) <= set(SCHEMAS[Stream.ORDERS].names)
    assert SCHEMAS[stream].names == list(table.names)
    with Store.open(None) as store:
        cols = store.con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [table.name],
        ).fetchall()
    assert cols == [(c.name, DUCKDB_TYPES.get(c.sql, c.sql)) for c in table.columns]


def test_records_of_another_stream_are_rejected_not_stored() -> None:
    table, rejects = to_arrow(Stream.ORDERS, "crm", [member(1), order("o1", "m1", "5", 1)])
    assert table.num_rows == 1 and table.schema.names == [*SCHEMAS[Stream.ORDERS].names, "_locator"]
    assert [(r.locator, r.reason) for r in rejects] == [("crm record", "expected Order, got Member")]


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12).map(str.strip)
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC))


@FAST
@given(
    attributes=st.dictionaries(st.sampled_from(["city", "tier", "名前"]), texts, max_size=3),
    created=moments,
    opt_in=st.none() | st.booleans(),
    points=st.none() | st.decimals(min_value=-(10**9), max_value=10**9, places=4),
)
def test_members_and_activities_read_back_as_stored(
    attributes: dict[str, str], created: datetime, opt_in: bool | None, points: Decimal | None
) -> None:
    m = Member(source="x", external_id="m1", email="A@Example.com", attributes=attributes, created_at=created)
    m = m.model_copy(update={"opt_in": opt_in})
    a = Activity(
        source="x", external_id="a1", member_external_id="m1", kind="review", occurred_at=created, points=points
    )
    with Store.open(None) as store:
        write(store, Batch(Stream.MEMBERS, [m]))
        write(store, Batch(Stream.ACTIVITIES, [a]))
        got_m = store.con.execute("SELECT source, email, created_at, attributes, opt_in FROM members").fetchone()
        got_a = store.con.execute("SELECT kind, occurred_at, points FROM activities").fetchone()
    # the store stamps its own connector name as the source
    assert got_m[:3] == ("crm", "a@example.com", created)
    assert (json.loads(got_m[3]) if got_m[3] else {}) == {k: v for k, v in attributes.items()}
    assert got_m[4] is opt_in
    assert got_a == ("review", created, None if points is None else points.quantize(Q4))


# ---------------------------------------------------------------------------------------------- incoming rules
CURRENCIES = ("EUR", "USD", "JPY")
order_rows = st.lists(
    st.tuples(
        st.sampled_from(["o1", "o2", "o3"]),
        st.decimals(min_value=-99999, max_value=99999, places=2) | st.sampled_from([Decimal("-9e12"), Decimal("9e12")]),
        st.sampled_from(CURRENCIES),
        st.none() | st.decimals(min_value=Decimal("0.01"), max_value=Decimal(500), places=6),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)
configured = st.dictionaries(
    st.sampled_from(["USD", "JPY"]), st.decimals(min_value=Decimal("0.01"), max_value=Decimal(200), places=4)
)


def expected(rows: list[tuple[Any, ...]], rates: dict[str, Decimal]) -> tuple[list[Any], list[Any]]:
    """What the rules say: a later row wins; an amount without a rate, or too large in the base currency, is
    refused naming where the row is."""
    kept, refused = {}, []
    for n, (oid, amount, currency, own, located) in enumerate(rows):
        rate = own if own is not None else Decimal(1) if currency == "EUR" else rates.get(currency)
        where = f"o.csv:{n + 2}" if located else f"shop order {oid}"
        if rate is None:
            reason = f"no exchange rate from {currency} to EUR (add sync.exchange_rates.{currency})"
            refused.append((where, "currency", reason, oid))
        elif abs(amount * rate) >= Decimal("99999999999999.99995"):
            reason = f"{amount.quantize(Q4)} {currency} at {rate.quantize(Q8)} is out of range in EUR"
            refused.append((where, "amount", reason, oid))
        else:
            exchange = None if own is None else own.quantize(Q8)
            kept[oid] = (oid, amount.quantize(Q4), currency, exchange, (amount * rate).quantize(Q4))
    return sorted(kept.values()), sorted(refused)


@FAST
@given(rows=order_rows, rates=configured)
def test_records_and_tables_pass_the_same_rules(rows: list[tuple[Any, ...]], rates: dict[str, Decimal]) -> None:
    records = [
        Order(
            source="shop", external_id=oid, member_external_id="m1", placed_at=T0, amount=amount, currency=cur,
            exchange_rate=own, locator=f"o.csv:{n + 2}" if located else None,
        )
        for n, (oid, amount, cur, own, located) in enumerate(rows)
    ]  # fmt: skip
    table = pa.table(
        {
            "external_id": [r[0] for r in rows],
            "member_external_id": ["m1"] * len(rows),
            "placed_at": pa.array([T0] * len(rows), pa.timestamp("us", tz="UTC")),
            "amount": pa.array([r[1] for r in rows], pa.decimal128(18, 4)),
            "currency": [r[2] for r in rows],
            "exchange_rate": pa.array([r[3] for r in rows], pa.decimal128(18, 8)),
            "_locator": [f"o.csv:{n + 2}" if r[4] else None for n, r in enumerate(rows)],
        }
    )
    got = {}
    for form, batch in (("records", Batch(Stream.ORDERS, records)), ("table", Batch(Stream.ORDERS, table=table))):
        with Store.open(None) as store:
            rejects = store.write_batch("shop", batch, run_id="r1", base_currency="EUR", rates=rates)
            stored = store.con.execute(
                "SELECT external_id, amount, currency, exchange_rate, amount_base FROM orders ORDER BY 1"
            ).fetchall()
        got[form] = (stored, sorted((r.locator, r.field, r.reason, r.record_id) for r in rejects))
    assert got["records"] == got["table"] == expected(rows, rates)


def test_records_given_with_a_table_come_after_its_rows() -> None:
    table = pa.table({"external_id": ["o1", "o2"], "member_external_id": ["m1", "m1"], "amount": [1, 2]})
    table = table.append_column("placed_at", pa.array([T0, T0], pa.timestamp("us", tz="UTC")))
    table = table.append_column("currency", pa.array(["EUR", "EUR"]))
    with Store.open(None) as store:
        write(store, Batch(Stream.ORDERS, [order("o2", "m1", "20", 1), order("o3", "m1", "30", 1)], table=table))
        rows = store.con.execute("SELECT external_id, amount FROM orders ORDER BY 1").fetchall()
    assert rows == [("o1", Decimal("1.0000")), ("o2", Decimal("20.0000")), ("o3", Decimal("30.0000"))]


# ---------------------------------------------------------------------------------------------- quarantine
@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=12, unique=True), st.randoms(use_true_random=False))
def test_quarantine_entries_are_listed_by_file_then_line_number(lines: list[int], rnd: Any) -> None:
    located = [f"orders.csv:{n}" for n in lines] + [f"a-orders.csv:{n}" for n in lines[:3]] + ["shop order x"]
    rnd.shuffle(located)
    rejects = [Rejection(Stream.ORDERS, loc, "amount", "bad", record_id=f"o{i}") for i, loc in enumerate(located)]
    with Store.open(None) as store:
        write(store, Batch(Stream.ORDERS, rejects=rejects), "r1")
        listed = [e["locator"] for e in quarantine.entries(store.con)]
    by_line = {loc: (loc.rsplit(":", 1)[0], int(loc.rsplit(":", 1)[1]) if ":" in loc else -1) for loc in located}
    expected = sorted(located, key=by_line.__getitem__)
    assert listed == expected


def test_a_quarantined_record_keeps_its_first_run_until_a_fix_resolves_it() -> None:
    bad = Rejection(Stream.ORDERS, "orders.csv:7", "amount", "not a number: 'abc'", record_id="o9", raw={"a": "abc"})
    worse = Rejection(Stream.ORDERS, "orders.csv:8", "placed_at", "not a date", record_id="o9")
    with Store.open(None) as store:
        write(store, Batch(Stream.ORDERS, rejects=[bad]), "r1")
        write(store, Batch(Stream.ORDERS, rejects=[worse]), "r2")
        [entry] = quarantine.entries(store.con)
        assert (entry["locator"], entry["field"], entry["first_run"], entry["last_run"]) == (
            "orders.csv:8", "placed_at", "r1", "r2",
        )  # fmt: skip
        assert quarantine.unresolved_count(store.con) == 1
        write(store, Batch(Stream.ORDERS, [order("o9", "m1", "3", 1)]), "r3")
        assert quarantine.entries(store.con) == [] and quarantine.unresolved_count(store.con) == 0
        [done] = quarantine.entries(store.con, include_resolved=True)
        assert done["resolved"] is True
        with store.transaction() as con:
            runs.record(con, RunReport(run_id="r3", started_at=T0))
            quarantine.prune(con)
            assert len(quarantine.entries(con, include_resolved=True)) == 1  # resolved by a run still kept
            con.execute("DELETE FROM runs")
            quarantine.prune(con)
            assert quarantine.entries(con, include_resolved=True) == []


# ---------------------------------------------------------------------------------------------- erasure
NOTES = StoreExtension(
    "notes",
    ddl=["CREATE TABLE IF NOT EXISTS notes (member_id VARCHAR, note VARCHAR)"],
    member_tables=["notes", "notes_made_later"],
)


def every_value(store: Store) -> str:
    """The text of every row of every table of the store."""
    tables = [r[0] for r in store.con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()]
    return "\n".join(str(store.con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)


def test_forget_erases_the_member_from_every_table_including_extensions(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    people = [Member(source="crm", external_id=i, email=f"{i}@example.com") for i in ("ann", "bob")]
    with Store.open(path, extensions=[NOTES]) as store:
        write(store, Batch(Stream.MEMBERS, people))
        shop = Order(
            source="shop", external_id="s1", member_email="ann@example.com", placed_at=T0, amount=1, currency="EUR"
        )
        write(store, Batch(Stream.ORDERS, [order("o1", "ann", "5", 1), order("o2", "bob", "5", 1)]))
        store.write_batch("shop", Batch(Stream.ORDERS, [shop]), run_id="r1", base_currency="EUR", rates={})
        rej = Rejection(Stream.ORDERS, "o.csv:3", "amount", "bad", record_id="o7", raw={"customer": "ann@example.com"})
        write(store, Batch(Stream.ORDERS, rejects=[rej]))
        with store.transaction() as con:
            for who in ("ann", "bob"):
                con.execute("INSERT INTO notes VALUES (?, 'vip')", [who])
                con.execute("INSERT INTO pushed VALUES ('crm', ?, '{}', 'r1', now())", [who])
                con.execute("INSERT INTO push_audit VALUES ('r1', 'crm', ?, 'tier', NULL, 'Gold', 'x', now())", [who])
    with Store.open(path) as store:  # the extension is not loaded: the store remembers its member tables
        assert "ann" in every_value(store)
        with store.transaction() as con:
            counts = erasure.forget_member(con, "crm", "ann", actor="dpo", reason="art. 17")
        assert counts["members"] == 1 and counts["orders"] == 2 and counts["notes"] == 1
        assert counts["quarantine"] == 1 and "notes_made_later" not in counts
        text = every_value(store)
        assert "ann" not in text and "bob@example.com" in text and "'bob'" in text
        # pulled again, the member and their orders are dropped; a bad row naming them is not kept either
        again = Rejection(Stream.ORDERS, "o.csv:9", "amount", "bad", record_id="o8", raw={"customer": "ann"})
        write(store, Batch(Stream.MEMBERS, [people[0]]), "r2")
        write(store, Batch(Stream.ORDERS, [order("o3", "ann", "5", 1)], rejects=[again]), "r2")
        assert "ann" not in every_value(store)
        assert erasure.member_hash("crm", "ann") in every_value(store)


# ---------------------------------------------------------------------------------------------- schema
def outbox_columns(store: Store) -> list[str]:
    sql = "SELECT column_name FROM duckdb_columns() WHERE table_name = 'outbox' ORDER BY column_index"
    return [r[0] for r in store.con.execute(sql).fetchall()]


def test_a_store_of_schema_1_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        store.con.execute("ALTER TABLE outbox ADD COLUMN changed VARCHAR[]")
        store.con.execute("INSERT INTO outbox (target, member_id, fields, status) VALUES ('crm', 'm1', '', 'pending')")
        set_meta(store.con, "schema_version", "1")
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        columns = outbox_columns(store)
        assert "changed" not in columns
        assert Outbox(store, "crm").counts() == (1, 0)
    with Store.open(tmp_path / "new.duckdb") as fresh:  # a new store has the same outbox
        assert outbox_columns(fresh) == columns


def test_extensions_are_installed_once_and_remembered(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path, extensions=[NOTES, NOTES]) as store:
        assert table_exists(store.con, "notes")
        store.install(NOTES)
        assert meta_like(store.con, "extension:") == {"extension:notes": '["notes", "notes_made_later"]'}
    with Store.open(path) as store:
        assert extension_member_tables(store.con) == ["notes", "notes_made_later"]


def test_meta_values_and_tables() -> None:
    with Store.open(None) as store:
        store.set_meta("k", "v")
        assert store.get_meta("k") == "v" == get_meta(store.con, "k")
        store.set_meta("k", None)
        assert store.get_meta("k") is None
        store.con.execute("CREATE TEMP TABLE scratch (x INT)")
        assert not table_exists(store.con, "scratch") and table_exists(store.con, "orders")


def test_transactions_nest_and_roll_back() -> None:
    with Store.open(None) as store:
        with store.transaction(), store.transaction() as con:  # the inner one joins the outer
            con.execute("INSERT INTO meta VALUES ('a', '1')")
        with store.transaction(rollback=True) as con:
            con.execute("INSERT INTO meta VALUES ('b', '1')")
        with pytest.raises(RuntimeError), store.transaction() as con:
            con.execute("INSERT INTO meta VALUES ('c', '1')")
            raise RuntimeError("boom")
        assert (store.get_meta("a"), store.get_meta("b"), store.get_meta("c")) == ("1", None, None)


# ---------------------------------------------------------------------------------------------- profiles
Grades = dict[str, tuple[str, int, int, list[str]]]


def graded(con: duckdb.DuckDBPyConnection, rows: Grades, name: str = "graded") -> str:
    """A temporary table shaped like ``profiles``: member -> (tier, rank, points, tags)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM profiles WHERE false")
    if rows:
        tiers, ranks, points, tags = zip(*rows.values(), strict=True)
        reasons = [json.dumps({"tier": f"{t} because", "points": "balance"}) for t in tiers]
        con.execute(
            f"INSERT INTO {name} (member_id, tier, tier_rank, points, tags, reasons, rfm_segment, lifecycle, "
            "policy_version, computed_at) SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::INTEGER[]), "
            "unnest(?::BIGINT[]), unnest(?::VARCHAR[][]), unnest(?::VARCHAR[]), 'Loyal', 'new', 'v1', now()",
            [list(rows), list(tiers), list(ranks), list(points), [list(t) for t in tags], reasons],
        )
    return name


def test_profiles_are_saved_whole_or_for_the_members_graded() -> None:
    with Store.open(None) as store, store.transaction() as con:
        g = graded(con, {"m1": ("Gold", 3, 10, ["b", "a"]), "m2": ("Silver", 2, 5, []), "m3": ("Bronze", 1, 0, [])})
        assert profiles.count_changed(con, g) == 3
        profiles.save(con, g)
        assert profiles.count(con) == 3 and profiles.count_changed(con, g) == 0
        assert profiles.tier_distribution(con) == {"Bronze": 1, "Silver": 1, "Gold": 1}
        # incremental: graded holds m2 (changed); m3 is no longer a member; m1 stays as it was
        con.execute("CREATE OR REPLACE TEMP TABLE everyone AS SELECT unnest(['m1', 'm2']) AS member_id")
        g = graded(con, {"m2": ("Gold", 3, 50, ["x"])})
        assert profiles.count_changed(con, g) == 1
        profiles.save(con, g, members="everyone")
        assert profiles.tier_distribution(con) == {"Gold": 2}
        assert profiles.summary(con, "m1") == {
            "tier": "Gold", "points": 10, "rfm_segment": "Loyal", "lifecycle": "new", "tags": ["b", "a"],
        }  # fmt: skip
        assert profiles.summary(con, "m3") is None


def test_tags_are_set_for_many_members_in_one_statement() -> None:
    members = {f"m{i}": ("Bronze", 1, i, ["keep"]) for i in range(2000)}
    with Store.open(None) as store, store.transaction() as con:
        g = graded(con, members)
        profiles.set_tags(con, g, {f"m{i}": {"keep", f"t{i % 3}"} for i in range(0, 2000, 2)})
        read = {p.member_id: p.tags for p in profiles.read(con, g, "crm")}
    assert read["m0"] == ("keep", "t0") and read["m4"] == ("keep", "t1") and read["m1"] == ("keep",)
    assert all(p == ("keep",) for k, p in read.items() if int(k[1:]) % 2)


def test_member_exists_by_source_and_deletion() -> None:
    with Store.open(None) as store:
        write(store, Batch(Stream.MEMBERS, [member(1), member(2, deleted=True)]))
        con = store.con
        assert profiles.member_exists(con, "m1") and profiles.member_exists(con, "m1", source="crm")
        assert not profiles.member_exists(con, "m1", source="shop")
        assert not profiles.member_exists(con, "m2") and profiles.member_exists(con, "m2", deleted=True)
        assert not profiles.member_exists(con, "m9", deleted=True)


# ---------------------------------------------------------------------------------------------- the outbox
def pushed(store: Store) -> dict[str, dict[str, Any]]:
    return {m: json.loads(f) for m, f in store.con.execute("SELECT member_id, fields FROM pushed").fetchall()}


def results(*items: tuple[str, bool, bool]) -> pa.Table:
    """Push results (member, ok, retryable)."""
    return Outbox.results_table(
        [ProfileChange(m, {}, {}, frozenset()) for m, _, _ in items],
        [RecordResult(m, ok, None if ok else "refused", None if ok else "tier", retry) for m, ok, retry in items],
    )


def test_the_outbox_queues_what_changed_and_records_what_was_accepted() -> None:
    with Store.open(None) as store:
        box = Outbox(store, "crm", PUSHED_FIELDS)
        with store.transaction() as con:
            profiles.save(con, graded(con, {m: ("Gold", 3, 10, ["vip"]) for m in ("m1", "m2", "m3")}))
        box.enqueue("r1")
        total, batches = box.pending_batches(2)
        assert total == 3 and [len(b) for b in batches] == [2, 1]
        first = box.pending()[0]
        assert first.previous == {} and first.changed == set(PUSHED_FIELDS)
        table = box.pending_table()
        assert table.schema.field("points").type == pa.int64() and table["tags"].to_pylist()[0] == ["vip"]
        box.record(
            results(("m1", True, True), ("m2", False, True), ("m3", False, False)), run_id="r1", at=T0, max_attempts=5
        )
        assert box.counts() == (1, 1) and set(pushed(store)) == {"m1"}
        audit = store.con.execute("SELECT field, previous, new, reason FROM push_audit ORDER BY field").fetchall()
        assert [a[0] for a in audit] == sorted(PUSHED_FIELDS) and ("tier", None, '"Gold"', "Gold because") in audit
        assert ("lifecycle", None, '"new"', "first push") in audit  # no reason for this field: the first push
        # nothing changed: m1 is not queued again, m2 keeps its attempt, m3 stays given up
        box.enqueue("r2")
        assert box.counts() == (1, 1)
        # m1's tier and m3's values change: m1 is queued with what the target holds, m3 gets a fresh set of attempts
        with store.transaction() as con:
            profiles.save(con, graded(con, {"m1": ("Silver", 2, 10, ["vip"]), "m2": ("Gold", 3, 10, ["vip"]),
                                            "m3": ("Bronze", 1, 0, [])}))  # fmt: skip
        box.enqueue("r3")
        changes = {c.member_id: c for c in box.pending()}
        assert set(changes) == {"m1", "m2", "m3"} and box.counts() == (3, 0)
        assert changes["m1"].changed == {"tier"} and changes["m1"].previous["tier"] == "Gold"
        box.record(results(("m1", True, True)), run_id="r3", at=T0 + timedelta(1), max_attempts=5)
        assert store.con.execute("SELECT previous, new, reason FROM push_audit WHERE run_id = 'r3'").fetchall() == [
            ('"Gold"', '"Silver"', "Silver because")
        ]
        assert outbox.push_history(store.con, "m1")[-1]["new"] == "Silver"


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_a_refused_change_is_given_up_after_max_attempts(max_attempts: int) -> None:
    with Store.open(None) as store:
        box = Outbox(store, "crm", ("tier",))
        with store.transaction() as con:
            profiles.save(con, graded(con, {"m1": ("Gold", 3, 0, [])}))
        box.enqueue("r1")
        for attempt in range(1, max_attempts + 1):
            assert box.counts() == (1, 0), attempt
            box.record(results(("m1", False, True)), run_id=f"r{attempt}", at=T0, max_attempts=max_attempts)
        assert box.counts() == (0, 1)
        attempts, error = store.con.execute("SELECT attempts, last_error FROM outbox").fetchone()
        assert (attempts, error) == (max_attempts, "refused")


def test_a_change_without_a_result_is_not_accepted() -> None:
    table = Outbox.results_table([ProfileChange("m1", {}, {}, frozenset())], [])
    assert table.to_pylist() == [
        {"member_id": "m1", "ok": False, "reason": "the connector returned no result for this record", "field": None,
         "retryable": True},
    ]  # fmt: skip


def test_after_an_incremental_grading_only_graded_and_queued_members_are_looked_at() -> None:
    with Store.open(None) as store:
        box = Outbox(store, "crm", ("tier", "points"))
        with store.transaction() as con:
            profiles.save(con, graded(con, {"m1": ("Gold", 3, 1, []), "m2": ("Gold", 3, 2, [])}))
        box.enqueue("r1")
        box.record(results(("m1", True, True), ("m2", True, True)), run_id="r1", at=T0, max_attempts=5)
        # m2's profile changes behind the outbox's back; only m1 was graded: m2 is not looked at
        with store.transaction() as con:
            con.execute("UPDATE profiles SET points = 99 WHERE member_id = 'm2'")
            box.enqueue("r2", graded=graded(con, {"m1": ("Gold", 3, 1, [])}, "just_graded"))
        assert box.counts() == (0, 0)
        # a target that takes other fields than before is diffed whole
        wider = Outbox(store, "crm", ("tier", "points", "lifecycle"))
        with store.transaction() as con:
            wider.enqueue("r3", graded=graded(con, {}, "just_graded"))
        assert {c.member_id for c in wider.pending()} == {"m1", "m2"}


@pytest.mark.slow
def test_the_outbox_at_twenty_thousand_members() -> None:
    n = 20_000
    with Store.open(None) as store:
        box = Outbox(store, "crm", PUSHED_FIELDS)
        with store.transaction() as con:
            con.execute(
                "INSERT INTO profiles (member_id, tier, tier_rank, points, tags, reasons, computed_at) "
                f"SELECT 'm' || i, 'Gold', 3, i, ['t'], '{{}}', now() FROM range({n}) t(i)"
            )
        box.enqueue("r1")
        table = box.pending_table()
        assert table.num_rows == n
        ok = (
            pa.table({"member_id": table["member_id"], "ok": pa.array([True] * n)})
            .append_column("reason", pa.nulls(n, pa.string()))
            .append_column("field", pa.nulls(n, pa.string()))
            .append_column("retryable", pa.array([True] * n))
        )
        box.record(ok, run_id="r1", at=T0, max_attempts=5)
        assert box.counts() == (0, 0) and store.count("pushed") == n
        assert store.count("push_audit") == len(PUSHED_FIELDS) * n  # the first push of every field
        box.enqueue("r2")
        assert box.counts() == (0, 0)


# ---------------------------------------------------------------------------------------------- runs
def test_runs_are_recorded_closed_when_killed_and_pruned() -> None:
    with Store.open(None) as store, store.transaction() as con:
        for i in range(5):
            report = RunReport.start("sync", T0 + timedelta(hours=i))
            runs.start(con, report)
            if i < 4:  # the last one is killed: it stays running
                report.done()
                runs.finish(con, report, keep=10)
        killed = report.run_id
        runs.start(con, RunReport.start("sync", T0 + timedelta(hours=9)))
        reports = {r.run_id: r for r in runs.recent(con, 10)}
        assert reports[killed].status == RunStatus.INTERRUPTED
        assert reports[killed].error is not None and reports[killed].error.kind == "interrupted"
        assert reports[killed].exit_code == 3
        assert con.execute("SELECT status FROM runs WHERE run_id = ?", [killed]).fetchone() == ("interrupted",)
        runs.prune(con, 3)
        assert [r.started_at for r in runs.recent(con, 10)] == [T0 + timedelta(hours=h) for h in (9, 4, 3)]


@pytest.mark.parametrize(("extra", "code"), [({}, 3), ({"exit_code": 2}, 2), ({"exit_code": 3}, 3)])
def test_a_report_stored_by_an_earlier_version_is_read(extra: dict[str, int], code: int) -> None:
    legacy = {"run_id": "r0", "started_at": T0.isoformat(), "status": "failed", "error": "HTTP 401", "extra": extra}
    with Store.open(None) as store:
        store.con.execute("INSERT INTO runs VALUES ('r0', 'sync', ?, ?, 'failed', ?)", [T0, T0, json.dumps(legacy)])
        [report] = runs.recent(store.con, 5)
    assert report.status == RunStatus.FAILED and report.error is not None and report.error.message == "HTTP 401"
    assert report.exit_code == code
