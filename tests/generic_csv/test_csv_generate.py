"""The data generator: deterministic, realistic in shape, and its bad rows are each rejected by the connector."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from crmsync.connector import Stream
from tests.generic_csv.conftest import ORDER_COLUMNS
from tests.generic_csv.csv_support import pull

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
QUICKSTART_ARGS = [
    *("--customers", "3000", "--orders", "30000", "--line-items"),
    *("--activities", "600", "--bad-rows", "5", "--seed", "7"),
]


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("crmsync_bench_generate", ROOT / "bench" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(generate, out: Path, *args: str) -> None:
    assert generate.main(["--out", str(out), *args]) == 0


def test_same_seed_same_files_other_seed_other_files(generate, tmp_path):
    args = ["--customers", "40", "--orders", "300", "--line-items", "--activities", "20", "--bad-rows", "3"]
    run(generate, tmp_path / "a", *args, "--seed", "3")
    run(generate, tmp_path / "b", *args, "--seed", "3")
    run(generate, tmp_path / "c", *args, "--seed", "4")
    for name in ("customers.csv", "orders.csv", "activities.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "orders.csv").read_bytes() != (tmp_path / "c" / "orders.csv").read_bytes()


def test_committed_quickstart_data_is_what_the_documented_command_produces(generate, tmp_path):
    run(generate, tmp_path, *QUICKSTART_ARGS)
    for name in ("customers.csv", "orders.csv", "activities.csv"):
        assert (tmp_path / name).read_bytes() == (QUICKSTART / name).read_bytes(), name


def quickstart_connector(make_connector, base: Path):
    return make_connector(
        members_path=str(base / "customers.csv"),
        orders_path=str(base / "orders.csv"),
        activities_path=str(base / "activities.csv"),
        members_columns={"external_id": "customer_id"},
        orders_columns=ORDER_COLUMNS,
        activities_columns={"external_id": "activity_id", "member_external_id": "customer_id"},
        rejects_path="rejects.csv",  # in the test's folder, never next to the committed sample
        timezone="Europe/Berlin",
    )


def test_quickstart_reads_with_five_distinct_rejects(make_connector):
    connector = quickstart_connector(make_connector, QUICKSTART)
    members = pull(connector, Stream.MEMBERS)
    orders = pull(connector, Stream.ORDERS)
    activities = pull(connector, Stream.ACTIVITIES)

    assert len(members.records) == 3000 and members.rejects == []
    assert len(activities.records) == 600 and activities.rejects == []
    assert len(orders.rejects) == 5
    assert len({r.field for r in orders.rejects}) == 5  # five different kinds of problem
    order_ids = {o.external_id for o in orders.records}
    assert all(r.record_id not in order_ids for r in orders.rejects)


def test_generated_orders_have_a_realistic_shape(make_connector):
    orders = pull(quickstart_connector(make_connector, QUICKSTART), Stream.ORDERS).records
    statuses = Counter(o.status.value for o in orders)
    refunded = statuses["refunded"] / len(orders)
    assert 0.015 < refunded < 0.05  # about 3%
    assert statuses["cancelled"] > 0
    per_member = Counter(o.member_external_id or o.member_email for o in orders)
    one_timers = sum(1 for n in per_member.values() if n == 1)
    assert one_timers / len(per_member) > 0.2  # many one-time buyers
    assert max(per_member.values()) >= 10 * (len(orders) / len(per_member))  # and a heavy tail of loyal ones
    amounts = sorted(o.amount for o in orders if o.amount > 0)
    median, top = amounts[len(amounts) // 2], amounts[int(len(amounts) * 0.99)]
    assert top > 4 * median  # spend is heavy-tailed
    assert all(isinstance(o.amount, Decimal) for o in orders)
    months = Counter(o.placed_at.month for o in orders)
    assert months[11] + months[12] > 1.5 * (months[6] + months[7])  # a November/December peak
    assert any(o.member_external_id is None and o.member_email for o in orders)  # guest orders by email


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig"])
def test_every_bad_row_kind_is_rejected_and_other_encodings_are_readable(generate, make_connector, tmp_path, encoding):
    kinds = len(generate.BAD_KINDS)
    args = ["--customers", "60", "--orders", "400", "--activities", "5", "--bad-rows", str(kinds)]
    run(generate, tmp_path, *args, "--encoding", encoding)
    connector = quickstart_connector(make_connector, tmp_path)
    members = pull(connector, Stream.MEMBERS)
    orders = pull(connector, Stream.ORDERS)

    assert members.rejects == [] and any("\u4e00" <= (m.last_name or " ")[0] <= "\u9fff" for m in members.records)
    reasons = sorted(r.reason.split(":")[0].split(" (")[0] for r in orders.rejects)
    assert len(orders.rejects) == kinds
    assert len(set(reasons)) == kinds, reasons


def test_customers_csv_has_the_documented_columns(generate, tmp_path):
    run(generate, tmp_path, "--customers", "5", "--orders", "10")
    with (tmp_path / "customers.csv").open(newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == generate.CUSTOMER_COLUMNS
    with (tmp_path / "orders.csv").open(newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == generate.ORDER_COLUMNS
    assert not (tmp_path / "activities.csv").exists()
