"""crmsync: grade customers and write the grades back into their CRM.

Public API for plugin authors and embedders; everything else is internal.
"""

from crmsync.connector import (
    Batch,
    Capability,
    CheckResult,
    Connector,
    ConnectorContext,
    ProfileChange,
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
from crmsync.models import Activity, Member, Order, OrderStatus, Profile
from crmsync.paths import ReadPath, WritePath
from crmsync.specs import PLUGIN_API_VERSION, ConnectorSpec, MetricSpec, TagAdjustment

__version__ = "0.1.0"

__all__ = [
    "PLUGIN_API_VERSION",
    "Activity",
    "AuthError",
    "Batch",
    "Capability",
    "CheckResult",
    "ConfigError",
    "Connector",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorSpec",
    "CrmsyncError",
    "ExitCode",
    "FatalAPIError",
    "Member",
    "MetricSpec",
    "Order",
    "OrderStatus",
    "PluginError",
    "PolicyError",
    "Profile",
    "ProfileChange",
    "ReadPath",
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
