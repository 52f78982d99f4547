"""A test-only connector plugin that kills its own process at a chosen point of a sync run.

It is the ``generic_csv`` connector (CSV in, CSV out) plus SIGKILL at the point named by ``CRMSYNC_CRASH_AT``:

* ``pull:N``   when the engine asks for the batch after the Nth pulled batch (the Nth is stored by then);
* ``push:N``   once the Nth push call returned, before its results are handed back: inside ``push_batches``, or
  ``push_table`` (one call for every change); ``CRMSYNC_CRASH_BATCHED=1`` declines the columnar push, so that
  the engine pushes in batches;
* ``grade``    in ``crmsync_adjust_profiles`` (called inside the grading transaction);
* ``report``   in ``crmsync_run_finished`` (the run record is written, the report not yet printed);
* ``pause``    not a kill: after the first pulled batch, create the file ``CRMSYNC_CRASH_MARK`` and wait (at most
  a minute) until it is removed, so that a test can start a second run while this one holds the store.

Without the variable it behaves exactly like ``generic_csv``; ``CRMSYNC_CRASH_COUNTS`` names a file where the
numbers of pulled batches and push calls are written at the end of a run (to enumerate kill points).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from crmsync_generic_csv.connector import CAPABILITIES, CsvConnector
from crmsync_generic_csv.settings import CsvSettings

import crmsync
from crmsync.connector import Batch, ProfileChange, RecordResult, Stream

_COUNTS = {"pull": 0, "push": 0}


def _point() -> tuple[str, int]:
    kind, _, n = os.environ.get("CRMSYNC_CRASH_AT", "").partition(":")
    return kind, int(n or 0)


def _pause() -> None:
    mark = os.environ["CRMSYNC_CRASH_MARK"]
    with open(mark, "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while os.path.exists(mark) and time.monotonic() < deadline:
        time.sleep(0.05)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingCsvConnector(CsvConnector):
    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        kind, n = _point()
        for batch in super().pull(stream, cursor):
            _COUNTS["pull"] += 1
            yield batch
            if kind == "pull" and _COUNTS["pull"] == n:
                _die()
            if kind == "pause" and _COUNTS["pull"] == 1:
                _pause()

    def push_batches(
        self, batches: Iterable[Sequence[ProfileChange]]
    ) -> Iterator[tuple[Sequence[ProfileChange], list[RecordResult]]]:
        kind, n = _point()
        for batch in batches:
            results = self.push(batch)
            _COUNTS["push"] += 1
            if kind == "push" and _COUNTS["push"] == n:
                _die()
            yield batch, results

    def push_table(self, table: Any) -> Any:
        if os.environ.get("CRMSYNC_CRASH_BATCHED"):
            raise NotImplementedError("batched pushes asked for")
        kind, n = _point()
        results = super().push_table(table)
        _COUNTS["push"] += 1
        if kind == "push" and _COUNTS["push"] == n:
            _die()
        return results


@crmsync.hookimpl
def crmsync_connectors() -> Iterator[crmsync.ConnectorSpec]:
    yield crmsync.ConnectorSpec(
        name="crash_csv",
        settings_model=CsvSettings,
        factory=CrashingCsvConnector,  # type: ignore[arg-type]
        capabilities=CAPABILITIES,
        description="generic_csv that kills its process at a chosen point (tests only)",
    )


@crmsync.hookimpl
def crmsync_adjust_profiles(profiles: Sequence[Any]) -> None:
    if _point()[0] == "grade":
        _die()


@crmsync.hookimpl
def crmsync_run_finished(report: Any) -> None:
    target = os.environ.get("CRMSYNC_CRASH_COUNTS")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(_COUNTS, fh)
    if _point()[0] == "report":
        _die()
