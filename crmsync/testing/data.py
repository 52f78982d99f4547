"""Deterministic sample records that test doubles serve, in canonical form.

The conformance kit compares what a connector pulls with these values, so a double renders them in its
API's shape (its own field names, date formats, string amounts) and the kit knows exactly what the
connector must turn them back into. Timestamps come in pairs that share the same instant, so a page
boundary falls between two records with equal ``updated_at`` (resuming with ``updated_at > cursor``
from a mid-pull cursor would lose one of them). Orders come in several currencies (:data:`CURRENCIES`) and every
status (:data:`STATUSES`), so a connector that files every order under the base currency, or maps a status it does
not know to "paid", is caught.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crmsync.connector import Stream

EPOCH = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
"""When the first seeded record was created."""

ID_PREFIX = {Stream.MEMBERS: "m", Stream.ORDERS: "o", Stream.ACTIVITIES: "a"}

BASE_CURRENCY = "EUR"
"""The base currency of the kit's connector context."""
CURRENCIES = ("EUR", "USD", "CNY", "GBP")
"""Currencies of the seeded orders, in turn: the base currency and three others."""
STATUSES = ("paid", "refunded", "paid", "cancelled", "paid", "pending")
"""Statuses of the seeded orders, in turn: every :class:`~crmsync.OrderStatus`."""

COMPARED_FIELDS: dict[Stream, tuple[str, ...]] = {
    Stream.MEMBERS: ("email", "first_name", "last_name", "created_at", "updated_at"),
    Stream.ORDERS: ("member_external_id", "placed_at", "amount", "currency", "status"),
    Stream.ACTIVITIES: ("member_external_id", "kind", "occurred_at"),
}
"""Canonical fields a double's :meth:`expected` values cover, by stream."""

OPTIONAL_FIELDS: dict[Stream, tuple[str, ...]] = {
    Stream.MEMBERS: ("email", "first_name", "last_name", "created_at"),
    Stream.ORDERS: ("member_external_id", "currency"),
    Stream.ACTIVITIES: ("member_external_id",),
}
"""Fields a source may leave out of a record (see :meth:`~crmsync.testing.InMemoryCrm.omit_optional`): the
connector must leave them ``None``, except an order's currency: an order that names none is in the base currency
(the account's home currency), never in one the connector picks."""
LATE_BY = timedelta(seconds=5)
"""How long before the newest change already served a change committed late is stamped (see
:meth:`~crmsync.testing.InMemoryCrm.commit_late`): inside any sane overlap window."""

_FIRST = ("Ada", "Bao", "Chen", "Dara", "Emil", "Fatou", "Gita", "Hugo", "Ines", "Jun")
_LAST = ("Lovelace", "Li", "Wang", "Okafor", "Berg", "Diallo", "Rao", "Moreau", "Silva", "Sato")


def sample_record(stream: Stream, index: int, at: datetime, member_ids: list[str]) -> dict[str, Any]:
    """The canonical values of the ``index``-th seeded record of ``stream``, last modified at ``at``.

    Orders and activities belong to ``member_ids`` in turn (members are seeded first when empty).
    """
    rid = f"{ID_PREFIX[stream]}{index:04d}"
    member = member_ids[index % len(member_ids)] if member_ids else None
    if stream is Stream.MEMBERS:
        return {
            "external_id": rid,
            "email": f"customer{index}@example.com",
            "first_name": _FIRST[index % len(_FIRST)],
            "last_name": _LAST[index % len(_LAST)],
            "created_at": EPOCH + timedelta(days=index),
            "updated_at": at,
        }
    if stream is Stream.ORDERS:
        return {
            "external_id": rid,
            "member_external_id": member,
            "placed_at": EPOCH + timedelta(days=index, hours=3),
            # .10 and .20 have no exact binary float: float money shows up in the comparison
            "amount": Decimal("19.90") + Decimal("0.10") * index,
            "currency": CURRENCIES[index % len(CURRENCIES)],
            "status": STATUSES[index % len(STATUSES)],
            "updated_at": at,
        }
    return {
        "external_id": rid,
        "member_external_id": member,
        "kind": ("review", "login", "referral")[index % 3],
        "occurred_at": EPOCH + timedelta(days=index, hours=5),
        "updated_at": at,
    }


def changed_record(stream: Stream, record: dict[str, Any], at: datetime) -> dict[str, Any]:
    """``record`` after a visible edit made at ``at``."""
    out = dict(record, updated_at=at)
    if stream is Stream.MEMBERS:
        out["email"] = f"changed.{record['email']}" if record["email"] else f"{record['external_id']}@example.com"
    elif stream is Stream.ORDERS:
        out["status"] = "refunded" if record["status"] == "paid" else "paid"
    else:
        out["kind"] = "event"
    return out
