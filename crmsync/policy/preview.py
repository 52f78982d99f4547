"""Preview a policy as of a date and backtest it over history: what a trial run (试运行) reports.

Nothing here writes to the store's tables: grading happens in temporary tables.

- :func:`preview` grades every member with the orders and activities up to ``as_of`` as a sync would (held tiers,
  grace periods and locks apply) and compares the result with the current ``profiles``.
- :func:`backtest` replays evaluations at the end of each period from ``start`` to ``end`` with a simulated
  tier history (grace periods and maximum drops apply; locks do not), starting from nobody holding a tier.

Both report the figures of :mod:`crmsync.policy.trial` (distributions, transitions, cost, points liability); each
backtest period also has the programme's KPIs (:mod:`crmsync.policy.kpis`). The chart is :mod:`.chart`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from crmsync.policy.chart import chart_html, write_chart
from crmsync.policy.compiled import CompiledPolicy
from crmsync.policy.ddl import BONUS_TABLE, STATE_TABLE
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
    shift,
    unit,
)
from crmsync.store.db import Connection

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
        as_of=as_of,
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


def period_ends(start: datetime, end: datetime, every: Every = "month") -> list[datetime]:
    """Evaluation times from ``start`` to ``end`` inclusive: every N days, week, or calendar month."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end < start:
        raise ValueError("end is before start")
    out, t = [], start
    while t <= end:
        out.append(t)
        t = shift(start, every, len(out))
    return out


def backtest(
    con: Connection, compiled: CompiledPolicy, start: datetime, end: datetime, every: Every = "month"
) -> list[BacktestPeriod]:
    """Replay the policy at each period end with a simulated tier history."""
    mode = GradingMode.BACKTEST
    state = mode.state_table
    con.execute(f"CREATE OR REPLACE TEMP TABLE {state} AS SELECT * FROM {STATE_TABLE} WHERE false")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {mode.bonus_table} AS SELECT * FROM {BONUS_TABLE} WHERE false")
    ends = period_ends(start, end, every)
    periods = []
    for i, at in enumerate(ends):
        since, after = shift(start, every, i - 1), shift(start, every, i + 1)
        out = compiled.run(con, at, mode).graded
        moves = dict(con.execute("SELECT move, count(*) FROM _pol_tiers GROUP BY move").fetchall())
        fig = figures(con, compiled, out, "SELECT held_tier AS before, tier AS now FROM _pol_tiers", since)
        length = cost_periods(at, after, every, compiled.policy.costs.period)
        periods.append(
            _period(compiled, fig, kpis(con, compiled, out, since, fig.transitions), at, since, moves, length)
        )
    con.execute(f"DROP TABLE IF EXISTS {state}")
    con.execute(f"DROP TABLE IF EXISTS {mode.bonus_table}")
    return periods


def _period(
    compiled: CompiledPolicy,
    fig: Figures,
    k: Kpis,
    at: datetime,
    since: datetime,
    moves: dict[str, int],
    length: Decimal,
) -> BacktestPeriod:
    """A period's figures; ``length``: how many ``costs.period`` last until the next period's end."""
    cost = sum(fig.cost_by_tier.values(), Decimal(0))
    return BacktestPeriod(
        as_of=at,
        distribution=fig.distribution,
        cost=cost,
        up=int(moves.get("up", 0)),
        down=int(moves.get("down", 0)),
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
