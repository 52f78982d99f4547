"""Reading CSV rows into canonical records: members, orders (grouped from line items) and activities.

Each reader yields records and :class:`~crmsync.Rejection` values in one stream; a bad row never stops the
read. Cells are validated here (see :mod:`.parse`), then records are built with ``model_construct``: every
field a model would check is checked before, so the engine still only sees valid records.

Orders may come one row per line item, in any row order: rows are grouped on the order id; order-level
values (date, customer, status, currency...) are taken from the first row of the order that has them, line
amounts are summed (or an order-total column is used when ``orders_columns.total`` is set). One bad row
rejects its whole order, so that a partial sum is never stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from crmsync.connector import ConnectorContext, Rejection, Stream
from crmsync.errors import ConfigError
from crmsync.models import Activity, Member, Order, OrderStatus
from crmsync_generic_csv.files import CsvFile
from crmsync_generic_csv.parse import (
    CellError,
    DateParser,
    check_amount,
    parse_amount,
    parse_bool,
    parse_currency,
    parse_email,
    parse_points,
    parse_rate,
)
from crmsync_generic_csv.settings import CsvSettings

REQUIRED = {
    "members": ("external_id",),
    "orders": ("external_id", "placed_at"),
    "activities": ("kind", "occurred_at"),
}
Item = Member | Order | Activity | Rejection


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
    return index


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

    def raw(self, row: list[str]) -> dict[str, str]:
        if not self.f.info.clean:
            row = [self.f.printable(cell) for cell in row]
        out = dict(zip(self.f.header, row, strict=False))
        for i in range(self.width, len(row)):
            out[f"column_{i + 1}"] = row[i]
        return out

    def reject(self, line: int, field: str | None, reason: str, row: list[str], record_id: str | None) -> Rejection:
        return Rejection(
            stream=self.stream,
            locator=f"{self.f.name}:{line}",
            field=field,
            reason=reason,
            record_id=(self.f.printable(record_id) if not self.f.info.clean else record_id) or None,
            raw=self.raw(row),
        )

    def shape_error(self, row: list[str]) -> str | None:
        if len(row) != self.width:
            return f"expected {self.width} columns, found {len(row)}"
        if not self.f.info.clean and self.f.undecodable(row):
            return f"bytes that are not {self.f.info.encoding} (set encoding)"
        return None

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
                yield self.reject(line, None, problem, row, ext)
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
        return Member.model_construct(
            source=self.source,
            external_id=ext,
            deleted=False,
            attributes=self.attributes(row, self.extra),
            **values,
        )


class _Order:
    """The state of one order while its rows are read."""

    __slots__ = (
        "amount",
        "bad",
        "currency",
        "email",
        "line",
        "member",
        "placed_at",
        "rate",
        "status",
        "total",
        "updated",
    )

    def __init__(self, line: int) -> None:
        self.line = line
        self.bad = False
        self.amount: Any = None
        self.total: Any = None
        self.member: str | None = None
        self.email: str | None = None
        self.placed_at: Any = None
        self.currency: str | None = None
        self.status: OrderStatus | None = None
        self.rate: Any = None
        self.updated: Any = None


class OrderReader(_RowReader):
    stream = Stream.ORDERS

    def __iter__(self) -> Iterator[Item]:
        statuses = self.settings.statuses()
        comma = self.settings.decimal_comma
        by_total = "total" in self.idx
        amount_i = self.idx.get("amount")
        # order-level field -> (attribute, parser); each is read from the first row of the order that has it
        level = [
            (f, attr, func)
            for f, attr, func in (
                ("member_external_id", "member", str),
                ("member_email", "email", parse_email),
                ("placed_at", "placed_at", self.dates),
                ("currency", "currency", parse_currency),
                ("status", "status", lambda t: self._status(t, statuses)),
                ("exchange_rate", "rate", lambda t: parse_rate(t, comma)),
                ("updated_at", "updated", self.dates),
                ("total", "total", lambda t: parse_amount(t, comma)),
            )
            if f in self.idx
        ]
        level_i = [(self.idx[f], f, attr, func) for f, attr, func in level]
        id_i = self.idx["external_id"]
        groups: dict[str, _Order] = {}
        for line, row in self.f.rows():
            oid = row[id_i].strip() if len(row) > id_i else ""
            g = groups.get(oid) if oid else None
            problem = self.shape_error(row)
            if problem or not oid:
                if g is not None:
                    g.bad = True
                yield self.reject(line, None if problem else "external_id", problem or "missing order id", row, oid)
                continue
            if g is None:
                g = groups[oid] = _Order(line)
            elif g.bad:
                continue
            try:
                for i, field, attr, func in level_i:
                    if getattr(g, attr) is None and (text := row[i].strip()):
                        setattr(g, attr, self.parse(field, func, text))
                if not by_total and amount_i is not None:
                    text = row[amount_i].strip()
                    if not text:
                        raise BadCell("amount", "missing amount")
                    value = self.parse("amount", lambda t: parse_amount(t, comma), text)
                    g.amount = value if g.amount is None else g.amount + value
            except BadCell as bad:
                g.bad = True
                yield self.reject(line, bad.field, f"{bad.reason} (order {oid} skipped)", row, oid)
        for oid, g in groups.items():
            if not g.bad:
                yield self._finish(oid, g)
        groups.clear()

    @staticmethod
    def _status(text: str, statuses: dict[str, OrderStatus]) -> OrderStatus:
        status = statuses.get(text.lower())
        if status is None:
            raise CellError(f"unknown status {text!r} (map it with status_map)")
        return status

    def _finish(self, oid: str, g: _Order) -> Order | Rejection:
        locator = f"{self.f.name}:{g.line}"
        amount = g.total if "total" in self.idx else g.amount
        problem: tuple[str, str] | None = None
        if g.placed_at is None:
            problem = ("placed_at", "missing order date")
        elif g.member is None and g.email is None:
            problem = ("member_external_id", "no customer id or email")
        elif amount is None:
            problem = ("total" if "total" in self.idx else "amount", "missing amount")
        else:
            try:
                amount = check_amount(amount)
            except CellError as exc:
                problem = ("amount", f"order total: {exc}")
        if problem:
            return Rejection(self.stream, locator, problem[0], problem[1], record_id=oid)
        return Order.model_construct(
            source=self.source,
            external_id=oid,
            deleted=False,
            member_external_id=g.member,
            member_email=g.email,
            placed_at=g.placed_at,
            amount=amount,
            currency=g.currency or self.currency,
            exchange_rate=g.rate,
            status=g.status or OrderStatus.PAID,
            updated_at=g.updated,
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
                yield self.reject(line, None, problem, row, ext)
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
            yield Activity.model_construct(
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


READERS: dict[Stream, type[_RowReader]] = {
    Stream.MEMBERS: MemberReader,
    Stream.ORDERS: OrderReader,
    Stream.ACTIVITIES: ActivityReader,
}
