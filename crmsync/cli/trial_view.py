"""Rich renderings of trial runs: preview, backtest and the programme KPIs (``crmsync report``)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from rich.console import Group
from rich.table import Table

from crmsync.policy.trial import BacktestPeriod, CostUnit, PointsLiability, PreviewResult


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _money(unit: CostUnit) -> str:
    return f"{unit.currency} per {unit.per}"


def transitions_table(matrix: dict[str, dict[str, int]], title: str) -> Table:
    """Rows: the tier before ('(new)': none); columns: the tier after."""
    names = list(next(iter(matrix.values()), {}))
    table = Table(title=title, title_justify="left")
    table.add_column("from \\ to")
    for name in names:
        table.add_column(name, justify="right")
    for before, row in matrix.items():
        if any(row.values()):
            table.add_row(before, *(str(row.get(n, 0)) for n in names))
    return table


def counts_table(title: str, counts: dict[str, int]) -> Table:
    total = sum(counts.values())
    table = Table("", "members", "share", title=title, title_justify="left")
    for name, n in counts.items():
        if n:
            table.add_row(name, str(n), _pct(n, total))
    return table


def points_table(points: PointsLiability, title: str) -> Table:
    table = Table("issued", "redeemed", "expired", "outstanding", title=title, title_justify="left")
    row = [str(points.issued), str(points.redeemed), str(points.expired), str(points.outstanding)]
    if points.value is not None:
        table.add_column("outstanding value", justify="right")
        row.append(str(points.value))
    table.add_row(*row)
    return table


def preview_table(result: PreviewResult) -> Group:
    """Tiers with share and cost, moves, transitions, segments, lifecycle stages and points."""
    table = Table(title=f"preview as of {result.as_of:%Y-%m-%d} (policy {result.policy_version})")
    table.add_column("tier")
    table.add_column("members", justify="right")
    table.add_column("share", justify="right")
    table.add_column(f"cost ({_money(result.cost_unit)})", justify="right")
    for name, count in result.distribution.items():
        table.add_row(name, str(count), _pct(count, result.members), str(result.cost_by_tier.get(name, 0)))
    table.add_row("total", str(result.members), "", str(result.cost), style="bold")
    table.add_section()
    for label, n in (
        ("moved up", result.up),
        ("moved down", result.down),
        ("unchanged", result.same),
        ("not graded before", result.new),
    ):
        table.add_row(label, str(n), "", "")
    return Group(
        table,
        transitions_table(result.transitions, "from the current grades to the preview"),
        counts_table("RFM segments", result.segments),
        counts_table("lifecycle stages", result.lifecycle),
        points_table(result.points, f"points up to {result.as_of:%Y-%m-%d}"),
    )


def backtest_table(periods: Sequence[BacktestPeriod], tier_names: Sequence[str]) -> Group:
    """Per period: members per tier, moves, cost and points; then the transitions summed over the periods."""
    unit = periods[0].cost_unit if periods else CostUnit("", "")
    table = Table(title="backtest")
    table.add_column("as of")
    for name in tier_names:
        table.add_column(name, justify="right")
    for col in ("up", "down", f"cost ({_money(unit)})", "period cost", "points issued", "redeemed", "expired"):
        table.add_column(col, justify="right")
    table.add_column("outstanding", justify="right")
    for p in periods:
        table.add_row(
            f"{p.as_of:%Y-%m-%d}",
            *(f"{p.distribution.get(n, 0)} ({_pct(p.distribution.get(n, 0), p.members)})" for n in tier_names),
            *(str(v) for v in (p.up, p.down, p.cost, p.period_cost)),
            *(str(v) for v in (p.points.issued, p.points.redeemed, p.points.expired, p.points.outstanding)),
        )
    total = sum((p.period_cost or Decimal(0) for p in periods), Decimal(0))
    summed: dict[str, dict[str, int]] = {}
    for p in periods:
        for before, row in p.transitions.items():
            into = summed.setdefault(before, dict.fromkeys(tier_names, 0))
            for now, n in row.items():
                into[now] = into.get(now, 0) + n
    parts = [table, f"benefit cost over the backtest: {total} {unit.currency}"]
    parts.append(transitions_table(summed, "transitions, summed over the periods"))
    if periods:
        last = periods[-1]
        parts += [
            counts_table(f"RFM segments on {last.as_of:%Y-%m-%d}", last.segments),
            counts_table(f"lifecycle stages on {last.as_of:%Y-%m-%d}", last.lifecycle),
        ]
    return Group(*parts)


def kpi_table(periods: Sequence[BacktestPeriod], tier_names: Sequence[str]) -> Group:
    """The programme KPIs per period, then each tier's active share per period."""
    main = Table(title="programme KPIs per period")
    for col in ("period", "members", "buyers", "repurchase", "returning", "orders", "AOV", "upgrades", "downgrades"):
        main.add_column(col, justify="left" if col == "period" else "right")
    shares = Table(title="active share per tier (members with an order in the period)")
    shares.add_column("period")
    for name in tier_names:
        shares.add_column(name, justify="right")
    for p in periods:
        k = p.kpis
        if k is None:
            continue
        span = f"{p.since:%Y-%m-%d} .. {p.as_of:%Y-%m-%d}" if p.since else f"{p.as_of:%Y-%m-%d}"
        main.add_row(
            span,
            str(k.members),
            str(k.buyers),
            _rate(k.repurchase_rate),
            _rate(k.returning_rate),
            str(k.orders),
            "-" if k.aov is None else str(k.aov),
            _rate(k.upgrade_rate),
            _rate(k.downgrade_rate),
        )
        shares.add_row(span, *(_rate(k.by_tier[n].active_share) if n in k.by_tier else "-" for n in tier_names))
    return Group(main, shares)
