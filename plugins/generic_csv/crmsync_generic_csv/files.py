"""Opening CSV files: content hash and size, encoding detection, and rows with their line numbers.

``digest`` hashes a file (the cursor compares hashes, so an unchanged file is never decoded or parsed).
``scan`` reads a file about to be parsed once in large chunks to hash it, to measure its longest lines and to
settle its encoding. With ``encoding = "auto"`` a byte-order mark decides; else a file that decodes as UTF-8 is
UTF-8. A file with bytes that are not UTF-8 is read as GB18030 (the superset of GBK that Chinese spreadsheet
exports use) only when GB18030 decodes it with fewer errors and it looks like one (:func:`_may_be_gb18030`: a
non-ASCII header that is not UTF-8, or mostly non-UTF-8 lines). Otherwise it stays UTF-8: one pasted GBK row never
makes ``Müller`` read as ``M眉ller``. Undecodable bytes do not stop a read: they are kept as surrogate escapes and
the rows holding them are rejected one by one.

Rows come from :class:`~crmsync_generic_csv.records.RecordReader`: lines and cells are bounded, and a broken
quote never swallows the rows after it.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crmsync import ConfigError
from crmsync_generic_csv.records import MAX_FIELD, MAX_LINE, BadRow, RecordReader

CHUNK = 1 << 20
SAMPLE_LINES = 100_000
"""Non-ASCII lines looked at to tell a GB18030 file from a UTF-8 file with some undecodable rows."""
_BAD = re.compile("[\udc80-\udcff]")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass(frozen=True)
class FileInfo:
    """What one pass over a file's bytes found out."""

    sha256: str
    size: int
    encoding: str
    clean: bool
    """``True`` when every byte decoded: rows need no per-row check for undecodable bytes."""
    long_line: int = 0
    """Bytes of the longest line that crosses a :data:`CHUNK` boundary. Every line longer than :data:`CHUNK`
    does, so no line is longer than ``max(long_line, CHUNK)``."""


def _errors(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool = False) -> int:
    return len(_BAD.findall(decoder.decode(chunk, final)))


def _count_errors(path: Path, encoding: str) -> int:
    """Undecodable bytes of ``path`` in ``encoding`` (an ASCII-compatible one: ASCII chunks are skipped)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    bad = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            if not (chunk.isascii() and not decoder.getstate()[0]):
                bad += _errors(decoder, chunk)
    return bad + _errors(decoder, b"", final=True)


def digest(path: Path) -> tuple[str, int]:
    """The SHA-256 and size of ``path``: enough to tell an unchanged file without decoding it."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest(), fh.tell()


def scan(path: Path, encoding: str = "auto") -> FileInfo:
    """Hash ``path``, measure its long lines and settle its encoding (see the module docstring).

    Chunks are decoded strictly (fast, in C) until one fails; from there on they are decoded with surrogate
    escapes and the undecodable bytes counted.
    """
    digest = hashlib.sha256()
    size = bad = longest = run = 0  # run: bytes since the last line break
    with path.open("rb") as fh:
        chunk = fh.read(CHUNK)
        chosen = encoding
        if encoding == "auto":
            chosen = next((name for bom, name in _BOMS if chunk.startswith(bom)), "utf-8")
        decoder = codecs.getincrementaldecoder(chosen)(errors="strict")
        counting = False
        utf8 = codecs.lookup(chosen).name in ("utf-8", "utf-8-sig")
        while chunk:
            digest.update(chunk)
            size += len(chunk)
            if (first := chunk.find(b"\n")) < 0:
                run += len(chunk)
            else:
                longest, run = max(longest, run + first), len(chunk) - chunk.rfind(b"\n") - 1
            # ASCII is valid UTF-8 (and GB18030): skip decoding when nothing is pending
            if not (utf8 and chunk.isascii() and not decoder.getstate()[0]):
                if counting:
                    bad += _errors(decoder, chunk)
                else:
                    state = decoder.getstate()
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        counting = True
                        decoder = codecs.getincrementaldecoder(chosen)(errors="surrogateescape")
                        decoder.setstate(state)
                        bad += _errors(decoder, chunk)
            chunk = fh.read(CHUNK)
        bad += _errors(decoder, b"", final=True) if counting else _final_error(decoder)
    if bad and encoding == "auto" and chosen == "utf-8" and _may_be_gb18030(path):
        gb_bad = _count_errors(path, "gb18030")
        if gb_bad < bad:
            chosen, bad = "gb18030", gb_bad
    return FileInfo(digest.hexdigest(), size, chosen, clean=bad == 0, long_line=max(longest, run))


def _final_error(decoder: codecs.IncrementalDecoder) -> int:
    try:
        decoder.decode(b"", True)
    except UnicodeDecodeError:
        return 1
    return 0


def _may_be_gb18030(path: Path) -> bool:
    """Whether a file that is not valid UTF-8 may be GB18030, judging by its header and first non-ASCII lines.

    A header that is not plain ASCII decides (it is valid UTF-8 or not). Otherwise not when one of the lines is
    valid UTF-8 that GB18030 cannot decode, nor when at least as many of them are valid UTF-8 as are not (a UTF-8
    file with a few rows in another encoding).
    """
    counts = {"utf-8": 0, "other": 0}
    with path.open("rb") as fh:
        header = fh.readline(CHUNK)
        if not header.isascii():  # the header is written by the exporting program itself: it decides
            return not _decodes(header)
        tail = b""
        while sum(counts.values()) < SAMPLE_LINES:
            chunk = fh.read(CHUNK)
            data = tail + chunk
            cut = (data.rfind(b"\n") + 1 or len(data)) if chunk else len(data)
            data, tail = data[:cut], data[cut:]
            if not _classify(data, counts):
                return False
            if not chunk:
                break
    return counts["utf-8"] < counts["other"]


def _classify(data: bytes, counts: dict[str, int]) -> bool:
    """Count the non-ASCII lines of ``data`` that are valid UTF-8 and those that are not; ``False`` as soon as
    one is UTF-8 that GB18030 cannot decode."""
    if data.isascii():
        return True
    for line in data.splitlines():
        if line.isascii():
            continue
        if not _decodes(line):
            counts["other"] += 1
        elif _decodes(line, "gb18030"):
            counts["utf-8"] += 1
        else:
            return False
    return True


def _decodes(data: bytes, encoding: str = "utf-8") -> bool:
    """Whether ``data`` decodes in ``encoding``."""
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


class _HashingReader(io.RawIOBase):
    """A raw binary stream that hashes every byte read through it."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)
        if n:
            view = memoryview(buffer)[:n]
            self.digest.update(view)
            self.size += n
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


class CsvFile:
    """Rows of one CSV file with the line each starts on; ``sha256``/``size`` of what was read, at the end.

    ``max_line`` and ``max_field`` bound a record and a cell, in characters (see :mod:`.records`).
    """

    def __init__(
        self, path: Path, info: FileInfo, delimiter: str, max_line: int = MAX_LINE, max_field: int = MAX_FIELD
    ) -> None:
        self.path = path
        self.info = info
        self.name = path.name
        self.max_field = max_field
        self._hashing = _HashingReader(path.open("rb", buffering=0))  # type: ignore[arg-type]
        buffered = io.BufferedReader(self._hashing, buffer_size=CHUNK)
        errors = "strict" if info.clean else "surrogateescape"
        self._text = io.TextIOWrapper(buffered, encoding=info.encoding, errors=errors, newline="")
        self._records = RecordReader(self._text, delimiter, max_line, max_field)
        self._rows = iter(self._records)
        self.header: list[str] = []
        for line, row in self._rows:
            if isinstance(row, BadRow):
                self.close()
                raise ConfigError(f"{path}:{line}: the header row cannot be read: {row.problem}")
            if any(cell.strip() for cell in row):
                self.header = [cell.replace("\ufeff", "").strip() for cell in row]
                break
        self.header_line = self._records.done
        """The last line of the header row."""
        self._records.width = len(self.header)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(line, cells)`` of the rows after the header; blank lines are skipped. ``line`` is where a row starts
        (1-based); a row that cannot be read as it stands is a :class:`~.records.BadRow` saying why."""
        return self._rows

    @staticmethod
    def undecodable(row: list[str]) -> bool:
        return any(_BAD.search(cell) for cell in row)

    @staticmethod
    def printable(cell: str) -> str:
        """``cell`` with undecodable bytes shown as ``\\xff`` (so it can be stored and written anywhere)."""
        return _BAD.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", cell)

    @property
    def sha256(self) -> str:
        return self._hashing.digest.hexdigest()

    @property
    def size(self) -> int:
        return self._hashing.size

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
