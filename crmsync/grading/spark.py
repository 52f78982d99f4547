"""Grading on Apache Spark: the work that grows with the orders runs in Spark, the decisions per member in the store.

The split (``[grading] engine = "spark"``):

- **in Spark**, everything whose cost grows with the order and activity count: reading and checking the lake's rows
  (:mod:`crmsync.grading.lake`) or the pulled ones, matching them to members, converting money, the inputs of the
  grading (orders by status and date), the points ledger's entries and each member's sums, and every per-member
  aggregate (spend, orders, refunds, activities over each window, first and last order). These are the SAME
  statements the embedded engine runs (:meth:`CompiledPolicy.order_level_sql`), translated from DuckDB SQL to Spark
  SQL by SQLGlot (:mod:`crmsync.grading.translate`). Their result is ``_pol_agg``: one row per member.
- **back in the store**, in batches of ``batch_rows`` members (Arrow), so crmsync's memory is bounded by the member
  count, never the order count.
- **in the store**, everything per member, by the very statements of the embedded engine: days since, RFM scores
  (a rank over all members), lifecycle stages, tiers with held tiers, grace periods, maximum drops and locks,
  tier-entry bonuses, tags, reasons; then diff, push, audit and run history as always.

So every grade equals the embedded engine's as long as ``_pol_agg`` does, which the tests check member by member.

Not in Spark (a configuration error names the setting): points that expire (``points.expiry_days``,
``points.expiry``) and spending that may not overdraw (the default, when a policy spends points) need an ``ASOF``
join, a recursive replay and ``UPDATE`` on the ledger; tier ``points_multiplier`` needs the multiplier each entry
first got, kept in a ledger of one row per order. Spark grades every member at each evaluation (no incremental
bookkeeping); a run that decides past days first (:mod:`crmsync.policy.catchup`) runs the order-level statements once
per day decided, over the lake's rows read, checked and matched once per run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from crmsync.connector import Rejection, Stream
from crmsync.errors import ConfigError
from crmsync.grading import lake
from crmsync.grading.session import spark_session
from crmsync.grading.translate import to_spark
from crmsync.report import RejectedItem, RunReport
from crmsync.store import exchange, quarantine
from crmsync.store.db import Connection, scalar
from crmsync.store.matching import MemberMatch
from crmsync.store.staging import ExchangeRates

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from crmsync.policy import GradingMode
    from crmsync.policy.model import Policy
    from crmsync.settings import Settings

log = logging.getLogger("crmsync.grading.spark")
CONNECTOR = "grading.spark"
"""How the quarantine and the report name the lake sources' rejected rows."""
_CANONICAL = {
    Stream.ORDERS: "o.source, o.external_id, o.amount_base, o.refunded_amount_base, o.placed_at, o.status",
    Stream.ACTIVITIES: "o.source, o.external_id, o.kind, o.occurred_at, o.points",
}


def unsupported(policy: Policy) -> list[str]:
    """What of ``policy`` the Spark engine does not grade, one ``policy.key: why`` line each."""
    cfg, out = policy.points, []
    if cfg.expiry_days or cfg.expiry:
        out.append("policy.points: points that expire are graded by the embedded engine only (engine = 'duckdb')")
    spends = cfg.redemption_kinds or cfg.source_points_kinds or any(v < 0 for v in cfg.activities.values())
    if spends and not cfg.allow_negative:
        out.append(
            "policy.points.allow_negative: spending capped at the balance is graded by the embedded engine only "
            "(set allow_negative = true, or engine = 'duckdb')"
        )
    if any(t.points_multiplier != 1 for t in policy.tiers):
        out.append("policy.tiers: points_multiplier is graded by the embedded engine only (engine = 'duckdb')")
    return out


def check(settings: Settings, policy: Policy | None = None) -> None:
    """Fail before anything is pulled when Spark cannot grade this configuration (``policy``: the settings' own).

    Raises:
        ConfigError: PySpark or Java missing, or a policy feature Spark does not grade.
    """
    from crmsync.grading.session import check_installed

    problems = unsupported(policy or settings.policy)
    if problems:
        raise ConfigError("grading.engine = 'spark' cannot grade this policy", problems=problems)
    check_installed(settings.grading.spark)


class SparkGrader:
    """The order-level work of a run's gradings on Spark (see the module's docstring): a context for one run, whose
    :meth:`aggregates` fills ``_pol_agg`` at each evaluation (every day decided, then the evaluation time). The lake
    is read, checked and matched once per run."""

    def __init__(self, settings: Settings, store_path: Path | None, report: RunReport) -> None:
        self.settings, self.cfg, self.report = settings, settings.grading.spark, report
        if self.cfg.staging_path:
            self.staging = Path(self.cfg.staging_path)
        else:
            self.staging = Path(f"{store_path}.spark") if store_path else Path(tempfile.gettempdir()) / "crmsync.spark"
        if not self.staging.is_absolute():
            self.staging = settings.base_dir / self.staging
        self._staged: list[Path] = []
        self._spark: SparkSession | None = None
        self._members = 0

    def __enter__(self) -> SparkGrader:
        check(self.settings)
        return self

    def __exit__(self, *exc: object) -> None:
        for path in self._staged:  # the pulled records' copy: no personal data left beside the store
            path.unlink(missing_ok=True)
        if self._spark is not None:
            self._spark.catalog.clearCache()
            for view in ("orders", "activities", "members", "_pol_members", "_pol_fp"):
                self._spark.catalog.dropTempView(view)

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            with self._timed("session"):
                self._spark = spark_session(self.cfg, self.settings.sync.timezone)
        return self._spark

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        """Seconds of a stage in the report (``extra.spark_s``), summed over the run's evaluations."""
        t = time.perf_counter()
        try:
            yield
        finally:
            spent = self.report.extra.setdefault("spark_s", {})
            spent[stage] = round(spent.get(stage, 0.0) + time.perf_counter() - t, 3)

    def aggregates(self, con: Connection, mode: GradingMode, order_level: Callable[[str], list[str]]) -> None:
        """Fill ``_pol_agg``: its columns from the embedded engine's statements over no member, its rows from Spark
        (see :attr:`crmsync.policy.CompiledPolicy.aggregates`)."""
        con.execute("CREATE OR REPLACE TEMP TABLE _pol_none AS SELECT member_id FROM _pol_members WHERE false")
        for stmt in order_level("_pol_none"):
            con.execute(stmt)
        spark = self.spark
        if not self._members:
            members = con.sql("SELECT member_id FROM _pol_members").to_arrow_table()
            self._members = max(1, members.num_rows)
            spark.createDataFrame(members).createOrReplaceTempView("_pol_members")
            # no input hash: Spark grades every member at every evaluation (the stored metrics are never reused)
            spark.sql(
                "CREATE OR REPLACE TEMPORARY VIEW _pol_fp AS "
                "SELECT member_id, CAST(NULL AS DECIMAL(20,0)) AS fingerprint FROM _pol_members"
            )
            with self._timed("inputs"):  # read, check, quarantine and match the lake's rows (or the pulled ones)
                self._inputs(con, spark)
        if mode.stateful:  # the tier-entry bonuses granted so far: one row per member and tier at most
            table = mode.tables.bonus
            spark.createDataFrame(con.sql(f"SELECT * FROM {table}").to_arrow_table()).createOrReplaceTempView(table)
        for stmt in order_level("_pol_members"):
            spark.sql(to_spark(stmt))
        with self._timed("aggregates"):  # the order-level statements run where their result is read
            self._bring_back(con, spark.table("_pol_agg"), self._members)

    def _inputs(self, con: Connection, spark: SparkSession) -> None:
        """The views ``orders`` and ``activities``: from the lake sources, else the pulled records."""
        sync = self.settings.sync
        match = MemberMatch.configured(sync)
        spark.createDataFrame(exchange.members_for_matching(con, sync.members)).createOrReplaceTempView("members")
        rates = ExchangeRates(sync.base_currency, sync.exchange_rates)
        for stream, src in ((Stream.ORDERS, self.cfg.orders), (Stream.ACTIVITIES, self.cfg.activities)):
            view = str(stream)
            if src is None:
                self._pulled(con, spark, view)
                continue
            key = f"grading.spark.{view}"
            base = self.settings.base_dir
            if stream is Stream.ORDERS:
                rows = lake.orders(spark, src, key, base, rates, sync.base_currency)
            else:
                rows = lake.activities(spark, src, key, base)
            self._quarantine(con, stream, rows.rejects)
            self._match(spark, rows.rows, stream, match)

    def _pulled(self, con: Connection, spark: SparkSession, view: str) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        path = self.staging / f"{view}.parquet"
        exchange.export_parquet(con, view, path)
        self._staged.append(path)
        spark.read.parquet(str(path)).createOrReplaceTempView(view)

    def _match(self, spark: SparkSession, rows: DataFrame, stream: Stream, match: MemberMatch) -> None:
        """The view ``orders`` (``activities``): the lake's good rows with their member; those without one are
        counted as unmatched (kept in the lake, graded once the member appears)."""
        rows.createOrReplaceTempView("_lake_rows")
        joins, pick = match.sql("o")
        matched = spark.sql(
            to_spark(f"SELECT {pick} AS member_id, {_CANONICAL[stream]}, false AS deleted FROM _lake_rows o {joins}")
        )
        matched = matched.persist()  # read by the inputs and the points ledger; counted here
        matched.where("member_id IS NOT NULL").createOrReplaceTempView(str(stream))
        unmatched = matched.where("member_id IS NULL").count()
        if stream is Stream.ORDERS:
            self.report.unmatched_orders += unmatched
        else:
            self.report.unmatched_activities += unmatched

    def _quarantine(self, con: Connection, stream: Stream, rejects: DataFrame) -> None:
        """Quarantine and report the rows a lake source rejected (streamed, not collected at once); entries of rows
        no longer rejected are resolved."""
        run_id = self.report.run_id
        for row in rejects.repartition(1).toLocalIterator():  # one job; the rows stream in
            raw = {"values": row["raw"]} if row["raw"] is not None else None
            rej = Rejection(stream, row["locator"], row["field"], row["reason"], row["record_id"], raw)
            quarantine.add(con, CONNECTOR, rej, run_id)
            self.report.add_rejected(RejectedItem.of(CONNECTOR, str(stream), rej))
        quarantine.resolve_absent(con, CONNECTOR, stream, run_id)

    def _bring_back(self, con: Connection, agg: DataFrame, members: int) -> None:
        """Insert Spark's ``_pol_agg`` into the store's, ``batch_rows`` members at a time."""
        from pyspark.sql import functions as F

        parts = max(1, math.ceil(members / self.cfg.batch_rows))
        if parts > 1:
            agg = agg.withColumn("_part", F.pmod(F.xxhash64("member_id"), F.lit(parts))).persist()
        for i in range(parts):
            batch = agg if parts == 1 else agg.where(F.col("_part") == i).drop("_part")
            con.register("_spark_agg", batch.toArrow())
            try:
                con.execute("INSERT INTO _pol_agg BY NAME SELECT * FROM _spark_agg")
            finally:
                with contextlib.suppress(Exception):
                    con.unregister("_spark_agg")
        if parts > 1:
            agg.unpersist()
        got = scalar(con, "SELECT count(*) FROM _pol_agg")
        log.debug("spark: %s members' aggregates in %d batch(es)", got, parts)
