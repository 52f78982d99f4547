"""What a person sees when Spark cannot grade: one ``error:`` line naming what is missing, a ``hint:`` line with
the fix, exit code 2, no traceback. Java or PySpark missing, a policy Spark does not grade, a lake table, path or
column that is not there."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crmsync.cli import main
from tests.grading.spark_support import MEMBERS_ONLY

pytestmark = pytest.mark.spark

CONFIG = """
[grading.spark]
conf = {{ "spark.sql.shuffle.partitions" = "2" }}
{lake}

[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 100"

[[policy.tiers]]
name = "Bronze"
{policy}
"""


def setup(tmp_path: Path, lake: str = "", policy: str = "") -> Path:
    (tmp_path / "customers.csv").write_text("customer_id,email\nC1,a@example.com\n", encoding="utf-8")
    path = tmp_path / "crmsync.toml"
    path.write_text(MEMBERS_ONLY + CONFIG.format(lake=lake, policy=policy), encoding="utf-8")
    return path


def sync(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit code and what the sync wrote to stderr (the report on stdout repeats the error)."""
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), "sync", "--as-of", "2026-11-01T00:00:00+00:00"])
    return int(info.value.code or 0), capsys.readouterr().err


def assert_one_error(text: str, *parts: str) -> None:
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    for part in parts:
        assert part in text, text


@pytest.mark.parametrize("where", ["JAVA_HOME without java", "no java on PATH"])
def test_without_java_the_sync_stops_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "JAVA_HOME without java":
        monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    else:
        monkeypatch.delenv("JAVA_HOME", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))
    code, text = sync(setup(tmp_path), capsys)
    assert code == 2
    assert_one_error(text, "needs Java", "hint: install Java 17")
    assert not (tmp_path / "out" / "profiles.csv").exists()  # stopped before anything was pulled or pushed


def test_without_pyspark_the_sync_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else real(name, *a))
    code, text = sync(setup(tmp_path), capsys)
    assert code == 2
    assert_one_error(text, "needs PySpark", 'hint: pip install "crmsync[spark]"')


@pytest.mark.parametrize(
    ("points", "named"),
    [
        ('expiry_days = 365\nper_currency_unit = "1"', "points that expire"),
        ('redemption_kinds = ["redeem"]', "policy.points.allow_negative"),
        ("", "points_multiplier"),
    ],
)
def test_a_policy_spark_does_not_grade_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], points: str, named: str
) -> None:
    policy = f"[policy.points]\n{points}\n"
    config = setup(tmp_path, policy=policy)
    if not points:
        text = config.read_text(encoding="utf-8").replace('name = "Gold"', 'name = "Gold"\npoints_multiplier = "2"')
        config.write_text(text, encoding="utf-8")
    code, text = sync(config, capsys)
    assert code == 2
    assert_one_error(text, "cannot grade this policy", named)


def test_a_table_missing_in_the_lake_is_named(spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, lake='orders = { spark_table = "sales.order_lines_missing" }')
    code, text = sync(config, capsys)
    assert code == 2
    assert_one_error(text, "grading.spark.orders.spark_table", "sales.order_lines_missing")


def test_a_path_missing_in_the_lake_is_named(spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, lake='orders = { parquet = "lake/nothing-here/*.parquet" }')
    code, text = sync(config, capsys)
    assert code == 2
    assert_one_error(text, "grading.spark.orders", "lake/nothing-here/*.parquet")


@pytest.mark.parametrize("missing", ["line_amount", "order_date"])
def test_a_column_missing_in_the_lake_is_named(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    columns = {"order_id": ["O1"], "customer_id": ["C1"], "order_date": ["2026-01-01"], "line_amount": ["10"]}
    del columns[missing]
    pq.write_table(pa.table(columns), tmp_path / "orders.parquet")
    mapping = 'columns = { external_id = "order_id", member_external_id = "customer_id", placed_at = "order_date", '
    mapping += 'amount = "line_amount" }'
    config = setup(tmp_path, lake=f'orders = {{ parquet = "orders.parquet", {mapping} }}')
    code, text = sync(config, capsys)
    assert code == 2
    assert_one_error(text, f"no column '{missing}' in orders.parquet")


@pytest.mark.parametrize("command", [["explain", "C1"], ["preview"], ["export", "out.csv"], ["report"]])
def test_commands_that_grade_the_store_refuse_orders_that_live_in_the_lake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    config = setup(tmp_path, lake='orders = { spark_table = "sales.order_lines" }')
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), "sync", "--as-of", "2026-11-01T00:00:00+00:00"])
    capsys.readouterr()
    assert info.value.code == 2  # no such table here: nothing graded, but the store exists
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), *command])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert_one_error(err, "grades the orders in the store, and grading.spark reads them from the lake", "hint:")
