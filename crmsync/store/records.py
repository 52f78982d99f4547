"""The record tables, declared once: the store's DDL, the Arrow schema of a connector's ``Batch.table`` and the
conversion of canonical records into that schema all derive from :data:`TABLES`.

Each :class:`RecordTable` lists its columns in table order. A column a connector provides (``loaded``) is part of
the Arrow schema; the store sets the others (``member_id`` when matching, ``seen_run``, and ``locator``: where an
order or activity came from, taken from the batch's ``_locator`` column or the record's ``locator``). ``source``,
``amount_base`` and ``refunded_amount_base`` are in the schema but filled in by the store (see
:mod:`crmsync.store.staging`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

import pyarrow as pa

from crmsync.connector import Rejection, Stream
from crmsync.models import Activity, Member, Order

TS = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 4)
RATE = pa.decimal128(18, 8)
STR = pa.string()
BOOL = pa.bool_()


@dataclass(frozen=True)
class Column:
    """One column of a record table: its name, its Arrow type, and whether a connector provides it."""

    name: str
    type: pa.DataType
    json: bool = False
    """Stored as JSON (a mapping of the record), carried as its text in Arrow."""
    loaded: bool = True
    """``False``: the store sets it; it is not part of the Arrow schema."""

    @property
    def arrow_sql(self) -> str:
        """The SQL type of the column's Arrow values."""
        t = self.type
        if pa.types.is_timestamp(t):
            return "TIMESTAMPTZ"
        if pa.types.is_decimal(t):
            return f"DECIMAL({t.precision},{t.scale})"
        return {STR: "VARCHAR", BOOL: "BOOLEAN"}[t]

    @property
    def sql(self) -> str:
        """The SQL type of the stored column."""
        return "JSON" if self.json else self.arrow_sql


@dataclass(frozen=True)
class RecordTable:
    """The table holding one stream's records."""

    stream: Stream
    model: type[Member] | type[Order] | type[Activity]
    columns: tuple[Column, ...]

    @property
    def name(self) -> str:
        return self.stream.value

    @cached_property
    def loaded(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.loaded)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The names of the columns a connector provides, in table order."""
        return tuple(c.name for c in self.loaded)

    @cached_property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the columns a connector provides (``Batch.table``)."""
        return pa.schema([(c.name, c.type) for c in self.loaded])

    @cached_property
    def located(self) -> bool:
        """Whether the table keeps each row's locator."""
        return any(c.name == LOCATOR for c in self.columns)

    @property
    def ddl(self) -> str:
        cols = ", ".join(f"{c.name} {c.sql}" for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols})"

    def add_columns(self, *names: str) -> list[str]:
        """Statements adding the declared columns ``names`` to a table created before they were declared (a
        migration); a table created with them is left as it is."""
        by_name = {c.name: c for c in self.columns}
        return [f"ALTER TABLE {self.name} ADD COLUMN IF NOT EXISTS {n} {by_name[n].sql}" for n in names]


LOCATOR = "locator"
"""The column of orders and activities saying where the row came from (``orders.csv:17``), when the connector said."""


def _table(stream: Stream, model: Any, *own: tuple[str, pa.DataType] | Column, linked: bool = True) -> RecordTable:
    """A record table: ``source``, ``external_id``, the member it belongs to (``linked``: orders and activities),
    its own columns, ``deleted``, the run that last saw it and (``linked``) where it came from."""
    head: list[tuple[str, pa.DataType] | Column] = [("source", STR), ("external_id", STR)]
    if linked:
        head += [Column("member_id", STR, loaded=False), ("member_external_id", STR), ("member_email", STR)]
    spec = [*head, *own, ("deleted", BOOL), Column("seen_run", STR, loaded=False)]
    if linked:
        spec.append(Column(LOCATOR, STR, loaded=False))
    return RecordTable(stream, model, tuple(c if isinstance(c, Column) else Column(*c) for c in spec))


ATTRIBUTES = Column("attributes", STR, json=True)
MEMBERS = _table(
    Stream.MEMBERS, Member,
    ("email", STR), ("phone", STR), ("first_name", STR), ("last_name", STR), ("created_at", TS), ("updated_at", TS),
    ATTRIBUTES, ("opt_in", BOOL),
    linked=False,
)  # fmt: skip
ORDERS = _table(
    Stream.ORDERS, Order,
    ("placed_at", TS), ("amount", MONEY), ("currency", STR), ("exchange_rate", RATE), ("amount_base", MONEY),
    ("status", STR), ("updated_at", TS), ("refunded_amount", MONEY), ("refunded_amount_base", MONEY),
)  # fmt: skip
ACTIVITIES = _table(Stream.ACTIVITIES, Activity, ("kind", STR), ("occurred_at", TS), ("points", MONEY), ATTRIBUTES)
TABLES: Mapping[Stream, RecordTable] = {t.stream: t for t in (MEMBERS, ORDERS, ACTIVITIES)}
SCHEMAS: Mapping[Stream, pa.Schema] = {s: t.schema for s, t in TABLES.items()}
"""The Arrow schema of each stream's ``Batch.table``."""
FILLED_BY_STORE = ("source", "amount_base", "refunded_amount_base")
"""Columns of the schema the store fills in (a connector's values for them are not used)."""


def _json(value: Mapping[str, Any]) -> str | None:
    return json.dumps(value, default=str, sort_keys=True, ensure_ascii=False) if value else None


def _converter(column: Column) -> Callable[[Any], Any] | None:
    """How a record's attribute becomes the column's Arrow value (``None``: as it is)."""
    if column.json:
        return _json
    if pa.types.is_decimal(column.type):
        quantum = Decimal(1).scaleb(-column.type.scale)
        return lambda v: None if v is None else v.quantize(quantum)
    return None


def _in_base(order: Order, amount: Decimal | None) -> Decimal | None:
    """An amount of the order (its ``amount`` or ``refunded_amount``) in the base currency when the order carries its
    own exchange rate (exact: the stored rate is rounded); otherwise, and when it does not fit the column, the store
    converts it (and refuses what does not fit)."""
    if order.exchange_rate is None or amount is None:
        return None
    digits = MONEY.precision - MONEY.scale
    base = amount * order.exchange_rate
    if base.adjusted() >= digits:
        return None
    base = base.quantize(Decimal(1).scaleb(-MONEY.scale))
    return base if base.adjusted() < digits else None


def to_arrow(stream: Stream, source: str, records: Sequence[Any]) -> tuple[pa.Table, list[Rejection]]:
    """The records, in order, as a table of the stream's schema plus ``_locator``; anything that is not a record of
    the stream becomes a rejection."""
    table = TABLES[stream]
    rows: list[Any] = []
    rejects: list[Rejection] = []
    for rec in records:
        if isinstance(rec, table.model):
            rows.append(rec)
        else:
            reason = f"expected {table.model.__name__}, got {type(rec).__name__}"
            rejects.append(Rejection(stream, f"{source} record", None, reason))
    arrays: list[pa.Array] = []
    for column in table.loaded:
        if column.name == "source":
            values: list[Any] = [source] * len(rows)
        elif column.name == "amount_base":
            values = [_in_base(r, r.amount) for r in rows]
        elif column.name == "refunded_amount_base":
            values = [_in_base(r, r.refunded_amount) for r in rows]
        else:
            values = [getattr(r, column.name) for r in rows]
            if convert := _converter(column):
                values = [convert(v) for v in values]
        arrays.append(pa.array(values, type=column.type))
    arrays.append(pa.array([r.locator for r in rows], type=STR))
    return pa.Table.from_arrays(arrays, schema=table.schema.append(pa.field("_locator", STR))), rejects
