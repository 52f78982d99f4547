"""``crmsync preview``, ``backtest`` and ``override``: trial a policy on history, and lock members' tiers."""

from __future__ import annotations

import dataclasses
import getpass
from datetime import date
from pathlib import Path
from typing import Any

import click

from crmsync.cli import AppContext, as_of_option, json_option, when
from crmsync.cli.render import console, print_json
from crmsync.errors import ConfigError
from crmsync.policy.days import parse_day


def _jsonable(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def _compiled(app: AppContext) -> Any:
    """The policy of a command that grades the store with the embedded engine (``explain``, ``preview``,
    ``backtest``, ``export``, ``report``).

    Raises:
        ConfigError: the orders or activities are graded from the lake, so the store does not hold them.
    """
    from crmsync.grading.settings import lake_streams
    from crmsync.policy import compile_policy

    s = app.settings
    if lake := lake_streams(s.grading):
        raise ConfigError(
            f"this command grades the {' and '.join(lake)} in the store, and grading.spark reads them from the lake",
            hint="use 'crmsync sync' or 'crmsync plan' (they grade on Spark), or a configuration that pulls them",
        )
    return compile_policy(s.policy, app.host.metrics(), base_currency=s.sync.base_currency, timezone=s.sync.timezone)


def _every(every: str) -> Any:
    period: Any = int(every) if every.isdigit() else every
    if period not in ("day", "week", "month") and not (isinstance(period, int) and period > 0):
        raise ConfigError(f"--every: {every!r} is not day, week, month or a number of days")
    return period


def replay(app: AppContext, start: str | None, end: str | None, every: str) -> tuple[Any, list[Any]]:
    """The compiled policy and its backtest periods from ``start`` to ``end`` (default: the 12 periods up to now)."""
    from crmsync.policy.preview import backtest as run_backtest
    from crmsync.policy.trial import shift

    period = _every(every)
    compiled = _compiled(app)
    t1 = when(app, end, "--to")
    t0 = when(app, start, "--from") if start else shift(t1.astimezone(compiled.tz), period, -11)
    if t1 < t0:
        raise ConfigError("--to is before --from")
    with app.store(read_only=True) as store:  # each statement on its own: the temporary tables keep one version
        periods = run_backtest(store.con, compiled, t0, t1, period)
    return compiled, periods


def period_json(p: Any) -> dict[str, Any]:
    data = _jsonable(p)
    data["members"] = p.members
    return data


@click.command()
@json_option
@as_of_option
@click.pass_obj
def preview(app: AppContext, as_json: bool, as_of: str | None) -> int:
    """Grade as of a date as a sync would (grace periods and locks apply), writing nothing: tiers, benefit cost,
    moves and from->to transitions against the current grades, RFM segments, lifecycle stages, points liability.

    Nothing is pulled or pushed; run 'crmsync sync' or 'crmsync plan' first to fill the store.
    """
    from crmsync.cli.trial_view import preview_table
    from crmsync.policy.preview import preview as run_preview

    compiled = _compiled(app)
    with app.store(read_only=True) as store, store.transaction(rollback=True) as con:
        result = run_preview(con, compiled, when(app, as_of))
    if as_json:
        data = _jsonable(result)
        data["cost"] = result.cost
        print_json(data)
    else:
        console().print(preview_table(result))
    return 0


@click.command()
@json_option
@click.option("--from", "start", required=True, metavar="DATE", help="First period end (a date: the end of that day).")
@click.option("--to", "end", required=True, metavar="DATE", help="Last period end (a date: the end of that day).")
@click.option("--every", default="month", show_default=True, help="day, week, month, or a number of days.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML chart here.")
@click.pass_obj
def backtest(app: AppContext, as_json: bool, start: str, end: str, every: str, chart: Path | None) -> int:
    """Replay the policy over history before going live: per period the tier distribution, moves and from->to
    transitions, benefit cost, points issued, redeemed, expired and outstanding, segments, lifecycle stages and
    the programme KPIs (see 'crmsync report')."""
    from crmsync.cli.trial_view import backtest_table
    from crmsync.policy.chart import write_chart

    compiled, periods = replay(app, start, end, every)
    if chart:
        write_chart(chart, periods, compiled.tier_names, title="Tier distribution per period")
    if as_json:
        print_json([period_json(p) for p in periods])
    else:
        console().print(backtest_table(periods, compiled.tier_names))
        if chart:
            console().print(f"chart written to {chart}")
    return 0


@click.command()
@click.argument("member", required=False)
@click.option("--tier", help="Lock MEMBER at this tier.")
@click.option(
    "--until", "until", metavar="DATE", help="Last day of the lock, in sync.timezone (default: until cleared)."
)
@click.option("--reason", help="Why (kept in the audit trail).")
@click.option("--clear", is_flag=True, help="Remove MEMBER's lock.")
@click.option("--list", "list_", is_flag=True, help="List locks.")
@json_option
@click.pass_obj
def override(
    app: AppContext,
    member: str | None,
    tier: str | None,
    until: str | None,
    reason: str | None,
    clear: bool,
    list_: bool,
    as_json: bool,
) -> int:
    """Lock a member's tier (it wins over the policy until it expires), clear a lock, or list locks.

    \b
    crmsync override 4711 --tier Gold --until 2027-03-31 --reason "key account"
    crmsync override 4711 --clear --reason "contract ended"
    crmsync override --list
    """
    from crmsync.cli.policy_view import overrides_table
    from crmsync.policy import clear_override, list_overrides, set_override
    from crmsync.store.profiles import member_exists

    actor = getpass.getuser()
    with app.store() as store:
        if list_ or member is None:
            rows = list_overrides(store.con)
            if as_json:
                print_json([_jsonable(r) for r in rows])
            else:
                console().print(overrides_table(rows) if rows else "no tier locks")
            return 0
        if clear:
            with store.transaction() as con:
                found = clear_override(con, member, actor, reason)
            if not found:
                raise ConfigError(f"member {member!r} has no tier lock")
            console().print(f"lock of member {member} cleared; the policy decides again from the next run")
            return 0
        if not tier:
            raise ConfigError("override: give --tier (and --reason), or --clear, or --list")
        if not member_exists(store.con, member):
            raise ConfigError(f"no member with id {member!r} in the store (run 'crmsync sync' first?)")
        day: date | None = parse_day(until, option="--until") if until else None
        compiled = _compiled(app)
        with store.transaction() as con:
            lock = set_override(con, member, tier, day, reason or "", actor, tier_names=compiled.tier_names)
    if as_json:
        print_json(_jsonable(lock))
    else:
        console().print(
            f"member {member} locked at {lock.tier}" + (f" until {lock.until}" if lock.until else "") + "; "
            "the next sync pushes it"
        )
    return 0


COMMANDS = [preview, backtest, override]
