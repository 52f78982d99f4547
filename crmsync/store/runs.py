"""Run records: one row per run with its report, from its start (``running``) to its end; and their history.

A run still marked ``running`` when the next one starts was killed (the next run holds the store's lock, so none is
in progress): it is closed as ``interrupted``. Only the newest ``keep`` runs are kept.
"""

from __future__ import annotations

import json

from crmsync.report import INTERRUPTED, RunReport, RunStatus
from crmsync.store import quarantine
from crmsync.store.db import Connection


def start(con: Connection, report: RunReport) -> None:
    """Record a run starting (closing the runs a kill left open)."""
    close_interrupted(con)
    record(con, report)


def finish(con: Connection, report: RunReport, *, keep: int) -> None:
    """Record a run's final report, keeping the newest ``keep`` runs."""
    record(con, report)
    prune(con, keep)


def record(con: Connection, report: RunReport) -> None:
    """Store (or replace) the run's record with its report as it is now."""
    con.execute("DELETE FROM runs WHERE run_id = ?", [report.run_id])
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
        [
            report.run_id,
            report.command,
            report.started_at,
            report.finished_at,
            str(report.status),
            report.model_dump_json(),
        ],
    )


def close_interrupted(con: Connection) -> None:
    """Close the runs still marked running: they were killed."""
    patch = json.dumps({"status": RunStatus.INTERRUPTED.value, "error": INTERRUPTED.model_dump(mode="json")})
    con.execute(
        "UPDATE runs SET status = ?, report = json_merge_patch(report, ?::JSON) WHERE status = ?",
        [RunStatus.INTERRUPTED.value, patch, RunStatus.RUNNING.value],
    )


def prune(con: Connection, keep: int) -> None:
    """Keep the newest ``keep`` runs, and the quarantine entries resolved by a run still kept."""
    con.execute(
        "DELETE FROM runs WHERE run_id NOT IN (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT ?)", [keep]
    )
    quarantine.prune(con)


def recent(con: Connection, limit: int) -> list[RunReport]:
    """The reports of the newest ``limit`` runs, newest first."""
    rows = con.execute("SELECT report FROM runs ORDER BY started_at DESC LIMIT ?", [limit]).fetchall()
    return [RunReport.model_validate_json(r[0]) for r in rows]
