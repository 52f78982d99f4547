"""The order-level step on both engines: the policy's statements up to ``_pol_agg`` (inputs, points ledger, every
member's aggregates), run by DuckDB as compiled and by Spark as translated, give the same row for every member.

A family of random worlds (statuses, partial refunds, orders of no member and deleted ones, rows exactly on a
window's edge and after the evaluation time, activities that earn, spend or report their own points, granted
bonuses) against policies that read every family of metrics."""

from __future__ import annotations

import random
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from crmsync.grading.spark import unsupported
from crmsync.grading.translate import to_spark
from crmsync.policy import GradingMode, Policy, compile_policy
from crmsync.policy import metrics as M
from crmsync.policy.ddl import BONUS_TABLE
from crmsync.store.exchange import GRADED_COLUMNS
from tests.policy.policy_support import connect

pytestmark = pytest.mark.spark

NOW = datetime(2026, 3, 31, 12, tzinfo=UTC)
BENCH = tomllib.loads((Path(__file__).parents[2] / "bench" / "policy.toml").read_text(encoding="utf-8"))["policy"]
RICH: dict[str, Any] = {
    "metrics": {"order_statuses": ["paid", "pending"], "windows": [30, 90, 365]},
    "tiers": [
        {"name": "Gold", "condition": "spend_net_90d >= 300 and qualifying_points_365d >= 100", "entry_bonus": 50},
        {"name": "Silver", "condition": "aov_365d >= 40 or activity_review_30d >= 1 or points_earned_90d > 80"},
        {"name": "Club", "condition": "refunded_amount_lifetime > 0 or refunds_365d >= 1 or orders_30d >= 1"},
        {"name": "Base"},
    ],
    "points": {
        "per_currency_unit": "0.5",
        "rounding": "half_even",
        "activities": {"review": "20", "referral": "-5"},
        "redemption_kinds": ["redeem"],
        "source_points_kinds": ["bonuspts"],
        "allow_negative": True,
        "non_qualifying_sources": ["pos"],
        "non_qualifying_kinds": ["bonuspts"],
        "qualifying_multiplier": True,
    },
    "rfm": {"window_days": 365, "monetary": "spend_net"},
}
PERIODS: dict[str, Any] = {
    "qualification": {"period": "calendar_month"},
    "tiers": [
        {"name": "Gold", "condition": "spend_this_period >= 500", "keep_condition": "spend_last_period >= 300"},
        {"name": "Silver", "condition": "orders_last_period >= 2 or activity_review_this_period >= 1"},
        {"name": "Base"},
    ],
    "points": {"per_currency_unit": "1", "activities": {"review": "20"}},
}
POLICIES = {"bench": BENCH, "rich": RICH, "periods": PERIODS}


def world(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """Random members, orders, activities and granted bonuses in ``con``'s store tables."""
    rng = random.Random(seed)
    members = [f"m{i}" for i in range(40)]
    for i, m in enumerate(members):
        con.execute(
            "INSERT INTO members (source, external_id, created_at, updated_at, deleted) VALUES ('crm', ?, ?, ?, ?)",
            [m, NOW - timedelta(days=900), NOW - timedelta(days=900), i == 7],
        )
    edges = [timedelta(days=d) for d in (30, 90, 365)]
    for n in range(400):
        back = rng.choice(edges) if rng.random() < 0.1 else timedelta(seconds=rng.randrange(-40 * 86400, 800 * 86400))
        amount = Decimal(rng.randrange(-2000, 400_000)) / Decimal(10 ** rng.randrange(0, 5))
        status = rng.choice(["paid"] * 6 + ["refunded", "cancelled", "pending"])
        refund = amount * Decimal(rng.choice([0, 1, 3])) / 4 if status == "paid" and amount > 0 else None
        con.execute(
            "INSERT INTO orders (source, external_id, member_id, placed_at, amount, currency, amount_base, status, "
            "deleted, refunded_amount, refunded_amount_base) VALUES (?, ?, ?, ?, ?, 'EUR', ?, ?, ?, ?, ?)",
            [rng.choice(["shop", "pos"]), f"o{n}", rng.choice([*members, None, "stranger"]), NOW - back, amount,
             round(amount, 4), status, rng.random() < 0.05, refund, None if refund is None else round(refund, 4)],
        )  # fmt: skip
    for n in range(250):
        kind = rng.choice(["review", "referral", "login", "redeem", "bonuspts"])
        points = Decimal(rng.randrange(-30, 120)) if kind in ("redeem", "bonuspts") else None
        back = timedelta(seconds=rng.randrange(-20 * 86400, 400 * 86400))
        con.execute(
            "INSERT INTO activities (source, external_id, member_id, kind, occurred_at, points, deleted) "
            "VALUES ('crm', ?, ?, ?, ?, ?, false)",
            [f"a{n}", rng.choice(members), kind, NOW - back, points],
        )
    for m in rng.sample(members, 6):
        when = NOW - timedelta(days=rng.randrange(-5, 200))
        con.execute(f"INSERT INTO {BONUS_TABLE} VALUES (?, 'Gold', ?, ?, 50)", [m, f"bonus:Gold:{m}", when])


def both(
    spark: Any, con: duckdb.DuckDBPyConnection, data: dict[str, Any], orders: str = "orders", sync: bool = True
) -> None:
    """``_pol_agg`` from DuckDB, and from Spark (reading ``orders`` as the orders) into ``_spark_agg``: as a sync
    computes it (with the next dated inputs, no input hash on Spark), or as ``explain`` does."""
    policy = compile_policy(Policy.model_validate(data))
    assert unsupported(policy.policy) == []
    mode = GradingMode.SYNC_FULL if sync else GradingMode.EXPLAIN
    con.execute(M.members_sql())
    con.execute(M.fingerprint_sql())
    spark.createDataFrame(con.sql("SELECT member_id FROM _pol_members").to_arrow_table()).createOrReplaceTempView(
        "_pol_members"
    )
    spark.sql("CREATE OR REPLACE TEMPORARY VIEW _pol_fp AS SELECT member_id, NULL AS fingerprint FROM _pol_members")
    for view, table in (("orders", orders), ("activities", "activities")):
        arrow = con.sql(f"SELECT {GRADED_COLUMNS[view]} FROM {table}").to_arrow_table()
        spark.createDataFrame(arrow).createOrReplaceTempView(view)
    spark.createDataFrame(con.sql(f"SELECT * FROM {BONUS_TABLE}").to_arrow_table()).createOrReplaceTempView(BONUS_TABLE)
    for stmt in policy.order_level_sql(NOW, mode, "_pol_members"):
        con.execute(stmt)
        spark.sql(to_spark(stmt))
    con.execute("CREATE OR REPLACE TEMP TABLE _spark_agg AS SELECT * FROM _pol_agg WHERE false")
    got = spark.table("_pol_agg").toArrow()  # noqa: F841  (read by DuckDB below)
    con.execute("INSERT INTO _spark_agg BY NAME SELECT * FROM got")
    for table in ("_pol_agg", "_spark_agg"):  # the input hash is the embedded engine's bookkeeping
        con.execute(f"ALTER TABLE {table} DROP COLUMN fingerprint")


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0])  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize(("seed", "sync"), [(1, True), (2, False)])
def test_every_members_aggregates_are_equal_on_both_engines(spark: Any, name: str, seed: int, sync: bool) -> None:
    con = connect()
    world(con, seed)
    both(spark, con, POLICIES[name], sync=sync)
    assert count(con, "SELECT * FROM _pol_agg EXCEPT ALL SELECT * FROM _spark_agg") == 0
    assert count(con, "SELECT * FROM _spark_agg EXCEPT ALL SELECT * FROM _pol_agg") == 0
    assert count(con, "SELECT * FROM _spark_agg") == 39  # every member but the deleted one
    spent, points = con.execute("SELECT sum(spend_lifetime), sum(abs(points)) FROM _spark_agg").fetchone()  # type: ignore[misc]
    assert spent > 0 and points > 0  # the worlds grade something


def test_a_difference_in_one_member_is_seen(spark: Any) -> None:
    """The comparison itself: Spark reading one order more than DuckDB shows as that member differing."""
    con = connect()
    world(con, 4)
    con.execute("CREATE TABLE orders_all AS SELECT * FROM orders")
    con.execute(
        "DELETE FROM orders WHERE external_id = (SELECT min(external_id) FROM orders WHERE member_id = 'm1' "
        "AND status = 'paid' AND NOT deleted AND placed_at <= ?)",
        [NOW],
    )
    both(spark, con, POLICIES["bench"], orders="orders_all")
    differ = con.execute("SELECT member_id FROM (SELECT * FROM _spark_agg EXCEPT SELECT * FROM _pol_agg)").fetchall()
    assert differ == [("m1",)]
