"""Refused pushes: pushed again on later runs (one attempt per run counts), given up after ``sync.max_attempts``,
requeued when the policy, the target's settings or its field metadata change, and by hand (``crmsync retry``); the
report says what was retried and why."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.engine import RunResult
from crmsync.plugins import PluginHost
from crmsync.report import RunReport
from crmsync.settings import SyncSettings
from crmsync.store import Store, profiles
from crmsync.store.outbox import Outbox
from tests.support import T0, World, run_sync
from tests.test_cli import run_main
from tests.test_cli import use_host as use_host  # the command line finds the in-memory connector
from tests.test_engine import world as world  # five members, m2 Silver
from tests.test_store import graded, results

MAX = SyncSettings.model_fields["max_attempts"].default  # the memory configuration leaves it at its default


# ---------------------------------------------------------------------------------------------- the outbox
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pushes_per_run=st.lists(st.integers(1, 3), min_size=1, max_size=8),
    max_attempts=st.integers(1, 5),
)
def test_a_refusal_counts_one_attempt_per_run_however_often_a_run_pushes_it(
    pushes_per_run: list[int], max_attempts: int
) -> None:
    with Store.open(None) as store:
        box = Outbox(store, "crm", ("tier",))
        with store.transaction() as con:
            profiles.save(con, graded(con, {"m1": ("Gold", 3, 0, []), "m2": ("Gold", 3, 0, [])}))
        box.enqueue("r0")
        for run, pushes in enumerate(pushes_per_run, 1):
            if box.counts() == (0, 2):
                break
            for _ in range(pushes):
                box.record(results(("m1", False, True), ("m2", False, True)), run_id=f"r{run}", at=T0,
                           max_attempts=max_attempts)  # fmt: skip
            runs = min(run, max_attempts)
            attempts = store.con.execute("SELECT DISTINCT attempts FROM outbox").fetchall()
            assert attempts == [(runs,)], (run, pushes)
            assert box.counts() == ((0, 2) if runs >= max_attempts else (2, 0))
            assert box.retrying() == ({} if runs >= max_attempts else {"refused_before": 2})


def test_requeue_gives_a_fresh_set_of_attempts_and_says_why() -> None:
    with Store.open(None) as store:
        box = Outbox(store, "crm", ("tier",))
        with store.transaction() as con:
            profiles.save(con, graded(con, {m: ("Gold", 3, 0, []) for m in ("m1", "m2", "m3")}))
        box.enqueue("r0")
        box.record(results(("m1", False, False), ("m2", False, False), ("m3", True, True)), run_id="r1", at=T0,
                   max_attempts=MAX)  # fmt: skip
        assert box.counts() == (0, 2)
        assert [(g["member_id"], g["attempts"], g["reason"]) for g in box.given_up()] == [
            ("m1", 1, "refused"), ("m2", 1, "refused")
        ]  # fmt: skip
        assert box.requeue(member_id="m2") == ["m2"] and box.counts() == (1, 1)
        assert box.retrying() == {"by_hand": 1}
        assert box.requeue(member_id="m3") == []  # accepted: nothing to requeue
        assert box.requeue("fields_changed") == ["m1"] and box.retrying() == {"by_hand": 1, "fields_changed": 1}
        box.record(results(("m1", False, True)), run_id="r2", at=T0, max_attempts=MAX)
        assert box.retrying() == {"by_hand": 1, "refused_before": 1}  # refused again: the reason is spent


# ---------------------------------------------------------------------------------------------- sync runs
Runner = Callable[[], RunReport]


@pytest.fixture
def run(memory_config: Path, host: PluginHost) -> Runner:
    def _run() -> RunReport:
        result: RunResult = run_sync(memory_config, host, T0)
        assert result.report.error is None, result.report.error
        return result.report

    return _run


@pytest.mark.parametrize("fixed_after", range(1, MAX))
def test_a_refusal_fixed_in_between_arrives_with_the_next_run(run: Runner, world: World, fixed_after: int) -> None:
    world.reject["m2"] = "INVALID_DATA: value 'Silver' not allowed for Tier"
    for n in range(1, fixed_after + 1):
        report = run()
        assert report.push_rejected == {"crm": 1} and report.pending == {"crm": 1} and report.dead == {"crm": 0}
        assert report.retried == ({} if n == 1 else {"crm": {"refused_before": 1}})
    world.reject.clear()  # an administrator added the option
    report = run()
    assert report.pushed == {"crm": 1} and report.retried == {"crm": {"refused_before": 1}}
    assert world.pushed["m2"]["tier"] == "Silver" and report.pending == {"crm": 0}
    assert run().retried == {}


def _give_up(run: Runner, world: World) -> RunReport:
    world.reject["m2"] = "INVALID_DATA: value 'Silver' not allowed for Tier"
    for _ in range(MAX):
        report = run()
    assert report.dead == {"crm": 1} and report.pending == {"crm": 0}
    calls = len(world.push_calls)
    assert run().dead == {"crm": 1} and len(world.push_calls) == calls  # given up: not pushed again by itself
    world.reject.clear()
    return report


def test_a_change_of_the_targets_field_metadata_requeues_given_up_changes(run: Runner, world: World) -> None:
    world.fields = "picklist v1"
    _give_up(run, world)
    asked = world.fields_asked
    assert asked <= 2 * (MAX + 1)  # asked only while refusals exist, at most twice per run (before, after)
    report = run()  # the same fields: nothing requeued
    assert report.dead == {"crm": 1} and world.fields_asked == asked + 1
    world.fields = "picklist v2"  # an administrator added 'Silver'
    report = run()
    assert report.retried == {"crm": {"fields_changed": 1}} and report.pushed == {"crm": 1}
    assert report.dead == {"crm": 0} and world.pushed["m2"]["tier"] == "Silver"
    asked = world.fields_asked
    run()
    assert world.fields_asked == asked  # no refusal left: the fields are not asked for


def test_a_connector_that_cannot_tell_its_fields_leaves_given_up_changes_given_up(run: Runner, world: World) -> None:
    _give_up(run, world)
    assert world.fields_asked > 0 and run().dead == {"crm": 1}


def test_a_policy_change_requeues_given_up_changes(run: Runner, world: World, memory_config: Path) -> None:
    _give_up(run, world)
    text = memory_config.read_text().replace('name = "Gold"', 'name = "Gold"\ncost = "12"')  # m2's values unchanged
    memory_config.write_text(text)
    report = run()
    assert report.retried == {"crm": {"policy_changed": 1}} and report.pushed == {"crm": 1}
    assert report.dead == {"crm": 0}


def test_a_change_of_the_targets_settings_requeues_given_up_changes(
    run: Runner, world: World, memory_config: Path
) -> None:
    _give_up(run, world)
    memory_config.write_text(
        memory_config.read_text().replace('plugin = "memory"', 'plugin = "memory"\nbatch_size = 3')
    )
    report = run()
    assert report.retried == {"crm": {"settings_changed": 1}} and report.pushed == {"crm": 1}


def test_a_record_deleted_in_the_target_is_given_up_at_once_and_stays_so(run: Runner, world: World) -> None:
    world.gone.add("m3")
    report = run()
    assert report.dead == {"crm": 1} and report.pending == {"crm": 0} and report.pushed == {"crm": 4}
    calls = len(world.push_calls)
    for _ in range(2):
        assert run().dead == {"crm": 1}
    assert len(world.push_calls) == calls


def test_retry_by_hand(
    memory_config: Path, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = ["--config", str(memory_config)]
    world.gone.update({"m3", "m4"})
    code, _, _ = run_main([*cfg, "sync"], capsys)
    assert code == 1
    code, out, _ = run_main([*cfg, "retry", "--list", "--json"], capsys)
    assert code == 0 and sorted(g["member_id"] for g in json.loads(out)) == ["m3", "m4"]
    code, _, err = run_main([*cfg, "retry", "shop"], capsys)
    assert code == 2 and "'shop' is not a push target" in err
    world.gone.clear()  # restored in the CRM
    code, out, _ = run_main([*cfg, "retry", "crm", "--member", "m4", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"requeued": {"crm": ["m4"]}}
    code, out, _ = run_main([*cfg, "sync", "--json"], capsys)
    report = json.loads(out)
    assert (
        report["retried"] == {"crm": {"by_hand": 1}} and report["pushed"] == {"crm": 1} and report["dead"] == {"crm": 1}
    )
    code, out, _ = run_main([*cfg, "retry"], capsys)
    assert code == 0 and "crm: 1 given-up change(s) requeued: m3" in out
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_main([*cfg, "sync"], capsys)
    assert code == 0 and "retried 1 (1 by hand)" in out and world.pushed["m3"]
    code, out, _ = run_main([*cfg, "retry", "--list"], capsys)
    assert "no change is given up" in out


def test_the_report_table_says_what_was_retried_and_how_to_push_given_up_changes(
    memory_config: Path, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # lines as long as they are
    cfg = ["--config", str(memory_config)]
    world.reject["m1"] = "LOCKED"
    world.gone.add("m2")
    run_main([*cfg, "sync"], capsys)
    code, out, _ = run_main([*cfg, "sync"], capsys)
    assert code == 1
    assert "crm: pushed 0, rejected 1, given up 1, pending 1; retried 1 (1 refused before)" in out
    assert "'crmsync retry crm' pushes the given-up changes again" in out
