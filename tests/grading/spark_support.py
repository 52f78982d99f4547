"""Shared by the Spark engine's tests: the benchmark's exports as lake Parquet, configurations for both engines,
and the grades and tier state of a store, member by member."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crmsync.engine import RunResult
from crmsync.plugins import PluginHost
from crmsync.store import Store
from tests.support import run_sync

ORDER_COLUMNS = (
    '{ external_id = "order_id", member_external_id = "customer_id", member_email = "customer_email", '
    'placed_at = "order_date", amount = "line_amount" }'
)
ACTIVITY_COLUMNS = '{ external_id = "activity_id", member_external_id = "customer_id" }'
SPARK_CONF = '{ "spark.sql.shuffle.partitions" = "2", "spark.ui.enabled" = false }'


MEMBERS_ONLY = """[store]
path = "crmsync.duckdb"

[sync]
members = "shop"
push = ["shop"]
base_currency = "EUR"

[connectors.shop]
plugin = "generic_csv"
members_path = "customers.csv"
output_path = "out/profiles.csv"
members_columns = { external_id = "customer_id" }

[grading]
engine = "spark"
"""
"""The head of a configuration whose members come from ``customers.csv`` and whose orders are graded on Spark."""


def csv_to_parquet(source: Path, target: Path) -> int:
    """The rows of a CSV export that a typed lake table can hold (the right number of cells, text that decodes) as
    a Parquet file of text columns; the number of rows written."""
    with source.open(encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        head = next(reader)
        rows = [r for r in reader if len(r) == len(head) and not any("\udcff" in v for v in r)]
    pq.write_table(pa.table({h: [r[i] for r in rows] for i, h in enumerate(head)}), target)
    return len(rows)


def config(work: Path, data: Path, policy: str, *, engine: str, lake: dict[str, Path] | None = None) -> Path:
    """A configuration grading ``data``'s exports with ``policy``: orders and activities from the CSV files, or with
    ``lake`` (stream -> Parquet path) from there on Spark."""
    work.mkdir(parents=True, exist_ok=True)
    lake = lake or {}
    streams = [s for s in ("orders", "activities") if s not in lake]
    text = f"""[store]
path = "crmsync.duckdb"

[sync]
members = "shop"
orders = {["shop"] if "orders" in streams else []}
activities = {["shop"] if "activities" in streams else []}
push = ["shop"]
base_currency = "EUR"
exchange_rates = {{ USD = "0.92", GBP = "1.17", CNY = "0.13" }}

[connectors.shop]
plugin = "generic_csv"
members_path = "{data / "customers.csv"}"
orders_path = "{data / "orders.csv"}"
activities_path = "{data / "activities.csv"}"
output_path = "out/profiles.csv"
rejects_path = "out/rejects.csv"
members_columns = {{ external_id = "customer_id" }}
orders_columns = {ORDER_COLUMNS}
activities_columns = {ACTIVITY_COLUMNS}

[grading]
engine = "{engine}"

[grading.spark]
master = "local[2]"
conf = {SPARK_CONF}
"""
    if "orders" in lake:
        text += f'orders = {{ parquet = "{lake["orders"]}", columns = {ORDER_COLUMNS}, source = "shop" }}\n'
    if "activities" in lake:
        text += f'activities = {{ parquet = "{lake["activities"]}", columns = {ACTIVITY_COLUMNS}, source = "shop" }}\n'
    path = work / "crmsync.toml"
    path.write_text(text + "\n" + policy, encoding="utf-8")
    return path


def sync(path: Path, as_of: datetime) -> RunResult:
    host = PluginHost()
    host.load_entrypoints()
    return run_sync(path, host, as_of)


GRADES = "tier, tier_rank, tier_since, previous_tier, points, rfm_r, rfm_f, rfm_m, rfm_segment, lifecycle, tags"
"""A profile's grade. (Its reasons are not compared: an incremental grading keeps the reasons of members whose
grade did not change from the run that last changed it, so their days-since figures are older.)"""


def state(store_path: Path) -> dict[str, Any]:
    """Per member: the grade, the held tier with its grace period, the bonuses granted; and the reasons."""
    with Store.open(store_path, read_only=True) as store:
        con = store.con
        grades = {r[0]: r[1:] for r in con.execute(f"SELECT member_id, {GRADES} FROM profiles").fetchall()}
        held = con.execute("SELECT member_id, tier, tier_since, previous_tier, below_since FROM policy_tier_state")
        tiers = {r[0]: r[1:] for r in held.fetchall()}
        bonus = con.execute(
            "SELECT member_id, tier, granted_at, points FROM policy_points_bonus ORDER BY ALL"
        ).fetchall()
        reasons = dict(con.execute("SELECT member_id, CAST(reasons AS VARCHAR) FROM profiles").fetchall())
        return {"grades": grades, "held": tiers, "bonuses": bonus, "reasons": reasons}
