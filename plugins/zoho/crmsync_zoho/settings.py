"""Settings of a ``[connectors.NAME]`` table with ``plugin = "zoho"``, and the hosts of each data centre."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from crmsync import ConfigError, OrderStatus
from crmsync.helpers import SecureUrl, is_loopback


class DataCentre(StrEnum):
    """Zoho data centres, by the domain suffix of their hosts."""

    US = "com"
    EU = "eu"
    IN = "in"
    AU = "com.au"
    JP = "jp"
    CN = "com.cn"
    CA = "ca"
    SA = "sa"


_ALIASES = {"us": "com", "au": "com.au", "cn": "com.cn", "uk": "eu"}

# accounts server, API domain, bulk-write upload host
_IRREGULAR = {
    DataCentre.CA: ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca", "https://upload.zohocloud.ca"),
    DataCentre.SA: ("https://accounts.zoho.sa", "https://www.zohoapis.sa", "https://files.zoho.sa"),
}


ENVIRONMENTS = ("www", "sandbox", "developer")
"""Prefixes of a data centre's API host: production, sandbox, developer."""


def data_centre_of(accounts_host: str) -> DataCentre | None:
    """The data centre whose accounts server is ``accounts_host`` (``None`` for any other host)."""
    host = accounts_host.lower()
    return next((dc for dc in DataCentre if httpx.URL(dc_urls(dc)[0]).host == host), None)


def dc_urls(dc: DataCentre, environment: str = "production") -> tuple[str, str, str]:
    """``(accounts, api, upload)`` base URLs of a data centre; sandbox/developer swap ``www.`` in the API."""
    if dc in _IRREGULAR:
        accounts, api, upload = _IRREGULAR[dc]
    else:
        accounts = f"https://accounts.zoho.{dc.value}"
        api = f"https://www.zohoapis.{dc.value}"
        upload = f"https://content.zohoapis.{dc.value}"
    if environment != "production":
        api = api.replace("://www.", f"://{environment}.")
    return accounts, api, upload


class OrderFields(BaseModel):
    """Where orders live in Zoho and which fields hold what (defaults follow the chosen module)."""

    model_config = ConfigDict(extra="forbid")

    module: str = "Sales_Orders"
    contact_field: str = "Contact_Name"
    amount_field: str = "Grand_Total"
    date_field: str = "Created_Time"
    status_field: str = "Status"
    currency_field: str = "Currency"
    exchange_rate_field: str = "Exchange_Rate"
    status_map: dict[str, OrderStatus] = Field(default_factory=dict)
    default_status: OrderStatus = OrderStatus.PAID
    """Status of an order whose Zoho status is not in ``status_map``."""

    @model_validator(mode="before")
    @classmethod
    def _module_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        module = data.get("module", "Sales_Orders")
        return {**MODULE_PRESETS.get(module, {}), **data}


MODULE_PRESETS: dict[str, dict[str, Any]] = {
    "Sales_Orders": {
        "amount_field": "Grand_Total",
        "date_field": "Created_Time",
        "status_field": "Status",
        "status_map": {"Created": "pending", "Approved": "paid", "Delivered": "paid", "Cancelled": "cancelled"},
    },
    "Invoices": {
        "amount_field": "Grand_Total",
        "date_field": "Invoice_Date",
        "status_field": "Status",
        "status_map": {"Created": "pending", "Approved": "pending", "Paid": "paid", "Cancelled": "cancelled"},
    },
    "Deals": {
        "amount_field": "Amount",
        "date_field": "Closing_Date",
        "status_field": "Stage",
        "default_status": "pending",
        "status_map": {
            "Closed Won": "paid",
            "Closed Lost": "cancelled",
            "Closed Lost to Competition": "cancelled",
        },
    },
}


class ActivityFields(BaseModel):
    """An optional module whose records count as activities (Calls, Events, Tasks, a custom module)."""

    model_config = ConfigDict(extra="forbid")

    module: str
    kind: str | None = None
    """A fixed kind for every record; else read from ``kind_field``."""
    kind_field: str | None = None
    contact_field: str = "Who_Id"
    date_field: str = "Created_Time"
    points_field: str | None = None


class PushFields(BaseModel):
    """Contacts fields (api names) the grades are written to; an empty name means "don't push"."""

    model_config = ConfigDict(extra="forbid")

    tier: str = "Loyalty_Tier"
    points: str = "Loyalty_Points"
    tags: str = "Loyalty_Tags"
    rfm_segment: str = "RFM_Segment"
    lifecycle: str = "Lifecycle_Stage"

    def mapping(self) -> dict[str, str]:
        """Canonical field -> api name, for the fields that are pushed."""
        return {k: v for k, v in self.model_dump().items() if v}


class ZohoSettings(BaseModel):
    """Configuration of one Zoho CRM connection."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    refresh_token: SecretStr
    data_centre: DataCentre = DataCentre.US
    environment: Literal["production", "sandbox", "developer"] = "production"
    accounts_url: SecureUrl | None = Field(None, description="override the accounts server (a local fake, a proxy)")
    api_url: SecureUrl | None = Field(None, description="override the API domain the token answer names")
    upload_url: SecureUrl | None = Field(None, description="override the bulk-write upload host")
    api_version: str = "v8"

    contacts_module: str = "Contacts"
    member_attributes: list[str] = Field(default_factory=list, description="extra Contacts fields to keep")
    orders: OrderFields = Field(default_factory=OrderFields)
    activities: ActivityFields | None = None
    push_fields: PushFields = Field(default_factory=PushFields)
    tier_names: list[str] = Field(default_factory=list, description="tier names check() expects in the picklist")
    tag_names: list[str] = Field(default_factory=list, description="tag values create_fields() offers")
    trigger: list[Literal["workflow", "approval", "blueprint", "pathfinder", "orchestration"]] = Field(
        default_factory=list, description="automations a push may trigger (none by default)"
    )

    rate_per_minute: int | None = Field(100, ge=1)
    concurrency: int = Field(5, ge=1, le=25)
    max_retries: int = Field(4, ge=0)
    retry_budget_seconds: float = Field(300.0, gt=0)
    timeout_seconds: float = Field(30.0, gt=0)
    overlap_seconds: int = Field(60, ge=0, description="re-read this much before the cursor (1 s resolution)")

    org_id: str | None = Field(
        None, description="the org's zgid for Bulk Write uploads (else looked up once and kept in the store)"
    )

    bulk_read: bool = Field(True, description="use Bulk Read for first pulls and large read-backs (bulk.READ scope)")
    bulk_threshold: int | None = Field(
        2_000, ge=1, description="a rerun reading back at least this many of its own writes uses Bulk Read"
    )
    bulk_write_threshold: int | None = Field(5_000, ge=1, description="pushes above this many use Bulk Write")
    bulk_poll_seconds: float = Field(10.0, gt=0)
    bulk_max_wait_seconds: float = Field(3600.0, gt=0)

    @field_validator("data_centre", mode="before")
    @classmethod
    def _dc_alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower().removeprefix("zoho.").lstrip(".")
            return _ALIASES.get(value, value)
        return value

    @property
    def urls(self) -> tuple[str, str, str]:
        """``(accounts, api, upload)``: the overrides where given, else the data centre's hosts."""
        accounts, api, upload = dc_urls(self.data_centre, self.environment)
        return (self.accounts_url or accounts, self.api_url or api, self.upload_url or upload)

    def api_url_from_token(self, api_domain: str) -> str:
        """The API base URL a token answer's ``api_domain`` stands for, if it belongs with the accounts server.

        A loopback accounts server (a local fake) goes with a loopback API; a Zoho accounts server with a Zoho API
        host of the same data centre (``www.``, ``sandbox.`` or ``developer.zohoapis.<dc>``; the configured
        ``environment`` decides which); any other accounts server (a proxy) with the configured data centre's.

        Raises:
            ConfigError: naming both hosts, when they do not belong together (set ``api_url`` if they do).
        """
        accounts = httpx.URL(self.urls[0])
        api = httpx.URL(api_domain.strip())
        host = (api.host or "").lower()
        if is_loopback(accounts.host):
            if host and is_loopback(host) and api.scheme in ("http", "https"):
                return f"{api.scheme}://{api.netloc.decode()}"
            expected = "a loopback host like the accounts server's"
        else:
            dc = data_centre_of(accounts.host) or self.data_centre
            suffix = dc_urls(dc)[1].removeprefix("https://www.zohoapis.")
            if api.scheme == "https" and host in {f"{env}.zohoapis.{suffix}" for env in ENVIRONMENTS}:
                return dc_urls(dc, self.environment)[1]
            expected = f"https://www.zohoapis.{suffix} (data centre {dc.name}) or its sandbox/developer host"
        raise ConfigError(
            f"the token answer of the accounts server {accounts.host} names the API domain {host or api_domain!r}, "
            f"expected {expected}; nothing was sent there",
            hint="set api_url if that API host is right; else check accounts_url and data_centre",
        )
