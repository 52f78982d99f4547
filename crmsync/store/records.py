"""Turning canonical records into Arrow tables the store loads in bulk."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from crmsync.connector import Rejection, Stream
from crmsync.models import Activity, Member, Order

TS = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(18, 4)
RATE = pa.decimal128(18, 8)
_Q4 = Decimal("0.0001")
_Q8 = Decimal("0.00000001")

MEMBER_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("external_id", pa.string()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("first_name", pa.string()),
        ("last_name", pa.string()),
        ("created_at", TS),
        ("updated_at", TS),
        ("attributes", pa.string()),
        ("opt_in", pa.bool_()),
        ("deleted", pa.bool_()),
    ]
)
ORDER_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("external_id", pa.string()),
        ("member_external_id", pa.string()),
        ("member_email", pa.string()),
        ("placed_at", TS),
        ("amount", MONEY),
        ("currency", pa.string()),
        ("exchange_rate", RATE),
        ("amount_base", MONEY),
        ("status", pa.string()),
        ("updated_at", TS),
        ("deleted", pa.bool_()),
    ]
)
ACTIVITY_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("external_id", pa.string()),
        ("member_external_id", pa.string()),
        ("member_email", pa.string()),
        ("kind", pa.string()),
        ("occurred_at", TS),
        ("points", MONEY),
        ("attributes", pa.string()),
        ("deleted", pa.bool_()),
    ]
)
SCHEMAS = {Stream.MEMBERS: MEMBER_SCHEMA, Stream.ORDERS: ORDER_SCHEMA, Stream.ACTIVITIES: ACTIVITY_SCHEMA}
RECORD_TYPES = {Stream.MEMBERS: Member, Stream.ORDERS: Order, Stream.ACTIVITIES: Activity}


def _json(value: Mapping[str, Any]) -> str | None:
    return json.dumps(value, default=str, sort_keys=True, ensure_ascii=False) if value else None


def to_arrow(
    stream: Stream,
    source: str,
    records: Sequence[Any],
    *,
    base_currency: str,
    rates: Mapping[str, Decimal],
) -> tuple[pa.Table, list[Rejection]]:
    """Columns for ``records`` (all stamped with ``source``); records that cannot be stored become rejections.

    Orders get ``amount_base``: ``amount * exchange_rate`` when the record has a rate, else the configured rate of
    its currency; an order in a currency with no known rate is rejected (kept in quarantine, not guessed).
    """
    expected = RECORD_TYPES[stream]
    rows_by_id: dict[str, tuple[Any, ...]] = {}  # a record repeated within a batch: the last one wins
    rejects: list[Rejection] = []
    for rec in records:
        if not isinstance(rec, expected):
            rejects.append(
                Rejection(stream, f"{source} record", None, f"expected {expected.__name__}, got {type(rec).__name__}")
            )
            continue
        if stream is Stream.ORDERS:
            rate = rec.exchange_rate
            if rate is None:
                rate = Decimal(1) if rec.currency == base_currency else rates.get(rec.currency)
            if rate is None:
                rejects.append(
                    Rejection(
                        stream,
                        f"{source} order {rec.external_id}",
                        "currency",
                        f"no exchange rate from {rec.currency} to {base_currency} "
                        f"(add sync.exchange_rates.{rec.currency})",
                        record_id=rec.external_id,
                    )
                )
                continue
            base = (rec.amount * rate).quantize(_Q4)
            rows_by_id[rec.external_id] = (
                source,
                rec.external_id,
                rec.member_external_id,
                rec.member_email,
                rec.placed_at,
                rec.amount.quantize(_Q4),
                rec.currency,
                None if rec.exchange_rate is None else rec.exchange_rate.quantize(_Q8),
                base,
                rec.status.value,
                rec.updated_at,
                rec.deleted,
            )
        elif stream is Stream.MEMBERS:
            rows_by_id[rec.external_id] = (
                source,
                rec.external_id,
                rec.email,
                rec.phone,
                rec.first_name,
                rec.last_name,
                rec.created_at,
                rec.updated_at,
                _json(rec.attributes),
                rec.opt_in,
                rec.deleted,
            )
        else:
            rows_by_id[rec.external_id] = (
                source,
                rec.external_id,
                rec.member_external_id,
                rec.member_email,
                rec.kind,
                rec.occurred_at,
                None if rec.points is None else rec.points.quantize(_Q4),
                _json(rec.attributes),
                rec.deleted,
            )
    rows = list(rows_by_id.values())
    schema = SCHEMAS[stream]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    table = pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema)
    return table, rejects
