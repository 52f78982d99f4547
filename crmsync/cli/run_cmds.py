"""``crmsync sync`` and ``crmsync plan``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import click

from crmsync.cli import AppContext, as_of_option, json_option, when, where_to_look
from crmsync.cli.render import RichProgress, interactive, print_json, report_table
from crmsync.engine import Engine, RunResult
from crmsync.errors import UNEXPECTED

log = logging.getLogger("crmsync.cli")


def _run(app: AppContext, *, dry_run: bool, as_json: bool, as_of: str | None, command: str) -> RunResult:
    settings = app.crm_settings
    with app.store() as store:
        progress_cm = RichProgress() if interactive() and not as_json else contextlib.nullcontext(None)
        with progress_cm as progress, Engine(settings, app.host, store, progress=progress) as engine:
            result = engine.run(dry_run=dry_run, as_of=when(app, as_of) if as_of else None, command=command)
    report = result.report
    log.info(
        "%s run %s: %s, %d pulled, %d changed, %d pushed, %d rejected, %.1f s",
        command,
        report.run_id,
        report.status,
        sum(c.pulled for streams in report.pulled.values() for c in streams.values()),
        report.profiles_changed,
        sum(report.pushed.values()),
        report.rejected_total,
        report.duration_s,
    )
    return result


def _exit(result: RunResult) -> int:
    report = result.report
    if report.error is not None:
        error = str(report.error)
        if report.error.kind == UNEXPECTED:
            error += f" ({where_to_look()})"
        click.echo(f"error: {error}", err=True)
    return int(report.exit_code)


def run_command(f: Callable[..., int]) -> click.Command:
    """A command that runs the engine: ``--json``, ``--as-of``, the app context."""
    return click.command()(json_option(as_of_option(click.pass_obj(f))))


@run_command
def sync(app: AppContext, as_json: bool, as_of: str | None) -> int:
    """Pull, grade, and push what changed to the CRM."""
    result = _run(app, dry_run=False, as_json=as_json, as_of=as_of, command="sync")
    if as_json:
        print_json(result.report.model_dump(mode="json"))
    else:
        report_table(result.report)
    return _exit(result)


@run_command
def plan(app: AppContext, as_json: bool, as_of: str | None) -> int:
    """Dry run: pull and grade, show what would be pushed, write nothing to any CRM."""
    result = _run(app, dry_run=True, as_json=as_json, as_of=as_of, command="plan")
    if as_json:
        data = result.report.model_dump(mode="json")
        data["changes"] = [
            {"target": e.target, "member_id": e.member_id, "changed": {k: list(v) for k, v in e.changed.items()}}
            for e in result.plan
        ]
        print_json(data)
    else:
        report_table(result.report, plan=result.plan)
    return _exit(result)


COMMANDS = [sync, plan]
__all__ = ["COMMANDS"]
