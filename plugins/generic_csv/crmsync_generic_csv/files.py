"""Opening CSV files: content hash and size, encoding detection, and rows with their line numbers.

``digest`` hashes a file (the cursor compares hashes, so an unchanged file is never decoded or parsed).
``scan`` reads a file about to be parsed once in large chunks to hash it and to settle its encoding: with
``encoding = "auto"`` a byte-order mark decides, else a file that decodes as UTF-8 is UTF-8, else GB18030 (the
superset of GBK that Chinese spreadsheet exports use) when it decodes with fewer errors. Undecodable bytes do not
stop a read: they are kept as surrogate escapes and the rows holding them are rejected one by one.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
_BAD = re.compile("[\udc80-\udcff]")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))

csv.field_size_limit(16 * 1024 * 1024)


@dataclass(frozen=True)
class FileInfo:
    """What one pass over a file's bytes found out."""

    sha256: str
    size: int
    encoding: str
    clean: bool
    """``True`` when every byte decoded: rows need no per-row check for undecodable bytes."""


def _errors(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool = False) -> int:
    return len(_BAD.findall(decoder.decode(chunk, final)))


def _count_errors(path: Path, encoding: str) -> int:
    decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    bad = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            bad += _errors(decoder, chunk)
    return bad + _errors(decoder, b"", final=True)


def digest(path: Path) -> tuple[str, int]:
    """The SHA-256 and size of ``path``: enough to tell an unchanged file without decoding it."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest(), fh.tell()


def scan(path: Path, encoding: str = "auto") -> FileInfo:
    """Hash ``path`` and settle its encoding (see the module docstring).

    Chunks are decoded strictly (fast, in C) until one fails; from there on they are decoded with surrogate
    escapes and the undecodable bytes counted.
    """
    digest = hashlib.sha256()
    size = 0
    bad = 0
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
        if counting:
            bad += _errors(decoder, b"", final=True)
        else:
            try:
                decoder.decode(b"", True)
            except UnicodeDecodeError:
                bad += 1
    if bad and encoding == "auto" and chosen == "utf-8":
        gb_bad = _count_errors(path, "gb18030")
        if gb_bad < bad:
            chosen, bad = "gb18030", gb_bad
    return FileInfo(sha256=digest.hexdigest(), size=size, encoding=chosen, clean=bad == 0)


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
    """Rows of one CSV file with the line each starts on; ``sha256``/``size`` of what was read, at the end."""

    def __init__(self, path: Path, info: FileInfo, delimiter: str) -> None:
        self.path = path
        self.info = info
        self.name = path.name
        self._hashing = _HashingReader(path.open("rb", buffering=0))  # type: ignore[arg-type]
        buffered = io.BufferedReader(self._hashing, buffer_size=CHUNK)
        errors = "strict" if info.clean else "surrogateescape"
        self._text = io.TextIOWrapper(buffered, encoding=info.encoding, errors=errors, newline="")
        self._reader = csv.reader(self._text, delimiter=delimiter)
        self.header: list[str] = []
        for row in self._reader:
            if row and any(cell.strip() for cell in row):
                self.header = [cell.replace("\ufeff", "").strip() for cell in row]
                break
        self.header_line = self._reader.line_num

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(line, cells)``; blank lines are skipped. ``line`` is where the record starts (1-based)."""
        reader = self._reader
        last = reader.line_num
        for row in reader:
            start = last + 1
            last = reader.line_num
            if row:
                yield start, row

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


def read_header(path: Path, encoding: str, delimiter: str) -> list[str]:
    """The header row of ``path`` (for ``check``), decoded like a pull would."""
    info = scan(path, encoding)
    with CsvFile(path, info, delimiter) as f:
        return f.header
