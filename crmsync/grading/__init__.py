"""Grading engines: the embedded DuckDB store (the default) or Apache Spark where the orders live.

See :mod:`crmsync.grading.spark` for how the work is split between Spark and the local store. Nothing here imports
PySpark until a Spark grading starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from crmsync.grading.settings import GradingSettings, LakeSource, SparkSettings

if TYPE_CHECKING:
    from crmsync.policy import CompiledPolicy, GradingMode
    from crmsync.report import RunReport
    from crmsync.settings import Settings

__all__ = ["GradingSettings", "LakeSource", "SparkSettings", "check_engine", "engine_policy"]


def check_engine(settings: Settings, policy: CompiledPolicy) -> None:
    """Fail before anything is pulled when the configured engine cannot grade ``policy`` (see
    :func:`crmsync.grading.spark.check`)."""
    if settings.grading.engine == "spark":
        from crmsync.grading.spark import check

        check(settings, policy.policy)


@contextmanager
def engine_policy(
    settings: Settings, store_path: Path | None, report: RunReport, policy: CompiledPolicy
) -> Iterator[tuple[CompiledPolicy, GradingMode]]:
    """The policy and mode a sync grades with on the configured engine, for one run: the embedded engine grades
    incrementally; on Spark the order-level work of every evaluation runs there, every member each time."""
    from crmsync.policy import GradingMode

    if settings.grading.engine != "spark":
        yield policy, GradingMode.SYNC
        return
    from crmsync.grading.spark import SparkGrader

    with SparkGrader(settings, store_path, report) as grader:
        yield replace(policy, aggregates=grader.aggregates), GradingMode.SYNC_FULL
