"""Grading engines: the embedded DuckDB store (the default) or Apache Spark where the orders live.

See :mod:`crmsync.grading.spark` for how the work is split between Spark and the local store. Nothing here imports
PySpark until a Spark grading starts.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from crmsync.grading.settings import GradingSettings, LakeSource, SparkSettings

if TYPE_CHECKING:
    from crmsync.policy import CompiledPolicy, Grading
    from crmsync.report import RunReport
    from crmsync.settings import Settings
    from crmsync.store.db import Connection

__all__ = ["GradingSettings", "LakeSource", "SparkSettings", "check_engine", "grade_members"]


def check_engine(settings: Settings) -> None:
    """Fail before anything is pulled when the configured engine cannot grade (see :func:`spark.check`)."""
    if settings.grading.engine == "spark":
        from crmsync.grading.spark import check

        check(settings)


def grade_members(
    settings: Settings,
    store_path: Path | None,
    report: RunReport,
    con: Connection,
    policy: CompiledPolicy,
    as_of: datetime,
) -> Grading:
    """Grade as a sync does, on the configured engine, into the temporary table ``graded``."""
    if settings.grading.engine == "spark":
        from crmsync.grading.spark import SparkGrader

        return SparkGrader(settings, store_path, report).run(con, policy, as_of)
    from crmsync.policy import GradingMode

    return policy.run(con, as_of, GradingMode.SYNC)
