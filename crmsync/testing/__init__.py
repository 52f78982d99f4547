"""crmsync's conformance kit for connector plugins.

Author-facing names: :class:`ConnectorContract` (subclass it), :class:`CrmDouble` (what your double
offers), :class:`InMemoryCrm` and :class:`PagedJsonApi` (doubles to build on), :func:`drive_pull`
(consume a pull as the engine does). Internals: ``base``, ``checks_*``, ``data``, ``driver``, ``operations``.
The plugin guide (docs/writing-a-plugin.md) documents the double's operations, state and overrides, and every check
with when it runs.
"""

from crmsync.testing.contract import ConnectorContract
from crmsync.testing.double import CrmDouble, InMemoryCrm
from crmsync.testing.driver import ContractError, PullRun, drive_pull
from crmsync.testing.paged import PagedJsonApi

__all__ = ["ConnectorContract", "ContractError", "CrmDouble", "InMemoryCrm", "PagedJsonApi", "PullRun", "drive_pull"]
