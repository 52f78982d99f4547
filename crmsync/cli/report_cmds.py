"""``crmsync report`` (the programme's KPIs per period) and ``crmsync export`` (every member's figures in a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from crmsync.cli import AppContext, as_of_option, json_option, when
from crmsync.cli.policy_cmds import _compiled, _jsonable, replay
from crmsync.cli.render import console, print_json
from crmsync.errors import ConfigError


@click.command()
@json_option
@click.option(
    "--from",
    "start",
    metavar="DATE",
    help="First period end (a date: the end of that day; default: 11 periods before --to).",
)
@click.option("--to", "end", metavar="DATE", help="Last period end (a date: the end of that day; default: now).")
@click.option("--every", default="month", show_default=True, help="day, week, month, or a number of days.")
@click.pass_obj
def report(app: AppContext, as_json: bool, start: str | None, end: str | None, every: str) -> int:
    """Programme KPIs per period, from the policy replayed over the stored history: members, buyers, repurchase
    rate (buyers with 2+ orders in the period), returning buyers (ordered before the period), orders, average
    order value, upgrade and downgrade rates (of the members holding a tier at the period's start) and each
    tier's active share (members with an order in the period). Definitions: docs/policy.md."""
    from crmsync.cli.trial_view import kpi_table

    compiled, periods = replay(app, start, end, every)
    if as_json:
        print_json(
            [{"as_of": p.as_of, "since": p.since, "distribution": p.distribution, **_jsonable(p.kpis)} for p in periods]
        )
    else:
        console().print(kpi_table(periods, compiled.tier_names))
    return 0


def _format(path: Path, fmt: str | None) -> Any:
    if fmt:
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ConfigError(f"export: cannot tell the format of {path.name}; name it .csv or .parquet, or give --format")


def _columns(app: AppContext, compiled: Any, columns: str | None, personal: bool) -> dict[str, Any]:
    from crmsync.policy.export import PERSONAL, default_columns, resolve_columns

    allowed = personal or app.settings.logging.verbose_personal_data
    if columns:
        names = [c.strip() for c in columns.split(",") if c.strip()]
    else:
        names = default_columns(compiled) + (list(PERSONAL) if personal else [])
    return resolve_columns(compiled, names, app.host.metrics(), personal=allowed)


@click.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), help="Default: from PATH's suffix.")
@click.option("--columns", metavar="A,B,...", help="Columns in this order (default: member_id, grades, metrics).")
@as_of_option
@click.option("--personal", is_flag=True, help="Allow (and by default add) email, phone, first_name, last_name.")
@click.option("--list-columns", is_flag=True, help="List the columns an export can have, and exit.")
@json_option
@click.pass_obj
def export(
    app: AppContext,
    path: Path | None,
    fmt: str | None,
    columns: str | None,
    as_of: str | None,
    personal: bool,
    list_columns: bool,
    as_json: bool,
) -> int:
    """Write every member's grades and metrics to PATH (CSV or Parquet), graded as a sync would as of a date.

    \b
    crmsync export members.parquet
    crmsync export members.csv --columns member_id,tier,points,spend_365d,days_since_last_order --as-of 2026-12-31

    Emails, phones and names are exported only with --personal (which adds them), or when named in --columns
    with logging.verbose_personal_data = true. An unknown or repeated column, or a personal one not allowed,
    stops the export with exit code 2. CSV: tags joined with '|', times in UTC, cells a spreadsheet would run as
    a formula prefixed with "'". Columns and their meaning: docs/policy.md.
    """
    from crmsync.policy.export import available
    from crmsync.policy.export import export as run_export

    compiled = _compiled(app)
    if list_columns:
        names = available(compiled, app.host.metrics())
        print_json(names) if as_json else console().print("\n".join(names))
        return 0
    if path is None:
        raise ConfigError("export: give the file to write (PATH), or --list-columns")
    if not path.parent.is_dir():
        raise ConfigError(f"export: the folder of {path} does not exist")
    chosen = _columns(app, compiled, columns, personal)
    with app.store(read_only=True) as store, store.transaction(rollback=True) as con:
        result = run_export(con, compiled, when(app, as_of), path, _format(path, fmt), chosen)
    if as_json:
        print_json(_jsonable(result))
    else:
        console().print(f"{result.rows} members, {len(result.columns)} columns written to {result.path}")
    return 0


COMMANDS = [report, export]
