"""The ``generic_csv`` connector: pulls members, orders and activities from CSV exports, pushes profiles to a CSV.

Pulls are incremental per file: the cursor records the file's SHA-256, its size and a fingerprint of the
settings that shape the read. An unchanged file yields nothing; a changed one is read whole and its last batch
says ``snapshot_complete`` (the engine then marks records absent from the file as deleted, and recognises
unchanged ones). Only the last batch carries the new cursor, so an interrupted read starts over.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from crmsync.connector import (
    Batch,
    Capability,
    CheckResult,
    Connector,
    ConnectorContext,
    ProfileChange,
    Record,
    RecordResult,
    Rejection,
    Stream,
)
from crmsync.errors import ConfigError, ConnectorError, CrmsyncError
from crmsync_generic_csv import columnar
from crmsync_generic_csv.files import CsvFile, scan
from crmsync_generic_csv.orders import OrderReader
from crmsync_generic_csv.reader import ActivityReader, MemberReader, resolve_columns
from crmsync_generic_csv.settings import CsvSettings
from crmsync_generic_csv.table_writer import write_table
from crmsync_generic_csv.writer import ProfileWriter, RejectsWriter

CAPABILITIES = frozenset(
    {
        Capability.PULL_MEMBERS,
        Capability.PULL_ORDERS,
        Capability.PULL_ACTIVITIES,
        Capability.PUSH_PROFILES,
        Capability.INCREMENTAL,
    }
)
CURSOR_VERSION = 1
READERS = {Stream.MEMBERS: MemberReader, Stream.ORDERS: OrderReader, Stream.ACTIVITIES: ActivityReader}


class CsvConnector(Connector):
    """Reads CSV exports and writes profiles to a CSV; see :class:`~crmsync_generic_csv.settings.CsvSettings`."""

    capabilities: ClassVar[frozenset[Capability]] = CAPABILITIES
    settings: CsvSettings

    def __init__(self, settings: CsvSettings, context: ConnectorContext) -> None:  # type: ignore[override]
        super().__init__(settings, context)
        self.push_batch_size = settings.push_batch_size  # type: ignore[misc]
        self.push_fields = tuple(settings.push_fields)  # type: ignore[misc]
        self.rejects = RejectsWriter(settings.default_rejects_path(), settings.output_encoding)
        self._profiles: ProfileWriter | None = None

    # ------------------------------------------------------------------ pull
    def _path(self, stream: Stream) -> Path:
        path = self.settings.path(stream.value)
        if path is None:
            raise ConfigError(
                f"connectors.{self.name}.{stream.value}_path: not set, so this connector cannot pull {stream.value}"
            )
        if not path.is_file():
            raise ConfigError(f"connectors.{self.name}.{stream.value}_path: file not found ({path})")
        return path

    def _fingerprint(self, stream: Stream) -> str:
        return f"{self.settings.fingerprint(stream.value)}/{self.context.timezone.key}/{self.context.base_currency}"

    def _cursor(self, stream: Stream, sha256: str, size: int) -> str:
        state = {"v": CURSOR_VERSION, "sha256": sha256, "size": size, "settings": self._fingerprint(stream)}
        return json.dumps(state, sort_keys=True)

    @staticmethod
    def _parse_cursor(cursor: str | None) -> dict[str, Any]:
        if not cursor:
            return {}
        try:
            state = json.loads(cursor)
        except ValueError:
            return {}
        return state if isinstance(state, dict) and state.get("v") == CURSOR_VERSION else {}

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        stream = Stream(stream)
        path = self._path(stream)
        info = scan(path, self.settings.encoding)
        old = self._parse_cursor(cursor)
        if (
            old.get("sha256") == info.sha256
            and old.get("size") == info.size
            and old.get("settings") == self._fingerprint(stream)
        ):
            self.context.logger.debug("%s: %s unchanged, nothing to read", self.name, path.name)
            return
        with CsvFile(path, info, self.settings.delimiter) as f:
            cursor = self._cursor(stream, info.sha256, info.size)
            fast = columnar.read_batches(stream, f, self.settings, self.context, READERS[stream], cursor)
            if fast is not None:  # a large file: read column-wise (same records and rejections)
                for batch in fast:
                    self.rejects.write(batch.rejects)
                    yield batch
                return
            items = iter(READERS[stream](f, self.settings, self.context))
            while True:
                with _gc_paused():
                    records, rejects, done = _take(items, self.settings.batch_size)
                self.rejects.write(rejects)
                if done:
                    break
                yield Batch(stream, records=records, rejects=rejects)
            new_cursor = self._cursor(stream, f.sha256, f.size)
        yield Batch(stream, records=records, rejects=rejects, cursor=new_cursor, snapshot_complete=True)

    # ------------------------------------------------------------------ push
    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        if self.settings.output_path is None:
            raise ConfigError(f"connectors.{self.name}.output_path: not set, so this connector cannot push")
        if self._profiles is None:
            self._profiles = ProfileWriter(
                self.settings.output_path,
                self.settings.push_fields,
                self.settings.tags_separator,
                self.settings.output_encoding,
            )
        try:
            return self._profiles.write(changes)
        except OSError as exc:
            raise ConnectorError(
                f"cannot write {self.settings.output_path.name}: {exc.strerror or exc}", connector=self.name
            ) from exc

    def push_table(self, table: Any) -> Any:
        """All pending changes at once: merged into the output file in one atomic rewrite (UTF-8 output)."""
        if self.settings.output_path is None:
            raise ConfigError(f"connectors.{self.name}.output_path: not set, so this connector cannot push")
        try:
            return write_table(
                self.settings.output_path, list(self.push_fields), self.settings.tags_separator,
                self.settings.output_encoding, table,
            )  # fmt: skip
        except NotImplementedError:
            return super().push_table(table)  # other encodings: the engine falls back to push()
        except (OSError, duckdb.Error) as exc:
            raise ConnectorError(f"cannot write {self.settings.output_path.name}: {exc}", connector=self.name) from exc

    # ------------------------------------------------------------------ check
    def check(self) -> list[CheckResult]:
        results: list[CheckResult] = []
        for stream in Stream:
            path = self.settings.path(stream.value)
            if path is None:
                continue
            name = f"{self.name}: {stream.value} file"
            if not path.is_file() or not os.access(path, os.R_OK):
                results.append(CheckResult(name, False, f"cannot read {path}"))
                continue
            try:
                info = scan(path, self.settings.encoding)
                with CsvFile(path, info, self.settings.delimiter) as f:
                    resolve_columns(stream.value, self.settings, f)
            except (CrmsyncError, OSError, UnicodeError) as exc:
                results.append(CheckResult(name, False, str(exc)))
                continue
            results.append(CheckResult(name, True, f"{path.name}: {info.encoding}, columns found"))
        for label, target in (("output", self.settings.output_path), ("rejects", self.rejects.path)):
            if target is None:
                continue
            folder = _existing_parent(target)
            ok = folder.is_dir() and os.access(folder, os.W_OK) and (not target.exists() or os.access(target, os.W_OK))
            detail = f"{target.parent} is writable" if ok else f"cannot write to {target}"
            results.append(CheckResult(f"{self.name}: {label} file", ok, detail))
        return results


def _take(items: Iterator[Any], size: int) -> tuple[list[Record], list[Rejection], bool]:
    """The next ``size`` items split into records and rejections, and whether ``items`` is exhausted."""
    records: list[Record] = []
    rejects: list[Rejection] = []
    for item in items:
        if isinstance(item, Rejection):
            rejects.append(item)
        else:
            records.append(item)
        if len(records) + len(rejects) >= size:
            return records, rejects, False
    return records, rejects, True


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is built.

    Building a batch allocates many objects that all survive (the records), which makes CPython run full
    collections again and again; reading creates no reference cycles, so pausing loses nothing. The previous
    state is restored before the batch is handed to the engine.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _existing_parent(path: Path) -> Path:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
