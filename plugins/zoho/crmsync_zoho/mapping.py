"""Translation between Zoho records and crmsync's canonical records, and of per-record write answers.

Reading accepts both shapes Zoho produces: REST JSON (lookups as ``{"name", "id"}``, numbers as numbers) and
Bulk Read CSV rows (lookups as a bare id, everything a string, multi-selects joined by ``;``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from crmsync import (
    Activity,
    ConnectorContext,
    Member,
    Order,
    OrderStatus,
    ProfileChange,
    RecordResult,
    Rejection,
    Stream,
)
from crmsync.helpers import BadValue, parse_decimal, parse_time, reject
from crmsync_zoho.settings import ActivityFields, OrderFields, PushFields

MEMBER_FIELDS = (
    "Email", "Phone", "First_Name", "Last_Name", "Created_Time", "Modified_Time", "Modified_By", "Email_Opt_Out",
)  # fmt: skip
"""Contacts fields every pull reads (``Modified_By`` tells the connector's own writes from others')."""


def lookup_id(value: Any) -> str | None:
    """The id of a lookup: ``{"name", "id"}`` in JSON, the bare id in a Bulk Read CSV."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value not in (None, "") else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def _reject(stream: Stream, module: str, record: Mapping[str, Any], exc: Exception) -> Rejection:
    rid = _text(record.get("id"))
    return reject(stream, f"{module} {rid or '?'}", exc, record_id=rid, raw=record)


def to_member(
    record: Mapping[str, Any], *, context: ConnectorContext, module: str, attributes: list[str]
) -> Member | Rejection:
    try:
        opt_out = record.get("Email_Opt_Out")
        return Member(
            source=context.name,
            external_id=str(record["id"]),
            email=_text(record.get("Email")),
            phone=_text(record.get("Phone")),
            first_name=_text(record.get("First_Name")),
            last_name=_text(record.get("Last_Name")),
            created_at=parse_time(record.get("Created_Time"), "Created_Time", context.timezone),
            updated_at=parse_time(record.get("Modified_Time"), "Modified_Time", context.timezone),
            attributes={name: record.get(name) for name in attributes if name in record},
            opt_in=None if opt_out in (None, "") else not _truthy(opt_out),
        )
    except (BadValue, ValueError, KeyError) as exc:
        if not isinstance(exc, BadValue) and "email" in str(exc).lower():
            shown = f": {record.get('Email')!r}" if context.verbose else " (value hidden)"
            exc = BadValue("Email", f"not an email address{shown}")
        return _reject(Stream.MEMBERS, module, record, exc)


def order_fields(fields: OrderFields) -> list[str]:
    return [
        fields.contact_field,
        fields.amount_field,
        fields.date_field,
        fields.status_field,
        fields.currency_field,
        fields.exchange_rate_field,
        "Created_Time",
        "Modified_Time",
    ]


def to_order(record: Mapping[str, Any], *, context: ConnectorContext, fields: OrderFields) -> Order | Rejection:
    """An order in its own currency with ``exchange_rate`` to the base currency.

    Zoho's ``Exchange_Rate`` is units of the record currency per unit of the org's home currency, so the
    canonical rate (base = amount * rate) is its inverse, assuming the home currency is the base currency.
    """
    try:
        amount = parse_decimal(record.get(fields.amount_field), fields.amount_field)
        if amount is None:
            raise BadValue(fields.amount_field, "amount is missing")
        placed = parse_time(record.get(fields.date_field), fields.date_field, context.timezone)
        if placed is None:
            raise BadValue(fields.date_field, "date is missing")
        currency = _text(record.get(fields.currency_field)) or context.base_currency
        zoho_rate = parse_decimal(record.get(fields.exchange_rate_field), fields.exchange_rate_field)
        if zoho_rate is not None and zoho_rate <= 0:
            raise BadValue(fields.exchange_rate_field, f"exchange rate must be positive, not {zoho_rate}")
        rate = None
        if currency.upper() != context.base_currency and zoho_rate is not None:
            rate = Decimal(1) / zoho_rate
        status_text = _text(record.get(fields.status_field)) or ""
        status = fields.status_map.get(status_text, fields.default_status)
        return Order(
            source=context.name,
            external_id=str(record["id"]),
            member_external_id=lookup_id(record.get(fields.contact_field)),
            placed_at=placed,
            amount=amount.quantize(Decimal("0.0001")),
            currency=currency,
            exchange_rate=rate,
            status=OrderStatus(status),
            updated_at=parse_time(record.get("Modified_Time"), "Modified_Time", context.timezone),
        )
    except (BadValue, ValueError, KeyError) as exc:
        return _reject(Stream.ORDERS, fields.module, record, exc)


def activity_fields(fields: ActivityFields) -> list[str]:
    names = [fields.contact_field, fields.date_field, "Modified_Time"]
    names += [n for n in (fields.kind_field, fields.points_field) if n]
    return names


def to_activity(
    record: Mapping[str, Any], *, context: ConnectorContext, fields: ActivityFields
) -> Activity | Rejection:
    try:
        occurred = parse_time(record.get(fields.date_field), fields.date_field, context.timezone)
        if occurred is None:
            raise BadValue(fields.date_field, "date is missing")
        kind = fields.kind or _text(record.get(fields.kind_field or "")) or fields.module.lower()
        points = parse_decimal(record.get(fields.points_field), fields.points_field) if fields.points_field else None
        return Activity(
            source=context.name,
            external_id=str(record["id"]),
            member_external_id=lookup_id(record.get(fields.contact_field)),
            kind=kind,
            occurred_at=occurred,
            points=points,
        )
    except (BadValue, ValueError, KeyError) as exc:
        return _reject(Stream.ACTIVITIES, fields.module, record, exc)


# -- push ---------------------------------------------------------------------------------------------


def push_value(canonical: str, value: Any) -> Any:
    """The JSON Zoho expects for a pushed value (multi-select: array; integer: int; picklist: string)."""
    if canonical == "tags":
        return sorted(str(v) for v in (value or ()))
    if canonical == "points":
        return None if value is None else int(value)
    return None if value is None else str(value)


def change_payload(change: ProfileChange, push: PushFields) -> dict[str, Any] | None:
    """``{"id": ..., <api name>: value}`` for the changed, pushed fields; ``None`` when nothing to send."""
    mapping = push.mapping()
    payload = {api: push_value(c, change.values.get(c)) for c, api in mapping.items() if c in change.changed}
    return {"id": change.member_id, **payload} if payload else None


def _shown(value: Any) -> str:
    return ", ".join(map(repr, value)) if isinstance(value, list) else repr(value)


def refusal_reason(code: str, field: str | None, value: Any, details: Mapping[str, Any], message: str) -> str:
    """Why Zoho refused a value, naming the field and the value (grades are not personal data)."""
    allowed = details.get("supported_values")
    if allowed:
        values = value if isinstance(value, list) else [value]
        off = [v for v in values if v not in allowed] or values
        return (
            f"{code}: {field} has no option {_shown(off if isinstance(value, list) else off[0])} "
            f"(options: {', '.join(map(str, allowed))}); add it in Zoho or run `crmsync check --create-fields`"
        )
    if details.get("expected_data_type"):
        return f"{code}: {field} expects {details['expected_data_type']}, not {_shown(value)}"
    if details.get("maximum_length"):
        return f"{code}: {field} holds at most {details['maximum_length']} characters, {_shown(value)} is longer"
    if "api name" in message.lower():
        return f"{code}: {field} is not a field of the module (create it or fix push_fields)"
    where = f" ({field} = {_shown(value)})" if field else ""
    return f"{code}: {message or 'refused'}{where}"


def record_result(payload: Mapping[str, Any], answer: Mapping[str, Any]) -> RecordResult:
    """One per-record write answer for ``payload`` (what was sent) as a :class:`RecordResult`.

    ``field`` is the Zoho api name at fault and the reason names the value sent. Every refusal is ``retryable``
    (an admin can add a picklist option, unlock a record, create a field) except a contact deleted meanwhile.
    """
    member_id = str(payload["id"])
    if str(answer.get("status", "")).lower() == "success" or answer.get("code") == "SUCCESS":
        return RecordResult(member_id, ok=True)
    code = str(answer.get("code") or "ERROR")
    details = answer.get("details")
    details = details if isinstance(details, Mapping) else {}
    field = details.get("api_name")
    message = str(answer.get("message") or "").strip()
    if field == "id" and code == "INVALID_DATA":
        return RecordResult(
            member_id, ok=False, reason=f"{code}: contact not found in Zoho (deleted meanwhile?)", retryable=False
        )
    reason = refusal_reason(code, field, payload.get(field) if field else None, details, message)
    return RecordResult(member_id, ok=False, reason=reason, field=field, retryable=True)
