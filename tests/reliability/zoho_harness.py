"""The engine driving the Zoho connector against the fake Zoho org, with faults injected at chosen requests."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from crmsync_zoho.client import classify
from crmsync_zoho.connector import ZohoConnector
from crmsync_zoho.settings import ZohoSettings

import crmsync
from crmsync.plugins import PluginHost
from crmsync.report import RunReport
from tests.support import run_sync as run_engine
from tests.zoho.fake import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, FakeZoho

AS_OF = datetime(2025, 7, 2, tzinfo=UTC)
MAX_RETRIES = 3
RETRY_BUDGET = 120.0

CONFIG = f"""
[store]
path = "store.duckdb"

[sync]
members = "crm"
orders = ["crm"]
push = ["crm"]
base_currency = "USD"

[connectors.crm]
plugin = "zoho"
client_id = "{CLIENT_ID}"
tier_names = ["Bronze", "Silver", "Gold", "Platinum"]
max_retries = {MAX_RETRIES}
retry_budget_seconds = {RETRY_BUDGET}
concurrency = 2
# the faults are injected into REST pages and updates (Bulk Read and Bulk Write: tests/zoho/test_bulk.py)
bulk_read = false

[logging]
file = "crmsync.log"
level = "DEBUG"

[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 1500"

[[policy.tiers]]
name = "Silver"
condition = "spend_365d >= 300"

[[policy.tiers]]
name = "Bronze"
"""

Fault = Callable[["FaultyZoho", httpx.Request, int], httpx.Response | None]
"""Called with the request and its number among requests of its kind; an answer replaces the fake's."""


@dataclass
class FaultyZoho:
    """The fake Zoho org behind a transport that can answer chosen requests itself."""

    fake: FakeZoho = field(default_factory=FakeZoho)
    faults: dict[str, Fault] = field(default_factory=dict)
    seen: Counter[str] = field(default_factory=Counter)
    answers: dict[str, list[httpx.Response]] = field(default_factory=dict)
    hosts: list[tuple[str, str, bool, bool]] = field(default_factory=list)
    """(scheme, host, carried a token, carried the refresh token) of every request."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        kind = classify(request)
        self.seen[kind] += 1
        refresh = REFRESH_TOKEN.encode() in request.content or REFRESH_TOKEN in str(request.url)
        self.hosts.append((request.url.scheme, request.url.host, "authorization" in request.headers, refresh))
        fault = self.faults.get(kind)
        if fault is not None:
            answer = fault(self, request, self.seen[kind])
            if answer is not None:
                return answer
        response = self.fake.router.handler(request)
        response.read()
        self.answers.setdefault(kind, []).append(response)
        return response

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def seed(fake: FakeZoho, contacts: int = 450, orders: int = 260) -> list[str]:
    """Contacts over three REST pages, orders over two, deterministic amounts."""
    ids = fake.seed_contacts(contacts)
    for i in range(orders):
        fake.add_order(ids[(i * 7) % contacts], f"{100 + (i * 37) % 900}.50")
    return ids


class _Plugin:
    def __init__(self, zoho: FaultyZoho) -> None:
        self.zoho = zoho

    @crmsync.hookimpl
    def crmsync_connectors(self) -> Iterator[crmsync.ConnectorSpec]:
        def factory(settings: ZohoSettings, context: crmsync.ConnectorContext) -> ZohoConnector:
            return ZohoConnector(settings, context, transport=self.zoho.transport, sleep=self.zoho.fake.sleep)

        yield crmsync.ConnectorSpec(
            name="zoho", settings_model=ZohoSettings, factory=factory, capabilities=ZohoConnector.capabilities
        )


def write_config(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "crmsync.toml"
    path.write_text(textwrap.dedent(CONFIG) + extra, encoding="utf-8")
    return path


def secrets_env(monkeypatch: Any) -> None:
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__REFRESH_TOKEN", REFRESH_TOKEN)


def run_sync(config: Path, zoho: FaultyZoho) -> RunReport:
    host = PluginHost()
    host.register(_Plugin(zoho), "zoho-fault-harness")
    return run_engine(config, host, AS_OF).report


def crm_state(fake: FakeZoho) -> dict[str, tuple[Any, ...]]:
    """The grades each contact holds in the CRM."""
    names = ("Loyalty_Tier", "Loyalty_Points", "Loyalty_Tags", "RFM_Segment", "Lifecycle_Stage")
    return {rid: tuple(str(rec.get(n)) for n in names) for rid, rec in fake.records["Contacts"].items()}
