"""Orders and activities read where they live (a Spark table, Parquet, Delta), mapped and checked in Spark.

The column mapping and the rules are those of the CSV connector (``plugins/generic_csv``): canonical field ->
column, order statuses from :data:`crmsync.DEFAULT_STATUS_MAP` plus ``status_map``, amounts that are decimals below
10^14 with at most 4 decimals, times in ISO 8601 (or ``date_formats``) read in ``sync.timezone`` when they carry no
zone, emails trimmed and lower-cased, the member named by id or email. Orders may be line items: rows are grouped
by order id, line amounts summed (or ``total`` used), and order-level values taken from the lines that have them.

A bad row is rejected with where it is (the file and row of a Parquet or Delta file, else the table and the order
id), the field and why; one bad line rejects its whole order (so a partial sum is never graded). Rejections come
back to crmsync to be quarantined and reported; the rest of the rows are graded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crmsync.errors import ConfigError
from crmsync.grading.settings import ACTIVITY_FIELDS, OPTIONAL, ORDER_FIELDS, LakeSource
from crmsync.models import DEFAULT_STATUS_MAP
from crmsync.policy.expr import sql_string
from crmsync.store.staging import _BAD_REFUND, ExchangeRates

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

NUMBER = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
EMAIL = r"^[^@\\s]+@[^@\\s]+[.][^@\\s]+$"
REMOTE = ("s3://", "s3a://", "s3n://", "gs://", "abfs://", "abfss://", "wasb://", "wasbs://", "hdfs://", "dbfs:/")
REJECT_COLUMNS = "external_id AS record_id, _field AS field, _reason AS reason, to_json(_src) AS raw"
"""A rejection's columns besides its locator, computed for the rejected rows only (the raw values as JSON)."""


@dataclass
class LakeRows:
    """A lake source read and checked: the good rows (canonical columns, the member not yet matched) and the
    rejections (``locator, record_id, field, reason, raw``)."""

    rows: DataFrame
    rejects: DataFrame


def location(path: str, base_dir: Path) -> str:
    """A lake path as Spark reads it: URLs as they are, local paths relative to the configuration's folder."""
    if path.startswith(REMOTE) or "://" in path:
        return path
    return str((base_dir / path).resolve()) if not Path(path).is_absolute() else path


def open_source(spark: SparkSession, src: LakeSource, key: str, base_dir: Path) -> DataFrame:
    """The source's rows with ``_where`` and ``_row`` (file and row, when Spark knows them).

    Raises:
        ConfigError: the table or path does not exist, or Delta is not available.
    """
    from pyspark.errors import AnalysisException

    try:
        if src.spark_table:
            if not spark.catalog.tableExists(src.spark_table):
                raise ConfigError(f"{key}.spark_table: no table {src.spark_table!r} in Spark's catalog")
            df = spark.table(src.spark_table)
        elif src.parquet:
            df = spark.read.parquet(location(src.parquet, base_dir))
        else:
            df = spark.read.format("delta").load(location(str(src.delta), base_dir))
    except AnalysisException as exc:
        raise ConfigError(f"{key}: cannot read {src.where!r}: {_first_line(exc)}") from None
    except Exception as exc:  # a missing Delta package surfaces as a Java ClassNotFoundException
        if src.delta and "delta" in str(exc).lower():
            raise ConfigError(
                f"{key}.delta: Delta tables need the delta-spark package in the Spark session",
                hint='add "spark.jars.packages" = "io.delta:delta-spark_2.13:<version>" and the Delta SQL extension '
                "to grading.spark.conf (on Databricks Delta is built in)",
            ) from None
        raise
    return _with_position(df, src)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _with_position(df: DataFrame, src: LakeSource) -> DataFrame:
    """``df`` with ``_where`` (the file's name, else the source) and ``_row`` (the row in the file, from 1)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        return df.select(
            "*", F.col("_metadata.file_name").alias("_where"), (F.col("_metadata.row_index") + 1).alias("_row")
        )
    except AnalysisException:  # not a file source: name the table
        return df.select("*", F.lit(src.where).alias("_where"), F.lit(None).cast("long").alias("_row"))


def columns(df: DataFrame, src: LakeSource, fields: tuple[str, ...], key: str) -> dict[str, tuple[str, str] | None]:
    """Per canonical field, the source column and its Spark type (``None``: an optional field not there).

    Raises:
        ConfigError: a mapped column, or a required field's column, is not in the source (named).
    """
    have = {f.name.lower(): (f.name, f.dataType.simpleString()) for f in df.schema.fields}
    found: dict[str, tuple[str, str] | None] = {}
    problems = []
    for field in fields:
        name = src.columns.get(field, field)
        if name.lower() in have:
            found[field] = have[name.lower()]
        elif field in src.columns or field not in OPTIONAL:
            problems.append(f"{key}.columns.{field}: no column {name!r} in {src.where} (columns: {_names(have)})")
        else:
            found[field] = None
    if problems:
        raise ConfigError(f"{key}: the lake source lacks columns", problems=problems)
    return found


def _names(have: dict[str, tuple[str, str]]) -> str:
    names = [n for n, _ in have.values() if n not in ("_where", "_row")]
    return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _text(col: tuple[str, str] | None) -> str:
    return f"nullif(trim(CAST({_q(col[0])} AS STRING)), '')" if col else "CAST(NULL AS STRING)"


def _decimal(col: tuple[str, str] | None) -> str:
    """A column read as a decimal (null when it is not a finite number)."""
    if col is None:
        return "CAST(NULL AS DECIMAL(38,10))"
    name, kind = _q(col[0]), col[1]
    if kind == "string":
        return f"CASE WHEN trim({name}) RLIKE '{NUMBER}' THEN try_cast(trim({name}) AS DECIMAL(38,10)) END"
    if kind in ("double", "float"):
        finite = f"NOT isnan({name}) AND abs({name}) <> double('infinity')"
        return f"CASE WHEN {finite} THEN try_cast({name} AS DECIMAL(38,10)) END"
    return f"try_cast({name} AS DECIMAL(38,10))"


def _time(col: tuple[str, str] | None, formats: list[str]) -> str:
    """A column read as an instant (naive values in the session's time zone, ``sync.timezone``)."""
    if col is None:
        return "CAST(NULL AS TIMESTAMP)"
    name, kind = _q(col[0]), col[1]
    if kind in ("timestamp", "timestamp_ntz", "date"):
        return f"CAST({name} AS TIMESTAMP)"
    if kind != "string":
        return "CAST(NULL AS TIMESTAMP)"
    parsed = [f"try_cast(trim({name}) AS TIMESTAMP)"]
    parsed += [f"try_to_timestamp(trim({name}), {sql_string(f)})" for f in formats]
    return f"coalesce({', '.join(parsed)})"


def _quoted(text: str) -> str:
    """SQL quoting a value for a message, as the CSV connector does."""
    return f"'''' || {text} || ''''"


def _money_problem(value: str, text: str, what: str) -> list[tuple[str, str]]:
    """(condition, reason) pairs of a money value ``value`` read from ``text``."""
    return [
        (f"{text} IS NOT NULL AND {value} IS NULL", f"'not {what}: ' || {_quoted(text)}"),
        (f"abs({value}) >= 1e14", f"'out of range (at most 10^14): ' || {_quoted(text)}"),
        (f"{value} <> round({value}, 4)", f"'more than 4 decimals: ' || {_quoted(text)}"),
    ]


def _status_case(src: LakeSource) -> str:
    statuses = {**{k.lower(): v.value for k, v in DEFAULT_STATUS_MAP.items()}}
    statuses.update({k.strip().lower(): v.value for k, v in src.status_map.items()})
    whens = " ".join(f"WHEN {sql_string(k)} THEN {sql_string(v)}" for k, v in sorted(statuses.items()))
    return f"CASE WHEN _status_text IS NULL THEN 'paid' ELSE CASE lower(_status_text) {whens} END END"


def _problems_sql(rules: list[tuple[str, str, str]]) -> str:
    """``_field`` and ``_reason`` of the first rule ``(condition, field, reason)`` that holds (null: none)."""
    field = " ".join(f"WHEN {c} THEN {sql_string(f)}" for c, f, _ in rules)
    reason = " ".join(f"WHEN {c} THEN {r}" for c, _, r in rules)
    return f"CASE {field} END AS _field, CASE {reason} END AS _reason"


def _src(cols: dict[str, tuple[str, str] | None]) -> str:
    """The row's source values, kept as a struct (made into JSON for rejected rows only)."""
    pairs = ", ".join(f"{sql_string(c[0])}, {_q(c[0])}" for c in cols.values() if c)
    return f"named_struct({pairs})"


def _locator() -> str:
    return "CASE WHEN _row IS NULL THEN _where || coalesce(' id ' || external_id, '') ELSE _where || ':' || _row END"


def _reject_rows(df: DataFrame) -> DataFrame:
    return df.where("_field IS NOT NULL").selectExpr(f"{_locator()} AS locator", *REJECT_COLUMNS.split(", "))


def orders(
    spark: SparkSession, src: LakeSource, key: str, base_dir: Path, rates: ExchangeRates, base_currency: str
) -> LakeRows:
    """The orders of a lake source, one per order id, checked; ``amount_base`` and ``refunded_amount_base`` in the
    base currency (as the store converts them)."""
    df = open_source(spark, src, key, base_dir)
    cols = columns(df, src, ORDER_FIELDS, key)
    df.createOrReplaceTempView("_lake_orders_src")
    lines = spark.sql(_order_lines_sql(cols, src))
    lines.createOrReplaceTempView("_lake_order_lines")
    grouped = spark.sql(_order_group_sql(cols, src, rates, base_currency)).persist()  # checked, rejected, graded
    grouped.createOrReplaceTempView("_lake_orders_checked")
    good = spark.sql(
        "SELECT member_external_id, member_email, external_id, placed_at, status, amount_base, refunded_amount_base, "
        f"{sql_string(src.source)} AS source FROM _lake_orders_checked WHERE _field IS NULL AND NOT _bad_lines"
    )
    bad = _reject_rows(lines).unionByName(_reject_rows(grouped.where("NOT _bad_lines")))
    return LakeRows(good, bad)


def _order_lines_sql(cols: dict[str, tuple[str, str] | None], src: LakeSource) -> str:
    """Each line read and checked: ``_field`` and ``_reason`` of its first problem."""
    c = cols
    read = f"""SELECT _where, _row, {_src(c)} AS _src,
  {_text(c["external_id"])} AS external_id, {_text(c["member_external_id"])} AS member_external_id,
  lower({_text(c["member_email"])}) AS member_email,
  {_text(c["placed_at"])} AS _placed_text, {_time(c["placed_at"], src.date_formats)} AS placed_at,
  {_text(c["amount"])} AS _amount_text, {_decimal(c["amount"])} AS amount,
  {_text(c["total"])} AS _total_text, {_decimal(c["total"])} AS total,
  upper({_text(c["currency"])}) AS currency,
  {_text(c["exchange_rate"])} AS _rate_text, {_decimal(c["exchange_rate"])} AS exchange_rate,
  {_text(c["status"])} AS _status_text,
  {_text(c["refunded_amount"])} AS _refunded_text, {_decimal(c["refunded_amount"])} AS refunded_amount
FROM _lake_orders_src"""
    rules = [("external_id IS NULL", "external_id", "'missing id'")]
    if c["total"] is None:
        rules.append(("_amount_text IS NULL", "amount", "'missing'"))
    rules += [(w, "amount", r) for w, r in _money_problem("amount", "_amount_text", "an amount")]
    rules += [(w, "total", r) for w, r in _money_problem("total", "_total_text", "an amount")]
    rules += [
        ("_placed_text IS NOT NULL AND placed_at IS NULL", "placed_at",
         f"'not a date/time: ' || {_quoted('_placed_text')}"),
        (f"member_email IS NOT NULL AND NOT member_email RLIKE '{EMAIL}'", "member_email",
         "'not an email address: (value hidden)'"),
        ("currency IS NOT NULL AND NOT currency RLIKE '^[A-Z]{3}$'", "currency",
         f"'not a currency code: ' || {_quoted('currency')}"),
        ("_rate_text IS NOT NULL AND (exchange_rate IS NULL OR exchange_rate <= 0)", "exchange_rate",
         f"'not a positive rate: ' || {_quoted('_rate_text')}"),
        ("status IS NULL", "status", f"'unknown status ' || {_quoted('_status_text')} || ' (map it with status_map)'"),
    ]  # fmt: skip
    rules += [(w, "refunded_amount", r) for w, r in _money_problem("refunded_amount", "_refunded_text", "an amount")]
    checked = f"SELECT *, {_status_case(src)} AS status FROM ({read})"
    return f"SELECT *, {_problems_sql(rules)} FROM ({checked})"


_ORDER_LEVEL = (
    "member_external_id",
    "member_email",
    "placed_at",
    "currency",
    "exchange_rate",
    "total",
    "refunded_amount",
)


def _in_base(column: str) -> str:
    """An amount in the base currency, rounded half to even to 4 places as the store converts it (null: out of
    range). ``_rate`` is the order's rate (:meth:`ExchangeRates.rate_sql`)."""
    return f"try_cast(bround(try_cast({column} AS DECIMAL(18,4)) * _rate, 4) AS DECIMAL(18,4))"


def _order_group_sql(
    cols: dict[str, tuple[str, str] | None], src: LakeSource, rates: ExchangeRates, base_currency: str
) -> str:
    """One row per order id: order-level values from the lines that have them, amounts summed, the order checked."""
    level = [f"min({f}) AS {f}, min({f}) <> max({f}) AS _n_{f}" for f in _ORDER_LEVEL]  # not count(DISTINCT): no Expand
    given = "FILTER (WHERE _status_text IS NOT NULL)"
    level.append(f"min(status) {given} AS _status, min(status) {given} <> max(status) {given} AS _n_status")
    grouped = (
        "SELECT external_id, min(_where) AS _where, min(_row) AS _row, min_by(_src, _row) AS _src, "
        f"bool_or(_field IS NOT NULL) AS _bad_lines, try_sum(amount) AS _line_sum, {', '.join(level)} "
        "FROM _lake_order_lines WHERE external_id IS NOT NULL GROUP BY external_id"
    )
    default = sql_string(src.default_currency or base_currency)
    rate = rates.rate_sql("exchange_rate")
    valued = (
        f"SELECT *, {_in_base('amount')} AS amount_base, {_in_base('refunded_amount')} AS refunded_amount_base "
        f"FROM (SELECT *, {rate} AS _rate FROM (SELECT * EXCEPT (currency, exchange_rate, _status), "
        f"coalesce(currency, {default}) AS currency, try_cast(exchange_rate AS DECIMAL(18,8)) AS exchange_rate, "
        "coalesce(_status, 'paid') AS status, coalesce(total, _line_sum) AS amount FROM grouped))"
    )
    rules = [(f"_n_{f}", f, "'the lines of the order disagree'") for f in (*_ORDER_LEVEL, "status")]
    rules += [
        ("placed_at IS NULL", "placed_at", "'missing'"),
        ("member_external_id IS NULL AND member_email IS NULL", "member_external_id", "'no member id or email'"),
        ("_rate IS NULL", "currency", f"'no exchange rate from ' || currency || ' to {base_currency} "
         "(add sync.exchange_rates.' || currency || ')'"),
        ("amount_base IS NULL", "amount", f"amount || ' ' || currency || ' is out of range in {base_currency}'"),
        (_BAD_REFUND, "refunded_amount",
         "'refunded ' || refunded_amount || ' ' || currency || ' is not between 0 and the order''s amount ' || amount"),
    ]  # fmt: skip
    return f"WITH grouped AS ({grouped}) SELECT *, {_problems_sql(rules)} FROM ({valued})"


def activities(spark: SparkSession, src: LakeSource, key: str, base_dir: Path) -> LakeRows:
    """The activities of a lake source, checked; of several rows with one id the first (by file and row) is read,
    the others are rejected."""
    df = open_source(spark, src, key, base_dir)
    c = columns(df, src, ACTIVITY_FIELDS, key)
    df.createOrReplaceTempView("_lake_activities_src")
    read = f"""SELECT _where, _row, {_src(c)} AS _src,
  {_text(c["external_id"])} AS external_id, {_text(c["member_external_id"])} AS member_external_id,
  lower({_text(c["member_email"])}) AS member_email, {_text(c["kind"])} AS kind,
  {_text(c["occurred_at"])} AS _at_text, {_time(c["occurred_at"], src.date_formats)} AS occurred_at,
  {_text(c["points"])} AS _points_text, {_decimal(c["points"])} AS points
FROM _lake_activities_src"""
    ranked = f"SELECT *, row_number() OVER (PARTITION BY external_id ORDER BY _where, _row) AS _nth FROM ({read})"
    rules = [
        ("external_id IS NULL", "external_id", "'missing id'"),
        ("_nth > 1", "external_id", "'a repeated id (the first row with it is read)'"),
        ("kind IS NULL", "kind", "'missing'"),
        ("_at_text IS NULL", "occurred_at", "'missing'"),
        ("occurred_at IS NULL", "occurred_at", f"'not a date/time: ' || {_quoted('_at_text')}"),
        ("member_external_id IS NULL AND member_email IS NULL", "member_external_id", "'no member id or email'"),
        (f"member_email IS NOT NULL AND NOT member_email RLIKE '{EMAIL}'", "member_email",
         "'not an email address: (value hidden)'"),
        *((w, "points", r) for w, r in _money_problem("points", "_points_text", "a number")),
    ]  # fmt: skip
    checked = spark.sql(f"SELECT *, {_problems_sql(rules)} FROM ({ranked})")
    good = checked.where("_field IS NULL").selectExpr(
        "member_external_id", "member_email", "external_id", "kind", "occurred_at",
        "CAST(points AS DECIMAL(18,4)) AS points", f"{sql_string(src.source)} AS source",
    )  # fmt: skip
    return LakeRows(good, _reject_rows(checked))
