"""Writing CSV: the profiles output (merged, atomic, stable order) and the rejects file (appended); removing a
forgotten member's rows from both (:func:`remove_rows`, rewriting the file so no byte of them remains).

Every cell written is neutralised for spreadsheets: a value starting with ``= + - @``, a tab or a carriage
return is prefixed with a single quote, so that opening the file never runs a formula. Plain numbers such
as ``-5`` or ``+3.5`` stay numbers.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from crmsync import ProfileChange, RecordResult, Rejection
from crmsync.helpers import fsync_dir

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_RISKY = ("=", "+", "-", "@", "\t", "\r")
REJECT_COLUMNS = ("file", "line", "stream", "record_id", "field", "reason", "raw", "read_at")


def neutralise(cell: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with ``'`` (numbers are left alone)."""
    if cell and cell.startswith(_RISKY) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def format_value(value: Any, separator: str) -> str:
    """One pushed value as CSV text (``None`` is empty, lists are joined, booleans are true/false)."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        text = separator.join(str(v) for v in items)
    elif isinstance(value, Decimal):
        text = format(value, "f")
    else:
        text = str(value)
    return neutralise(text)


def write_atomic(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]], encoding: str) -> None:
    """Write a whole CSV next to ``path`` and move it into place: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class ProfileWriter:
    """Merges pushed profiles into the output CSV, rewriting it atomically on every :meth:`write`.

    Rows are kept in memory between calls and reloaded when the file changed on disk in the meantime.
    """

    def __init__(self, path: Path, fields: Sequence[str], separator: str, encoding: str = "utf-8") -> None:
        self.path = path
        self.header = ["member_id", *fields]
        self.fields = list(fields)
        self.separator = separator
        self.encoding = encoding
        self._rows: dict[str, list[str]] | None = None
        self._stamp: tuple[int, int] | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> dict[str, list[str]]:
        stamp = self._stat()
        if self._rows is not None and stamp == self._stamp:
            return self._rows
        rows: dict[str, list[str]] = {}
        if stamp is not None:
            with self.path.open(encoding=self.encoding, errors="replace", newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                pos = {h.replace("\ufeff", ""): i for i, h in enumerate(header)}
                picks = [pos.get(h) for h in self.header]
                for row in reader:
                    if not row or picks[0] is None or picks[0] >= len(row):
                        continue
                    rows[row[picks[0]]] = [row[i] if i is not None and i < len(row) else "" for i in picks]
        self._rows, self._stamp = rows, stamp
        return rows

    def write(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        rows = dict(self._load())
        results: list[RecordResult] = []
        for change in changes:
            member_id = str(change.member_id or "").strip()
            if not member_id:
                results.append(RecordResult(str(change.member_id), ok=False, reason="empty member id", retryable=False))
                continue
            key = neutralise(member_id)
            rows[key] = [key, *(format_value(self._value(change.values, f), self.separator) for f in self.fields)]
            results.append(RecordResult(change.member_id, ok=True))
        if any(r.ok for r in results):
            write_atomic(self.path, self.header, (rows[k] for k in sorted(rows)), self.encoding)
            self._rows, self._stamp = rows, self._stat()
        return results

    @staticmethod
    def _value(values: Mapping[str, Any], field: str) -> Any:
        return values.get(field)


def remove_rows(path: Path, encoding: str, drop: Callable[[dict[str, str]], bool]) -> int:
    """Rewrite the CSV at ``path`` without the rows ``drop`` selects (each row as header -> cell); the number
    removed. The new file replaces the old one atomically; nothing is written when no row goes."""
    if not path.exists():
        return 0
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        names = [h.replace("\ufeff", "") for h in header]
        rows = list(reader)
    kept = [row for row in rows if not drop(dict(zip(names, row, strict=False)))]
    if len(kept) < len(rows):
        write_atomic(path, header, kept, encoding)
    return len(rows) - len(kept)


def names_member(values: Iterable[str | None], keys: set[str]) -> bool:
    """Whether any of ``values`` (cells, or words of a text) is one of ``keys`` (lower case), neutralised or not."""
    for value in values:
        text = (value or "").strip().lower()
        if text and (text in keys or (text.startswith("'") and text[1:] in keys)):
            return True
    return False


def _raw_values(raw: str) -> list[str]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return [raw]
    return [str(v) for v in data.values()] if isinstance(data, dict) else [raw]


class RejectsWriter:
    """Appends rejected rows to a CSV (header written when the file is new); opened on first use. A row naming a
    forgotten member (``forgotten``, see :attr:`crmsync.ConnectorContext.forgotten`) is not written."""

    def __init__(
        self, path: Path, encoding: str = "utf-8", forgotten: Callable[[Iterable[object]], bool] | None = None
    ) -> None:
        self.path = path
        self.encoding = encoding
        self.forgotten = forgotten or (lambda values: False)
        self.count = 0

    def erase(self, keys: set[str]) -> int:
        """Remove every row naming one of ``keys`` (a member's id, email, phone; lower case): as its record id, a
        value of the raw row, or a word of the reason."""
        words = re.compile(r"[\s'\"(),;:]+")

        def drop(row: dict[str, str]) -> bool:
            cells = [row.get("record_id"), *_raw_values(row.get("raw", "")), *words.split(row.get("reason", ""))]
            return names_member(cells, keys)

        return remove_rows(self.path, self.encoding, drop)

    def write(self, rejects: Sequence[Rejection]) -> None:
        rejects = [r for r in rejects if not self.forgotten([r.record_id, *(r.raw or {}).values()])]
        if not rejects:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.path.open("a", encoding=self.encoding, newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            if new:
                writer.writerow(REJECT_COLUMNS)
            for r in rejects:
                file, _, line = r.locator.rpartition(":")
                raw = json.dumps(dict(r.raw), ensure_ascii=False, default=str) if r.raw is not None else ""
                cells = [file or r.locator, line if file else "", r.stream.value, r.record_id or "", r.field or ""]
                writer.writerow([neutralise(c) for c in (*cells, r.reason, raw, now)])
            fh.flush()
            os.fsync(fh.fileno())
        self.count += len(rejects)
