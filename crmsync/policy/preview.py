"""Preview a policy as of a date and backtest it over history: what a trial run (试运行) reports.

Nothing here writes to the store's tables: grading happens in temporary tables.

- :func:`preview` grades every member with the orders and activities up to ``as_of`` as a sync would (held tiers,
  grace periods and locks apply, the days not decided yet are decided in temporary copies) and compares the result
  with the current ``profiles``.
- :func:`backtest` replays the policy from ``start`` to ``end`` with a simulated tier history decided day by day
  as a sync decides it (grace periods, maximum drops and tier-entry bonuses apply; locks do not), starting from
  nobody holding a tier (or, with ``imported_orders = "tier_at_order"``, from the first order, as the first sync
  does), and reports each period end: a sync run on those dates would have pushed the same tiers.

Both report the figures of :mod:`crmsync.policy.trial` (distributions, transitions, cost, points liability); each
backtest period also has the programme's KPIs (:mod:`crmsync.policy.kpis`). The chart is :mod:`.chart`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from crmsync.policy import catchup
from crmsync.policy.chart import chart_html, write_chart
from crmsync.policy.compiled import CompiledPolicy
from crmsync.policy.kpis import kpis
from crmsync.policy.modes import GradingMode
from crmsync.policy.stages import rank_case
from crmsync.policy.trial import (
    CENT,
    BacktestPeriod,
    Every,
    Figures,
    Kpis,
    PreviewResult,
    cost_periods,
    figures,
    moved,
    shift,
    unit,
)
from crmsync.store.db import Connection

ZONE_UTC = ZoneInfo("UTC")

__all__ = ["BacktestPeriod", "PreviewResult", "backtest", "chart_html", "period_ends", "preview", "write_chart"]


def preview(con: Connection, compiled: CompiledPolicy, as_of: datetime) -> PreviewResult:
    """Grade as of ``as_of`` as a sync would (writing nothing) and compare with the current ``profiles``."""
    out = compiled.run(con, as_of, GradingMode.PREVIEW).graded
    old_rank = rank_case(compiled.tier_names, "p.tier")
    up, down, same, new = con.execute(
        f"""SELECT count(*) FILTER (WHERE p.member_id IS NOT NULL AND g.tier_rank > coalesce({old_rank}, 0)),
                   count(*) FILTER (WHERE p.member_id IS NOT NULL AND g.tier_rank < {old_rank}),
                   count(*) FILTER (WHERE p.member_id IS NOT NULL AND g.tier_rank = {old_rank}),
                   count(*) FILTER (WHERE p.member_id IS NULL)
            FROM {out} g LEFT JOIN profiles p USING (member_id)"""
    ).fetchone()
    pairs = f"SELECT p.tier AS before, g.tier AS now FROM {out} g LEFT JOIN profiles p USING (member_id)"
    fig = figures(con, compiled, out, pairs, None)
    return PreviewResult(
        as_of=as_of.astimezone(compiled.tz),
        policy_version=compiled.version,
        members=sum(fig.distribution.values()),
        distribution=fig.distribution,
        cost_by_tier=fig.cost_by_tier,
        up=up,
        down=down,
        same=same,
        new=new,
        segments=fig.segments,
        lifecycle=fig.lifecycle,
        transitions=fig.transitions,
        points=fig.points,
        cost_unit=unit(compiled),
    )


def period_ends(start: datetime, end: datetime, every: Every = "month", tz: ZoneInfo = ZONE_UTC) -> list[datetime]:
    """Evaluation times from ``start`` to ``end`` inclusive: every N days, week, or calendar month, at the same
    time of day in ``tz`` (the end of a day stays the end of a day across clock changes)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end < start:
        raise ValueError("end is before start")
    start = start.astimezone(tz)  # steps are counted on the calendar of tz, at the same time of day
    out, t = [], start
    while t <= end:
        out.append(t)
        t = shift(start, every, len(out))
    return out


def backtest(
    con: Connection, compiled: CompiledPolicy, start: datetime, end: datetime, every: Every = "month"
) -> list[BacktestPeriod]:
    """Replay the policy day by day with a simulated tier history and report it at each period end; ``up`` and
    ``down`` count the members whose tier rose or fell since the previous period end."""
    mode = GradingMode.BACKTEST
    catchup.create_temp(con, mode.tables)
    con.execute("CREATE OR REPLACE TEMP TABLE _pol_bt_last (member_id VARCHAR, tier VARCHAR)")
    start = start.astimezone(compiled.tz)
    periods = []
    try:
        for i, at in enumerate(period_ends(start, end, every, compiled.tz)):
            since, after = shift(start, every, i - 1), shift(start, every, i + 1)
            out = _evaluate(con, compiled, at, mode)
            moves = dict(con.execute("SELECT move, count(*) FROM _pol_tiers GROUP BY move").fetchall())
            pairs = f"SELECT l.tier AS before, g.tier AS now FROM {out} g LEFT JOIN _pol_bt_last l USING (member_id)"
            fig = figures(con, compiled, out, pairs, since)
            con.execute(f"CREATE OR REPLACE TEMP TABLE _pol_bt_last AS SELECT member_id, tier FROM {out}")
            length = cost_periods(at, after, every, compiled.policy.costs.period)
            k = kpis(con, compiled, out, since, fig.transitions)
            periods.append(_period(compiled, fig, k, at, since, moves, length))
    finally:
        catchup.drop_temp(con, mode.tables, "_pol_bt_last")
    return periods


def _evaluate(con: Connection, compiled: CompiledPolicy, at: datetime, mode: GradingMode) -> str:
    """Decide the days before ``at`` (reusing the stored metrics of the members unchanged), then grade ``at``
    itself with every member's metrics, points and orders derived again (the figures read all of them)."""
    while compiled.decide(con, at, mode, limit=7):
        pass
    return compiled.run(con, at, replace(mode, incremental=False)).graded


def _period(
    compiled: CompiledPolicy,
    fig: Figures,
    k: Kpis,
    at: datetime,
    since: datetime,
    moves: dict[str, int],
    length: Decimal,
) -> BacktestPeriod:
    """A period's figures; ``length``: how many ``costs.period`` last until the next period's end; ``up`` and
    ``down``: the members whose tier rose or fell since the previous period's end."""
    cost = sum(fig.cost_by_tier.values(), Decimal(0))
    _, up, down = moved(compiled, fig.transitions)
    return BacktestPeriod(
        as_of=at,
        distribution=fig.distribution,
        cost=cost,
        up=up,
        down=down,
        moves={k: int(v) for k, v in moves.items()},
        since=since,
        segments=fig.segments,
        lifecycle=fig.lifecycle,
        transitions=fig.transitions,
        cost_by_tier=fig.cost_by_tier,
        period_cost=(cost * length).quantize(CENT),
        cost_unit=unit(compiled),
        points=fig.points,
        kpis=k,
    )
