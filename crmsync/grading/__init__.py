"""Grading engines: the embedded DuckDB store (the default) or Apache Spark where the orders live.

See :mod:`crmsync.grading.spark` for how the work is split between Spark and the local store. Nothing here imports
PySpark until a Spark grading starts.
"""

from crmsync.grading.settings import GradingSettings, LakeSource, SparkSettings

__all__ = ["GradingSettings", "LakeSource", "SparkSettings"]
