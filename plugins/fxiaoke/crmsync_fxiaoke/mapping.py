"""Translation between Fxiaoke records and crmsync's canonical records, and of grades into field values.

Reading: times are epoch milliseconds, money comes as a string (``"1280.00"``) and becomes Decimal, lookups are
the target ``_id`` (a list or a ``{"_id"}`` map is tolerated). Writing: select fields take the option
*value* found through describe, never the label; numbers go as strings, ``select_many`` as a list of values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from crmsync import ConnectorContext, Member, Order, OrderStatus, Rejection, Stream
from crmsync.helpers import BadValue, parse_decimal, reject
from crmsync.helpers import parse_time as read_time
from crmsync_fxiaoke.settings import LIFE_STATUS_MAP, FxiaokeSettings, MemberFields, OrderFields

SYSTEM_FIELDS = ("_id", "create_time", "last_modified_time", "last_modified_by", "life_status")


def parse_time(value: Any, context: ConnectorContext, field: str) -> datetime | None:
    """Epoch milliseconds (number or digit string) as an aware UTC datetime; an ISO date/time is tolerated."""
    return read_time(value, field, context.timezone, epoch="ms")


def epoch_ms(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def parse_amount(value: Any, field: str) -> Decimal:
    """An amount as Decimal; thousands separators (``"1,280.00"``) are dropped."""
    if isinstance(value, str):
        value = value.strip().replace(",", "")
    amount = parse_decimal(value, field, what="an amount")
    if amount is None:
        raise BadValue(field, "amount is missing")
    return amount


def ref_id(value: Any) -> str | None:
    """The target id of a lookup: a bare id, a one-element list or a map with ``_id``/``id``."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, Mapping):
        value = value.get("_id") or value.get("id")
    return str(value).strip() or None if value not in (None, "") else None


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if value is None:
        return None
    return str(value).strip() or None


def _reject(stream: Stream, obj: str, record: Mapping[str, Any], exc: Exception) -> Rejection:
    rid = _text(record.get("_id"))
    return reject(stream, f"{obj} {rid or '?'}", exc, record_id=rid, raw=record)


def invalidated(record: Mapping[str, Any]) -> bool:
    """Invalidated (作废): moved to the recycle bin, the first step of a deletion."""
    return record.get("life_status") == "invalid"


def member_fields(fields: MemberFields) -> list[str]:
    names = [fields.name_field, fields.first_name_field, fields.email_field, fields.phone_field, *fields.attributes]
    return list(dict.fromkeys([*SYSTEM_FIELDS, *(n for n in names if n)]))


def order_fields(fields: OrderFields) -> list[str]:
    names = [fields.customer_field, fields.amount_field, fields.time_field, fields.status_field,
             fields.life_status_field, fields.currency_field, "name"]  # fmt: skip
    return list(dict.fromkeys([*SYSTEM_FIELDS, *(n for n in names if n)]))


def to_member(record: Mapping[str, Any], *, context: ConnectorContext, fields: MemberFields) -> Member | Rejection:
    field = "_id"
    try:
        get = record.get
        email = _text(get(fields.email_field)) if fields.email_field else None
        field = fields.email_field or field
        return Member(
            source=context.name,
            external_id=str(record["_id"]),
            email=email,
            phone=_text(get(fields.phone_field)) if fields.phone_field else None,
            first_name=_text(get(fields.first_name_field)) if fields.first_name_field else None,
            last_name=_text(get(fields.name_field)) if fields.name_field else None,
            created_at=parse_time(get("create_time"), context, "create_time"),
            updated_at=parse_time(get("last_modified_time"), context, "last_modified_time"),
            attributes={name: get(name) for name in fields.attributes if name in record},
            deleted=invalidated(record),
        )
    except BadValue as exc:
        return _reject(Stream.MEMBERS, fields.object, record, exc)
    except (ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if not isinstance(exc, KeyError) else "the record has no _id"
        if "email" in str(exc).lower() and fields.email_field:
            field, reason = fields.email_field, f"not an email address: {record.get(fields.email_field)!r}"
        return _reject(Stream.MEMBERS, fields.object, record, BadValue(field, reason))


def order_status(record: Mapping[str, Any], fields: OrderFields) -> OrderStatus:
    life = record.get(fields.life_status_field) if fields.life_status_field else None
    if life not in (None, "", "normal"):
        return LIFE_STATUS_MAP.get(str(life), OrderStatus.PENDING)
    value = _text(record.get(fields.status_field)) if fields.status_field else None
    return fields.status_map.get(value, fields.default_status) if value else fields.default_status


def to_order(record: Mapping[str, Any], *, context: ConnectorContext, fields: OrderFields) -> Order | Rejection:
    try:
        placed = parse_time(record.get(fields.time_field), context, fields.time_field)
        if placed is None:
            raise BadValue(fields.time_field, "order time is missing")
        currency = (_text(record.get(fields.currency_field)) if fields.currency_field else None) or (
            fields.currency or context.base_currency
        )
        return Order(
            source=context.name,
            external_id=str(record["_id"]),
            member_external_id=ref_id(record.get(fields.customer_field)),
            placed_at=placed,
            amount=parse_amount(record.get(fields.amount_field), fields.amount_field),
            currency=currency,
            status=order_status(record, fields),
            updated_at=parse_time(record.get("last_modified_time"), context, "last_modified_time"),
        )
    except BadValue as exc:
        return _reject(Stream.ORDERS, fields.object, record, exc)
    except (ValueError, KeyError) as exc:
        field = fields.currency_field if "currency" in str(exc).lower() else "_id"
        reason = "the record has no _id" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        return _reject(Stream.ORDERS, fields.object, record, BadValue(field or "currency", reason))


def fingerprint(member: Member) -> str:
    """A short hash of what crmsync keeps of a customer (not when it changed): equal means nothing we read."""
    data = member.model_dump(mode="json", exclude={"updated_at"})
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def modified_by(record: Mapping[str, Any]) -> set[str]:
    value = record.get("last_modified_by")
    items = value if isinstance(value, list) else [value]
    return {str(v) for v in items if v not in (None, "")}


# -- writing ---------------------------------------------------------------------------------------------


def options(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The usable options of a select field."""
    return [
        o for o in meta.get("options") or []
        if isinstance(o, dict) and not o.get("not_usable") and o.get("is_active", True) is not False
    ]  # fmt: skip


def option_value(meta: Mapping[str, Any], wanted: str) -> str | None:
    """The value of the option whose value or label is ``wanted``."""
    for option in options(meta):
        if str(option.get("value")) == wanted or str(option.get("label")) == wanted:
            return str(option.get("value"))
    return None


def encode(canonical: str, value: Any, meta: Mapping[str, Any], settings: FxiaokeSettings) -> Any:
    """The value to send for one grade, following the field's describe (raises BadValue naming the field)."""
    api = str(meta.get("api_name"))
    kind = meta.get("type")
    mapped = settings.option_map.get(canonical, {})
    if value is None:
        return [] if kind == "select_many" else None
    if canonical == "points":
        return str(int(value))
    if kind == "select_many":
        out = []
        for item in value if isinstance(value, list | tuple) else [value]:
            found = option_value(meta, mapped.get(str(item), str(item)))
            if found is None:
                raise BadValue(api, f"no option {item!r} in select field {api} (add it in the console)")
            out.append(found)
        return out
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if kind == "select_one":
        found = option_value(meta, mapped.get(str(value), str(value)))
        if found is None:
            have = ", ".join(f"{o.get('label')}={o.get('value')}" for o in options(meta)) or "none"
            raise BadValue(api, f"no option {value!r} in select field {api} (options: {have})")
        return found
    return str(value)
