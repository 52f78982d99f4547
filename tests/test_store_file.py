"""The store file as a whole: erasure that removes the bytes, the erasure list beside the store, backups (before
upgrades, by hand), restore, rebuild, a damaged file, and readers beside each other."""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.connector import Stream
from crmsync.errors import StoreDamagedError, StoreLockedError
from crmsync.models import Member
from crmsync.plugins import PluginHost
from crmsync.store import REWRITE_KEY, Store, access, erasure, recovery
from crmsync.store.db import set_meta
from crmsync.store.files import StoreFiles, backups
from crmsync.store.schema import SCHEMA_VERSION
from tests.conftest import MEMORY_CONFIG
from tests.support import T0, WORLDS, World, order, run_sync

FAST = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


def person(i: int, salt: str) -> Member:
    """A member whose every personal value is distinctive text (found in the file's bytes only if it is there)."""
    return Member(
        source="crm",
        external_id=f"ID{salt}{i:03d}X",
        email=f"mail{salt}{i:03d}@example.org",
        phone=f"+49 {salt[:4]}{i:05d}",
        first_name=f"First{salt}{i:03d}",
        last_name=f"Last{salt}{i:03d}",
    )


def personal(m: Member) -> list[str]:
    return [v for v in (m.external_id, m.email, m.phone, m.first_name, m.last_name) if v]


def file_bytes(path: Path) -> bytes:
    """The store file and its write-ahead log, if one is left."""
    wal = StoreFiles(path).wal
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.fixture
def world(host: PluginHost) -> World:
    w = World()
    WORLDS["crm"] = w
    return w


def fill(world: World, people: list[Member]) -> None:
    for i, m in enumerate(people):
        world.put(Stream.MEMBERS, m)
        world.put(Stream.ORDERS, order(f"O{m.external_id}", m.external_id, str(100 + 37 * i), 10 + i))


# ---------------------------------------------------------------------------------------------- erasure
@FAST
@given(n=st.integers(3, 8), forget=st.data())
def test_forgotten_members_leave_no_byte_in_the_store_file(host: PluginHost, n: int, forget: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "crmsync.toml"
        config.write_text(textwrap.dedent(MEMORY_CONFIG), encoding="utf-8")
        world = WORLDS["crm"] = World()
        salt = f"{random.randrange(16**6):06x}"
        people = [person(i, salt) for i in range(n)]
        fill(world, people)
        run_sync(config, host)
        picked = forget.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n - 1, unique=True))
        gone = [people[i] for i in picked]
        _forget_and_check(config, host, world, people, gone)


def _forget_and_check(config: Path, host: PluginHost, world: World, people: list[Member], gone: list[Member]) -> None:
    store_path = config.parent / "store.duckdb"
    with Store.open(store_path) as store:
        counts = store.forget("crm", [m.external_id for m in gone], actor="dpo", reason="art. 17")
        assert all(c["members"] == 1 and c["orders"] == 1 for c in counts.values())
    data = file_bytes(store_path)
    for m in gone:
        for value in personal(m):
            assert value.encode() not in data, value
    for m in people:
        if m not in gone:
            assert m.email is not None and m.email.encode() in data  # the others are still there
    side = erasure.read_list(StoreFiles(store_path).erasures)
    assert {e.member_hash for e in side} == {erasure.member_hash("crm", m.external_id) for m in gone}
    # the source still sends them: not stored, not pushed, still no byte of them
    world.put(Stream.ORDERS, order("late", gone[0].external_id, "5", 1))
    for m in gone:
        world.put(Stream.MEMBERS, m)
    pushed_before = set(world.pushed)
    run_sync(config, host)
    assert set(world.pushed) == pushed_before
    data = file_bytes(store_path)
    for m in gone:
        assert not any(v.encode() in data for v in personal(m))


def test_a_rewrite_interrupted_is_done_by_the_next_open(memory_config: Path, host: PluginHost, world: World) -> None:
    people = [person(i, "c0ffee") for i in range(4)]
    fill(world, people)
    run_sync(memory_config, host)
    store_path = memory_config.parent / "store.duckdb"
    with Store.open(store_path) as store, store.transaction() as con:  # as if killed before the rewrite
        erasure.forget_member(con, "crm", people[0].external_id, actor="dpo", reason="x",
                              side_file=StoreFiles(store_path).erasures)  # fmt: skip
        set_meta(con, REWRITE_KEY, "members erased")
    assert people[0].email.encode() in file_bytes(store_path)  # deleted, but still in free blocks
    leftover = store_path.with_name(f".{store_path.name}.rewrite.k1ll3d.tmp")  # a copy a killed rewrite left
    leftover.write_bytes(store_path.read_bytes())
    with Store.open(store_path) as store:
        assert store.get_meta(REWRITE_KEY) is None
        store.set_meta("after", "rewrite")  # the store goes on in the new file
    assert people[0].email.encode() not in file_bytes(store_path) and not leftover.exists()
    with Store.open(store_path, read_only=True) as store:
        assert store.get_meta("after") == "rewrite" and store.count("members") == 3


def test_orders_naming_a_forgotten_email_are_not_stored(memory_config: Path, host: PluginHost, world: World) -> None:
    from crmsync.models import Order

    people = [person(i, "e1a5e0") for i in range(3)]
    fill(world, people)
    run_sync(memory_config, host)
    with Store.open(memory_config.parent / "store.duckdb") as store:
        store.forget("crm", [people[1].external_id], actor="dpo", reason="x")
    shop_order = Order(source="crm", external_id="S1", member_email=people[1].email.upper(), placed_at=T0,
                       amount="5", currency="EUR")  # fmt: skip
    world.put(Stream.ORDERS, shop_order)
    run_sync(memory_config, host)
    with Store.open(memory_config.parent / "store.duckdb", read_only=True) as store:
        assert store.count("orders", "external_id = 'S1'") == 0


# ---------------------------------------------------------------------------------------------- backups, restore
def table_rows(path: Path) -> dict[str, list[str]]:
    """Every row of every table of a store file, as text, sorted."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: sorted(map(str, con.execute(f"SELECT * FROM {t}").fetchall())) for t in recovery.tables(con)}
    finally:
        con.close()


def test_backup_and_restore_round_trip(memory_config: Path, host: PluginHost, world: World) -> None:
    people = [person(i, "bacc0f") for i in range(6)]
    fill(world, people)
    run_sync(memory_config, host)
    store_path = memory_config.parent / "store.duckdb"
    copy = memory_config.parent / "copies" / "one.duckdb"
    with Store.open(store_path, read_only=True) as reader, Store.open(store_path, read_only=True) as other:
        reader.backup(copy)  # beside another reader
        assert other.count("members") == 6
    assert table_rows(copy) == table_rows(store_path)
    before = table_rows(store_path)
    # later: one member is forgotten and a new one arrives
    with Store.open(store_path) as store:
        store.forget("crm", [people[2].external_id], actor="dpo", reason="x")
    fill(world, [person(9, "bacc0f")])
    run_sync(memory_config, host)
    aside = Store.restore(store_path, copy)
    assert aside is not None and aside.exists()
    after = table_rows(store_path)
    assert after["pushed"] == [r for r in before["pushed"] if people[2].external_id not in r]
    assert not any(v.encode() in file_bytes(store_path) for v in personal(people[2]))  # forgotten again
    report = run_sync(memory_config, host).report  # resumes from the backup's cursors
    assert report.error is None and report.members_graded == 6  # five kept, the new one; never the forgotten


def test_a_backup_is_taken_before_each_upgrade_and_the_newest_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store.open(path).close()
    names = []
    for n in range(4):
        with Store.open(path) as store:
            set_meta(store.con, "schema_version", str(SCHEMA_VERSION - 1))
            set_meta(store.con, "generation", str(n))
        Store.open(path, keep_backups=2).close()
        names = [p.name for p in backups(StoreFiles(path))]
    assert len(names) == 2 and all(n.startswith(f"s-schema{SCHEMA_VERSION - 1}-") for n in names)
    generations = []
    for kept in backups(StoreFiles(path)):
        con = duckdb.connect(str(kept), read_only=True)
        generations.append(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        con.close()
    assert generations == ["2", "3"]


# ---------------------------------------------------------------------------------------------- damage
def damage(path: Path, offset: int, size: int = 64 * 1024, seed: int = 0) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(random.Random(seed).randbytes(size))


@pytest.fixture
def filled(memory_config: Path, host: PluginHost, world: World) -> Path:
    fill(world, [person(i, "da4a9e") for i in range(40)])
    run_sync(memory_config, host)
    return memory_config.parent / "store.duckdb"


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9])
def test_a_damaged_store_says_so_and_check_finds_it(filled: Path, share: float) -> None:
    size = filled.stat().st_size
    offset = int(share * max(0, size - 64 * 1024))
    damage(filled, offset, seed=int(share * 10))
    findings = recovery.check(filled, {})
    failed = [f for f in findings if not f.ok]
    try:
        with Store.open(filled) as store:
            for table in recovery.tables(store.con):
                store.con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {table}").fetchall()
    except StoreDamagedError as exc:
        assert str(filled) in exc.message and "store rebuild" in (exc.hint or "")
        assert failed, findings
    except duckdb.Error as exc:
        assert access.is_damaged(exc), exc
        assert failed and any(str(exc).split("\n")[0] in f.detail for f in failed)
    else:
        assert not failed, failed  # the garbage fell on free space only


def test_rebuild_keeps_what_the_sources_cannot_give_and_forgotten_members_forgotten(
    memory_config: Path, host: PluginHost, world: World
) -> None:
    people = [person(i, "4eb111") for i in range(30)]
    fill(world, people)
    run_sync(memory_config, host)
    store_path = memory_config.parent / "store.duckdb"
    with Store.open(store_path) as store:
        store.forget("crm", [people[3].external_id, people[7].external_id], actor="dpo", reason="x")
    run_sync(memory_config, host)  # the others' RFM quantiles move without the two: pushed here
    pushed = table_rows(store_path)["pushed"]
    damage(store_path, store_path.stat().st_size // 2)
    done = Store.rebuild(store_path)
    assert done.set_aside is not None and done.erasures == 2
    assert set(done.salvaged) | set(done.lost) >= {"pushed", "push_audit", "runs"}
    calls = len(world.push_calls)
    for m in people:  # the sources still hold everyone
        world.put(Stream.MEMBERS, m)
    report = run_sync(memory_config, host).report
    assert report.error is None and report.members_graded == 28
    if "pushed" in done.salvaged:  # nothing new to push when what was pushed survived
        assert done.salvaged["pushed"] == len(pushed) and len(world.push_calls) == calls
    data = file_bytes(store_path)
    for m in (people[3], people[7]):
        assert not any(v.encode() in data for v in personal(m))


def test_a_store_whose_header_is_damaged_is_not_taken_for_another_file(filled: Path) -> None:
    from crmsync.paths import store_problem

    damage(filled, 0, 4096)
    assert store_problem(filled) is None  # crmsync's lock file is beside it: a damaged store, not a foreign file
    with pytest.raises(StoreDamagedError):
        Store.open(filled)
    StoreFiles(filled).lock.unlink()
    assert "is not a crmsync store" in (store_problem(filled) or "")


# ---------------------------------------------------------------------------------------------- readers and writers
HOLD = """
import sys, time
from crmsync.store import Store
store = Store.open(sys.argv[1], read_only=sys.argv[2] == "read")
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
store.close()
"""


def hold(path: Path, mode: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD), str(path), mode, str(seconds)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


@pytest.mark.slow
def test_readers_run_beside_each_other_and_wait_for_a_writer(filled: Path) -> None:
    reader = hold(filled, "read", 30)
    try:
        with Store.open(filled, read_only=True) as store:  # beside another process reading
            assert store.count("members") == 40
        with pytest.raises(StoreLockedError, match=r"being read by pid \d+"):
            Store.open(filled, wait=0.5)
    finally:
        reader.kill()
        reader.wait()
    writer = hold(filled, "write", 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreLockedError, match=rf"being written by a crmsync run \(pid {writer.pid}\)"):
            Store.open(filled, read_only=True, wait=0.6)
        assert time.monotonic() - t0 >= 0.6
    finally:
        writer.kill()
        writer.wait()
    reader = hold(filled, "read", 1.5)  # a short reader: the writer waits for it
    t0 = time.monotonic()
    with Store.open(filled, wait=20) as store:
        assert store.count("members") == 40
    assert time.monotonic() - t0 > 0.5
    reader.wait()


def test_a_read_only_store_is_read_only_and_grades_in_temporary_tables(filled: Path) -> None:
    with Store.open(filled, read_only=True) as store:
        assert store.read_only
        with pytest.raises(duckdb.Error):
            store.con.execute("DELETE FROM members")
        store.con.execute("CREATE TEMP TABLE t AS SELECT * FROM members")
        assert store.count("t") == 40


def test_a_read_only_open_brings_an_old_store_up_to_date_first(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        set_meta(store.con, "schema_version", str(SCHEMA_VERSION - 1))
    with Store.open(path, read_only=True) as store:
        assert store.schema_version == SCHEMA_VERSION and store.read_only
    assert len(backups(StoreFiles(path))) == 1


def test_rows_of_another_connector_naming_a_forgotten_member_are_not_stored() -> None:
    from crmsync.connector import Batch, Rejection
    from crmsync.store.matching import MemberMatch

    people = [person(i, "0ther5") for i in range(3)]
    gone = people[1]
    with Store.open(None) as store:
        store.write_batch("crm", Batch(Stream.MEMBERS, people), run_id="r1", base_currency="EUR", rates={})
        store.forget("crm", [gone.external_id], actor="dpo", reason="x")
        orders = [order("S1", gone.external_id, "5", 1), order("S2", people[0].external_id, "5", 1)]
        bad = Rejection(Stream.ORDERS, "shop.csv:9", "amount", "bad", "S3", {"customer": gone.email.upper()})
        rejects = store.write_batch(
            "shop", Batch(Stream.ORDERS, orders, rejects=[bad]), run_id="r2", base_currency="EUR", rates={},
            match=MemberMatch("crm"),
        )  # fmt: skip
        assert rejects == [] and store.count("quarantine") == 0  # a bad row naming them is neither kept nor reported
        assert [r[0] for r in store.con.execute("SELECT external_id FROM orders").fetchall()] == ["S2"]


def test_a_rewrite_the_disk_cannot_take_now_is_done_by_a_later_open(
    memory_config: Path,
    host: PluginHost,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import crmsync.store

    people = [person(i, "d15cf0") for i in range(3)]
    fill(world, people)
    run_sync(memory_config, host)
    store_path = memory_config.parent / "store.duckdb"

    def full(*args: object, **kwargs: object) -> None:
        raise duckdb.IOException("IO Error: No space left on device")

    monkeypatch.setattr(crmsync.store, "copy_database", full)
    with Store.open(store_path) as store, store.transaction() as con:
        erasure.forget_member(con, "crm", people[0].external_id, actor="dpo", reason="x")
        set_meta(con, REWRITE_KEY, "members erased")
    with Store.open(store_path) as store:  # the disk is full: the store is used as it is
        assert store.get_meta(REWRITE_KEY) and store.count("members") == 2
    assert "could not be rewritten" in caplog.text and "No space left" in caplog.text
    monkeypatch.undo()
    Store.open(store_path).close()
    assert people[0].email.encode() not in file_bytes(store_path)
