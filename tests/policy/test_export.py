"""Every member's figures in one file: the export equals a sync's grades and explain's metrics for every member, in
CSV and Parquet; chosen columns (metrics the policy does not use too); personal data only when allowed; bad column
choices named; spreadsheet formulas neutralised; 10^5 members straight from DuckDB."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from policy_support import START, Store, World, compiled

from crmsync.errors import ConfigError
from crmsync.policy import GradingMode
from crmsync.policy.export import GRADES, PERSONAL, default_columns, export, resolve_columns

POLICY: dict[str, Any] = {
    "tiers": [
        {"name": "金卡", "condition": "spend_90d >= 400"},
        {"name": "Silver", "condition": "spend_90d >= 150 or orders_lifetime >= 4"},
        {"name": "Bronze"},
    ],
    "downgrade": {"grace_days": 20},
    "points": {"per_currency_unit": "1", "expiry_days": 60, "redemption_kinds": ["redeem"]},
    "tags": {"vip": "tier = '金卡'", "lapsing": "days_since_last_order > 30"},
}
AT = START + timedelta(days=120)

MEMBER_COLUMNS = (
    "(source, external_id, email, phone, first_name, last_name, created_at, updated_at, attributes, opt_in, deleted)"
)


def _read(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _text(value: Any) -> str:
    """A value as the CSV export writes it."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "|".join(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


@pytest.mark.parametrize(("seed", "fmt"), [(s, f) for s in range(4) for f in ("csv", "parquet")])
def test_the_export_equals_a_syncs_grades_and_the_metrics_for_every_member(seed: int, fmt: str, tmp_path: Path) -> None:
    world, policy = World(seed), compiled(POLICY)
    inc, ref = world.stores
    for s in world.stores:  # a history: grace periods and held tiers matter
        policy.grade(s.con, AT - timedelta(days=40))
        s.save_profiles()
    columns = resolve_columns(policy, default_columns(policy), (), personal=False)
    result = export(inc.con, policy, AT, tmp_path / f"out.{fmt}", fmt, columns)  # type: ignore[arg-type]
    policy.run(ref.con, AT, GradingMode.EXPLAIN)
    cols = ", ".join(f'g."{c}"' if c in GRADES else f's."{c}"' for c in result.columns)
    expected = ref.con.execute(
        f"SELECT {cols} FROM _pol_explain g JOIN _pol_stage s USING (member_id) ORDER BY member_id"
    ).fetchall()
    rows = _read(result.path, fmt)
    assert result.rows == len(rows) == len(world.members)
    assert list(rows[0]) == result.columns[: len(rows[0])] == default_columns(policy)
    for row, want in zip(rows, expected, strict=True):
        want_row = dict(zip(result.columns, want, strict=True))
        if fmt == "csv":
            assert row == {k: _text(v) for k, v in want_row.items()}, row["member_id"]
        else:
            assert row == want_row, row["member_id"]
    # the export is what a sync at that instant pushes
    policy.grade(ref.con, AT)
    synced = dict(ref.con.execute("SELECT member_id, tier FROM graded").fetchall())
    assert {r["member_id"]: r["tier"] for r in rows} == synced


@pytest.mark.parametrize("seed", range(4))
def test_chosen_columns_in_their_order_and_metrics_the_policy_does_not_use(seed: int, tmp_path: Path) -> None:
    world, policy = World(seed), compiled(POLICY)
    names = ["spend_30d", "member_id", "orders_45d", "activity_review_lifetime", "as_of", "tier"]
    assert not {"spend_30d", "orders_45d", "activity_review_lifetime"} & set(policy.used_metrics)
    columns = resolve_columns(policy, names, (), personal=False)
    rows = _read(export(world.stores[0].con, policy, AT, tmp_path / "x.csv", "csv", columns).path, "csv")
    assert list(rows[0]) == names
    for row in rows:
        m = row["member_id"]
        paid = [(a, t) for mm, a, t, st in world.orders if mm == m and st == "paid" and t <= AT]
        assert Decimal(row["spend_30d"]) == sum((a for a, t in paid if t > AT - timedelta(days=30)), Decimal(0))
        assert int(row["orders_45d"]) == sum(t > AT - timedelta(days=45) for _, t in paid)
        assert row["as_of"] == AT.strftime("%Y-%m-%dT%H:%M:%SZ")
    reviews = (
        world.stores[0]
        .con.execute(
            "SELECT member_id, count(*) FROM activities WHERE kind = 'review' AND occurred_at <= ? GROUP BY 1", [AT]
        )
        .fetchall()
    )
    assert {
        r["member_id"]: int(r["activity_review_lifetime"]) for r in rows if r["activity_review_lifetime"] != "0"
    } == dict(reviews)


def test_bad_column_choices_are_named_together() -> None:
    policy = compiled(POLICY)
    with pytest.raises(ConfigError) as info:
        resolve_columns(policy, ["tier", "spend_lifetme", "tier", "email", "nope"], (), personal=False)
    text = str(info.value)
    assert "  - spend_lifetme: unknown column (did you mean spend_lifetime?)" in text
    assert "tier: named twice" in text and "nope: unknown column" in text
    assert "email: personal data; add --personal or set logging.verbose_personal_data = true" in text
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="no column chosen"):
        resolve_columns(policy, [], (), personal=False)


def test_personal_columns_only_when_allowed_and_formulas_neutralised(store: Store, tmp_path: Path) -> None:
    policy = compiled(POLICY)
    people = [
        ("a", "a@example.com", '=HYPERLINK("http://x")', "+49 30 1234", "@home"),
        ("b", "b@example.com", "李", "-5", "O'Neil"),
    ]
    for mid, email, first, phone, last in people:
        store.con.execute(
            f"INSERT INTO members {MEMBER_COLUMNS} VALUES ('crm', ?, ?, ?, ?, ?, ?, ?, '{{}}', true, false)",
            [mid, email, phone, first, last, START, START],
        )
    store.con.execute(  # an older version of a kept by another source: the latest one wins, as in grading
        f"INSERT INTO members {MEMBER_COLUMNS} "
        "VALUES ('old', 'a', 'old@example.com', NULL, 'Old', NULL, ?, ?, '{}', true, false)",
        [START - timedelta(days=9), START - timedelta(days=9)],
    )
    store.order("a", "500", AT - timedelta(days=3))
    assert not set(PERSONAL) & set(default_columns(policy))
    columns = resolve_columns(policy, ["member_id", *PERSONAL, "tier"], (), personal=True)
    rows = _read(export(store.con, policy, AT, tmp_path / "p.csv", "csv", columns).path, "csv")
    assert rows == [
        {"member_id": "a", "email": "a@example.com", "phone": "'+49 30 1234", "first_name": "'=HYPERLINK(\"http://x\")",
         "last_name": "'@home", "tier": "金卡"},
        {"member_id": "b", "email": "b@example.com", "phone": "-5", "first_name": "李", "last_name": "O'Neil",
         "tier": "Bronze"},
    ]  # fmt: skip
    parquet = _read(export(store.con, policy, AT, tmp_path / "p.parquet", "parquet", columns).path, "parquet")
    assert parquet[0]["first_name"] == '=HYPERLINK("http://x")'  # Parquet holds values, not spreadsheet cells


def test_a_finished_export_replaces_the_file_and_leaves_nothing_else(store: Store, tmp_path: Path) -> None:
    policy = compiled(POLICY)
    store.member("a")
    target = tmp_path / "it's here.csv"
    target.write_text("old\n")
    columns = resolve_columns(policy, ["member_id", "tier"], (), personal=False)
    export(store.con, policy, AT, target, "csv", columns)
    assert target.read_text().splitlines() == ["member_id,tier", "a,Bronze"]
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.slow
def test_a_hundred_thousand_members_are_exported_from_the_database(store: Store, tmp_path: Path) -> None:
    """10^5 members, 3 * 10^5 orders in one modification-time cluster: every member once, sums intact."""
    n = 100_000
    store.con.execute(
        f"INSERT INTO members {MEMBER_COLUMNS} "
        f"SELECT 'crm', 'm' || i, NULL, NULL, NULL, NULL, TIMESTAMPTZ '2023-01-01 00:00:00+00', "
        f"TIMESTAMPTZ '2023-01-01 00:00:00+00', '{{}}', true, false FROM range({n}) t(i)"
    )
    store.con.execute(
        "INSERT INTO orders (source, external_id, member_id, placed_at, amount, currency, amount_base, status, "
        "updated_at, deleted) "
        f"SELECT 'shop', 'o' || i, 'm' || (i % {n}), "
        "TIMESTAMPTZ '2024-03-01 00:00:00+00' + INTERVAL (i % 90) DAY, CAST(10 + i % 500 AS DECIMAL(18,4)), 'EUR', "
        "CAST(10 + i % 500 AS DECIMAL(18,4)), 'paid', TIMESTAMPTZ '2024-06-01 00:00:00+00', false "
        f"FROM range({3 * n}) t(i)"
    )
    policy = compiled(POLICY)
    columns = resolve_columns(policy, ["member_id", "tier", "spend_lifetime", "points"], (), personal=False)
    result = export(store.con, policy, AT, tmp_path / "big.parquet", "parquet", columns)
    table = pq.read_table(result.path)
    assert result.rows == table.num_rows == n
    assert len(set(table.column("member_id").to_pylist())) == n
    total = store.con.execute("SELECT sum(amount_base) FROM orders").fetchone()[0]
    assert sum(table.column("spend_lifetime").to_pylist(), Decimal(0)) == total
    assert random.Random(1).choice(table.column("tier").to_pylist()) in policy.tier_names
