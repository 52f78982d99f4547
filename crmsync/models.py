"""Canonical records: what every connector produces (Member, Order, Activity) and what grading yields (Profile).

Money is :class:`~decimal.Decimal` with an explicit ISO 4217 currency; datetimes are timezone-aware (a naive
datetime is rejected here: connectors localise naive input in the configured timezone with
:func:`aware`). Emails are normalised (trimmed, lower-cased).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_email(value: str | None) -> str | None:
    """Trim and lower-case an email; empty becomes ``None``; a malformed one raises ``ValueError``."""
    if value is None:
        return None
    value = value.strip().lower()
    if not value:
        return None
    if not _EMAIL.match(value):
        raise ValueError(f"not an email address: {value!r}")
    return value


def aware(value: datetime, tz: tzinfo | str = UTC) -> datetime:
    """Return ``value`` as an aware UTC datetime, reading a naive one in ``tz``."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        zone = ZoneInfo(tz) if isinstance(tz, str) else tz
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _currency(value: str) -> str:
    value = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError(f"not an ISO 4217 currency code: {value!r}")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Currency = Annotated[str, AfterValidator(_currency)]


class OrderStatus(StrEnum):
    PAID = "paid"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    PENDING = "pending"


DEFAULT_STATUS_MAP: dict[str, OrderStatus] = {
    "paid": OrderStatus.PAID,
    "completed": OrderStatus.PAID,
    "complete": OrderStatus.PAID,
    "fulfilled": OrderStatus.PAID,
    "shipped": OrderStatus.PAID,
    "delivered": OrderStatus.PAID,
    "refunded": OrderStatus.REFUNDED,
    "cancelled": OrderStatus.CANCELLED,
    "canceled": OrderStatus.CANCELLED,
    "voided": OrderStatus.CANCELLED,
    "pending": OrderStatus.PENDING,
    "processing": OrderStatus.PENDING,
    "on-hold": OrderStatus.PENDING,
    "unpaid": OrderStatus.PENDING,
    "已付款": OrderStatus.PAID,
    "已完成": OrderStatus.PAID,
    "已发货": OrderStatus.PAID,
    "已退款": OrderStatus.REFUNDED,
    "已取消": OrderStatus.CANCELLED,
    "待付款": OrderStatus.PENDING,
}
"""Status values understood without configuration (compared case-insensitively); a source's ``status_map`` adds
more (the CSV connector's and the Spark engine's lake sources)."""


ORDER_FIELDS: tuple[str, ...] = (
    "external_id",
    "member_external_id",
    "member_email",
    "placed_at",
    "amount",
    "total",
    "currency",
    "exchange_rate",
    "status",
    "updated_at",
    "refunded_amount",
)
"""The fields of an order a source's column mapping may name (``total``: an order's total beside its line amounts)."""
ACTIVITY_FIELDS: tuple[str, ...] = (
    "external_id",
    "member_external_id",
    "member_email",
    "kind",
    "occurred_at",
    "points",
)
"""The fields of an activity a source's column mapping may name."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    source: str = Field(min_length=1, description="configured name of the connector the record came from")
    external_id: str = Field(min_length=1, description="the record's id in its source system")
    deleted: bool = False
    locator: str | None = Field(default=None, exclude=True)
    """Where a person finds the record in its source (``orders.csv:17``, ``Sales_Orders 4711``), when the connector
    knows: the store names it when it refuses the record. Not stored, and not part of the record's data."""


class Member(_Record):
    """A customer (a CRM contact, an account, a shop customer)."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    opt_in: bool | None = None

    _norm_email = field_validator("email", mode="before")(classmethod(lambda cls, v: normalise_email(v)))


class Order(_Record):
    """One order. Keyed by (source, external_id): a re-pulled or refunded order replaces its earlier version.

    ``member_external_id`` is the member's id *in this order's source*; ``member_email`` lets orders from one
    source (a shop export) be matched to members from another (the CRM). ``exchange_rate`` converts
    ``amount`` to the base currency (base = amount * rate) when the source reports one.

    ``refunded_amount`` is the part of ``amount`` refunded so far (a partial refund keeps the order ``paid``), in the
    order's currency, converted like ``amount``; the store refuses one below 0 or above the amount. A ``refunded``
    order without it counts as refunded in full.
    """

    member_external_id: str | None = None
    member_email: str | None = None
    placed_at: UtcDatetime
    amount: Decimal = Field(max_digits=18, decimal_places=4)
    currency: Currency
    exchange_rate: Decimal | None = Field(default=None, gt=0)
    status: OrderStatus = OrderStatus.PAID
    updated_at: UtcDatetime | None = None
    refunded_amount: Decimal | None = Field(default=None, max_digits=18, decimal_places=4)

    _norm_email = field_validator("member_email", mode="before")(classmethod(lambda cls, v: normalise_email(v)))

    @field_validator("amount", "refunded_amount", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError("money must be Decimal or a string, never float")
        return value


class Activity(_Record):
    """An engagement event (login, review, referral, attendance...) that earns points or counts as activity."""

    member_external_id: str | None = None
    member_email: str | None = None
    kind: str = Field(min_length=1)
    occurred_at: UtcDatetime
    points: Decimal | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    _norm_email = field_validator("member_email", mode="before")(classmethod(lambda cls, v: normalise_email(v)))


class Profile(BaseModel):
    """The grades of one member: what crmsync computes and writes back."""

    model_config = ConfigDict(frozen=True)

    member_source: str
    member_id: str
    tier: str
    tier_rank: int
    tier_since: date | None = None
    previous_tier: str | None = None
    points: int = 0
    rfm_r: int | None = None
    rfm_f: int | None = None
    rfm_m: int | None = None
    rfm_segment: str | None = None
    lifecycle: str | None = None
    tags: tuple[str, ...] = ()
    reasons: dict[str, str] = Field(default_factory=dict)
    policy_version: str = ""
    computed_at: UtcDatetime

    def pushed_fields(self) -> dict[str, Any]:
        """The values a connector writes back, by canonical field name (connectors map them to their own)."""
        return {
            "tier": self.tier,
            "points": self.points,
            "tags": sorted(self.tags),
            "rfm_segment": self.rfm_segment,
            "lifecycle": self.lifecycle,
        }


PUSHED_FIELDS: tuple[str, ...] = ("tier", "points", "tags", "rfm_segment", "lifecycle")
"""Canonical profile fields a connector may write back; a connector maps each to its own field name."""
