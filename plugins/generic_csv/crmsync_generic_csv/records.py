"""Splitting CSV text into records in bounded memory, without letting one broken row take the next ones with it.

``csv.reader`` on its own holds a line without an end (a 2 GB line) in memory whole, and a quote that is never
closed pulls every following line into one cell. :class:`RecordReader` feeds it physical lines through
:class:`Lines` and checks what comes out:

- a line longer than ``max_line`` characters is never held whole: it is read to its end in chunks and becomes a
  :class:`BadRow` (with its first characters, to be recognised in the rejection); the read goes on at the next line;
- a record whose lines together grow beyond ``max_line`` characters (a quote that is not closed) stops there;
- a record spanning several lines that is not well-formed CSV (a quoted cell still open where the record ends, or
  text after a closing quote) or has the wrong number of cells is a :class:`BadRow` for its first line only: its
  other lines are read again as rows of their own, so a valid row after an unterminated quote is never lost;
- a cell longer than ``max_field`` characters makes its row a :class:`BadRow`, the cell cut short.

Line numbers are physical lines (a bare CR ends a line too, as editors show it), 1-based, of the first line of
each record. A quoted cell holding line breaks is read as one cell when its record is well formed.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TextIO

CHUNK = 1 << 20
"""Characters read at a time while skipping the rest of an overlong line."""
MAX_LINE = 1 << 20
"""Default longest record (``max_line_length``), in characters."""
MAX_FIELD = 1 << 17
"""Default longest cell (``max_field_length``), in characters."""
LIMIT = 16 << 20
"""Highest value of either setting (``csv.field_size_limit`` is set to it)."""
PREVIEW = 200
"""Characters of an overlong line or cell kept in its rejection."""

csv.field_size_limit(LIMIT)


class BadRow(list[str]):
    """The cells of a row that cannot be read as it stands: ``problem`` says why, ``column`` is the cell at fault."""

    def __init__(self, cells: Iterable[str], problem: str, column: int | None = None) -> None:
        super().__init__(cells)
        self.problem = problem
        self.column = column


class _TooLong(Exception):
    """A physical line longer than the limit (``preview`` set), or a record's lines together (``preview`` None)."""

    def __init__(self, preview: str | None = None, length: int = 0) -> None:
        super().__init__(length)
        self.preview = preview
        self.length = length


def _body(text: str) -> int:
    """Length of ``text`` without its line break."""
    return len(text) - (2 if text.endswith("\r\n") else 1 if text.endswith(("\n", "\r")) else 0)


class Lines:
    """The physical lines of ``text``, as ``csv.reader`` consumes them, none held longer than ``max_line``.

    ``record`` holds the lines handed out since the caller last cleared it (the lines of the record being read) and,
    once it has more than one, ``size`` their length; ``pending`` holds lines given back to be read again (and
    overlong lines met among them); ``eof`` is set at the end of the text.
    """

    def __init__(self, text: TextIO, max_line: int) -> None:
        self._readline = text.readline
        self.max_line = max_line
        self._want = max_line + 2  # room for CR LF: a line within the limit is always read whole
        self.pending: deque[str | _TooLong] = deque()
        self.record: list[str] = []
        self.size = 0
        self.eof = False
        self._carry = ""

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        if self.pending or self._carry:
            text = self._again()
        else:
            text = self._readline(self._want)
            if len(text) > self.max_line:  # perhaps too long: _body tells
                text = self._checked(text)
        if not text:
            self.eof = True
            raise StopIteration
        record = self.record
        record.append(text)
        if len(record) > 1:  # a record over several lines: bounded as a whole
            self.size = (self.size if len(record) > 2 else len(record[0])) + len(text)
            if self.size > self.max_line:
                raise _TooLong()
        return text

    def _again(self) -> str:
        if not self.pending:
            text, self._carry = self._carry, ""
            if text == "\r":  # a bare CR left over is a line of its own
                return text
            return self._checked(text + self._readline(self._want - len(text)))
        item = self.pending.popleft()
        if isinstance(item, _TooLong):
            raise item
        return item

    def _checked(self, text: str) -> str:
        length = _body(text)
        if length <= self.max_line:
            return text
        raise _TooLong(text[:PREVIEW], length + self._skip(text, self._want))

    def _skip(self, piece: str, want: int) -> int:
        """Read on to the end of the line ``piece`` (read asking for ``want`` characters) starts; the characters."""
        skipped = 0
        while len(piece) == want and not piece.endswith("\n"):
            if piece.endswith("\r"):  # the request ended between CR and a possible LF
                after = self._readline(1)
                self._carry = "" if after == "\n" else after
                break
            piece = self._readline(CHUNK)
            want = CHUNK
            skipped += _body(piece)
        return skipped


def _cells(text: str, delimiter: str) -> list[str]:
    """The cells of one line read on its own (a quoted cell left open runs to the line's end)."""
    cells = next(csv.reader([text], delimiter=delimiter), [])
    return [cell.rstrip("\r\n") for cell in cells]


def oversized(row: list[str], max_field: int) -> BadRow | None:
    """``row`` as a :class:`BadRow` when one of its cells is longer than ``max_field`` characters."""
    for i, cell in enumerate(row):
        if len(cell) > max_field:
            cells = [c if len(c) <= max_field else c[:PREVIEW] + "…" for c in row]
            reason = f"cell of {len(cell)} characters, longer than max_field_length ({max_field})"
            return BadRow(cells, reason, i)
    return None


class RecordReader:
    """``(line, cells)`` of every record of ``text`` (see the module docstring); ``width``: the cells of a row."""

    def __init__(self, text: TextIO, delimiter: str, max_line: int = MAX_LINE, max_field: int = MAX_FIELD) -> None:
        self.lines = Lines(text, max_line)
        self.delimiter = delimiter
        self.max_field = max_field
        self.width: int | None = None
        self.done = 0
        """Lines of the records read so far."""
        self._reader = csv.reader(self.lines, delimiter=delimiter)

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        lines, max_field = self.lines, self.max_field
        record = lines.record
        while True:
            start = self.done + 1
            record.clear()
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except _TooLong as exc:
                yield start, self._too_long(exc)
                continue
            except csv.Error as exc:
                yield start, self._again(f"not readable as CSV: {exc}")
                continue
            if len(record) == 1:
                if lines.eof and row and row[-1].endswith(("\n", "\r")):  # still quoted at the end of the file
                    yield (
                        start,
                        self._again("unterminated quote: the quoted cell opened here runs to the end of the file"),
                    )
                    continue
                self.done = start
                size = len(record[0])
            else:
                if problem := self._malformed(row):
                    yield start, self._again(problem)
                    continue
                self.done += len(record)
                size = lines.size
            if size > max_field:
                row = oversized(row, max_field) or row
            if row:
                yield start, row

    def _again(self, problem: str) -> BadRow:
        """The record being read as a bad row of its first line; its other lines are read again."""
        lines = self.lines
        first, rest = (lines.record[0], lines.record[1:]) if lines.record else ("", [])
        lines.pending.extendleft(reversed(rest))
        self.done += 1
        self._reader = csv.reader(lines, delimiter=self.delimiter)
        return BadRow(_cells(first, self.delimiter), problem)

    def _too_long(self, exc: _TooLong) -> BadRow:
        lines, limit = self.lines, self.lines.max_line
        if exc.preview is None:
            return self._again(
                f"unterminated quote, or a row too long: the row starting here runs over several lines beyond "
                f"max_line_length ({limit})"
            )
        if lines.record:  # a quoted cell left open ran into the overlong line: that line is met again later
            lines.pending.appendleft(exc)
            return self._again("unterminated quote: the row starting here runs into a line too long to read")
        self.done += 1
        self._reader = csv.reader(lines, delimiter=self.delimiter)
        cells = _cells(exc.preview, self.delimiter)
        cells[-1:] = [cells[-1] + "…"] if cells else []
        return BadRow(cells, f"line of {exc.length} characters, longer than max_line_length ({limit})")

    def _malformed(self, row: list[str]) -> str | None:
        """Why a record spanning several lines is not one row (``None``: it is, with line breaks in a cell)."""
        last = self.done + len(self.lines.record)
        try:
            for _ in csv.reader(self.lines.record, delimiter=self.delimiter, strict=True):
                pass
        except csv.Error:
            return f"unterminated quote: a quoted cell opened here is not closed where its row ends (line {last})"
        if self.width is not None and len(row) != self.width:
            return (
                f"unterminated quote: a quoted cell opened here runs to line {last}, giving {len(row)} columns "
                f"instead of {self.width}"
            )
        return None
