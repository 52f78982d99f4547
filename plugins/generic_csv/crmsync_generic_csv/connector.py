"""The ``generic_csv`` connector: pulls members, orders and activities from CSV exports, pushes profiles to a CSV.

Pulls are incremental per file: the cursor records each file's SHA-256 and size and a fingerprint of the
settings that shape the read. An unchanged file yields nothing; a changed one is read whole. A path may be a glob
pattern of export files (a full export and deltas): files are read in name order, a later file wins for a record
in several, and only a path naming a single file is a snapshot (its last batch says ``snapshot_complete``: the
engine then marks records absent from it as deleted). Only the last batch carries the new cursor, so an
interrupted read starts over.
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

from crmsync import (
    Batch,
    Capability,
    CheckResult,
    ConfigError,
    Connector,
    ConnectorContext,
    ConnectorError,
    CrmsyncError,
    Member,
    ProfileChange,
    Record,
    RecordResult,
    Rejection,
    Stream,
)
from crmsync_generic_csv import columnar
from crmsync_generic_csv.files import CsvFile, digest, scan
from crmsync_generic_csv.orders import OrderReader
from crmsync_generic_csv.reader import ActivityReader, MemberReader, resolve_columns
from crmsync_generic_csv.settings import CsvSettings, is_pattern, matches
from crmsync_generic_csv.table_writer import write_table
from crmsync_generic_csv.writer import ProfileWriter, RejectsWriter, names_member, remove_rows

CAPABILITIES = frozenset(
    {
        Capability.PULL_MEMBERS,
        Capability.PULL_ORDERS,
        Capability.PULL_ACTIVITIES,
        Capability.PUSH_PROFILES,
        Capability.INCREMENTAL,
    }
)
CURSOR_VERSION = 2
READERS = {Stream.MEMBERS: MemberReader, Stream.ORDERS: OrderReader, Stream.ACTIVITIES: ActivityReader}


class CsvConnector(Connector):
    """Reads CSV exports and writes profiles to a CSV; see :class:`~crmsync_generic_csv.settings.CsvSettings`."""

    capabilities: ClassVar[frozenset[Capability]] = CAPABILITIES
    settings: CsvSettings

    def __init__(self, settings: CsvSettings, context: ConnectorContext) -> None:  # type: ignore[override]
        super().__init__(settings, context)
        self.push_batch_size = settings.push_batch_size  # type: ignore[misc]
        self.push_fields = tuple(settings.push_fields)  # type: ignore[misc]
        self.rejects = RejectsWriter(settings.default_rejects_path(), settings.output_encoding, context.forgotten)
        self._profiles: ProfileWriter | None = None

    # ------------------------------------------------------------------ pull
    def _files(self, stream: Stream) -> list[Path]:
        path = self.settings.path(stream.value)
        key = f"connectors.{self.name}.{stream.value}_path"
        if path is None:
            raise ConfigError(f"{key}: not set, so this connector cannot pull {stream.value}")
        files = matches(path)
        if not files:
            raise ConfigError(f"{key}: " + ("no file matches" if is_pattern(path) else "file not found") + f" ({path})")
        return files

    def _fingerprint(self, stream: Stream) -> str:
        return f"{self.settings.fingerprint(stream.value)}/{self.context.timezone.key}/{self.context.base_currency}"

    def _cursor(self, stream: Stream, files: dict[str, list[Any]]) -> str:
        state = {"v": CURSOR_VERSION, "files": files, "settings": self._fingerprint(stream)}
        return json.dumps(state, sort_keys=True)

    @staticmethod
    def _parse_cursor(cursor: str | None, keys: list[str]) -> dict[str, Any]:
        """The cursor's state; a cursor of the single-file format applies to a single configured file."""
        if not cursor:
            return {}
        try:
            state = json.loads(cursor)
        except ValueError:
            return {}
        if not isinstance(state, dict):
            return {}
        if state.get("v") == 1 and len(keys) == 1:
            entry = [state.get("sha256"), state.get("size")]
            return {"files": {keys[0]: entry}, "settings": state.get("settings")}
        return state if state.get("v") == CURSOR_VERSION and isinstance(state.get("files"), dict) else {}

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        """Read the files that changed, in name order.

        A pattern's files are read in name order, each changed file and every file after it (a later file wins
        for a record in several files); unchanged files before the first changed one are skipped by their hash.
        Only when the path names a single file is its read a snapshot (records absent from it are deleted).
        """
        stream = Stream(stream)
        files = self._files(stream)
        keys = _keys(self.settings.path(stream.value), files)
        old = self._parse_cursor(cursor, keys)
        seen: dict[str, Any] = old.get("files", {}) if old.get("settings") == self._fingerprint(stream) else {}
        state = {key: list(digest(path)) for key, path in zip(keys, files, strict=True)}
        first = next((k for k, key in enumerate(keys) if seen.get(key) != state[key]), None)
        if first is None:
            self.context.logger.debug("%s: %s files unchanged, nothing to read", self.name, stream.value)
            if set(seen) != set(state):  # a file went away: remember the files as they are now
                yield Batch(stream, cursor=self._cursor(stream, state))
            return
        single = len(files) == 1
        for k in range(first, len(files)):
            path, info = files[k], scan(files[k], self.settings.encoding)
            state[keys[k]] = [info.sha256, info.size]  # as read, should the file change in between
            last = k == len(files) - 1
            yield from self._read_file(stream, path, keys[k], info, state, last=last, snapshot=single)

    def _read_file(
        self,
        stream: Stream,
        path: Path,
        key: str,
        info: Any,
        state: dict[str, list[Any]],
        *,
        last: bool,
        snapshot: bool,
    ) -> Iterator[Batch]:
        """Batches of one file; the last file's last batch carries the cursor of every file."""
        with self._open(path, info) as f:
            cursor = self._cursor(stream, state) if last else None
            fast = columnar.read_batches(
                stream, f, self.settings, self.context, READERS[stream], cursor, snapshot and last
            )
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
            state[key] = [f.sha256, f.size]  # what was read
        new_cursor = self._cursor(stream, state) if last else None
        yield Batch(stream, records=records, rejects=rejects, cursor=new_cursor, snapshot_complete=snapshot and last)

    def _open(self, path: Path, info: Any) -> CsvFile:
        s = self.settings
        return CsvFile(path, info, s.delimiter, s.max_line_length, s.max_field_length)

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

    # ------------------------------------------------------------------ erase
    def erase(self, member: Member) -> int:
        """Remove a forgotten member from the rejects file (rows naming their id, email or phone) and from the output
        file (their row); both files are rewritten, so none of their bytes remain."""
        keys = {v.strip().lower() for v in (member.external_id, member.email, member.phone) if v and v.strip()}
        removed = self.rejects.erase(keys)
        output = self.settings.output_path
        if output is not None:
            ids = {member.external_id.strip().lower()}
            removed += remove_rows(
                output, self.settings.output_encoding, lambda row: names_member([row.get("member_id")], ids)
            )
            self._profiles = None  # reloaded from the file on the next push
        return removed

    # ------------------------------------------------------------------ check
    def check(self) -> list[CheckResult]:
        results: list[CheckResult] = []
        for stream in Stream:
            pattern = self.settings.path(stream.value)
            if pattern is None:
                continue
            name = f"{self.name}: {stream.value} file"
            found = matches(pattern)
            path = found[-1] if found else pattern  # the newest export of a pattern
            if not path.is_file() or not os.access(path, os.R_OK):
                results.append(CheckResult(name, False, f"cannot read {path}"))
                continue
            try:
                info = scan(path, self.settings.encoding)
                with self._open(path, info) as f:
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


def _keys(pattern: Path | None, files: list[Path]) -> list[str]:
    """Each file's name in the cursor: its path below the pattern's fixed folder (the folder may move)."""
    base = pattern.parent if pattern is not None else Path()
    while base != base.parent and is_pattern(base):
        base = base.parent
    return [str(f.relative_to(base)) if f.is_relative_to(base) else str(f) for f in files]


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
