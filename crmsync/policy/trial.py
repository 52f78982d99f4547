"""What an evaluation of a trial run shows (``preview`` and ``backtest``): the distributions of tiers, RFM segments
and lifecycle stages, the from→to tier transitions, the benefit cost per tier in its unit, and the points liability.

Every figure is read from the grading's temporary tables (the graded members, ``_pol_tiers`` and ``_pol_ledger``),
in a few aggregate statements: nothing per member comes back to Python.

- Transitions count members by the tier they held before (:data:`NEW` without one) and the tier they have now.
- A tier's cost is its ``cost`` per member per ``costs.period``, times its members, in the base currency.
- Points liability: the points issued (entries that earn), redeemed and expired in an interval, and the points
  outstanding (the sum of every balance) at its end; with ``costs.point_value``, their value in money.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from crmsync.policy.compiled import CompiledPolicy
from crmsync.policy.metrics import ts
from crmsync.policy.points import EARN_KINDS
from crmsync.policy.stages import LIFECYCLE_STAGES, push_values
from crmsync.store.db import Connection

Every = Literal["day", "week", "month"] | int

NEW = "(new)"
"""The 'from' of a member who held no tier before (first evaluation, or a new member)."""
NONE = "(none)"
"""The RFM segment of members without a successful order."""
CENT = Decimal("0.01")

_PERIOD_DAYS = {"day": Decimal(1), "week": Decimal(7), "month": Decimal(365) / 12, "quarter": Decimal(365) / 4}
_PERIOD_DAYS["year"] = Decimal(365)
_PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}


@dataclass(frozen=True)
class CostUnit:
    """The unit of a cost figure: an amount of ``currency`` per member (unit costs) or in all, per ``per``."""

    currency: str
    per: str


@dataclass(frozen=True)
class PointsLiability:
    """Points issued, redeemed and expired in an interval, and outstanding at its end (``value``: in money)."""

    issued: int
    redeemed: int
    expired: int
    outstanding: int
    value: Decimal | None = None


@dataclass(frozen=True)
class Figures:
    """The distributions, transitions, costs and points liability of one evaluation."""

    distribution: dict[str, int]
    segments: dict[str, int]
    lifecycle: dict[str, int]
    transitions: dict[str, dict[str, int]]
    cost_by_tier: dict[str, Decimal]
    points: PointsLiability


@dataclass(frozen=True)
class TierKpis:
    """One tier's members and their orders in the period."""

    members: int
    active: int
    active_share: float | None
    orders: int
    spend: Decimal
    aov: Decimal | None


@dataclass(frozen=True)
class Kpis:
    """The programme's KPIs over one period (see the module's definitions)."""

    members: int
    buyers: int
    repeat_buyers: int
    repurchase_rate: float | None
    returning_buyers: int
    returning_rate: float | None
    orders: int
    spend: Decimal
    aov: Decimal | None
    held: int
    upgraded: int
    downgraded: int
    upgrade_rate: float | None
    downgrade_rate: float | None
    by_tier: dict[str, TierKpis] = field(default_factory=dict)


_NO_POINTS = PointsLiability(0, 0, 0, 0)


@dataclass(frozen=True)
class PreviewResult:
    """Tier distribution and benefit cost as of a date, and moves against the current profiles; the segments,
    lifecycle stages, from→to transitions (from the current profiles) and the points liability up to ``as_of``."""

    as_of: datetime
    policy_version: str
    members: int
    distribution: dict[str, int]
    cost_by_tier: dict[str, Decimal]
    up: int = 0
    down: int = 0
    same: int = 0
    new: int = 0
    segments: dict[str, int] = field(default_factory=dict)
    lifecycle: dict[str, int] = field(default_factory=dict)
    transitions: dict[str, dict[str, int]] = field(default_factory=dict)
    points: PointsLiability = _NO_POINTS
    cost_unit: CostUnit = CostUnit("EUR", "month")

    @property
    def cost(self) -> Decimal:
        return sum(self.cost_by_tier.values(), Decimal(0))


@dataclass(frozen=True)
class BacktestPeriod:
    """One evaluation of a backtest: distribution, cost, and members moved up or down since the last one.

    ``since`` is the previous period's end (for the first period, one step before it): the orders, points and KPIs
    are those of the interval after it. ``cost`` is the run rate (``cost_unit``: per member count at this period's
    end, per ``costs.period``); ``period_cost`` what the tiers decided here cost until the next period's end.
    """

    as_of: datetime
    distribution: dict[str, int]
    cost: Decimal
    up: int
    down: int
    moves: dict[str, int] = field(default_factory=dict)
    since: datetime | None = None
    segments: dict[str, int] = field(default_factory=dict)
    lifecycle: dict[str, int] = field(default_factory=dict)
    transitions: dict[str, dict[str, int]] = field(default_factory=dict)
    cost_by_tier: dict[str, Decimal] = field(default_factory=dict)
    period_cost: Decimal | None = None
    cost_unit: CostUnit = CostUnit("EUR", "month")
    points: PointsLiability = _NO_POINTS
    kpis: Kpis | None = None

    @property
    def members(self) -> int:
        return sum(self.distribution.values())


def shift(start: datetime, every: Every, i: int) -> datetime:
    """``start`` moved by ``i`` steps: every N days, a week, or a calendar month (the same day of the month,
    clamped to the month's last day: Jan 30 -> Feb 28 -> Mar 30; a month's last day stays the last day: Nov 30 ->
    Dec 31 -> Feb 28)."""
    if every == "month":
        month = start.month - 1 + i
        year, month = start.year + month // 12, month % 12 + 1
        last = calendar.monthrange(year, month)[1]
        month_end = start.day == calendar.monthrange(start.year, start.month)[1]
        return start.replace(year=year, month=month, day=last if month_end else min(start.day, last))
    step = {"day": 1, "week": 7}.get(every) if isinstance(every, str) else int(every)
    if not step or step <= 0:
        raise ValueError(f"every must be 'day', 'week', 'month' or a positive number of days, not {every!r}")
    return start + timedelta(days=step * i)


def cost_periods(start: datetime, end: datetime, every: Every, per: str) -> Decimal:
    """How many ``per`` periods (``costs.period``) the interval from ``start`` to ``end`` lasts: whole calendar
    months count exactly against months, quarters and years; otherwise days against days (a month is 365/12)."""
    if every == "month" and per in _PERIOD_MONTHS:
        months = (end.year - start.year) * 12 + end.month - start.month
        return Decimal(months) / _PERIOD_MONTHS[per]
    days = Decimal((end - start).total_seconds()) / 86400
    return days / _PERIOD_DAYS[per]


def unit(compiled: CompiledPolicy) -> CostUnit:
    return CostUnit(compiled.base_currency, compiled.policy.costs.period)


def tier_costs(compiled: CompiledPolicy, distribution: dict[str, int]) -> dict[str, Decimal]:
    """Each tier's benefit cost per ``costs.period``: its members times its ``cost``."""
    cost = {t.name: t.cost or Decimal(0) for t in compiled.policy.tiers}
    return {name: cost[name] * n for name, n in distribution.items()}


def _counts(con: Connection, column: str, table: str, names: tuple[str, ...], null: str | None) -> dict[str, int]:
    counts = {
        null if k is None else k: int(n)
        for k, n in con.execute(f"SELECT {column}, count(*) FROM {table} GROUP BY 1").fetchall()
    }
    keys = [*names, *([null] if null else [])]
    keys += sorted(k for k in counts if k not in keys)  # values the names do not list (a hook's, a plugin's)
    return {k: counts.get(k, 0) for k in keys}


def transitions(con: Connection, compiled: CompiledPolicy, pairs: str) -> dict[str, dict[str, int]]:
    """The from→to matrix of the tier pairs selected by ``pairs`` (``SELECT previous, tier``): rows ``NEW`` (no
    tier before) then each tier, highest first; every tier as a column."""
    names = compiled.tier_names
    matrix = {f: dict.fromkeys(names, 0) for f in [NEW, *names]}
    for before, now, n in con.execute(f"SELECT * , count(*) FROM ({pairs}) GROUP BY ALL").fetchall():
        matrix.setdefault(NEW if before is None else before, dict.fromkeys(names, 0))[now] = int(n)
    return matrix


def moved(compiled: CompiledPolicy, matrix: dict[str, dict[str, int]]) -> tuple[int, int, int]:
    """Members who held a tier before, and of them how many moved up and down (by tier rank)."""
    rank = {name: -i for i, name in enumerate(compiled.tier_names)}
    held = up = down = 0
    for before, row in matrix.items():
        for now, n in row.items():
            if before == NEW or before not in rank:
                continue
            held += n
            up += n if rank[now] > rank[before] else 0
            down += n if rank[now] < rank[before] else 0
    return held, up, down


def liability(con: Connection, compiled: CompiledPolicy, since: datetime | None) -> PointsLiability:
    """Points issued, redeemed and expired after ``since`` (all: ``None``), and outstanding, from the ledger of the
    grading as of the interval's end (``_pol_ledger``: it holds nothing later)."""
    earn = ", ".join(f"'{k}'" for k in EARN_KINDS)
    after = f"occurred_at > {ts(since)}" if since else "true"
    row = con.execute(
        f"""SELECT coalesce(sum(points) FILTER (WHERE kind IN ({earn}) AND {after}), 0),
                   coalesce(-sum(points) FILTER (WHERE kind = 'redemption' AND {after}), 0),
                   coalesce(-sum(points) FILTER (WHERE kind = 'expiry' AND {after}), 0),
                   coalesce(sum(points), 0)
            FROM _pol_ledger"""
    ).fetchone()
    issued, redeemed, expired, outstanding = (int(v) for v in row)
    value = compiled.policy.costs.point_value
    money = (value * outstanding).quantize(CENT) if value is not None else None
    return PointsLiability(issued, redeemed, expired, outstanding, money)


def figures(con: Connection, compiled: CompiledPolicy, graded: str, pairs: str, since: datetime | None) -> Figures:
    """Every figure of the evaluation whose grades are in ``graded`` (``pairs``: see :func:`transitions`)."""
    segments = push_values(compiled.policy)["rfm_segment"]
    dist = _counts(con, "tier", graded, tuple(compiled.tier_names), None)
    return Figures(
        distribution=dist,
        segments=_counts(con, "rfm_segment", graded, segments, NONE),
        lifecycle=_counts(con, "lifecycle", graded, LIFECYCLE_STAGES, None),
        transitions=transitions(con, compiled, pairs),
        cost_by_tier=tier_costs(compiled, dist),
        points=liability(con, compiled, since),
    )
