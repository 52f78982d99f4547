"""Rich renderings of explanations and tier locks, for the command line (trial runs: :mod:`.trial_view`)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.table import Table

from crmsync.policy.explain import Explanation
from crmsync.policy.overrides import Override


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


def overrides_table(rows: Sequence[Override]) -> Table:
    table = Table(title="tier locks")
    for col in ("member", "tier", "until", "reason", "by"):
        table.add_column(col)
    for o in rows:
        table.add_row(o.member_id, o.tier, str(o.until or "-"), o.reason or "", o.actor or "")
    return table
