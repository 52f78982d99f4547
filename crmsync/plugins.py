"""The plugin host: discovers plugins through the ``crmsync`` entry-point group and hands out typed records.

Each entry point is loaded in its own ``try``: a plugin that fails to import, declares a bad spec or was written
for another plugin API version is recorded with the reason (``crmsync plugins`` shows it) and the others still
load. Environment switches:

* ``CRMSYNC_LOAD_PLUGINS=a,b`` loads only the named entry points;
* ``CRMSYNC_DISABLE_PLUGINS=a,b`` skips the named ones;
* ``CRMSYNC_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from crmsync import hookspecs
from crmsync.errors import PluginError
from crmsync.specs import PLUGIN_API_VERSION, ConnectorSpec, MetricSpec

log = logging.getLogger("crmsync.plugins")
GROUP = "crmsync"


@dataclass
class PluginInfo:
    """One discovered plugin, for ``crmsync plugins``."""

    name: str
    module: str
    version: str | None
    status: str = "ok"
    """``ok``, ``disabled``, or ``error``."""
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    connectors: list[str] = field(default_factory=list)


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _other_api(kind: str, name: str, version: int) -> str:
    return (
        f"{kind} {name!r} was written for plugin API {version}; this crmsync implements {PLUGIN_API_VERSION}: "
        "install a release of the plugin written for it"
    )


class PluginHost:
    """A pluggy manager plus typed, validated, attributed access to what plugins register."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or pluggy.PluginManager("crmsync")
        if pm is None:
            self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._connectors: dict[str, ConnectorSpec] | None = None
        self._connector_owner: dict[str, str] = {}
        self._metrics: list[MetricSpec] | None = None
        if os.environ.get("CRMSYNC_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda msg: log.info("hook: %s", msg.rstrip()))
            self.pm.enable_tracing()

    # ---------------------------------------------------------------- loading
    def load_entrypoints(self, eps: Iterable[EntryPoint] | None = None) -> None:
        only = _env_list("CRMSYNC_LOAD_PLUGINS")
        disabled = _env_list("CRMSYNC_DISABLE_PLUGINS") or set()
        for ep in eps if eps is not None else entry_points(group=GROUP):
            version = ep.dist.version if ep.dist is not None else None
            info = PluginInfo(name=ep.name, module=ep.value, version=version)
            self.plugins[ep.name] = info
            if (only is not None and ep.name not in only) or ep.name in disabled:
                info.status = "disabled"
                continue
            try:
                plugin = ep.load()
                self.register(plugin, ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                info.status, info.error = "error", f"{type(exc).__name__}: {exc}"
                log.warning("plugin %s (%s) failed to load: %s", ep.name, ep.value, info.error)
        self._invalidate()

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object or module (tests use this for in-process plugins)."""
        name = self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except Exception:
            self.pm.unregister(name=name)  # else its unknown hook fails every later registration too
            raise
        info = self.plugins.setdefault(
            name, PluginInfo(name=name, module=getattr(plugin, "__name__", name), version=None)
        )
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self._invalidate()

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        self._invalidate()

    def _invalidate(self) -> None:
        self._connectors = None
        self._metrics = None

    def _results(self, hook_name: str) -> Iterable[tuple[str, Any]]:
        """Call a registration hook per implementation, attributing each record to its plugin."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):
            info = self.plugins.get(impl.plugin_name)
            if info is not None and info.status == "error":
                continue
            try:
                result = impl.function()
                yield from ((impl.plugin_name, r) for r in (result or ()))
            except Exception as exc:
                self._fail(impl.plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}")

    def _fail(self, plugin: str, reason: str) -> None:
        info = self.plugins.setdefault(plugin, PluginInfo(name=plugin, module=plugin, version=None))
        info.status, info.error = "error", reason
        log.warning("plugin %s: %s", plugin, reason)

    # ---------------------------------------------------------------- typed getters
    def connectors(self) -> dict[str, ConnectorSpec]:
        if self._connectors is None:
            specs: dict[str, ConnectorSpec] = {}
            for plugin, spec in self._results("crmsync_connectors"):
                if not isinstance(spec, ConnectorSpec):
                    self._fail(plugin, f"crmsync_connectors returned {type(spec).__name__}, not ConnectorSpec")
                    continue
                if spec.api_version != PLUGIN_API_VERSION:
                    self._fail(plugin, _other_api("connector", spec.name, spec.api_version))
                    continue
                if spec.name in specs:
                    other = self._connector_owner[spec.name]
                    raise PluginError(f"connector name {spec.name!r} is registered by both {other!r} and {plugin!r}")
                specs[spec.name] = spec
                self._connector_owner[spec.name] = plugin
                info = self.plugins.get(plugin)
                if info is not None and spec.name not in info.connectors:
                    info.connectors.append(spec.name)
            self._connectors = specs
        return self._connectors

    def connector_spec(self, name: str) -> ConnectorSpec | None:
        return self.connectors().get(name)

    def connector_names(self) -> list[str]:
        return sorted(self.connectors())

    def metrics(self) -> list[MetricSpec]:
        if self._metrics is None:
            seen: dict[str, str] = {}
            out: list[MetricSpec] = []
            for plugin, spec in self._results("crmsync_metrics"):
                if not isinstance(spec, MetricSpec):
                    self._fail(plugin, f"crmsync_metrics returned {type(spec).__name__}, not MetricSpec")
                    continue
                if spec.api_version != PLUGIN_API_VERSION:
                    self._fail(plugin, _other_api("metric", spec.name, spec.api_version))
                    continue
                if spec.name in seen:
                    raise PluginError(f"metric {spec.name!r} is registered by both {seen[spec.name]!r} and {plugin!r}")
                seen[spec.name] = plugin
                out.append(spec)
            self._metrics = out
        return self._metrics

    def commands(self) -> list[tuple[str, Any]]:
        return list(self._results("crmsync_commands"))

    @property
    def hook(self) -> Any:
        return self.pm.hook


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, built (and entry points loaded) on first use, never at import time."""
    global _HOST
    if _HOST is None:
        host = PluginHost()
        host.load_entrypoints()
        _HOST = host
    return _HOST


def reset_host() -> None:
    """Forget the cached host (tests, or after installing a plugin in-process)."""
    global _HOST
    _HOST = None
