"""Partial refunds in the store: converted like the amount, refused outside 0..amount (naming the row and the field),
the same for records and Arrow tables; a store from before refunds is migrated keeping its orders."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.connector import Batch, Stream
from crmsync.models import Order
from crmsync.store import Store
from crmsync.store.db import set_meta
from crmsync.store.schema import SCHEMA_VERSION
from tests.support import T0, order

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Q4 = Decimal("0.0001")
money = st.decimals(min_value=-500, max_value=5000, places=2)
rows = st.lists(
    st.tuples(
        st.sampled_from(["o1", "o2", "o3", "o4"]),
        money,
        st.none() | money | st.sampled_from([Decimal(0), Decimal("-0.01")]),
        st.sampled_from(["EUR", "USD"]),
        st.none() | st.decimals(min_value=Decimal("0.01"), max_value=Decimal(9), places=6),
    ),
    min_size=1,
    max_size=8,
)


def expected(data: list[tuple[Any, ...]]) -> tuple[list[Any], list[Any]]:
    """A later row wins; a refund below 0 or above the amount (0 for a negative amount) is refused."""
    kept, refused = {}, []
    for n, (oid, amount, refunded, currency, own) in enumerate(data):
        rate = own if own is not None else Decimal(1) if currency == "EUR" else Decimal("0.5")
        if refunded is not None and not 0 <= refunded <= max(amount, 0):
            reason = f"refunded {refunded.quantize(Q4)} {currency} is not between 0 and the order's amount"
            refused.append((f"o.csv:{n + 2}", "refunded_amount", f"{reason} {amount.quantize(Q4)}", oid))
            continue
        base = None if refunded is None else (refunded * rate).quantize(Q4)
        kept[oid] = (oid, None if refunded is None else refunded.quantize(Q4), base, (amount * rate).quantize(Q4))
    return sorted(kept.values()), sorted(refused)


@FAST
@given(data=rows)
def test_refunds_are_converted_like_the_amount_and_refused_outside_zero_to_the_amount(data: list[Any]) -> None:
    records = [
        Order(
            source="shop", external_id=oid, member_external_id="m1", placed_at=T0, amount=amount, currency=cur,
            exchange_rate=own, refunded_amount=refunded, locator=f"o.csv:{n + 2}",
        )
        for n, (oid, amount, refunded, cur, own) in enumerate(data)
    ]  # fmt: skip
    table = pa.table(
        {
            "external_id": [r[0] for r in data],
            "member_external_id": ["m1"] * len(data),
            "placed_at": pa.array([T0] * len(data), pa.timestamp("us", tz="UTC")),
            "amount": pa.array([r[1] for r in data], pa.decimal128(18, 4)),
            "refunded_amount": pa.array([r[2] for r in data], pa.decimal128(18, 4)),
            "currency": [r[3] for r in data],
            "exchange_rate": pa.array([r[4] for r in data], pa.decimal128(18, 8)),
            "_locator": [f"o.csv:{n + 2}" for n in range(len(data))],
        }
    )
    got = {}
    for form, batch in (("records", Batch(Stream.ORDERS, records)), ("table", Batch(Stream.ORDERS, table=table))):
        with Store.open(None) as store:
            rejects = store.write_batch("shop", batch, run_id="r1", base_currency="EUR", rates={"USD": Decimal("0.5")})
            stored = store.con.execute(
                "SELECT external_id, refunded_amount, refunded_amount_base, amount_base FROM orders ORDER BY 1"
            ).fetchall()
        got[form] = (stored, sorted((r.locator, r.field, r.reason, r.record_id) for r in rejects))
    assert got["records"] == got["table"] == expected(data)


def test_a_table_without_a_refund_column_refunds_nothing() -> None:
    table = pa.table({"external_id": ["o1"], "member_external_id": ["m1"], "amount": [10], "currency": ["EUR"]})
    table = table.append_column("placed_at", pa.array([T0], pa.timestamp("us", tz="UTC")))
    with Store.open(None) as store:
        assert (
            store.write_batch("shop", Batch(Stream.ORDERS, table=table), run_id="r1", base_currency="EUR", rates={})
            == []
        )
        assert store.con.execute("SELECT refunded_amount, refunded_amount_base FROM orders").fetchall() == [
            (None, None)
        ]


def order_columns(store: Store) -> set[str]:
    sql = "SELECT column_name FROM duckdb_columns() WHERE table_name = 'orders'"
    return {r[0] for r in store.con.execute(sql).fetchall()}


def test_a_store_from_before_refunds_is_migrated_keeping_its_orders(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store.open(path) as store:
        store.write_batch(
            "crm", Batch(Stream.ORDERS, [order("o1", "m1", "40", 3)]), run_id="r1", base_currency="EUR", rates={}
        )
        store.con.execute("ALTER TABLE orders DROP COLUMN refunded_amount")
        store.con.execute("ALTER TABLE orders DROP COLUMN refunded_amount_base")
        set_meta(store.con, "schema_version", "2")
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        refunded = order("o2", "m1", "50", 2).model_copy(update={"refunded_amount": Decimal("20")})
        store.write_batch("crm", Batch(Stream.ORDERS, [refunded]), run_id="r2", base_currency="EUR", rates={})
        rows = store.con.execute("SELECT external_id, amount, refunded_amount_base FROM orders ORDER BY 1").fetchall()
        columns = order_columns(store)
    assert rows == [("o1", Decimal("40.0000"), None), ("o2", Decimal("50.0000"), Decimal("20.0000"))]
    with Store.open(tmp_path / "new.duckdb") as fresh:  # the same columns as a new store
        new = order_columns(fresh)
    assert columns == new
