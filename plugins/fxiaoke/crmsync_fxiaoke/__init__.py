"""纷享销客 (Fxiaoke / ShareCRM) connector plugin for crmsync: customers as members, sales orders as orders,
grades back to customer custom fields."""

from __future__ import annotations

from collections.abc import Iterator

import crmsync
from crmsync_fxiaoke.connector import FxiaokeConnector
from crmsync_fxiaoke.settings import FxiaokeSettings

__all__ = ["FxiaokeConnector", "FxiaokeSettings", "crmsync_connectors"]


@crmsync.hookimpl
def crmsync_connectors() -> Iterator[crmsync.ConnectorSpec]:
    yield crmsync.ConnectorSpec(
        name="fxiaoke",
        settings_model=FxiaokeSettings,
        factory=FxiaokeConnector,
        capabilities=FxiaokeConnector.capabilities,
        description="纷享销客 Fxiaoke OpenAPI (AccountObj, SalesOrderObj; grades to __c fields)",
    )
