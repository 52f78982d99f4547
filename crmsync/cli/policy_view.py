"""Rich renderings of explanations, previews, backtests and tier locks, for the command line."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table

from crmsync.policy.explain import Explanation
from crmsync.policy.overrides import Override
from crmsync.policy.preview import BacktestPeriod, PreviewResult


def explanation_table(ex: Explanation) -> Group:
    """Grades with their reasons, then the metric values they were computed from."""
    grades = Table(title=f"member {ex.member_id} as of {ex.as_of:%Y-%m-%d %H:%M} (policy {ex.policy_version})")
    grades.add_column("grade")
    grades.add_column("value")
    grades.add_column("why")
    for name, grade in ex.grades.items():
        value = grade.value
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        grades.add_row(name, str(value), grade.reason or "-")
    metrics = Table(title="metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in ex.metrics.items():
        metrics.add_row(name, "-" if value is None else str(value))
    return Group(grades, metrics)


def preview_table(result: PreviewResult) -> Table:
    table = Table(title=f"preview as of {result.as_of:%Y-%m-%d} (policy {result.policy_version})")
    table.add_column("tier")
    table.add_column("members", justify="right")
    table.add_column("cost", justify="right")
    for name, count in result.distribution.items():
        table.add_row(name, str(count), str(result.cost_by_tier.get(name, 0)))
    table.add_row("total", str(result.members), str(result.cost), style="bold")
    table.add_section()
    for label, n in (
        ("moved up", result.up),
        ("moved down", result.down),
        ("unchanged", result.same),
        ("not graded before", result.new),
    ):
        table.add_row(label, str(n), "")
    return table


def backtest_table(periods: Sequence[BacktestPeriod], tier_names: Sequence[str]) -> Table:
    table = Table(title="backtest")
    table.add_column("as of")
    for name in tier_names:
        table.add_column(name, justify="right")
    for col in ("up", "down", "cost"):
        table.add_column(col, justify="right")
    for p in periods:
        table.add_row(
            f"{p.as_of:%Y-%m-%d}",
            *(str(p.distribution.get(n, 0)) for n in tier_names),
            str(p.up),
            str(p.down),
            str(p.cost),
        )
    return table


def overrides_table(rows: Sequence[Override]) -> Table:
    table = Table(title="tier locks")
    for col in ("member", "tier", "until", "reason", "by"):
        table.add_column(col)
    for o in rows:
        table.add_row(o.member_id, o.tier, str(o.until or "-"), o.reason or "", o.actor or "")
    return table
