"""The ``[grading]`` table: which engine grades, and for Spark where it runs and where the orders live.

::

    [grading]
    engine = "spark"                      # "duckdb" (default): the embedded store grades

    [grading.spark]
    master = "local[*]"                   # or spark://host:7077, yarn, a Databricks cluster through Spark Connect
    conf = { "spark.executor.memory" = "8g" }
    orders = { spark_table = "sales.order_lines", columns = { external_id = "order_id", amount = "line_amount" } }
    activities = { parquet = "s3a://lake/activities/*.parquet" }

Without ``orders`` (``activities``) Spark grades the orders (activities) crmsync pulled, written as Parquet to
``staging_path``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from crmsync import models
from crmsync.models import OrderStatus
from crmsync.redact import register_secret

SECRET_KEY = re.compile(r"secret|password|passwd|token|credential|access\.key|account\.key|\.auth\.", re.IGNORECASE)
"""Spark settings whose values are secrets (cloud storage keys, passwords, tokens)."""
ORDER_FIELDS = tuple(f for f in models.ORDER_FIELDS if f != "updated_at")
"""Canonical order fields a lake source maps (generic_csv's, ``updated_at`` aside: the lake is read whole)."""
ACTIVITY_FIELDS = models.ACTIVITY_FIELDS
OPTIONAL = frozenset({"member_external_id", "member_email", "total", "currency", "exchange_rate", "status"})
OPTIONAL |= {"refunded_amount", "points"}
"""Fields a source may lack: looked up under their canonical name when not mapped, and null when absent. (A
mapped field whose column is missing is an error naming the column.)"""


class LakeSource(BaseModel):
    """Where orders or activities live for Spark: exactly one of ``spark_table``, ``parquet`` or ``delta``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spark_table: str | None = Field(None, description="a table in Spark's catalog, e.g. sales.order_lines")
    parquet: str | None = Field(None, description="a Parquet file, folder or glob (relative to the configuration)")
    delta: str | None = Field(None, description="a Delta table's path (needs the delta-spark package on the cluster)")
    columns: dict[str, str] = Field(default_factory=dict, description="canonical field -> column in the source")
    status_map: dict[str, OrderStatus] = Field(default_factory=dict, description="source status -> canonical")
    default_currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="currency of rows without one")
    date_formats: list[str] = Field(default_factory=list, description="Spark datetime patterns tried after ISO 8601")
    source: str = Field("lake", min_length=1, description="the source name rows carry (points.non_qualifying_sources)")

    @model_validator(mode="after")
    def _one_location(self) -> LakeSource:
        given = [k for k in ("spark_table", "parquet", "delta") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of spark_table, parquet, delta (got {', '.join(given) or 'none'})")
        return self

    @property
    def where(self) -> str:
        """How messages name the source: the table, or the path."""
        return str(self.spark_table or self.parquet or self.delta)


class SparkSettings(BaseModel):
    """``[grading.spark]``: the Spark session and the lake sources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str = Field("local[*]", min_length=1, description="Spark master URL")
    app_name: str = Field("crmsync", min_length=1)
    conf: dict[str, str | int | float | bool | SecretStr] = Field(
        default_factory=dict, description="Spark configuration; values of keys naming a secret are kept as secrets"
    )
    orders: LakeSource | None = None
    activities: LakeSource | None = None
    staging_path: str | None = Field(
        None,
        description="where pulled records are written as Parquet for Spark (default: beside the store)",
    )
    batch_rows: int = Field(500_000, ge=1000, description="member rows brought back from Spark per batch")

    @field_validator("conf")
    @classmethod
    def _secret_conf(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Values of keys such as ``spark.hadoop.fs.s3a.secret.key`` or ``…password`` are secrets: masked in logs,
        reports and reprs (set them through the environment, e.g. ``CRMSYNC_GRADING__SPARK__CONF__…``)."""
        out = {}
        for key, value in v.items():
            if SECRET_KEY.search(key) and not isinstance(value, SecretStr):
                value = SecretStr(str(value))
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())
            out[key] = value
        return out

    def conf_values(self) -> dict[str, str]:
        """``conf`` as Spark takes it: text, ``true``/``false``, secrets revealed."""
        out = {}
        for key, value in self.conf.items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    @field_validator("orders")
    @classmethod
    def _order_columns(cls, v: LakeSource | None) -> LakeSource | None:
        return _known(v, ORDER_FIELDS)

    @field_validator("activities")
    @classmethod
    def _activity_columns(cls, v: LakeSource | None) -> LakeSource | None:
        if v is not None and v.status_map:
            raise ValueError("status_map: activities have no status")
        return _known(v, ACTIVITY_FIELDS)


def _known(v: LakeSource | None, fields: tuple[str, ...]) -> LakeSource | None:
    unknown = sorted(set(v.columns) - set(fields)) if v else []
    if unknown:
        raise ValueError(f"columns: unknown field {', '.join(unknown)} (known: {', '.join(fields)})")
    return v


class GradingSettings(BaseModel):
    """``[grading]``: ``engine = "duckdb"`` (embedded, the default) or ``"spark"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["duckdb", "spark"] = "duckdb"
    spark: SparkSettings = Field(default_factory=SparkSettings)


def lake_streams(grading: GradingSettings) -> list[str]:
    """The streams graded from the lake (none with the embedded engine)."""
    if grading.engine != "spark":
        return []
    return [name for name in ("orders", "activities") if getattr(grading.spark, name) is not None]
