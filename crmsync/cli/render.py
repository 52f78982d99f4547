"""Rendering for people: rich tables on stdout, progress bars on a terminal's stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crmsync.engine import Progress as ProgressSink
from crmsync.report import PlanEntry, RunReport, RunStatus


def console(err: bool = False) -> Console:
    stream = sys.stderr if err else sys.stdout
    # On a terminal rich follows its width; in files and pipes tables get room instead of wrapping every cell.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=err, highlight=False, width=width)


def show_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Mapping[str, Callable[[Mapping[str, Any]], Any]],
    *,
    as_json: bool,
    empty: str,
) -> None:
    """Rows as JSON, or as a table with one column per ``columns`` entry (heading -> cell), or ``empty``."""
    if as_json:
        print_json(list(rows))
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(cell(row)) for cell in columns.values()))
    console().print(table if rows else empty)


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


class RichProgress(ProgressSink):
    def __init__(self) -> None:
        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(err=True),
            transient=True,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> RichProgress:
        self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._p.stop()

    def start(self, task: str, total: int | None = None) -> None:
        self._tasks[task] = self._p.add_task(task, total=total)

    def advance(self, task: str, n: int = 1) -> None:
        if task in self._tasks:
            self._p.advance(self._tasks[task], n)

    def finish(self, task: str) -> None:
        if task in self._tasks:
            self._p.remove_task(self._tasks.pop(task))


def report_table(report: RunReport, plan: list[PlanEntry] | None = None) -> None:
    """The run report for people: what was pulled, the grades, what was pushed, what was rejected."""
    out = console()
    title = f"{report.command} {report.run_id}: {report.status}"
    if report.dry_run:
        title += " (dry run: nothing was written to any CRM)"
    out.print(f"[bold]{title}[/bold]  ({report.duration_s:.1f}s)")
    if report.error:
        out.print(f"[red]error:[/red] {report.error}")
    for part in (_pulled(report), _distribution(report)):
        if part is not None:
            out.print(part)
    out.print(
        f"members graded: {report.members_graded} ({report.members_recomputed} recomputed, "
        f"{report.days_decided} past days decided)   "
        f"profiles changed: {report.profiles_changed}   "
        f"unmatched orders: {report.unmatched_orders}"
    )
    for line in _pushes(report):
        out.print(line)
    if report.quarantined:
        out.print(f"records in quarantine, waiting for a fix in their source: {report.quarantined} (crmsync rejects)")
    for conn, calls in report.api_calls.items():
        out.print(f"API calls {conn}: " + ", ".join(f"{k}={v}" for k, v in sorted(calls.items())))
    _rejected(out, report)
    if plan is not None:
        _plan(out, plan)


def _pulled(report: RunReport) -> Table | None:
    if not report.pulled:
        return None
    t = Table("connector", "stream", "pulled", "deleted", "rejected", title="Pulled", title_justify="left")
    for conn, streams in report.pulled.items():
        for stream, c in streams.items():
            t.add_row(conn, stream, str(c.pulled), str(c.deleted), str(c.rejected))
    return t


def _distribution(report: RunReport) -> Table | None:
    if not report.tier_distribution:
        return None
    total = sum(report.tier_distribution.values()) or 1
    t = Table("tier", "members", "share", title="Tier distribution", title_justify="left")
    for tier, n in report.tier_distribution.items():
        t.add_row(tier, str(n), f"{100 * n / total:.1f}%")
    return t


def _pushes(report: RunReport) -> list[str]:
    """One line per push target; a line saying so when nothing needed to be pushed."""
    lines = []
    for target in sorted(set(report.pushed) | set(report.pending)):
        line = f"{target}: pushed {report.pushed.get(target, 0)}"
        for label, by_target in (
            ("rejected", report.push_rejected),
            ("given up", report.dead),
            ("pending", report.pending),
        ):
            if by_target.get(target):
                line += f", {label} {by_target[target]}"
        if retried := report.retried.get(target):
            why = ", ".join(f"{n} {w.replace('_', ' ')}" for w, n in retried.items())
            line += f"; retried {sum(retried.values())} ({why})"
        if report.dead.get(target):
            line += f"; 'crmsync retry {target}' pushes the given-up changes again"
        lines.append(line)
    done = report.status in (RunStatus.OK, RunStatus.REJECTED)
    if not report.dry_run and done and not any(report.pushed.values()):
        lines.append("nothing changed: no profile needed to be pushed")
    return lines


def _rejected(out: Console, report: RunReport, shown: int = 50) -> None:
    if not report.rejected:
        return
    r = Table("connector", "where", "field", "reason", title="Rejected records", title_justify="left")
    for item in report.rejected[:shown]:
        r.add_row(item.connector, item.locator, item.field or "", item.reason)
    out.print(r)
    if report.rejected_total > shown:
        more = report.rejected_total - shown
        out.print(f"... and {more} more (crmsync runs --json shows all kept in the report)")


def _plan(out: Console, plan: list[PlanEntry], shown: int = 100) -> None:
    if not plan:
        out.print("no changes would be pushed")
        return
    p = Table("target", "member", "field", "now", "would become", title="Planned changes", title_justify="left")
    for entry in plan[:shown]:
        for fname, (old, new) in entry.changed.items():
            p.add_row(entry.target, entry.member_id, fname, _cell(old), _cell(new))
    out.print(p)
    if len(plan) > shown:
        out.print(f"... {len(plan) - shown} more members (use --json for all)")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "-"
    return str(v)
