"""Preview a policy as of a past date, backtest it over history, and chart the tier distribution over time.

Nothing here writes to the store's tables: grading happens in temporary tables.

- :func:`preview` grades every member with the orders and activities up to ``as_of`` *without* history (no
  held tiers, no grace periods, no locks: each member gets the tier it qualifies for) and compares the result
  with the current ``profiles``.
- :func:`backtest` replays the policy from ``start`` to ``end`` with a simulated tier history decided day by day
  as a sync decides it (grace periods and maximum drops apply; locks do not), starting from nobody holding a tier
  (or, with ``imported_orders = "tier_at_order"``, from the first order, as the first sync does), and reports the
  distribution at the end of each period: a sync run on those dates would have pushed the same tiers.
"""

from __future__ import annotations

import calendar
import html
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from crmsync.policy import catchup
from crmsync.policy.compiled import CompiledPolicy
from crmsync.policy.modes import GradingMode
from crmsync.policy.stages import rank_case
from crmsync.store.db import Connection

Every = Literal["day", "week", "month"] | int
ZONE_UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class PreviewResult:
    """Tier distribution and benefit cost as of a date, and moves against the current profiles."""

    as_of: datetime
    policy_version: str
    members: int
    distribution: dict[str, int]
    cost_by_tier: dict[str, Decimal]
    up: int = 0
    down: int = 0
    same: int = 0
    new: int = 0

    @property
    def cost(self) -> Decimal:
        return sum(self.cost_by_tier.values(), Decimal(0))


@dataclass(frozen=True)
class BacktestPeriod:
    """One evaluation of a backtest: distribution, cost, and members moved up or down since the last one."""

    as_of: datetime
    distribution: dict[str, int]
    cost: Decimal
    up: int
    down: int
    moves: dict[str, int] = field(default_factory=dict)


def _distribution(con: Connection, compiled: CompiledPolicy, table: str) -> dict[str, int]:
    counts = dict(con.execute(f"SELECT tier, count(*) FROM {table} GROUP BY tier").fetchall())
    return {name: int(counts.get(name, 0)) for name in compiled.tier_names}


def _costs(compiled: CompiledPolicy, distribution: dict[str, int]) -> dict[str, Decimal]:
    cost = {t.name: t.cost or Decimal(0) for t in compiled.policy.tiers}
    return {name: cost[name] * n for name, n in distribution.items()}


def preview(con: Connection, compiled: CompiledPolicy, as_of: datetime) -> PreviewResult:
    """Grade as of ``as_of`` without history and compare with the current ``profiles``."""
    out = compiled.run(con, as_of, GradingMode.PREVIEW).graded
    dist = _distribution(con, compiled, out)
    old_rank = rank_case(compiled.tier_names, "p.tier")
    up, down, same, new = con.execute(
        f"""SELECT count(*) FILTER (WHERE p.member_id IS NOT NULL AND g.tier_rank > coalesce({old_rank}, 0)),
                   count(*) FILTER (WHERE p.member_id IS NOT NULL AND g.tier_rank < {old_rank}),
                   count(*) FILTER (WHERE p.member_id IS NOT NULL AND g.tier_rank = {old_rank}),
                   count(*) FILTER (WHERE p.member_id IS NULL)
            FROM {out} g LEFT JOIN profiles p USING (member_id)"""
    ).fetchone()
    return PreviewResult(
        as_of=as_of.astimezone(compiled.tz),
        policy_version=compiled.version,
        members=sum(dist.values()),
        distribution=dist,
        cost_by_tier=_costs(compiled, dist),
        up=up,
        down=down,
        same=same,
        new=new,
    )


def period_ends(start: datetime, end: datetime, every: Every = "month", tz: ZoneInfo = ZONE_UTC) -> list[datetime]:
    """Evaluation times from ``start`` to ``end`` inclusive: every N days, week, or calendar month, at the same
    time of day in ``tz`` (the end of a day stays the end of a day across clock changes)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end < start:
        raise ValueError("end is before start")
    start = start.astimezone(tz)
    out, i, t = [], 0, start
    while t <= end:
        out.append(t.astimezone(UTC))
        i += 1
        if every == "month":
            month = start.month - 1 + i
            year, month = start.year + month // 12, month % 12 + 1
            # the same day of each month, clamped to the month's last day (Jan 31 -> Feb 28 -> Mar 31)
            day = min(start.day, calendar.monthrange(year, month)[1])
            t = start.replace(year=year, month=month, day=day)
        else:
            step = {"day": 1, "week": 7}.get(every) if isinstance(every, str) else int(every)
            if not step or step <= 0:
                raise ValueError(f"every must be 'day', 'week', 'month' or a positive number of days, not {every!r}")
            t = start + timedelta(days=step * i)
    return out


def backtest(
    con: Connection, compiled: CompiledPolicy, start: datetime, end: datetime, every: Every = "month"
) -> list[BacktestPeriod]:
    """Replay the policy day by day with a simulated tier history and report it at each period end; ``up`` and
    ``down`` count the members whose tier rose or fell since the previous period end."""
    mode = GradingMode.BACKTEST
    catchup.create_temp(con, mode.tables)
    con.execute("CREATE OR REPLACE TEMP TABLE _pol_bt_last (member_id VARCHAR, tier_rank INTEGER)")
    periods = []
    try:
        for at in period_ends(start, end, every, compiled.tz):
            out = compiled.run(con, at, mode).graded
            dist = _distribution(con, compiled, out)
            moves = dict(con.execute("SELECT move, count(*) FROM _pol_tiers GROUP BY move").fetchall())
            up, down = con.execute(
                "SELECT count(*) FILTER (WHERE g.tier_rank > l.tier_rank), "
                f"count(*) FILTER (WHERE g.tier_rank < l.tier_rank) FROM {out} g JOIN _pol_bt_last l USING (member_id)"
            ).fetchone()
            con.execute(f"CREATE OR REPLACE TEMP TABLE _pol_bt_last AS SELECT member_id, tier_rank FROM {out}")
            periods.append(
                BacktestPeriod(
                    as_of=at.astimezone(compiled.tz),
                    distribution=dist,
                    cost=sum(_costs(compiled, dist).values(), Decimal(0)),
                    up=int(up),
                    down=int(down),
                    moves={k: int(v) for k, v in moves.items()},
                )
            )
    finally:
        catchup.drop_temp(con, mode.tables, "_pol_bt_last")
    return periods


_COLORS = ["#b8860b", "#708090", "#cd7f32", "#4682b4", "#2e8b57", "#8b4513", "#6a5acd", "#c71585", "#999999"]


def chart_html(periods: list[BacktestPeriod], tier_names: list[str], title: str = "Tier distribution") -> str:
    """A self-contained HTML page with a stacked bar chart (inline SVG) of the distribution per period."""
    width, height, pad, legend_h = 760, 360, 40, 24
    plot_h = height - 2 * pad - legend_h
    n = max(len(periods), 1)
    bar_w = (width - 2 * pad) / n
    top = max((sum(p.distribution.values()) for p in periods), default=0) or 1
    parts = []
    for i, p in enumerate(periods):
        x = pad + i * bar_w
        y = pad + legend_h + plot_h
        for j, name in reversed(list(enumerate(tier_names))):
            count = p.distribution.get(name, 0)
            h = plot_h * count / top
            y -= h
            color = _COLORS[j % len(_COLORS)]
            label = html.escape(f"{p.as_of.date()} {name}: {count}")
            parts.append(
                f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar_w - 4:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{label}</title></rect>"
            )
        if n <= 24 or i % max(n // 12, 1) == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 8}" font-size="10" text-anchor="middle">'
                f"{p.as_of.strftime('%Y-%m-%d')}</text>"
            )
    for j, name in enumerate(tier_names):
        lx = pad + j * 110
        parts.append(f'<rect x="{lx}" y="{pad - 6}" width="12" height="12" fill="{_COLORS[j % len(_COLORS)]}"/>')
        parts.append(f'<text x="{lx + 16}" y="{pad + 4}" font-size="12">{html.escape(name)}</text>')
    parts.append(f'<text x="{pad}" y="{pad - 16}" font-size="11">members (max {top})</text>')
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{"".join(parts)}</svg>'
    rows = "".join(
        "<tr><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td></tr>".format(
            p.as_of.date(),
            "".join(f"<td>{p.distribution.get(t, 0)}</td>" for t in tier_names),
            p.up,
            p.down,
            p.cost,
        )
        for p in periods
    )
    head = "".join(f"<th>{html.escape(t)}</th>" for t in tier_names)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{svg}<table><tr><th>as of</th>{head}<th>up</th><th>down</th>"
        f"<th>cost</th></tr>{rows}</table></body></html>"
    )


def write_chart(path: str | Path, periods: list[BacktestPeriod], tier_names: list[str], title: str = "") -> Path:
    """Write :func:`chart_html` to ``path`` and return it."""
    out = Path(path)
    out.write_text(chart_html(periods, tier_names, title or "Tier distribution"), encoding="utf-8")
    return out
