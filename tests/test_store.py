from __future__ import annotations

import os
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from crmsync.connector import Batch, Rejection, Stream
from crmsync.errors import StoreLockedError
from crmsync.store import Store
from crmsync.store.schema import SCHEMA_VERSION
from tests.support import member, order


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
