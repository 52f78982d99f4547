"""Zoho CRM connector plugin for crmsync: Contacts as members, orders from a module, grades back to Contacts."""

from __future__ import annotations

from collections.abc import Iterator

import crmsync
from crmsync_zoho.connector import ZohoConnector
from crmsync_zoho.settings import ZohoSettings

__all__ = ["ZohoConnector", "ZohoSettings", "crmsync_connectors"]


@crmsync.hookimpl
def crmsync_connectors() -> Iterator[crmsync.ConnectorSpec]:
    yield crmsync.ConnectorSpec(
        name="zoho",
        settings_model=ZohoSettings,
        factory=ZohoConnector,
        capabilities=ZohoConnector.capabilities,
        description="Zoho CRM (OAuth, REST v8, Bulk Read/Write)",
    )
