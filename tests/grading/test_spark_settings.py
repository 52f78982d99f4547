"""The ``[grading]`` settings and the translation of statements, without a Spark session: secrets in Spark's
settings are masked, a lake source is named once and maps known fields only, and statements Spark cannot run are
refused rather than translated into something else."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from crmsync.grading.settings import GradingSettings, SparkSettings, lake_streams
from crmsync.grading.translate import UnsupportedStatement, to_spark
from crmsync.policy import GradingMode, Policy, compile_policy
from crmsync.policy.balance import no_overdraft_sql
from crmsync.redact import redact_text

SECRET = "s3cr3t-VALUE-42"


@pytest.mark.parametrize(
    "key",
    [
        "spark.hadoop.fs.s3a.secret.key",
        "spark.hadoop.fs.s3a.access.key",
        "spark.hadoop.fs.azure.account.key.lake.dfs.core.windows.net",
        "spark.hadoop.javax.jdo.option.ConnectionPassword",
        "spark.databricks.token",
        "spark.hadoop.google.cloud.auth.service.account.json.keyfile",
    ],
)
def test_secret_settings_of_spark_are_masked(key: str) -> None:
    cfg = SparkSettings(conf={key: SECRET, "spark.executor.memory": "8g"})
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.model_dump())
    assert cfg.conf_values() == {key: SECRET, "spark.executor.memory": "8g"}  # Spark itself gets the value
    logged = redact_text(f"conf {cfg.conf_values()}")  # what every log record goes through
    assert SECRET not in logged and "***" in logged and "8g" in logged


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ({}, "exactly one of spark_table, parquet, delta (got none)"),
        ({"spark_table": "a.b", "parquet": "x"}, "got spark_table, parquet"),
        ({"parquet": "x", "columns": {"amount": "a", "price": "p"}}, "unknown field price"),
        ({"parquet": "x", "default_currency": "euro"}, "default_currency"),
    ],
)
def test_a_lake_source_is_checked_with_its_key(source: dict, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        GradingSettings.model_validate({"engine": "spark", "spark": {"orders": source}})
    assert words in str(info.value) and "orders" in str(info.value)


def test_activities_have_no_status_map_and_lake_streams_follow_the_engine() -> None:
    with pytest.raises(ValidationError, match="activities have no status"):
        SparkSettings.model_validate({"activities": {"parquet": "x", "status_map": {"ok": "paid"}}})
    both = {"orders": {"parquet": "o"}, "activities": {"spark_table": "a"}}
    assert lake_streams(GradingSettings.model_validate({"engine": "spark", "spark": both})) == ["orders", "activities"]
    assert lake_streams(GradingSettings.model_validate({"engine": "duckdb", "spark": both})) == []
    assert lake_streams(GradingSettings.model_validate({"engine": "spark"})) == []


BENCH = tomllib.loads((Path(__file__).parents[2] / "bench" / "policy.toml").read_text(encoding="utf-8"))["policy"]


@pytest.mark.parametrize("windows", [[365], [7, 30, 90, 365, 730]])
def test_every_order_level_statement_translates_and_tables_become_views(windows: list[int]) -> None:
    policy = compile_policy(Policy.model_validate({**BENCH, "metrics": {"windows": windows}}))
    mode = GradingMode.SYNC_FULL
    for stmt in policy.order_level_sql(datetime(2026, 11, 1, tzinfo=UTC), mode, "_pol_members"):
        spark = to_spark(stmt)
        assert spark.startswith("CREATE OR REPLACE TEMPORARY VIEW"), spark[:60]
        assert "TEMP TABLE" not in spark and "UBIGINT" not in spark and "round_even" not in spark.lower()
        assert "AVG(" not in spark.upper()  # averages are rewritten as DuckDB computes them


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO _pol_ledger SELECT * FROM x",
        "UPDATE _pol_stage SET points = 1",
        "DELETE FROM _pol_ledger WHERE kind = 'expiry'",
        "SELECT * FROM lots l ASOF LEFT JOIN red r ON l.member_id = r.member_id AND l.expires_at > r.occurred_at",
        *no_overdraft_sql("TIMESTAMPTZ '2026-01-01 00:00:00+00:00'")[3:],
    ],
)
def test_statements_spark_cannot_run_are_refused(statement: str) -> None:
    with pytest.raises(UnsupportedStatement):
        to_spark(statement)
