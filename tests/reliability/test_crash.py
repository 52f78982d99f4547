"""Crash campaign: a real ``crmsync sync`` is SIGKILLed at every distinct point of a run, then rerun.

Each time, the rerun must leave the CRM (the output CSV), the store and the report's state exactly as one
uninterrupted run does, and no order may count twice. The kill points come from a test-only plugin
(``crashplug/crmsync_crashtest.py``) that the subprocess discovers as an installed distribution.
"""

from __future__ import annotations

import csv
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from .rel_support import AS_OF, CsvWorld, crmsync_env, digest, plugin_path, report_state, run_cli


@dataclass
class Outcome:
    store: dict[str, Any]
    output: bytes
    report: dict[str, Any]
    rejects: set[tuple[str, ...]]
    run_statuses: list[str]


def _rejects(folder: Path) -> set[tuple[str, ...]]:
    with (folder / "out" / "rejects.csv").open(encoding="utf-8", newline="") as fh:
        return {tuple(row[:6]) for row in csv.reader(fh)}


def _outcome(folder: Path, report: dict[str, Any]) -> Outcome:
    con = duckdb.connect(str(folder / "store.duckdb"), read_only=True)
    try:
        statuses = sorted(r[0] for r in con.execute("SELECT status FROM runs").fetchall())
    finally:
        con.close()
    output = (folder / "out" / "profiles.csv").read_bytes()
    return Outcome(digest(folder / "store.duckdb"), output, report, _rejects(folder), statuses)


MODES = {"columnar": {}, "batched": {"CRMSYNC_CRASH_BATCHED": "1"}}
"""Pushes as one columnar call (the CSV connector's own way) or in batches (as API connectors push)."""


@dataclass
class Campaign:
    root: Path
    pythonpath: str
    mode: str
    reference: Outcome
    counts: dict[str, int]

    def crash_and_rerun(self, point: str) -> tuple[int, Outcome, int]:
        folder = self.root / f"{self.mode}-{point.replace(':', '_')}"
        config = CsvWorld(folder).write(plugin="crash_csv")
        mode = MODES[self.mode]
        crashed = run_cli(
            config,
            "sync",
            "--json",
            "--as-of",
            AS_OF,
            env=crmsync_env({"CRMSYNC_CRASH_AT": point, **mode}, pythonpath=self.pythonpath),
        )
        rerun = run_cli(config, "sync", "--json", "--as-of", AS_OF, env=crmsync_env(mode, pythonpath=self.pythonpath))
        assert rerun.returncode in (0, 1), f"{point}: rerun failed: {rerun.stderr}"
        return crashed.returncode, _outcome(folder, json.loads(rerun.stdout)), rerun.returncode


def _campaign(mode: str, tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    root = tmp_path_factory.mktemp(f"crash-{mode}")
    pythonpath = plugin_path(root / "site")
    folder = root / "reference"
    config = CsvWorld(folder).write(plugin="crash_csv")
    counts_file = root / "counts.json"
    env = crmsync_env({"CRMSYNC_CRASH_COUNTS": str(counts_file), **MODES[mode]}, pythonpath=pythonpath)
    done = run_cli(config, "sync", "--json", "--as-of", AS_OF, env=env)
    assert done.returncode == 1, done.stderr  # the world ships two bad order rows on purpose
    counts = json.loads(counts_file.read_text())
    return Campaign(root, pythonpath, mode, _outcome(folder, json.loads(done.stdout)), counts)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    return _campaign("columnar", tmp_path_factory)


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    return _campaign("batched", tmp_path_factory)


def _check(campaign: Campaign, points: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip(points, pool.map(campaign.crash_and_rerun, points), strict=True))
    ref = campaign.reference
    for point, (crash_code, got, _) in outcomes.items():
        assert crash_code == -signal.SIGKILL, f"{point}: the kill point was not reached (exit {crash_code})"
        assert got.output == ref.output, f"{point}: the CRM output differs"
        assert got.store == ref.store, f"{point}: the store differs"
        assert report_state(got.report) == report_state(ref.report), point
        count, distinct, *_ = got.store["order_stats"]
        assert count == distinct, f"{point}: an order is stored twice"
        assert got.rejects >= ref.rejects, f"{point}: a rejected row is missing from rejects.csv"
        assert {r[:2] for r in got.rejects} == {r[:2] for r in ref.rejects}, point
        # the killed run is not left "running" in the history: the rerun marks it interrupted
        assert "running" not in got.run_statuses, point
        assert len(got.run_statuses) == 2 and ("interrupted" in got.run_statuses or point == "report"), point


def test_reference_runs_have_several_batches_and_pushes(campaign: Campaign, batched: Campaign) -> None:
    assert campaign.counts["pull"] >= 4
    assert campaign.counts["push"] >= 1 and batched.counts["push"] >= 2
    assert batched.reference.store == campaign.reference.store
    assert batched.reference.output == campaign.reference.output
    assert campaign.reference.store["pushed"] and not campaign.reference.store["outbox"]
    assert campaign.reference.store["quarantine"]


def test_kill_after_each_pulled_batch(campaign: Campaign) -> None:
    _check(campaign, [f"pull:{n}" for n in range(1, campaign.counts["pull"] + 1)])


def test_kill_after_the_columnar_push_before_its_results_are_stored(campaign: Campaign) -> None:
    _check(campaign, [f"push:{n}" for n in range(1, campaign.counts["push"] + 1)])


def test_kill_after_each_batched_push_call_before_its_results_are_stored(batched: Campaign) -> None:
    _check(batched, [f"push:{n}" for n in range(1, batched.counts["push"] + 1)])


def test_kill_during_grading_and_during_the_report(campaign: Campaign) -> None:
    _check(campaign, ["grade", "report"])
