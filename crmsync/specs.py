"""Typed records that plugins return from registration hooks."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crmsync.connector import Capability, Connector, ConnectorContext

if TYPE_CHECKING:
    from pydantic import BaseModel

PLUGIN_API_VERSION = 1
"""The plugin API this crmsync implements. A plugin declares the version it was written for in its specs;
a spec with a different major version is refused with a clear message instead of failing mid-run."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} must be lower-case letters, digits and underscores")


@dataclass(frozen=True)
class ConnectorSpec:
    """Registers a connector type: ``plugin = "<name>"`` in a ``[connectors.X]`` table selects it.

    Args:
        name: the value of ``plugin`` in the configuration, e.g. ``"zoho"``.
        settings_model: pydantic model validating the connector's table (secrets as ``SecretStr``).
        factory: builds the connector from validated settings and a :class:`ConnectorContext`.
        capabilities: what the connector can do.
        description: one line for ``crmsync plugins``.
        api_version: the crmsync plugin API the connector was written for.
    """

    name: str
    settings_model: type[BaseModel]
    factory: Callable[[BaseModel, ConnectorContext], Connector]
    capabilities: frozenset[Capability] = field(default_factory=frozenset)
    description: str = ""
    api_version: int = PLUGIN_API_VERSION

    def __post_init__(self) -> None:
        _check_name("connector", self.name)
        if not callable(self.factory):
            raise ValueError(f"connector {self.name!r}: factory is not callable")
        object.__setattr__(self, "capabilities", frozenset(Capability(c) for c in self.capabilities))


@dataclass(frozen=True)
class MetricSpec:
    """Registers a metric that policy conditions may use.

    ``sql`` is an aggregate SQL expression evaluated once per member over that member's rows of ``table``
    (``orders``: successful orders in base currency, with columns ``amount``, ``placed_at``, ``status``;
    ``activities``: with ``kind``, ``occurred_at``, ``points``). ``{as_of}`` is replaced with the evaluation
    time as a SQL timestamp. Example: ``MetricSpec("weekend_orders", "count(*) FILTER (WHERE
    dayofweek(placed_at) IN (0, 6))")``. ``default`` is used for members with no rows.
    """

    name: str
    sql: str
    table: str = "orders"
    default: float | int | None = 0
    description: str = ""
    api_version: int = PLUGIN_API_VERSION

    def __post_init__(self) -> None:
        _check_name("metric", self.name)
        if self.table not in ("orders", "activities"):
            raise ValueError(f"metric {self.name!r}: table must be 'orders' or 'activities'")


@dataclass(frozen=True)
class TagAdjustment:
    """Tags a plugin adds to or removes from one member's computed profile."""

    member_id: str
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
