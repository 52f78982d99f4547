"""Fixtures for the generic_csv connector tests: writing small CSV files and pulling them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from crmsync_generic_csv import CsvConnector, CsvSettings

from crmsync.connector import ConnectorContext

ORDER_COLUMNS = {
    "external_id": "order_id",
    "member_external_id": "customer_id",
    "member_email": "customer_email",
    "placed_at": "order_date",
    "amount": "line_amount",
}


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write ``text`` (dedented lines) to ``tmp_path/name`` in ``encoding``; ``raw`` bytes are written as is."""

    def write(name: str, text: str = "", *, encoding: str = "utf-8", raw: bytes | None = None) -> Path:
        path = tmp_path / name
        if raw is not None:
            path.write_bytes(raw)
        else:
            lines = [line.strip() for line in text.strip().splitlines()]
            path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
        return path

    return write


@pytest.fixture
def make_connector(tmp_path: Path) -> Iterator[Callable[..., CsvConnector]]:
    """Build a connector from a settings dict (paths relative to ``tmp_path``), validated like the host does."""
    made: list[CsvConnector] = []

    def make(timezone: str = "UTC", base_currency: str = "EUR", **table: Any) -> CsvConnector:
        settings = CsvSettings.model_validate(table, context={"base_dir": tmp_path})
        context = ConnectorContext(name="shop", base_currency=base_currency, timezone=ZoneInfo(timezone))
        connector = CsvConnector(settings, context)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()
