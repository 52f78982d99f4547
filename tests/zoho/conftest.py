"""Fixtures for the Zoho connector tests: a fake Zoho org and connectors wired to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from crmsync_zoho.connector import ZohoConnector
from crmsync_zoho.settings import ZohoSettings

from crmsync.connector import ConnectorContext

from .fake import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, FakeZoho


def make_settings(**overrides: Any) -> ZohoSettings:
    data = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "rate_per_minute": None,
        "bulk_threshold": None,
        "tier_names": ["Bronze", "Silver", "Gold", "Platinum"],
    } | overrides
    return ZohoSettings.model_validate(data, context={"base_dir": "."})


@pytest.fixture
def fake() -> FakeZoho:
    return FakeZoho()


@pytest.fixture
def context() -> ConnectorContext:
    return ConnectorContext(name="crm", base_currency="EUR")


@pytest.fixture
def connect(fake: FakeZoho, context: ConnectorContext) -> Callable[..., ZohoConnector]:
    def build(**overrides: Any) -> ZohoConnector:
        return ZohoConnector(make_settings(**overrides), context, transport=fake.transport, sleep=fake.sleep)

    return build
