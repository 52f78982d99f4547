"""The ``generic_csv`` connector plugin: customers, orders and activities from CSV exports; profiles to a CSV."""

from __future__ import annotations

from collections.abc import Iterator

import crmsync
from crmsync_generic_csv.connector import CAPABILITIES, CsvConnector
from crmsync_generic_csv.settings import CsvSettings

__all__ = ["CsvConnector", "CsvSettings", "crmsync_connectors"]


@crmsync.hookimpl
def crmsync_connectors() -> Iterator[crmsync.ConnectorSpec]:
    yield crmsync.ConnectorSpec(
        name="generic_csv",
        settings_model=CsvSettings,
        factory=CsvConnector,  # type: ignore[arg-type]
        capabilities=CAPABILITIES,
        description="customers, orders and activities from CSV exports; profiles written to a CSV",
    )
