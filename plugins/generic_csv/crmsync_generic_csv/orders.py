"""Reading orders: rows grouped into orders on the order id, line amounts summed, one bad row rejects its order.

Shops export one row per line item, with order-level values (date, customer, status, currency...) on the first
row of the order; the rows of one order need not be adjacent. Each order-level value is taken from the first
row of the order that has it (the amount refunded on the order, ``orders_columns.refunded_amount``, too); line
amounts are summed, or an order-total column is used when ``orders_columns.total`` is set. A bad row rejects its
whole order, so a partial sum is never stored.

Grouping needs every order of a file in memory until the file ends. A file larger than
``group_partition_bytes`` is therefore first split by a hash of the order id into partition files in a
temporary folder, and each partition is grouped on its own: memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import csv
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from crmsync import Order, OrderStatus, Rejection, Stream
from crmsync_generic_csv.build import builder
from crmsync_generic_csv.parse import CellError, parse_amount, parse_currency, parse_email, parse_rate
from crmsync_generic_csv.reader import BadCell, Item, _RowReader

_new_order = builder(Order)
MAX_PARTITIONS = 256
_MAX_AMOUNT = 10**14
_LEVEL_FIELDS = (
    "member_external_id",
    "member_email",
    "placed_at",
    "currency",
    "status",
    "exchange_rate",
    "updated_at",
    "total",
    "refunded_amount",
)


class OrderReader(_RowReader):
    stream = Stream.ORDERS

    def _levels(self) -> list[tuple[int, str, Callable[[str], Any]]]:
        """(column, field, parser) of each order-level value present in the file; slot ``LEVEL + n``."""
        statuses = self.settings.statuses()
        comma = self.settings.decimal_comma
        currencies: dict[str, str] = {}

        def status(text: str) -> OrderStatus:
            found = statuses.get(text.lower())
            if found is None:
                raise CellError(f"unknown status {text!r} (map it with status_map)")
            return found

        def currency(text: str) -> str:
            found = currencies.get(text)
            if found is None:
                found = currencies[text] = parse_currency(text)
            return found

        parsers: dict[str, Callable[[str], Any]] = {
            "member_external_id": str,
            "member_email": parse_email,
            "placed_at": self.dates,
            "currency": currency,
            "status": status,
            "exchange_rate": lambda t: parse_rate(t, comma),
            "updated_at": self.dates,
            "total": lambda t: parse_amount(t, comma),
            "refunded_amount": lambda t: parse_amount(t, comma),
        }
        return [(self.idx[f], f, func) for f, func in parsers.items() if f in self.idx]

    def __iter__(self) -> Iterator[Item]:
        self.levels = self._levels()
        parts = min(MAX_PARTITIONS, -(-self.f.info.size // self.settings.group_partition_bytes))
        if parts <= 1:
            yield from self._group(((line, row, False) for line, row in self.f.rows()), check=True)
            return
        yield from self._partitioned(parts)

    def _partitioned(self, parts: int) -> Iterator[Item]:
        with ExitStack() as stack:
            spill_dir = self.settings.spill_dir
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crmsync-", dir=spill_dir)))
            opts: dict[str, Any] = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}
            files = [stack.enter_context((folder / f"{n}.csv").open("w+", **opts)) for n in range(parts)]
            writers = [csv.writer(fh) for fh in files]
            id_i = self.idx["external_id"]
            for line, row in self.f.rows():
                oid = row[id_i].strip() if len(row) > id_i else ""
                problem = self._problem(row, oid)
                if problem:
                    yield self.reject(line, problem[0], problem[1], row, oid)
                    if not oid:
                        continue
                    row = [oid] * (id_i + 1)  # only the id is needed to mark the order bad
                writers[zlib.crc32(oid.encode("utf-8", "surrogateescape")) % parts].writerow(
                    [line, "1" if problem else "", *row]
                )
            for fh in files:
                fh.seek(0)
                rows = ((int(r[0]), r[2:], r[1] == "1") for r in csv.reader(fh))
                yield from self._group(rows, check=False)
                fh.truncate(0)

    def _problem(self, row: list[str], oid: str) -> tuple[str | None, str] | None:
        shape = self.shape_error(row)
        if shape:
            return shape
        if not oid:
            return "external_id", "missing order id"
        return None

    def _group(self, rows: Iterable[tuple[int, list[str], bool]], check: bool) -> Iterator[Item]:
        # Group state is kept column-wise (one list per value, an index per order id) rather than one object
        # per order: fewer objects for the garbage collector to walk, and less memory.
        comma = self.settings.decimal_comma
        total = "total" in self.idx  # the order's amount comes from its total; line amounts are still checked
        amount_i = self.idx.get("amount")
        index: dict[str, int] = {}
        lines: list[int] = []
        bad: list[bool] = []
        amounts: list[Any] = []
        values: dict[str, list[Any]] = {field: [] for _, field, _ in self.levels}
        levels = [(i, values[field], field, func) for i, field, func in self.levels]
        columns = [amounts, *values.values()]
        id_i = self.idx["external_id"]
        for line, row, flagged in rows:
            oid = row[id_i].strip() if len(row) > id_i else ""
            if check and (problem := self._problem(row, oid)):
                yield self.reject(line, problem[0], problem[1], row, oid)
                if not oid:
                    continue
                flagged = True
            g = index.get(oid)
            if g is None:
                g = index[oid] = len(lines)
                lines.append(line)
                bad.append(False)
                for column in columns:
                    column.append(None)
            if flagged:  # already rejected on its own line
                bad[g] = True
                continue
            try:  # every line is checked, also in an order already rejected: each bad line is reported
                for i, column, field, func in levels:
                    if column[g] is None and (text := row[i].strip()):
                        try:
                            column[g] = func(text)
                        except CellError as exc:
                            raise BadCell(field, str(exc)) from None
                if amount_i is not None:
                    if text := row[amount_i].strip():
                        try:
                            value = parse_amount(text, comma)
                        except CellError as exc:
                            raise BadCell("amount", str(exc)) from None
                        amounts[g] = value if amounts[g] is None else amounts[g] + value
                    elif not total:
                        raise BadCell("amount", "missing amount")
            except BadCell as exc:
                bad[g] = True
                yield self.reject(line, exc.field, f"{exc.reason} (order {oid} skipped)", row, oid)
        empty = [None] * len(lines)
        get = {field: values.get(field, empty) for field in _LEVEL_FIELDS}
        for oid, g in index.items():
            if not bad[g]:
                amount = get["total"][g] if total else amounts[g]
                yield self._finish(oid, lines[g], amount, {f: c[g] for f, c in get.items()})

    def _finish(self, oid: str, line: int, amount: Any, value: dict[str, Any]) -> Order | Rejection:
        member, email, placed_at = value["member_external_id"], value["member_email"], value["placed_at"]
        problem: tuple[str, str] | None = None
        amount_field = "total" if "total" in self.idx else "amount"
        if placed_at is None:
            problem = ("placed_at", "missing order date")
        elif member is None and email is None:
            problem = ("member_external_id", "no customer id or email")
        elif amount is None:
            problem = (amount_field, "missing amount")
        elif abs(amount) >= _MAX_AMOUNT:
            problem = (amount_field, f"order total too large: {amount}")
        locator = f"{self.f.name}:{line}"
        if problem:
            return Rejection(self.stream, locator, problem[0], problem[1], record_id=oid)
        return _new_order(
            source=self.source,
            external_id=oid,
            deleted=False,
            locator=locator,
            member_external_id=member,
            member_email=email,
            placed_at=placed_at,
            amount=amount,
            currency=value["currency"] or self.currency,
            exchange_rate=value["exchange_rate"],
            status=value["status"] or OrderStatus.PAID,
            updated_at=value["updated_at"],
            refunded_amount=value["refunded_amount"],
        )
