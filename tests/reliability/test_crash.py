"""Crash campaign: a real ``crmsync sync`` is SIGKILLed at every distinct point of a run, then rerun.

Each time, the rerun must leave the CRM (the output CSV), the store and the report's state exactly as one
uninterrupted run does, and no order may count twice. The kill points come from a test-only plugin
(``crashplug/crmsync_crashtest.py``) that the subprocess discovers as an installed distribution.
"""

from __future__ import annotations

import csv
import json
import signal
from collections.abc import Iterator
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


@dataclass
class Campaign:
    root: Path
    pythonpath: str
    reference: Outcome
    counts: dict[str, int]

    def crash_and_rerun(self, point: str) -> tuple[int, Outcome, int]:
        folder = self.root / point.replace(":", "_")
        config = CsvWorld(folder).write(plugin="crash_csv")
        crashed = run_cli(
            config,
            "sync",
            "--json",
            "--as-of",
            AS_OF,
            env=crmsync_env({"CRMSYNC_CRASH_AT": point}, pythonpath=self.pythonpath),
        )
        rerun = run_cli(config, "sync", "--json", "--as-of", AS_OF, env=crmsync_env(pythonpath=self.pythonpath))
        assert rerun.returncode in (0, 1), f"{point}: rerun failed: {rerun.stderr}"
        return crashed.returncode, _outcome(folder, json.loads(rerun.stdout)), rerun.returncode


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    root = tmp_path_factory.mktemp("crash")
    pythonpath = plugin_path(root / "site")
    folder = root / "reference"
    config = CsvWorld(folder).write(plugin="crash_csv")
    counts_file = root / "counts.json"
    done = run_cli(
        config,
        "sync",
        "--json",
        "--as-of",
        AS_OF,
        env=crmsync_env({"CRMSYNC_CRASH_COUNTS": str(counts_file)}, pythonpath=pythonpath),
    )
    assert done.returncode == 1, done.stderr  # the world ships two bad order rows on purpose
    counts = json.loads(counts_file.read_text())
    yield Campaign(root, pythonpath, _outcome(folder, json.loads(done.stdout)), counts)


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


def test_reference_run_has_several_batches_and_pushes(campaign: Campaign) -> None:
    assert campaign.counts["pull"] >= 4
    assert campaign.counts["push"] >= 2
    assert campaign.reference.store["pushed"] and not campaign.reference.store["outbox"]
    assert campaign.reference.store["quarantine"]


def test_kill_after_each_pulled_batch(campaign: Campaign) -> None:
    _check(campaign, [f"pull:{n}" for n in range(1, campaign.counts["pull"] + 1)])


def test_kill_after_each_push_call_before_its_results_are_stored(campaign: Campaign) -> None:
    _check(campaign, [f"push:{n}" for n in range(1, campaign.counts["push"] + 1)])


def test_kill_during_grading_and_during_the_report(campaign: Campaign) -> None:
    _check(campaign, ["grade", "report"])
