"""Reading CSV rows into canonical records: what all readers share, members and activities.

Each reader yields records and :class:`~crmsync.Rejection` values in one stream; a bad row never stops the
read. Cells are validated here (see :mod:`.parse`), then records are built without pydantic's per-row
validation (:mod:`.build`): every field a model would check is checked before, so the engine still only sees
valid records.

Orders, grouped from line items, are read in :mod:`.orders`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from crmsync import Activity, ConfigError, ConnectorContext, Member, Order, Rejection, Stream
from crmsync_generic_csv.build import builder
from crmsync_generic_csv.files import CsvFile
from crmsync_generic_csv.parse import (
    CellError,
    DateParser,
    parse_bool,
    parse_email,
    parse_points,
)
from crmsync_generic_csv.records import BadRow
from crmsync_generic_csv.settings import CsvSettings

REQUIRED = {
    "members": ("external_id",),
    "orders": ("external_id", "placed_at"),
    "activities": ("kind", "occurred_at"),
}
Item = Member | Order | Activity | Rejection
PERSONAL_FIELDS = frozenset({"email", "member_email", "phone", "first_name", "last_name"})
"""Fields whose values a rejection reason shows only with ``logging.verbose_personal_data``."""


class BadCell(Exception):
    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def resolve_columns(stream: str, settings: CsvSettings, f: CsvFile) -> dict[str, int]:
    """Canonical field -> column index; raises :class:`ConfigError` naming the file and a missing column."""
    exact = {h: i for i, h in reversed(list(enumerate(f.header)))}
    folded = {h.casefold(): i for i, h in reversed(list(enumerate(f.header)))}
    explicit: dict[str, str] = getattr(settings, f"{stream}_columns")
    index: dict[str, int] = {}
    missing: list[str] = []
    for field, column in settings.columns(stream).items():
        i = exact.get(column, folded.get(column.casefold()))
        if i is not None:
            index[field] = i
        elif field in explicit or field in REQUIRED[stream]:
            missing.append(f"column {column!r} (for {field}; set {stream}_columns.{field} to rename)")
    if stream == "orders" and "amount" not in index and "total" not in index and "amount" not in explicit:
        missing.append(f"column {settings.columns(stream)['amount']!r} (for amount, or set orders_columns.total)")
    if stream != "members" and "member_external_id" not in index and "member_email" not in index:
        cols = settings.columns(stream)
        missing.append(
            f"column {cols['member_external_id']!r} or {cols['member_email']!r} "
            f"(to find each {stream[:-1]}'s customer by id or by email)"
        )
    if missing:
        found = ", ".join(repr(h) for h in f.header) or "no header row"
        raise ConfigError(
            f"{f.path}: missing " + "; ".join(missing),
            hint=f"the file's columns are: {found}",
        )
    _refuse_duplicates(stream, settings, f, set(index.values()))
    return index


def _refuse_duplicates(stream: str, settings: CsvSettings, f: CsvFile, mapped: set[int]) -> None:
    """Raise :class:`ConfigError` when two columns that the read uses have the same header.

    Headers are compared as they are matched (ignoring case and surrounding spaces). A column is used when a
    field is mapped to it or when it is kept as an attribute (members: every unmapped column, or those named in
    ``member_attributes``; activities: every unmapped column). Duplicates among columns never read are allowed.
    """
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(f.header):
        if name:
            groups.setdefault(name.casefold(), []).append(i)
    wanted = settings.member_attributes if stream == "members" else None
    keeps_all = stream == "activities" or (stream == "members" and wanted is None)
    clashes = []
    for positions in groups.values():
        read = keeps_all or any(i in mapped or (wanted and f.header[i] in wanted) for i in positions)
        if len(positions) > 1 and read:
            names = "/".join(dict.fromkeys(repr(f.header[i]) for i in positions))
            numbers = [str(i + 1) for i in positions]
            clashes.append(f"{names} (columns {', '.join(numbers[:-1])} and {numbers[-1]})")
    if clashes:
        raise ConfigError(
            f"{f.path}: the header names a column more than once: " + "; ".join(clashes),
            hint="rename the columns in the file so that each name is used once "
            "(names are compared ignoring case and surrounding spaces)",
        )


class _RowReader:
    """What the three readers share: the file, its columns, date parsing, and building rejections."""

    stream: Stream

    def __init__(self, f: CsvFile, settings: CsvSettings, context: ConnectorContext) -> None:
        self.f = f
        self.settings = settings
        self.source = context.name
        self.idx = resolve_columns(self.stream.value, settings, f)
        self.width = len(f.header)
        self.dates = DateParser(settings.date_formats, context.timezone)
        self.currency = (settings.default_currency or context.base_currency).upper()
        self.verbose = context.verbose

    def raw(self, row: list[str]) -> dict[str, str]:
        if not self.f.info.clean:
            row = [self.f.printable(cell) for cell in row]
        out = dict(zip(self.f.header, row, strict=False))
        for i in range(self.width, len(row)):
            out[f"column_{i + 1}"] = row[i]
        return out

    def reject(self, line: int, field: str | None, reason: str, row: list[str], record_id: str | None) -> Rejection:
        if field in PERSONAL_FIELDS and not self.verbose and (i := self.idx.get(field)) is not None and i < len(row):
            # reasons reach reports and logs: a person's email or name is shown only in verbose mode
            value = row[i].strip()
            if value:
                reason = reason.replace(repr(value), "(value hidden)")
        return Rejection(
            stream=self.stream,
            locator=f"{self.f.name}:{line}",
            field=field,
            reason=reason,
            record_id=(self.f.printable(record_id) if not self.f.info.clean else record_id) or None,
            raw=self.raw(row),
        )

    def shape_error(self, row: list[str]) -> tuple[str | None, str] | None:
        """(field, reason) when ``row`` is not a row of this file: bad shape, too long, undecodable bytes."""
        if isinstance(row, BadRow):
            return self.field_at(row.column), row.problem
        if len(row) != self.width:
            return None, f"expected {self.width} columns, found {len(row)}"
        if not self.f.info.clean and self.f.undecodable(row):
            encoding = self.f.info.encoding
            return None, f"bytes that are not {encoding}: this row is in another encoding, or damaged (set encoding)"
        return None

    def field_at(self, column: int | None) -> str | None:
        """The canonical field read from ``column``, else its header (an attribute column), else ``None``."""
        if column is None:
            return None
        field = next((f for f, i in self.idx.items() if i == column), None)
        return field or (self.f.header[column] if column < self.width else None)

    def cell(self, row: list[str], field: str) -> str:
        i = self.idx.get(field)
        return row[i].strip() if i is not None else ""

    def parse(self, field: str, func: Any, text: str) -> Any:
        try:
            return func(text)
        except CellError as exc:
            raise BadCell(field, str(exc)) from None

    def attributes(self, row: list[str], columns: list[tuple[str, int]]) -> dict[str, str]:
        return {name: value for name, i in columns if (value := row[i].strip())}


_new_member = builder(Member)
_new_activity = builder(Activity)


class MemberReader(_RowReader):
    stream = Stream.MEMBERS

    def __iter__(self) -> Iterator[Item]:
        used = set(self.idx.values())
        wanted = self.settings.member_attributes
        self.extra = [
            (h, i) for i, h in enumerate(self.f.header) if h and (h in wanted if wanted is not None else i not in used)
        ]
        seen: set[str] = set()
        for line, row in self.f.rows():
            ext = self.cell(row, "external_id") if len(row) > self.idx["external_id"] else ""
            problem = self.shape_error(row)
            if problem:
                yield self.reject(line, *problem, row, ext)
                continue
            try:
                if not ext:
                    raise BadCell("external_id", "missing customer id")
                if ext in seen:
                    raise BadCell("external_id", f"duplicate customer id {ext!r} (an earlier row has it)")
                member = self.build(row, ext)
            except BadCell as bad:
                yield self.reject(line, bad.field, bad.reason, row, ext)
                continue
            seen.add(ext)
            yield member

    def build(self, row: list[str], ext: str) -> Member:
        values: dict[str, Any] = {}
        for field in ("phone", "first_name", "last_name"):
            values[field] = self.cell(row, field) or None
        email = self.cell(row, "email")
        values["email"] = self.parse("email", parse_email, email) if email else None
        for field in ("created_at", "updated_at"):
            text = self.cell(row, field)
            values[field] = self.parse(field, self.dates, text) if text else None
        opt_in = self.cell(row, "opt_in")
        values["opt_in"] = self.parse("opt_in", parse_bool, opt_in) if opt_in else None
        return _new_member(
            source=self.source,
            external_id=ext,
            deleted=False,
            attributes=self.attributes(row, self.extra),
            **values,
        )


class ActivityReader(_RowReader):
    stream = Stream.ACTIVITIES

    def __iter__(self) -> Iterator[Item]:
        used = set(self.idx.values())
        extra = [(h, i) for i, h in enumerate(self.f.header) if h and i not in used]
        comma = self.settings.decimal_comma
        for line, row in self.f.rows():
            ext = self.cell(row, "external_id") if len(row) == self.width else ""
            problem = self.shape_error(row)
            if problem:
                yield self.reject(line, *problem, row, ext)
                continue
            try:
                if "external_id" in self.idx and not ext:
                    raise BadCell("external_id", "missing activity id")
                ext = ext or "row-" + hashlib.sha1("\x1f".join(row).encode("utf-8", "surrogatepass")).hexdigest()[:20]
                member = self.cell(row, "member_external_id") or None
                email_text = self.cell(row, "member_email")
                email = self.parse("member_email", parse_email, email_text) if email_text else None
                if member is None and email is None:
                    raise BadCell("member_external_id", "no customer id or email")
                kind = self.cell(row, "kind")
                if not kind:
                    raise BadCell("kind", "missing activity kind")
                when_text = self.cell(row, "occurred_at")
                if not when_text:
                    raise BadCell("occurred_at", "missing date")
                occurred = self.parse("occurred_at", self.dates, when_text)
                points_text = self.cell(row, "points")
                points = self.parse("points", lambda t: parse_points(t, comma), points_text) if points_text else None
            except BadCell as bad:
                yield self.reject(line, bad.field, bad.reason, row, ext)
                continue
            yield _new_activity(
                source=self.source,
                external_id=ext,
                deleted=False,
                member_external_id=member,
                member_email=email,
                kind=kind,
                occurred_at=occurred,
                points=points,
                attributes=self.attributes(row, extra),
            )
