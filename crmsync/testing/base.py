"""Fixtures and capability gating shared by the conformance checks.

Each check is a ``test_*`` method marked with :func:`applies`; when a contract subclass names its spec,
the checks whose condition does not hold for that spec are removed from the class, so pytest never
collects them (nothing is skipped: a check either runs or does not exist for that connector).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from crmsync.connector import PULL_CAPABILITY, Capability, Connector, ConnectorContext, Stream
from crmsync.redact import register_secrets
from crmsync.specs import ConnectorSpec
from crmsync.testing.data import BASE_CURRENCY
from crmsync.testing.double import CrmDouble

SOURCE = "kit"
"""The connector name the kit configures; pulled records must carry it as ``source``."""
KIT_TIMEZONE = "Asia/Kolkata"
"""The ``context.timezone`` connectors run under in the kit (+05:30: neither UTC nor a whole hour off it), so a
``Z`` or offset time read as a naive one, or a naive one read in UTC, shows. The canonical-record check also runs
under UTC (a zone written into the connector shows there)."""


def applies(condition: Callable[[type[ContractBase]], bool]) -> Callable[[Callable[..., Any]], Any]:
    """Keep the decorated check only for contracts where ``condition(contract_class)`` holds."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        func._kit_condition = condition  # type: ignore[attr-defined]
        return func

    return mark


def pulls(cls: type[ContractBase]) -> bool:
    return bool(cls.pull_streams())


def pushes(cls: type[ContractBase]) -> bool:
    return Capability.PUSH_PROFILES in cls.kit_spec.capabilities


OPERATIONS = ("pull", "push", "check")
"""The calls a check can make against a connector (see :mod:`crmsync.testing.operations`)."""


def available(cls: type[ContractBase], wanted: tuple[str, ...] = OPERATIONS) -> list[str]:
    """The operations of ``wanted`` this connector offers (a pull and a push follow its capabilities)."""
    offered = {"pull": pulls(cls), "push": pushes(cls), "check": True}
    return [op for op in wanted if offered[op]]


def talks_http(cls: type[ContractBase]) -> bool:
    return cls.http and (pulls(cls) or pushes(cls))


def has(capability: Capability) -> Callable[[type[ContractBase]], bool]:
    return lambda cls: pulls(cls) and capability in cls.kit_spec.capabilities


def _no_sleep(seconds: float) -> None:
    """Retries in the kit wait no real time."""


def kit_http_client(double: CrmDouble, **kwargs: Any) -> Any:
    """The shared HTTP client, wired to the double's transport and without real waiting."""
    from crmsync.http import make_client

    transport = double.transport()
    if transport is not None:
        kwargs.setdefault("transport", transport)
    kwargs.setdefault("sleep", _no_sleep)
    return make_client(**kwargs)


def resolve_spec(spec: ConnectorSpec | str) -> ConnectorSpec:
    """A spec given by name is looked up among installed plugins, as the command line would."""
    if isinstance(spec, ConnectorSpec):
        return spec
    from crmsync.plugins import PluginHost

    host = PluginHost()
    host.load_entrypoints()
    found = host.connector_spec(spec)
    if found is None:
        broken = "; ".join(f"{p.name}: {p.error}" for p in host.plugins.values() if p.error) or "none"
        raise TypeError(
            f"no installed plugin registers a connector named {spec!r} (found: "
            f"{', '.join(host.connector_names()) or 'none'}; plugins that failed to load: {broken}). "
            "Install your package (pip install -e .) or set spec to the ConnectorSpec object."
        )
    return found


class ContractBase:
    """Fixtures every check uses. Subclasses set :attr:`spec` and provide a ``crm`` fixture."""

    spec: ClassVar[ConnectorSpec | str]
    kit_spec: ClassVar[ConnectorSpec]
    http: ClassVar[bool] = True
    """The connector talks HTTP (the double can fail calls); ``False`` for file-based connectors."""
    refuses_records: ClassVar[bool] = True
    """The target can refuse single records of a push (``False`` for a file target: no rejection check)."""
    custom_fields: ClassVar[bool] = True
    """The target has custom fields that ``check()`` verifies (``False`` for a file target)."""
    batch_answers: ClassVar[bool] = True
    """One write call answers for several records, record by record (``False``: one call per record, or a file:
    no check of a record missing from the answer)."""
    seed_count: ClassVar[int] = 7
    """Records seeded per check; keep it above two pages of the double's page size."""
    cluster_size: ClassVar[int] = 25
    """Records changed at one instant in the cluster check; keep it above several pages of the double's page size."""
    large_cluster_size: ClassVar[int] = 2500
    """Records of one instant in the cursor-cost check, which pulls this many and then twice as many with the
    settings at the top of their range (the largest pages); keep it above ``CHECKPOINT_ALWAYS`` (2,000)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" not in cls.__dict__:
            return
        cls.kit_spec = resolve_spec(cls.spec)
        for name in dir(cls):
            check = getattr(cls, name, None)
            condition = getattr(check, "_kit_condition", None)
            if name.startswith("test_") and condition is not None and not condition(cls):
                setattr(cls, name, None)  # not applicable to this connector: not collected at all

    @classmethod
    def pull_streams(cls) -> list[Stream]:
        return [s for s in Stream if PULL_CAPABILITY[s] in cls.kit_spec.capabilities]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "stream" in metafunc.fixturenames:
            metafunc.parametrize("stream", self.pull_streams(), ids=lambda s: s.value)
        if "operation" in metafunc.fixturenames:
            wanted = getattr(metafunc.function, "_kit_operations", OPERATIONS)
            metafunc.parametrize("operation", available(type(self), wanted))
        if "zone" in metafunc.fixturenames:
            metafunc.parametrize("zone", [KIT_TIMEZONE, "UTC"])

    @pytest.fixture
    def double(self, crm: CrmDouble) -> Iterator[CrmDouble]:
        if hasattr(crm, "__enter__"):
            with crm:
                yield crm
        else:
            yield crm

    @pytest.fixture
    def settings(self, double: CrmDouble) -> Any:
        settings = self.kit_spec.settings_model.model_validate(double.settings())
        register_secrets(settings)  # as the host does before it builds a connector
        return settings

    @pytest.fixture
    def make_connector(self, double: CrmDouble, settings: Any) -> Iterator[Callable[..., Connector]]:
        """Build a fresh connector, as a new process would (a restart): new context, new state.

        ``make(zone)`` runs it under another ``context.timezone`` than :data:`KIT_TIMEZONE`, ``make(settings=...)``
        with other settings.
        """
        built: list[Connector] = []
        default = settings

        def make(zone: str = KIT_TIMEZONE, settings: Any = None) -> Connector:
            double.timezone = ZoneInfo(zone)  # type: ignore[misc]  # where the source's naive times are
            context = ConnectorContext(
                name=SOURCE,
                base_currency=BASE_CURRENCY,
                timezone=ZoneInfo(zone),
                http_factory=functools.partial(kit_http_client, double),
            )
            connector = self.kit_spec.factory(default if settings is None else settings, context)
            built.append(connector)
            return connector

        yield make
        for connector in built:
            connector.close()

    @pytest.fixture
    def connector(self, make_connector: Callable[..., Connector]) -> Connector:
        return make_connector()
