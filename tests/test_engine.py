"""The engine end to end with the in-memory connector: pull, grade, diff, push, resume, reject, report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import crmsync
from crmsync.connector import Stream
from crmsync.engine import Engine, RunResult
from crmsync.plugins import PluginHost
from crmsync.store import Store
from crmsync.store.matching import MemberMatch, unmatched_rows
from tests.support import T0, WORLDS, World, activity, member, order, run_sync


@pytest.fixture
def world() -> World:
    w = World()
    WORLDS["crm"] = w
    for i in range(1, 6):
        w.put(Stream.MEMBERS, member(i))
    w.put(Stream.ORDERS, order("o1", "m1", "800", 10))
    w.put(Stream.ORDERS, order("o2", "m1", "300", 20))  # m1: 1100 in 365d -> Gold
    w.put(Stream.ORDERS, order("o3", "m2", "250", 30))  # m2: Silver
    w.put(Stream.ORDERS, order("o4", "m3", "50", 400))  # m3: 3 old orders -> Silver by lifetime count
    w.put(Stream.ORDERS, order("o5", "m3", "50", 500))
    w.put(Stream.ORDERS, order("o6", "m3", "50", 600))
    w.put(Stream.ORDERS, order("o7", "nobody", "99", 5))  # matches no member: counted, not dropped
    w.put(Stream.ACTIVITIES, activity("a1", "m4", "login", 3))
    return w


Runner = Callable[..., RunResult]


@pytest.fixture
def run(memory_config: Path, host: PluginHost) -> Runner:
    def _run(*, dry_run: bool = False, as_of=T0) -> RunResult:  # type: ignore[no-untyped-def]
        return run_sync(memory_config, host, as_of, dry_run=dry_run)

    return _run


def unmatched(store_path: Path, members: str) -> list[tuple[str | None, ...]]:
    """The unmatched orders as ``crmsync rejects`` lists them: connector, where, field."""
    with Store.open(store_path, read_only=True) as store:
        rows = unmatched_rows(store.con, MemberMatch(members), "orders")
    return [(r["connector"], r["locator"], r["field"]) for r in rows]


def profiles(memory_config: Path) -> dict[str, str]:
    with Store.open(memory_config.parent / "store.duckdb") as store:
        return dict(store.con.execute("SELECT member_id, tier FROM profiles").fetchall())


def test_first_run_grades_pushes_and_reports(run: Runner, world: World, memory_config: Path) -> None:
    report = run().report
    assert report.status == "ok", report.error
    assert profiles(memory_config) == {"m1": "Gold", "m2": "Silver", "m3": "Silver", "m4": "Bronze", "m5": "Bronze"}
    assert report.pulled["crm"]["members"].pulled == 5
    assert report.pulled["crm"]["orders"].pulled == 7
    assert report.unmatched_orders == 1 and report.extra == {}
    assert unmatched(memory_config.parent / "store.duckdb", "crm") == [("crm", "crm order o7", "member_external_id")]
    assert report.tier_distribution == {"Gold": 1, "Silver": 2, "Bronze": 2}
    assert report.pushed == {"crm": 5}
    assert {k: v["tier"] for k, v in world.pushed.items()} == profiles(memory_config)
    # pushes go in the connector's batch size (3)
    assert [len(c) for c in world.push_calls] == [3, 2]


def test_rerun_without_changes_pulls_and_pushes_nothing(run: Runner, world: World) -> None:
    run()
    calls = len(world.push_calls)
    report = run().report
    assert report.status == "ok"
    assert sum(c.pulled for s in report.pulled.values() for c in s.values()) == 0
    assert report.profiles_changed == 0
    assert report.pushed == {"crm": 0}
    assert len(world.push_calls) == calls


def test_only_changed_members_are_pushed(run: Runner, world: World, memory_config: Path) -> None:
    run()
    world.push_calls.clear()
    world.put(Stream.ORDERS, order("o8", "m2", "900", 1))  # m2 -> Gold
    world.put(Stream.ORDERS, order("o1", "m1", "800", 10, status="refunded"))  # m1 refund -> 300 -> Silver
    report = run().report
    assert report.pulled["crm"]["orders"].pulled == 2
    assert world.push_calls == [["m1", "m2"]]
    assert profiles(memory_config)["m1"] == "Silver"
    assert profiles(memory_config)["m2"] == "Gold"
    with Store.open(memory_config.parent / "store.duckdb") as store:
        # the refunded order replaced its earlier version: one row, not two
        assert store.count("orders", "external_id = 'o1'") == 1
        audit = store.con.execute(
            "SELECT previous, new FROM push_audit WHERE member_id = 'm1' AND field = 'tier' ORDER BY pushed_at"
        ).fetchall()
        assert audit[-1] == ('"Gold"', '"Silver"')


def test_rerun_recomputes_only_changed_members_and_a_new_field_set_is_diffed_whole(
    run: Runner, world: World, memory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run().report.members_recomputed == 5
    world.put(Stream.ORDERS, order("o8", "m2", "900", 1))
    report = run().report
    assert report.members_recomputed == 1  # m2; others may still move (RFM scores are relative)
    assert "m2" in world.push_calls[-1]
    # the connector now takes fewer fields: every member's pushed fields differ, though no grade changed
    from tests.support import MemoryConnector

    monkeypatch.setattr(MemoryConnector, "push_fields", ("tier", "points"))
    calls = len(world.push_calls)
    report = run().report
    assert report.members_recomputed == 0
    assert report.pushed == {"crm": 5}
    assert sorted(m for c in world.push_calls[calls:] for m in c) == ["m1", "m2", "m3", "m4", "m5"]
    assert run().report.pushed == {"crm": 0}


def test_deleted_member_leaves_grading(run: Runner, world: World, memory_config: Path) -> None:
    run()
    world.delete(Stream.MEMBERS, "m5")
    report = run().report
    assert report.pulled["crm"]["members"].deleted == 1
    assert "m5" not in profiles(memory_config)


def test_crash_mid_pull_then_resume_counts_nothing_twice(run: Runner, world: World, memory_config: Path) -> None:
    uninterrupted_dir = memory_config.parent
    world.fail_after_batches = 4  # batches of 2: members (2, 2, 1), then orders: crash after o1, o2 are stored
    report = run().report
    assert report.status == "failed"
    assert report.error is not None and "simulated crash" in report.error.message
    assert report.error.kind == "unexpected"
    assert report.exit_code == report.error.exit_code == crmsync.ExitCode.FAILED
    assert world.pushed == {}
    with Store.open(uninterrupted_dir / "store.duckdb") as store:
        assert (store.count("members"), store.count("orders")) == (5, 2)
        assert store.get_cursor("crm", Stream.ORDERS) is not None
    world.fail_after_batches = None
    report = run().report
    assert report.status == "ok"
    with Store.open(uninterrupted_dir / "store.duckdb") as store:
        assert store.count("orders") == 7
        assert store.scalar("SELECT count(*) - count(DISTINCT external_id) FROM orders") == 0
        assert store.scalar("SELECT sum(amount_base) FROM orders WHERE NOT deleted") == 1599
    assert profiles(memory_config)["m1"] == "Gold"


def test_crash_after_push_returned_before_results_stored(
    run: Runner, world: World, memory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Engine._record_push

    def crash(self, *a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("killed after the push call returned")

    monkeypatch.setattr(Engine, "_record_push", crash)
    assert run().report.status == "failed"
    assert len(world.pushed) == 3  # the first push call reached the CRM
    monkeypatch.setattr(Engine, "_record_push", original)
    report = run().report
    assert report.status == "ok"
    assert report.pushed == {"crm": 5}  # the whole outbox is pushed again; same values, harmless
    assert {k: v["tier"] for k, v in world.pushed.items()} == profiles(memory_config)
    assert run().report.pushed == {"crm": 0}


def test_rejected_push_is_retried_then_reported_dead(run: Runner, world: World, memory_config: Path) -> None:
    world.reject["m2"] = "INVALID_DATA: picklist value not allowed"
    report = run().report
    assert report.status == "rejected"
    assert report.exit_code == crmsync.ExitCode.REJECTED
    assert report.push_rejected == {"crm": 1}
    assert report.rejected[0].locator == "member m2" and "picklist" in report.rejected[0].reason
    assert report.pending["crm"] == 1
    for _ in range(4):  # max_attempts = 5 in total
        report = run().report
    assert report.dead == {"crm": 1}
    assert report.pending["crm"] == 0
    calls = len(world.push_calls)
    run()
    assert len(world.push_calls) == calls  # a dead change is not pushed again...
    world.reject.clear()
    world.put(Stream.ORDERS, order("o9", "m2", "2000", 1))  # ...until its values change
    report = run().report
    assert "m2" in world.push_calls[-1] and world.pushed["m2"]["tier"] == "Gold"
    assert report.dead == {"crm": 0}


def test_plan_writes_nothing_to_the_crm_and_lists_changes(run: Runner, world: World, memory_config: Path) -> None:
    result = run(dry_run=True)
    assert result.report.status == "ok"
    assert world.push_calls == []
    assert {e.member_id: e.changed["tier"] for e in result.plan}["m1"] == (None, "Gold")
    assert profiles(memory_config) == {}  # grading was rolled back
    assert run().report.pushed == {"crm": 5}


def test_profile_hook_adds_and_removes_tags_and_run_finished_hook(
    run: Runner, world: World, host: PluginHost, memory_config: Path
) -> None:
    seen = []

    class TagPlugin:
        @crmsync.hookimpl
        def crmsync_adjust_profiles(self, profiles):  # type: ignore[no-untyped-def]
            for p in profiles:
                if p.tier == "Gold":
                    yield crmsync.TagAdjustment(p.member_id, add=frozenset({"vip_call"}))

        @crmsync.hookimpl
        def crmsync_run_finished(self, report):  # type: ignore[no-untyped-def]
            seen.append((report.run_id, report.status))

    host.register(TagPlugin(), "tags")
    report = run().report
    assert world.pushed["m1"]["tags"] == ["vip_call"]
    assert world.pushed["m2"]["tags"] == []
    assert seen == [(report.run_id, "ok")]


def test_run_history_is_recorded_and_pruned(run: Runner, world: World, memory_config: Path) -> None:
    for _ in range(3):
        run()
    with Store.open(memory_config.parent / "store.duckdb") as store:
        assert store.count("runs") == 3
        assert store.count("runs", "status = 'ok'") == 3


def test_forget_erases_member_and_keeps_them_out(run: Runner, world: World, memory_config: Path) -> None:
    from crmsync.store.erasure import forget_member

    run()
    with Store.open(memory_config.parent / "store.duckdb") as store:
        with store.transaction() as con:
            counts = forget_member(con, "crm", "m1", actor="dpo", reason="GDPR art. 17")
        assert counts["members"] == 1 and counts["orders"] == 2 and counts["profiles"] == 1
        for table in ("members", "profiles", "pushed", "push_audit"):
            col = "external_id" if table == "members" else "member_id"
            assert store.count(table, f"{col} = 'm1'") == 0
        assert store.count("orders", "member_external_id = 'm1'") == 0
        audit = store.con.execute("SELECT member_hash, actor, reason FROM erasures").fetchall()
        assert len(audit) == 1 and "m1" not in audit[0][0] and audit[0][1:] == ("dpo", "GDPR art. 17")
    # the CRM sends the member and a new order again: they are not stored, graded or pushed
    world.put(Stream.MEMBERS, member(1, first_name="Again"))
    world.put(Stream.ORDERS, order("o10", "m1", "5", 1))
    calls = len(world.push_calls)
    run()
    assert "m1" not in profiles(memory_config)
    assert all("m1" not in call for call in world.push_calls[calls:])
    with Store.open(memory_config.parent / "store.duckdb") as store:
        assert store.count("members", "external_id = 'm1'") == 0
        assert store.count("orders", "external_id = 'o10'") == 0


def test_members_from_crm_orders_from_shop_matched_by_email(write_config, host: PluginHost) -> None:  # type: ignore[no-untyped-def]
    from crmsync.models import Order

    path = write_config(
        """
        [store]
        path = "two.duckdb"
        [sync]
        members = "crm"
        orders = ["shop"]
        push = ["crm"]
        [connectors.crm]
        plugin = "memory"
        [connectors.shop]
        plugin = "memory"
        [[policy.tiers]]
        name = "Gold"
        condition = "spend_lifetime >= 100"
        [[policy.tiers]]
        name = "Basic"
        """
    )
    crm, shop = World(), World()
    WORLDS.update(crm=crm, shop=shop)
    crm.put(Stream.MEMBERS, member(1))
    crm.put(Stream.MEMBERS, member(2))

    def shop_order(oid: str, email: str, amount: str) -> Order:
        return Order(source="shop", external_id=oid, member_email=email, placed_at=T0, amount=amount, currency="EUR")

    shop.put(Stream.ORDERS, shop_order("s1", "USER1@Example.com ", "60"))  # normalised before matching
    shop.put(Stream.ORDERS, shop_order("s2", "user1@example.com", "50"))
    shop.put(Stream.ORDERS, shop_order("s3", "stranger@example.com", "500"))
    report = run_sync(path, host).report
    with Store.open(path.parent / "two.duckdb") as store:
        tiers = dict(store.con.execute("SELECT member_id, tier FROM profiles").fetchall())
    assert report.status == "ok", report.error
    assert tiers == {"m1": "Gold", "m2": "Basic"}
    assert report.unmatched_orders == 1
    assert unmatched(path.parent / "two.duckdb", "crm") == [("shop", "shop order s3", "member_email")]
    assert {k: v["tier"] for k, v in crm.pushed.items()} == tiers


def test_a_profile_hook_sees_the_profiles_just_graded_and_grading_stays_incremental(
    run: Runner, world: World, host: PluginHost
) -> None:
    seen: list[set[str]] = []

    class TagPlugin:
        @crmsync.hookimpl
        def crmsync_adjust_profiles(self, profiles):  # type: ignore[no-untyped-def]
            seen.append({p.member_id for p in profiles})
            return [
                crmsync.TagAdjustment(p.member_id, add=frozenset({"vip_call"})) for p in profiles if p.tier == "Gold"
            ]

    host.register(TagPlugin(), "tags")
    first = run().report
    assert first.members_recomputed == 5 and seen[-1] == {"m1", "m2", "m3", "m4", "m5"}
    again = run().report
    # nothing changed: no member is recomputed; m1, whose stored tags the hook changed, is shown to it again
    assert again.members_recomputed == 0 and seen[-1] == {"m1"}
    assert again.pushed == {"crm": 0} and world.pushed["m1"]["tags"] == ["vip_call"]
    world.put(Stream.ORDERS, order("o8", "m2", "900", 1))  # m2 -> Gold
    third = run().report
    assert third.members_recomputed == 1 and {"m1", "m2"} <= seen[-1]
    assert world.pushed["m2"]["tags"] == ["vip_call"] and "m2" in world.push_calls[-1]
    assert world.pushed["m1"]["tags"] == ["vip_call"]


@pytest.mark.parametrize(
    ("error", "exit_code", "kind", "retry_after"),
    [
        (crmsync.AuthError("refresh token revoked", connector="crm", hint="reconnect"), 2, "AuthError", None),
        (crmsync.RetryableError("HTTP 429; gave up", connector="crm", retry_after=30.0), 3, "RetryableError", 30.0),
        (crmsync.ConfigError("connectors.crm.module: unknown"), 2, "ConfigError", None),
        (crmsync.FatalAPIError("HTTP 400: bad criteria"), 3, "FatalAPIError", None),
        (RuntimeError("disk on fire"), 3, "unexpected", None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_run_finished_listeners_see_how_the_run_failed(
    run: Runner,
    world: World,
    host: PluginHost,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    exit_code: int,
    kind: str,
    retry_after: float | None,
) -> None:
    from tests.support import MemoryConnector

    heard: list[crmsync.ExitCode] = []

    class Listener:
        @crmsync.hookimpl
        def crmsync_run_finished(self, report):  # type: ignore[no-untyped-def]
            heard.append(report.exit_code)

    def fail(self, stream, cursor):  # type: ignore[no-untyped-def]
        raise error

    host.register(Listener(), "listener")
    monkeypatch.setattr(MemoryConnector, "pull", fail)
    report = run().report
    assert report.status == "failed" and heard == [exit_code] and report.exit_code == exit_code
    assert report.error is not None and (report.error.kind, report.error.retry_after) == (kind, retry_after)
    assert report.error.exit_code == exit_code and str(error) in str(report.error)
    stored = report.model_validate_json(report.model_dump_json())
    assert stored.error == report.error and stored.exit_code == exit_code
