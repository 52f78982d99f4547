"""Overlapping runs and a soak: a second ``crmsync sync`` on a busy store exits at once (exit 3) and changes
nothing; fifty incremental runs with random changes leave the store equal to a fresh full recompute, with the run
history and the outbox bounded by retention."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from crmsync.connector import Stream
from crmsync.models import Order
from crmsync.plugins import PluginHost
from tests.conftest import MEMORY_CONFIG
from tests.support import WORLDS, World, activity, member, order, run_sync

from .rel_support import AS_OF, CsvWorld, crmsync_env, plugin_path, run_cli

RUNS = 50
KEEP_RUNS = 5


def test_a_second_run_on_a_busy_store_exits_at_once(tmp_path: Path) -> None:
    pythonpath = plugin_path(tmp_path / "site")
    config = CsvWorld(tmp_path / "w").write(plugin="crash_csv")
    mark = tmp_path / "paused"
    env = crmsync_env({"CRMSYNC_CRASH_AT": "pause", "CRMSYNC_CRASH_MARK": str(mark)}, pythonpath=pythonpath)
    cmd = [sys.executable, "-c", "from crmsync.cli import main; main()", "--config", str(config), "sync", "--json"]
    first = subprocess.Popen(cmd, env=env, cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.exists(), "the first run never reached its pause"
        second = run_cli(config, "sync", "--json", "--as-of", AS_OF, env=crmsync_env(pythonpath=pythonpath))
        assert second.returncode == 3
        assert "another crmsync" in second.stderr.lower() or "locked" in second.stderr.lower(), second.stderr
        assert "Traceback" not in second.stderr and not second.stdout.strip()
        assert first.poll() is None  # the first run is still going, untouched
    finally:
        mark.unlink(missing_ok=True)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 1, err  # done, with the world's two bad rows rejected
    con = duckdb.connect(str(config.parent / "store.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1  # only the first run is recorded
    finally:
        con.close()


SOAK_CONFIG = MEMORY_CONFIG.replace('path = "store.duckdb"', f'path = "store.duckdb"\nkeep_runs = {KEEP_RUNS}') + (
    "\n[policy.downgrade]\nmax_levels = 3\n"
)


def _change(world: World, rnd: random.Random, n: int) -> None:
    """A few random changes at the source: new members and orders, refunds, amended and deleted orders."""
    for _ in range(rnd.randint(1, 6)):
        members = sorted(world.records[Stream.MEMBERS])
        orders = sorted(world.records[Stream.ORDERS])
        op = rnd.choice(["member", "order", "order", "refund", "amend", "delete", "activity", "reject"])
        if op == "member" or not members:
            world.put(Stream.MEMBERS, member(100 + n * 10 + rnd.randrange(10)))
        elif op == "order":
            amount = str(Decimal(rnd.randrange(1000, 90000)) / 100)
            world.put(
                Stream.ORDERS, order(f"o{n}-{rnd.randrange(99)}", rnd.choice(members), amount, rnd.randrange(700))
            )
        elif op in ("refund", "amend") and orders:
            _, old = world.records[Stream.ORDERS][rnd.choice(orders)]
            change = {"status": "refunded"} if op == "refund" else {"amount": old.amount + Decimal("150.25")}
            world.put(Stream.ORDERS, Order.model_validate(old.model_dump() | change))
        elif op == "delete" and orders:
            world.delete(Stream.ORDERS, rnd.choice(orders))
        elif op == "activity":
            world.put(Stream.ACTIVITIES, activity(f"a{n}-{rnd.randrange(99)}", rnd.choice(members), "login", 3))
        elif op == "reject":  # the CRM refuses one member's push for a while
            world.reject = {rnd.choice(members): "field is read-only"} if not world.reject else {}


def _run(config: Path, host: PluginHost) -> None:
    report = run_sync(config, host).report
    assert report.status in ("ok", "rejected"), report.error


def _grades(path: Path) -> dict[str, object]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            "profiles": sorted(
                con.execute(
                    "SELECT member_id, tier, points, rfm_r, rfm_f, rfm_m, rfm_segment, lifecycle, list_sort(tags) "
                    "FROM profiles"
                ).fetchall()
            ),
            "orders": con.execute(
                "SELECT count(*), sum(amount_base) FILTER (WHERE status = 'paid') FROM orders WHERE NOT deleted"
            ).fetchone(),
            "members": con.execute("SELECT count(*) FROM members WHERE NOT deleted").fetchone()[0],
            "runs": con.execute("SELECT count(*) FROM runs").fetchone()[0],
            "outbox": con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM outbox").fetchone(),
            "pushed": dict(con.execute("SELECT member_id, fields FROM pushed").fetchall()),
        }
    finally:
        con.close()


@pytest.fixture
def soak_host() -> PluginHost:
    from tests.support import MemoryPlugin

    host = PluginHost()
    host.register(MemoryPlugin(), "memory")
    WORLDS.clear()
    yield host
    WORLDS.clear()


def test_fifty_incremental_runs_equal_a_fresh_recompute(tmp_path: Path, soak_host: PluginHost) -> None:
    world = World()
    WORLDS["crm"] = world
    for i in range(1, 9):
        world.put(Stream.MEMBERS, member(i))
    rnd = random.Random(20260101)
    (tmp_path / "soak").mkdir()
    config = tmp_path / "soak" / "crmsync.toml"
    config.write_text(SOAK_CONFIG)
    sizes = []
    for n in range(RUNS):
        _change(world, rnd, n)
        _run(config, soak_host)
        sizes.append(_grades(tmp_path / "soak" / "store.duckdb")["runs"])
    world.reject = {}
    _run(config, soak_host)  # the CRM accepts everything again: the outbox drains
    soaked = _grades(tmp_path / "soak" / "store.duckdb")
    (tmp_path / "fresh").mkdir()
    fresh_config = tmp_path / "fresh" / "crmsync.toml"
    fresh_config.write_text(SOAK_CONFIG)
    _run(fresh_config, soak_host)
    fresh = _grades(tmp_path / "fresh" / "store.duckdb")
    assert soaked["profiles"] == fresh["profiles"]
    assert soaked["orders"] == fresh["orders"] and soaked["members"] == fresh["members"]
    assert soaked["pushed"] == fresh["pushed"]  # every member's last pushed values are its current grades
    assert {k: v["tier"] for k, v in world.pushed.items()} == {p[0]: p[1] for p in soaked["profiles"]}
    # bounded: old run records pruned, nothing finished left in the outbox
    assert max(sizes) == KEEP_RUNS and soaked["runs"] == KEEP_RUNS
    assert soaked["outbox"] == (0, 0)
    assert len(soaked["profiles"]) > 8
