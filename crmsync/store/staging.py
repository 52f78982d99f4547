"""Staging a pulled batch: its rows, in the store's columns, in the temporary table ``_incoming``.

A connector hands records in two forms, an Arrow ``Batch.table`` and ``Batch.records`` (converted by
:func:`crmsync.store.records.to_arrow`); both take this one path, so each rule the store applies to an incoming row
is written once, here:

- a row without ``external_id`` is refused;
- an order's ``amount_base`` is its amount times its own exchange rate, else times 1 in the base currency, else times
  the configured rate of its currency; an order in a currency without a rate is refused, never guessed, and so is
  one whose amount in the base currency the store cannot hold; ``refunded_amount_base`` is converted the same way;
- an order's ``refunded_amount`` is refused below 0 or above its amount (an order of a negative amount refunds
  nothing);
- a later row with the same id wins over an earlier one.

A refusal names the row's locator when the connector gave one (``orders.csv:17``), else ``<connector> order <id>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import duckdb
import pyarrow as pa

from crmsync.connector import Batch, Rejection, Stream
from crmsync.store.db import Connection, scalar
from crmsync.store.records import TABLES, Column, RecordTable, to_arrow

_BAD_REFUND = "refunded_amount < 0 OR refunded_amount > greatest(amount, 0)"
"""An order's refund that the store refuses (null: nothing refunded)."""
BASE_OF = {"amount_base": "amount", "refunded_amount_base": "refunded_amount"}
"""Columns in the base currency, and the amount in the order's currency each is converted from."""
INCOMING = "_incoming"
"""The temporary table holding the staged rows: the stream's loaded columns, ``_n`` (the row's position) and
``_locator`` (where the row came from, when the connector said)."""


@dataclass(frozen=True)
class ExchangeRates:
    """How money is converted to the base currency: base-currency units per unit of each currency."""

    base: str
    rates: Mapping[str, Decimal] = field(default_factory=dict)

    def rate_sql(self, own: str | None) -> str:
        """SQL of a row's rate: its own (column ``own``), else 1 in the base currency, else the configured one."""
        whens = "".join(
            f" WHEN '{c}' THEN CAST('{r}' AS DECIMAL(18, 8))"
            for c, r in self.rates.items()
            if c.isalpha() and c != self.base
        )
        configured = f"CASE currency WHEN '{self.base}' THEN CAST(1 AS DECIMAL(18, 8)){whens} END"
        return f"coalesce({own}, {configured})" if own else configured

    def refusal(
        self, where: str, record_id: str, currency: str | None, amount: Decimal, rate: Decimal | None
    ) -> Rejection:
        """The rejection of an order whose amount cannot be converted: no rate for its currency, or out of range."""
        if rate is None:
            reason = f"no exchange rate from {currency} to {self.base} (add sync.exchange_rates.{currency})"
            return Rejection(Stream.ORDERS, where, "currency", reason, record_id=record_id)
        reason = f"{amount} {currency} at {rate} is out of range in {self.base}"
        return Rejection(Stream.ORDERS, where, "amount", reason, record_id=record_id)


def stage(con: Connection, source: str, batch: Batch, rates: ExchangeRates) -> tuple[int, list[Rejection]]:
    """Fill ``_incoming`` with the batch's rows (its table's, then its records'); return the number of rows staged
    and the rows refused (the connector's own rejections are not among them)."""
    table = TABLES[Stream(batch.stream)]
    cols = ", ".join(f"{c.name} {c.arrow_sql}" for c in table.loaded)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {INCOMING} ({cols}, _n BIGINT, _locator VARCHAR)")
    records, rejects = to_arrow(table.stream, source, batch.records) if batch.records else (None, [])
    parts = [(batch.table, False), (records, True)]
    offset = 0
    for arrow, exact in parts:
        if arrow is not None and arrow.num_rows:
            rejects += _append(con, table, source, arrow, rates, offset, exact)
            offset += arrow.num_rows
    staged = int(scalar(con, f"SELECT count(*) FROM {INCOMING}"))
    if staged and _repeats_ids(con):
        con.execute(f"DELETE FROM {INCOMING} WHERE _n NOT IN (SELECT max(_n) FROM {INCOMING} GROUP BY external_id)")
        staged = int(scalar(con, f"SELECT count(*) FROM {INCOMING}"))
    return staged, rejects


def _repeats_ids(con: Connection) -> bool:
    return bool(scalar(con, f"SELECT count(*) <> count(DISTINCT external_id) FROM {INCOMING}"))


def _append(
    con: Connection, table: RecordTable, source: str, arrow: pa.Table, rates: ExchangeRates, offset: int, exact: bool
) -> list[Rejection]:
    """Append ``arrow``'s rows to ``_incoming``; remove and return those the store refuses.

    ``exact``: the table's ``amount_base`` holds the amounts of orders that carry their own rate (records).
    """
    names = set(arrow.schema.names)
    arrow = arrow.append_column("_n", pa.array(range(offset, offset + arrow.num_rows), pa.int64()))
    exprs = ", ".join(_expr(c, names, rates, exact) for c in table.loaded)
    locator = "CAST(_locator AS VARCHAR)" if "_locator" in names else "NULL"
    con.register("_batch", arrow)
    try:
        con.execute(f"INSERT INTO {INCOMING} SELECT {exprs}, _n, {locator} FROM _batch", {"source": source})
        return _refuse(con, table, source, rates, offset)
    finally:
        with contextlib.suppress(duckdb.Error):
            con.unregister("_batch")


def _expr(column: Column, names: set[str], rates: ExchangeRates, exact: bool) -> str:
    """SQL of one staged column from ``_batch`` (whose columns are ``names``)."""
    name, sql_type = column.name, column.arrow_sql
    if name == "source":
        return "$source AS source"
    if name in BASE_OF:
        own = BASE_OF[name]
        if own == "refunded_amount" and own not in names:
            return f"CAST(NULL AS {sql_type}) AS {name}"
        rate = rates.rate_sql("exchange_rate" if "exchange_rate" in names else None)
        computed = f"TRY_CAST(round_even(CAST({own} AS DECIMAL(38, 4)) * {rate}, 4) AS {sql_type})"
        return f"coalesce({name}, {computed}) AS {name}" if exact else f"{computed} AS {name}"
    if name in names:
        return f"CAST({name} AS {sql_type}) AS {name}"
    return "false AS deleted" if name == "deleted" else f"CAST(NULL AS {sql_type}) AS {name}"


def _refuse(con: Connection, table: RecordTable, source: str, rates: ExchangeRates, offset: int) -> list[Rejection]:
    """Remove the rows just appended (from ``offset``) that the store refuses, and say why, in row order."""
    orders = table.stream is Stream.ORDERS
    money_rules = f"WHEN amount_base IS NULL THEN 'money' WHEN {_BAD_REFUND} THEN 'refund' " if orders else ""
    why = f"CASE WHEN external_id IS NULL THEN 'id' {money_rules}END"
    money = (
        f"currency, amount, {rates.rate_sql('exchange_rate')}, refunded_amount" if orders else "NULL, NULL, NULL, NULL"
    )
    bad = f"_n >= {offset} AND ({why}) IS NOT NULL"
    sql = f"SELECT _locator, external_id, {why}, {money} FROM {INCOMING} WHERE {bad} ORDER BY _n"
    rows = con.execute(sql).fetchall()
    if not rows:
        return []
    con.execute(f"DELETE FROM {INCOMING} WHERE {bad}")
    out = []
    for locator, ext, problem, currency, amount, rate, refunded in rows:
        where = locator or f"{source} {table.stream.value[:-1]} {ext}"
        if problem == "id":
            out.append(Rejection(table.stream, where, "external_id", "missing id"))
        elif problem == "refund":
            reason = f"refunded {refunded} {currency} is not between 0 and the order's amount {amount}"
            out.append(Rejection(Stream.ORDERS, where, "refunded_amount", reason, record_id=ext))
        else:
            out.append(rates.refusal(where, ext, currency, amount, rate))
    return out
