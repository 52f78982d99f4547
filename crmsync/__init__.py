"""crmsync: grade customers and write the grades back into their CRM.

Public API for plugin authors and embedders: the names below, :mod:`crmsync.helpers` (what connectors need besides
the contract: value parsing, cursors, paging, OAuth, redaction) and :mod:`crmsync.testing` (the conformance kit).
Every other module is internal.
"""

from crmsync.connector import (
    Batch,
    Capability,
    CheckResult,
    Connector,
    ConnectorContext,
    KeyValueState,
    ProfileChange,
    Record,
    RecordResult,
    Rejection,
    Stream,
)
from crmsync.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    CrmsyncError,
    ExitCode,
    FatalAPIError,
    PluginError,
    PolicyError,
    RetryableError,
    StoreDamagedError,
    StoreError,
    StoreLockedError,
)
from crmsync.hookspecs import hookimpl
from crmsync.models import PUSHED_FIELDS, Activity, Member, Order, OrderStatus, Profile
from crmsync.paths import ConfigPath, ReadPath, WritePath
from crmsync.specs import PLUGIN_API_VERSION, ConnectorSpec, MetricSpec, TagAdjustment

__version__ = "0.1.0"

__all__ = [
    "PLUGIN_API_VERSION",
    "PUSHED_FIELDS",
    "Activity",
    "AuthError",
    "Batch",
    "Capability",
    "CheckResult",
    "ConfigError",
    "ConfigPath",
    "Connector",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorSpec",
    "CrmsyncError",
    "ExitCode",
    "FatalAPIError",
    "KeyValueState",
    "Member",
    "MetricSpec",
    "Order",
    "OrderStatus",
    "PluginError",
    "PolicyError",
    "Profile",
    "ProfileChange",
    "ReadPath",
    "Record",
    "RecordResult",
    "Rejection",
    "RetryableError",
    "StoreDamagedError",
    "StoreError",
    "StoreLockedError",
    "Stream",
    "TagAdjustment",
    "WritePath",
    "__version__",
    "hookimpl",
]
