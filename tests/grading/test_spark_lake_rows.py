"""Bad rows in the lake: each kind is quarantined with its file and row, the field and why, the rest of the run
goes on (the member's good orders are graded, nothing of a bad order is), and once the row is fixed in the lake
the next run grades it and resolves the entry. Text columns and typed columns (timestamps, doubles) alike.

Also: without a lake source, Spark grades the records crmsync pulled, as the embedded engine does, and leaves no
copy of them behind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crmsync.connector import Stream
from crmsync.store import Store
from tests.grading.spark_support import MEMBERS_ONLY, sync
from tests.support import T0, WORLDS, World, activity, member, order, run_sync

pytestmark = pytest.mark.spark

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
GOOD = {"customer_email": "", "order_date": "2026-10-01 10:00:00", "status": "paid", "currency": "EUR"}
GOOD |= {"line_amount": "100", "refunded": ""}
ORDER_CASES: list[tuple[str, dict[str, str], str, str, str]] = [
    # name, what the bad order has instead of GOOD, on its second line or on both, field, words of the reason
    ("missing id", {"order_id": ""}, "line", "external_id", "missing id"),
    ("amount not a number", {"line_amount": "12,34.5x"}, "line", "amount", "not an amount: '12,34.5x'"),
    ("amount too large", {"line_amount": "1e28"}, "line", "amount", "not an amount: '1e28'"),
    ("amount NaN", {"line_amount": "NaN"}, "line", "amount", "not an amount"),
    ("amount beyond 10^14", {"line_amount": "123456789012345"}, "line", "amount", "out of range"),
    ("five decimals", {"line_amount": "0.00001"}, "line", "amount", "more than 4 decimals"),
    ("amount missing", {"line_amount": ""}, "line", "amount", "missing"),
    ("impossible date", {"order_date": "31/02/2025 25:61"}, "line", "placed_at", "not a date/time"),
    (
        "malformed email",
        {"customer_id": "", "customer_email": "not-an-email"},
        "line",
        "member_email",
        "(value hidden)",
    ),
    ("unknown status", {"status": "lost_in_transit"}, "line", "status", "unknown status 'lost_in_transit'"),
    ("currency without a rate", {"currency": "JPY"}, "order", "currency", "no exchange rate from JPY to EUR"),
    ("not a currency code", {"currency": "EURO"}, "line", "currency", "not a currency code"),
    ("refund above the amount", {"refunded": "150"}, "order", "refunded_amount", "is not between 0 and the order's"),
    ("negative refund", {"refunded": "-1"}, "order", "refunded_amount", "is not between 0"),
    ("lines disagree on the member", {"customer_id": "C2"}, "lines", "member_external_id", "disagree"),
    ("no member at all", {"customer_id": ""}, "order", "member_external_id", "no member id or email"),
]
"""A defect of a line (``line``: on the second line) is reported on that line; one of the order (``order``: on both
lines; ``lines``: between them) on its first line."""
COLUMNS = '{ external_id = "order_id", member_external_id = "customer_id", member_email = "customer_email", '
COLUMNS += 'placed_at = "order_date", amount = "line_amount", refunded_amount = "refunded" }'

ACTIVITY_COLUMNS = '{ external_id = "activity_id", member_external_id = "customer_id" }'


def customers(folder: Path, n: int) -> None:
    lines = ["customer_id,email"] + [f"C{i},c{i}@example.com" for i in range(1, n + 1)]
    (folder / "customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def order_rows(fixed: bool) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Per case, member ``C<n>``: a good order of 100 and an order of two lines (7 and 3) with the case's defect,
    unless ``fixed``; the row (from 1) where each defect is reported."""
    rows: list[dict[str, str]] = []
    where: dict[str, int] = {}
    for n, (name, bad, scope, _, _) in enumerate(ORDER_CASES, start=1):
        cid = f"C{n}"
        change = {} if fixed else bad
        rows.append({**GOOD, "order_id": f"G{n}", "customer_id": cid})
        first = {**GOOD, "order_id": f"B{n}", "customer_id": cid, "line_amount": "7"}
        rows.append(first | change if scope == "order" else first)
        rows.append({**GOOD, "order_id": f"B{n}", "customer_id": cid, "line_amount": "3"} | change)
        where[name] = len(rows) if scope == "line" else len(rows) - 1
    return rows, where


def write_orders(path: Path, fixed: bool) -> dict[str, int]:
    rows, where = order_rows(fixed)
    pq.write_table(pa.table({k: [r[k] for r in rows] for k in rows[0]}), path)
    return where


def write_activities(path: Path, fixed: bool) -> None:
    """Typed columns: a timestamp and a double. Bad unless fixed: a repeated id, a missing kind, NaN points, no
    time."""
    at = datetime(2026, 10, 1, tzinfo=UTC)
    rows = [("A1", "C1", "review", at, 0.0), ("A2", "C2", "review", at, 0.0), ("A3", "C3", "bonus", at, 5.0)]
    rows += [("A4", "C4", "review", at, 0.0)]
    if not fixed:
        rows += [("A1", "C5", "review", at, 0.0)]  # a repeated id: the first row wins
        rows[1] = ("A2", "C2", None, at, 0.0)  # type: ignore[assignment]
        rows[2] = ("A3", "C3", "bonus", at, float("nan"))
        rows[3] = ("A4", "C4", "review", None, 0.0)  # type: ignore[assignment]
    names = ("activity_id", "customer_id", "kind", "occurred_at", "points")
    pq.write_table(pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)}), path)


def config(folder: Path) -> Path:
    path = folder / "crmsync.toml"
    path.write_text(
        MEMBERS_ONLY
        + f"""
[grading.spark]
orders = {{ parquet = "lake/orders.parquet", columns = {COLUMNS} }}
activities = {{ parquet = "lake/activities.parquet", columns = {ACTIVITY_COLUMNS} }}

[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 200"

[[policy.tiers]]
name = "Bronze"

[policy.points]
per_currency_unit = "1"
activities = {{ review = "20" }}
source_points_kinds = ["bonus"]
allow_negative = true
""",
        encoding="utf-8",
    )
    return path


def quarantined(path: Path) -> dict[str, tuple[str, str, str]]:
    with Store.open(path.parent / "crmsync.duckdb", read_only=True) as store:
        rows = store.con.execute(
            "SELECT stream, locator, field, reason FROM quarantine WHERE NOT resolved AND connector = 'grading.spark'"
        ).fetchall()
    return {f"{s} {loc}": (s, f, r) for s, loc, f, r in rows}


def points(path: Path) -> dict[str, int]:
    with Store.open(path.parent / "crmsync.duckdb", read_only=True) as store:
        return dict(store.con.execute("SELECT member_id, points FROM profiles").fetchall())


def test_each_kind_of_bad_row_is_quarantined_where_it_is_and_picked_up_once_fixed(spark: Any, tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    customers(tmp_path, len(ORDER_CASES) + 1)
    path = config(tmp_path)
    where = write_orders(tmp_path / "lake" / "orders.parquet", fixed=False)
    write_activities(tmp_path / "lake" / "activities.parquet", fixed=False)
    report = sync(path, AS_OF).report
    assert report.error is None and report.status.value == "rejected"
    entries = quarantined(path)
    for name, _, _, field, words in ORDER_CASES:
        got = entries.get(f"orders orders.parquet:{where[name]}")
        assert got is not None and got[1] == field and words in got[2], (name, got)
    acts = {k: v for k, v in entries.items() if v[0] == "activities"}
    assert sorted(v[1] for v in acts.values()) == ["external_id", "kind", "occurred_at", "points"]
    assert "activities activities.parquet:5" in entries  # the repeated id: its second row
    # the rest went on: every member's good order counts, nothing of an order with a bad line does
    before = points(path)
    assert all(before[f"C{n}"] == 100 for n in range(5, len(ORDER_CASES) + 1)), before
    # C1: the line without an id is no line of its order, which is graded with its first line (7), and its review
    assert before["C1"] == 127 and before["C2"] == 100  # C2's activity had no kind
    # fixed in the lake: graded, and the entries resolved
    write_orders(tmp_path / "lake" / "orders.parquet", fixed=True)
    write_activities(tmp_path / "lake" / "activities.parquet", fixed=True)
    report = sync(path, AS_OF).report
    assert report.error is None and report.status.value == "ok"
    assert quarantined(path) == {}
    after = points(path)
    assert all(after[f"C{n}"] == 110 for n in range(5, len(ORDER_CASES) + 1)), after
    assert (after["C2"], after["C3"]) == (130, 115)


PULLED = """
[grading]
engine = "{engine}"

[grading.spark]
conf = {{ "spark.sql.shuffle.partitions" = "2" }}
"""


def test_without_a_lake_spark_grades_the_pulled_records_as_the_store_does(
    spark: Any, write_config: Any, host: Any
) -> None:
    from tests.conftest import MEMORY_CONFIG

    grades: dict[str, dict[str, Any]] = {}
    for engine in ("duckdb", "spark"):
        world = World()
        WORLDS["crm"] = world
        for i in range(1, 8):
            world.put(Stream.MEMBERS, member(i))
        for n, (mid, amount, days) in enumerate([("m1", "800", 10), ("m1", "300", 20), ("m2", "250", 30),
                                                 ("m3", "50", 400), ("m3", "50", 500), ("m6", "70", 5)]):  # fmt: skip
            world.put(Stream.ORDERS, order(f"o{n}", mid, amount, days))
        world.put(Stream.ACTIVITIES, activity("a1", "m4", "login", 3))
        path = write_config(MEMORY_CONFIG + PULLED.format(engine=engine), name=f"{engine}.toml")
        text = path.read_text(encoding="utf-8").replace('path = "store.duckdb"', f'path = "{engine}.duckdb"')
        path.write_text(text, encoding="utf-8")
        result = run_sync(path, host, T0)
        assert result.report.error is None
        with Store.open(path.parent / f"{engine}.duckdb", read_only=True) as store:
            grades[engine] = {
                r[0]: r[1:]
                for r in store.con.execute(
                    "SELECT member_id, tier, tier_since, points, rfm_segment, lifecycle, tags FROM profiles"
                ).fetchall()
            }
        assert not list(path.parent.glob(f"{engine}.duckdb.spark/*"))  # the copy for Spark is gone
    assert grades["duckdb"] == grades["spark"]
    assert grades["spark"]["m1"][0] == "Gold" and len(grades["spark"]) == 7
