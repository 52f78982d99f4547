"""Shared pieces of the reliability campaigns: small CSV worlds, running ``crmsync`` as a subprocess, store digests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[2]
CRASHPLUG = Path(__file__).resolve().parent / "crashplug"
AS_OF = "2026-01-01T00:00:00+00:00"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

CONFIG = """\
[store]
path = "store.duckdb"

[sync]
members = "shop"
orders = ["shop"]
activities = ["shop"]
push = ["shop"]
base_currency = "EUR"
timezone = "UTC"

[connectors.shop]
plugin = "{plugin}"
members_path = "customers.csv"
orders_path = "orders.csv"
activities_path = "activities.csv"
output_path = "out/profiles.csv"
rejects_path = "out/rejects.csv"
batch_size = {batch_size}
push_batch_size = {push_batch_size}

[logging]
file = "out/crmsync.log"
level = "INFO"

[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 600 and orders_365d >= 3"

[[policy.tiers]]
name = "Silver"
condition = "spend_365d >= 150 or orders_lifetime >= 4"

[[policy.tiers]]
name = "Bronze"

[policy.points]
per_currency_unit = "1"
activities = {{ review = "20" }}
"""


@dataclass
class CsvWorld:
    """A folder with customers/orders/activities CSVs and a configuration that reads them."""

    folder: Path
    members: int = 60
    orders: int = 160
    activities: int = 30
    seed: int = 7

    def write(self, *, plugin: str = "generic_csv", batch_size: int = 40, push_batch_size: int = 25) -> Path:
        rnd = random.Random(self.seed)
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = ["external_id,email,first_name,last_name,created_at"]
        for i in range(self.members):
            lines.append(f"C{i:04d},person{i}@example.com,First{i},Last{i},2024-01-{1 + i % 28:02d} 10:00:00")
        (self.folder / "customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        lines = ["external_id,member_external_id,placed_at,amount,currency,status"]
        for i in range(self.orders):
            member = f"C{rnd.randrange(self.members):04d}"
            placed = (T0 - timedelta(days=rnd.randrange(1, 700))).strftime("%Y-%m-%d %H:%M:%S")
            amount = Decimal(rnd.randrange(500, 40000)) / 100
            lines.append(f"O{i:05d},{member},{placed},{amount},EUR,{rnd.choice(['paid'] * 8 + ['refunded'])}")
        lines.append("O99998,C0001,2025-02-31 10:00:00,10.00,EUR,paid")  # bad date: quarantined
        lines.append("O99999,C0002,2025-03-01 10:00:00,12x,EUR,paid")  # bad amount: quarantined
        (self.folder / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        lines = ["external_id,member_external_id,kind,occurred_at"]
        for i in range(self.activities):
            when = (T0 - timedelta(days=rnd.randrange(1, 300))).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"A{i:05d},C{rnd.randrange(self.members):04d},{rnd.choice(['review', 'login'])},{when}")
        (self.folder / "activities.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = self.folder / "crmsync.toml"
        config.write_text(
            CONFIG.format(plugin=plugin, batch_size=batch_size, push_batch_size=push_batch_size), encoding="utf-8"
        )
        return config


def plugin_path(tmp: Path) -> str:
    """A PYTHONPATH on which the crash-test plugin is an installed distribution (entry point group ``crmsync``)."""
    dist = tmp / "crmsync_crashtest-0.0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: crmsync-crashtest\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[crmsync]\ncrashtest = crmsync_crashtest\n")
    return os.pathsep.join([str(tmp), str(CRASHPLUG)])


def crmsync_env(extra: dict[str, str] | None = None, *, pythonpath: str | None = None) -> dict[str, str]:
    drop = ("PYTHONPATH", "COLUMNS", "LINES")  # a terminal width left by another test would narrow tables
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_") and k not in drop}
    env["NO_COLOR"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env.update(extra or {})
    return env


def run_cli(
    config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from crmsync.cli import main; main()", "--config", str(config), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=config.parent)


def digest(store_path: Path) -> dict[str, Any]:
    """What a store holds, without run ids and timestamps: equal digests mean equal states."""
    con = duckdb.connect(str(store_path), read_only=True)
    try:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted(tuple(map(str, r)) for r in con.execute(sql).fetchall())

        order_stats = con.execute(
            "SELECT count(*), count(DISTINCT (source, external_id)), sum(amount_base), "
            "sum(amount_base) FILTER (WHERE status = 'paid' AND NOT deleted) FROM orders"
        ).fetchone()
        return {
            "members": rows("SELECT source, external_id, email, deleted FROM members"),
            "orders": rows("SELECT source, external_id, member_id, amount_base, status, deleted FROM orders"),
            "order_stats": tuple(map(str, order_stats)),
            "activities": rows("SELECT source, external_id, member_id, kind, deleted FROM activities"),
            "profiles": rows(
                "SELECT member_id, tier, tier_since, previous_tier, points, rfm_r, rfm_f, rfm_m, rfm_segment, "
                "lifecycle, list_sort(tags), policy_version FROM profiles"
            ),
            "pushed": rows("SELECT target, member_id, fields FROM pushed"),
            "outbox": rows("SELECT target, member_id, fields, status FROM outbox"),
            "audit": rows("SELECT target, member_id, field, previous, new, reason FROM push_audit"),
            "cursors": rows("SELECT connector, stream, value FROM cursors"),
            "quarantine": rows(
                "SELECT connector, stream, record_key, locator, field, reason FROM quarantine WHERE NOT resolved"
            ),
            "ledger": rows("SELECT member_id, entry_ref, kind, points FROM policy_points_ledger"),
            "tier_state": rows("SELECT member_id, tier, tier_since, previous_tier FROM policy_tier_state"),
        }
    finally:
        con.close()


REPORT_STATE = ("members_graded", "tier_distribution", "pending", "dead", "quarantined", "unmatched_orders")


def report_state(report: dict[str, Any]) -> dict[str, Any]:
    """The fields of a report that describe the state a run leaves behind (not what this one run did)."""
    return {k: report[k] for k in REPORT_STATE}


def last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout)
