"""Settings of a ``[connectors.NAME]`` table with ``plugin = "fxiaoke"`` (纷享销客 / ShareCRM OpenAPI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from crmsync import OrderStatus
from crmsync.helpers import SecureUrl

DEFAULT_HOST = "https://open.fxiaoke.com"
"""纷享云. Other clouds: https://open-hwcloud.fxiaoke.com (华为云), https://open-ale.fxiaoke.com (阿里云),
https://open-ksc.sharecrm.com (香港), https://open-hws.fxiaoke.com (法兰克福), https://open-na.sharecrm.com (北美)."""

LIFE_STATUS_MAP: dict[str, OrderStatus] = {
    "normal": OrderStatus.PAID,
    "invalid": OrderStatus.CANCELLED,
    "ineffective": OrderStatus.PENDING,
    "under_review": OrderStatus.PENDING,
    "in_change": OrderStatus.PENDING,
}


class MemberFields(BaseModel):
    """Where customers live and which of their fields hold what (api names, see the object's describe)."""

    model_config = ConfigDict(extra="forbid")

    object: str = "AccountObj"
    name_field: str | None = "name"
    """Read into ``last_name`` (a customer's name is one field; ``first_name_field`` may split it)."""
    first_name_field: str | None = None
    email_field: str | None = "email"
    phone_field: str | None = "tel"
    attributes: list[str] = Field(default_factory=list, description="extra fields the policy may read")


class OrderFields(BaseModel):
    """Where sales orders live and which fields hold what."""

    model_config = ConfigDict(extra="forbid")

    object: str = "SalesOrderObj"
    customer_field: str = "account_id"
    amount_field: str = "order_amount"
    time_field: str = "order_time"
    status_field: str | None = "order_status"
    life_status_field: str | None = "life_status"
    currency_field: str | None = None
    """A field holding an ISO currency code per order; ``None``: every order is in ``currency``."""
    currency: str | None = None
    """Currency of all orders (default: the run's base currency)."""
    status_map: dict[str, OrderStatus] = Field(default_factory=dict)
    """``order_status`` option value -> canonical status; values are tenant-specific (read them in describe)."""
    default_status: OrderStatus = OrderStatus.PAID
    """Status of a normal (``life_status`` = normal) order whose option value is not in ``status_map``."""


class PushFields(BaseModel):
    """Customer custom fields (``…__c`` api names) the grades go to; ``None`` means "not pushed"."""

    model_config = ConfigDict(extra="forbid")

    tier: str | None = None
    points: str | None = None
    tags: str | None = None
    rfm_segment: str | None = None
    lifecycle: str | None = None

    @field_validator("*")
    @classmethod
    def _custom(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith("__c"):
            raise ValueError(f"{value!r} is not a custom field api name (they end with __c)")
        return value

    def mapping(self) -> dict[str, str]:
        """Canonical field -> api name, for the fields that are pushed."""
        return {k: v for k, v in self.model_dump().items() if v}


class FxiaokeSettings(BaseModel):
    """Configuration of one Fxiaoke tenant."""

    model_config = ConfigDict(extra="forbid")

    base_url: SecureUrl = DEFAULT_HOST
    auth_style: Literal["header", "legacy"] = "header"
    """``header``: /oauth2.0/token and Bearer headers (current); ``legacy``: corpAccessToken in every body."""
    app_id: str = Field(min_length=1)
    app_secret: SecretStr
    permanent_code: SecretStr
    user_id: str | None = None
    """The operator: the CRM employee id (``1000``) for ``header``, the ``FSUID_…`` openUserId for ``legacy``."""
    operator_mobile: str | None = None
    """``legacy`` only: find the operator's openUserId from this mobile number instead of ``user_id``."""

    members: MemberFields = Field(default_factory=MemberFields)
    orders: OrderFields = Field(default_factory=OrderFields)
    push_fields: PushFields = Field(default_factory=PushFields)
    option_map: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Per canonical field, grade -> option label or value when they differ (``{tier = {Gold = "金卡"}}``)."""
    tier_names: list[str] = Field(default_factory=list, description="tiers check() expects without a policy")
    """Only read when the host gives no policy values (``context.push_values``); the policy's tiers win."""
    trigger_workflow: bool = False
    trigger_approval: bool = False

    page_size: int = Field(100, ge=1, le=100)
    overlap_seconds: int = Field(120, ge=0, description="re-read this much before the watermark")
    calls_per_window: int | None = Field(90, ge=1, description="calls per endpoint per window (documented: 100/20 s)")
    window_seconds: float = Field(20.0, gt=0)
    daily_budget: int | None = Field(None, ge=1, description="calls this connector may make per day (Beijing time)")
    max_retries: int = Field(4, ge=0)
    backoff_seconds: float = Field(2.0, ge=0)
    retry_budget_seconds: float = Field(120.0, gt=0)
    timeout_seconds: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _operator(self) -> FxiaokeSettings:
        if self.auth_style == "header" and not self.user_id:
            raise ValueError("user_id (the CRM employee id the calls run as, e.g. '1000') is required")
        if self.auth_style == "legacy" and not (self.user_id or self.operator_mobile):
            raise ValueError("legacy auth needs user_id (FSUID_…) or operator_mobile to find it")
        return self
