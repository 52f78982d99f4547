"""Shared code of the generic_csv connector tests: flattening what a pull yields."""

from __future__ import annotations

from typing import Any

from crmsync_generic_csv import CsvConnector

from crmsync.connector import Batch, Rejection, Stream


class Pulled:
    """Everything one pull yielded, flattened."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.records = [r for b in batches for r in b.records]
        self.rejects: list[Rejection] = [r for b in batches for r in b.rejects]

    def by_id(self) -> dict[str, Any]:
        return {r.external_id: r for r in self.records}

    @property
    def cursor(self) -> str | None:
        return self.batches[-1].cursor if self.batches else None


def pull(connector: CsvConnector, stream: Stream, cursor: str | None = None) -> Pulled:
    return Pulled(list(connector.pull(stream, cursor)))
