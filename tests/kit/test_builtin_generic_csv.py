"""The conformance kit run against the built-in ``generic_csv`` connector, with a double that writes the
exports as CSV files and reads the profiles CSV that pushes produce."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from crmsync_generic_csv import CsvConnector, CsvSettings

from crmsync import Stream
from crmsync.testing import ConnectorContract, InMemoryCrm
from crmsync.testing.data import OPTIONAL_FIELDS
from crmsync.testing.paged import iso

FILES = {Stream.MEMBERS: "customers.csv", Stream.ORDERS: "orders.csv", Stream.ACTIVITIES: "activities.csv"}
UNREADABLE = {Stream.MEMBERS: "created_at", Stream.ORDERS: "amount", Stream.ACTIVITIES: "occurred_at"}
REQUIRED = {Stream.ORDERS: "placed_at", Stream.ACTIVITIES: "occurred_at"}
COLUMNS = {
    Stream.MEMBERS: ("external_id", "email", "first_name", "last_name", "created_at", "updated_at"),
    Stream.ORDERS: ("external_id", "member_external_id", "placed_at", "amount", "currency", "status", "updated_at"),
    Stream.ACTIVITIES: ("external_id", "member_external_id", "kind", "occurred_at"),
}


class CsvExports(InMemoryCrm):
    """A folder of CSV exports rewritten after every change, and the profiles CSV pushes write."""

    optional_fields = {Stream.MEMBERS: OPTIONAL_FIELDS[Stream.MEMBERS], Stream.ORDERS: ("currency",)}
    """This connector refuses an order or activity row that names its member neither by id nor by email (a row of
    an export is expected to name one), so the kit leaves only a member's values and an order's currency out."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.output = folder / "out" / "profiles.csv"
        self._seen_rows: dict[str, list[str]] = {}
        self._seen_content: bytes | None = None
        self._writes = 0
        for stream in Stream:
            self._export(stream)

    def settings(self) -> dict[str, Any]:
        table: dict[str, Any] = {f"{s.value}_path": str(self.folder / name) for s, name in FILES.items()}
        return {**table, "output_path": str(self.output), "batch_size": 3}

    def _export(self, stream: Stream) -> None:
        rows = sorted(self.records[stream].values(), key=lambda r: r["external_id"])
        with (self.folder / FILES[stream]).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS[stream])
            for row in rows:
                cells = {c: iso(row[c]) if hasattr(row[c], "tzinfo") else row[c] for c in COLUMNS[stream]}
                if row["external_id"] in self.malformed[stream]:
                    cells[UNREADABLE[stream]] = "31/02/2024 25:61"
                if row["external_id"] in self.blanked[stream]:
                    cells[REQUIRED[stream]] = ""
                writer.writerow(cells.values())

    def seed(self, stream: Stream, count: int) -> list[str]:
        ids = super().seed(stream, count)
        for s in Stream:
            self._export(s)
        return ids

    def change(self, stream: Stream, ids: Any) -> None:
        super().change(stream, ids)
        self._export(stream)

    def delete(self, stream: Stream, ids: Any) -> None:
        super().delete(stream, ids)
        self._export(stream)

    def commit_late(self, stream: Stream, ids: Any) -> None:
        super().commit_late(stream, ids)
        self._export(stream)

    def omit_optional(self, stream: Stream, ids: Any) -> None:
        super().omit_optional(stream, ids)  # a value that is None is written as an empty cell
        self._export(stream)

    def corrupt(self, stream: Stream, ids: Any) -> None:
        super().corrupt(stream, ids)
        self._export(stream)

    def blank(self, stream: Stream, ids: Any) -> None:
        super().blank(stream, ids)
        self._export(stream)

    # ------------------------------------------------------------------ what pushes wrote
    def _observe(self) -> None:
        if not self.output.exists():
            return
        content = self.output.read_bytes()  # file times are too coarse to tell two quick writes apart
        if content == self._seen_content:
            return
        self._seen_content = content
        self._writes += 1
        with self.output.open(newline="", encoding="utf-8") as f:
            rows = {r["member_id"]: r for r in csv.DictReader(f)}
        log = self.begin_write()
        for member_id, row in rows.items():
            values = list(row.values())
            if self._seen_rows.get(member_id) != values:
                log.append(member_id)
            self._seen_rows[member_id] = values
        self.written = {m: {k: v for k, v in r.items() if k != "member_id"} for m, r in rows.items()}

    def pushed(self) -> dict[str, dict[str, Any]]:
        self._observe()
        return super().pushed()

    def push_log(self) -> list[list[str]]:
        self._observe()
        return super().push_log()

    @property
    def calls(self) -> int:
        self._observe()
        return self._writes


class TestGenericCsvConnector(ConnectorContract):
    spec = "generic_csv"
    http = False
    refuses_records = False
    custom_fields = False

    @pytest.fixture
    def crm(self, tmp_path: Path) -> CsvExports:
        return CsvExports(tmp_path)


def test_the_spec_is_the_installed_one():
    spec = TestGenericCsvConnector.kit_spec
    assert spec.factory is CsvConnector
    assert spec.settings_model is CsvSettings
