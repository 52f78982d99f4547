"""Orders the store refuses (a currency without a rate) are named by their file and line, whichever way the file
was read: by the row reader or column-wise."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crmsync_generic_csv import CsvConnector, columnar

from crmsync.connector import Stream
from crmsync.store import Store

COLUMNS = {"external_id": "order_id", "member_external_id": "customer_id", "placed_at": "order_date",
           "amount": "line_amount"}  # fmt: skip
RATES = {"JPY": Decimal("0.006")}


def export(rng: random.Random) -> tuple[str, dict[str, int]]:
    """An orders export with line items and a few lines the read refuses; the first line of each order in USD."""
    lines = ["order_id,customer_id,order_date,currency,line_amount"]
    usd: dict[str, int] = {}
    for k in range(rng.randrange(20, 60)):
        oid, currency = f"O{k}", rng.choice(["EUR", "EUR", "USD", "JPY"])
        for _ in range(rng.randrange(1, 4)):
            if rng.random() < 0.1:
                lines.append("broken,line")
            lines.append(f"{oid},C{k % 7},2025-05-0{1 + k % 9} 10:00:00,{currency},{rng.randrange(1, 999)}.50")
            if currency == "USD":
                usd.setdefault(oid, len(lines))
    return "\n".join(lines) + "\n", usd


@pytest.mark.parametrize("columnwise", [False, True], ids=["row reader", "column-wise"])
@pytest.mark.parametrize("seed", range(5))
def test_an_order_without_an_exchange_rate_is_named_by_file_and_line(
    seed: int,
    columnwise: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_connector: Callable[..., CsvConnector],
) -> None:
    text, usd = export(random.Random(seed))
    (tmp_path / "orders.csv").write_text(text, encoding="utf-8")
    monkeypatch.setattr(columnar, "MIN_BYTES", 0 if columnwise else 1 << 60)
    read = columnar.read_batches
    used: list[bool] = []

    def spy(*args: Any) -> Any:
        batches = read(*args)
        used.append(batches is not None)
        return batches

    monkeypatch.setattr(columnar, "read_batches", spy)
    connector = make_connector(orders_path="orders.csv", orders_columns=COLUMNS)
    rejects = []
    with Store.open(None) as store:
        for batch in connector.pull(Stream.ORDERS, None):
            rejects += store.write_batch(
                "shop", batch, run_id="r1", base_currency="EUR", rates={"JPY": Decimal("0.006")}
            )
    assert used == [columnwise]
    refused = {(r.record_id, r.locator) for r in rejects if r.field == "currency"}
    assert refused == {(oid, f"orders.csv:{line}") for oid, line in usd.items()}
    assert all("sync.exchange_rates.USD" in r.reason for r in rejects if r.field == "currency")
