"""A refund column (``orders_columns.refunded_amount``): read as an order-level amount, bad cells rejected on their
line, refunds beyond the amount quarantined by the store, and spend and points net of refunds after a sync."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from crmsync_generic_csv import columnar

from crmsync.cli import main
from crmsync.connector import Stream
from tests.generic_csv.csv_support import pull

COLUMNS = {
    "external_id": "order_id",
    "member_external_id": "customer_id",
    "placed_at": "order_date",
    "amount": "line_amount",
    "refunded_amount": "Refunded Amount",
}
HEADER = "order_id,customer_id,order_date,line_amount,Refunded Amount"


def test_the_refund_is_an_order_level_value_from_the_first_line_that_has_it(make_connector, write_csv):
    body = "A,c1,2025-01-01,10,4.50\nA,,,20,\nB,c1,2025-01-02,7,\nC,c1,2025-01-03,5,0\nA,,,1,99"
    write_csv("orders.csv", f"{HEADER}\n{body}")
    got = pull(make_connector(orders_path="orders.csv", orders_columns=COLUMNS), Stream.ORDERS)
    orders = got.by_id()
    assert got.rejects == []
    assert {k: (o.amount, o.refunded_amount) for k, o in orders.items()} == {
        "A": (Decimal(31), Decimal("4.50")),
        "B": (Decimal(7), None),
        "C": (Decimal(5), Decimal(0)),
    }


def test_a_refund_column_is_read_only_when_mapped(make_connector, write_csv):
    write_csv("orders.csv", "order_id,customer_id,order_date,line_amount,refunded_amount\nA,c1,2025-01-01,10,4")
    columns = {k: v for k, v in COLUMNS.items() if k != "refunded_amount"}
    orders = pull(make_connector(orders_path="orders.csv", orders_columns=columns), Stream.ORDERS).by_id()
    assert orders["A"].refunded_amount is None


@pytest.mark.parametrize(("cell", "reason"), [("4,5x", "not an amount"), ("1e30", "amount too large")])
def test_an_unreadable_refund_rejects_its_order_on_its_line(make_connector, write_csv, cell, reason):
    write_csv("orders.csv", f'{HEADER}\nA,c1,2025-01-01,10,"{cell}"\nB,c1,2025-01-01,3,1')
    got = pull(make_connector(orders_path="orders.csv", orders_columns=COLUMNS), Stream.ORDERS)
    assert sorted(got.by_id()) == ["B"]
    [rejection] = got.rejects
    assert (rejection.locator, rejection.field) == ("orders.csv:2", "refunded_amount") and reason in rejection.reason


def test_a_large_file_with_a_refund_column_is_read_row_by_row(make_connector, write_csv, monkeypatch):
    """The column-wise read of large files does not know refunds: with the column mapped, rows are read one by one."""
    monkeypatch.setattr(columnar, "MIN_BYTES", 0)
    handed: list[object] = []
    original = columnar.read_batches
    monkeypatch.setattr(columnar, "read_batches", lambda *a: handed.append(b := original(*a)) or b)
    write_csv("orders.csv", HEADER + "\n" + "\n".join(f"o{i},c1,2025-01-01,10,{i % 3}" for i in range(50)))
    orders = pull(make_connector(orders_path="orders.csv", orders_columns=COLUMNS), Stream.ORDERS).by_id()
    assert handed == [None]
    assert sorted(o.refunded_amount for o in orders.values()) == sorted(Decimal(i % 3) for i in range(50))
    unmapped = {k: v for k, v in COLUMNS.items() if k != "refunded_amount"}
    pull(make_connector(orders_path="orders.csv", orders_columns=unmapped), Stream.ORDERS)
    assert handed[1] is not None  # without it, the column-wise read is used


def test_sync_grades_spend_and_points_net_of_refunds_and_quarantines_a_refund_beyond_the_amount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "customers.csv").write_text("external_id\nc1\nc2\n", encoding="utf-8")
    rows = ["A,c1,2025-01-01,600,100", "B,c1,2025-01-02,500,", "C,c2,2025-01-03,700,800", "D,c2,2025-01-04,300,"]
    (tmp_path / "orders.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    config = tmp_path / "crmsync.toml"
    table = ", ".join(f'{k} = "{v}"' for k, v in COLUMNS.items())
    config.write_text(
        textwrap.dedent(
            f"""
            [store]
            path = "store.duckdb"
            [sync]
            members = "shop"
            orders = ["shop"]
            push = ["shop"]
            [connectors.shop]
            plugin = "generic_csv"
            members_path = "customers.csv"
            orders_path = "orders.csv"
            output_path = "out/profiles.csv"
            orders_columns = {{ {table} }}
            [[policy.tiers]]
            name = "Gold"
            condition = "spend_net_lifetime >= 1000"
            [[policy.tiers]]
            name = "Basic"
            [policy.points]
            per_currency_unit = "1"
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), "sync", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert info.value.code == 1  # done, with a rejected record
    [rejected] = report["rejected"]
    assert rejected["locator"] == "orders.csv:4" and rejected["field"] == "refunded_amount"
    assert "refunded 800.0000 EUR is not between 0 and the order's amount 700.0000" in rejected["reason"]
    lines = (tmp_path / "out" / "profiles.csv").read_text(encoding="utf-8").splitlines()
    profiles = {line.split(",")[0]: line.split(",")[1:3] for line in lines[1:]}
    assert profiles == {"c1": ["Gold", "1000"], "c2": ["Basic", "300"]}  # 600 - 100 + 500; C quarantined
