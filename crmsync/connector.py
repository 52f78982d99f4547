"""The connector contract: what a plugin implements to pull records from, and push grades to, one system.

The engine only ever talks to a connector through this module:

* :meth:`Connector.pull` yields :class:`Batch` objects for one :class:`Stream`, starting from an opaque
  cursor string the engine stored last time (``None`` on the first run). Each batch carries the cursor that
  is valid *once that batch is stored*; the engine commits the batch and its cursor in one transaction, so a
  crash between batches loses nothing and re-pulls at most one batch (records are keyed by id, so a re-pull
  never counts twice). A connector that can only resume from the start keeps the old cursor on intermediate
  batches and hands the new one on the last.
* Bad source records are not exceptions: put a :class:`Rejection` (where, which field, why) in
  ``Batch.rejects``; the engine quarantines and reports it, and the rest of the run goes on.
* :meth:`Connector.push` receives at most ``push_batch_size`` :class:`ProfileChange` objects and returns one
  :class:`RecordResult` per change. A rejected record is a result with ``ok=False``, not an exception; raise
  only when the whole call failed (the engine keeps the batch in its outbox and retries on the next run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from zoneinfo import ZoneInfo

from crmsync.models import Activity, Member, Order, Profile

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa
    from pydantic import BaseModel


class Stream(StrEnum):
    """The kinds of record a connector can pull."""

    MEMBERS = "members"
    ORDERS = "orders"
    ACTIVITIES = "activities"


class Capability(StrEnum):
    """What a connector can do; the engine and the conformance kit act on these."""

    PULL_MEMBERS = "pull_members"
    PULL_ORDERS = "pull_orders"
    PULL_ACTIVITIES = "pull_activities"
    PUSH_PROFILES = "push_profiles"
    INCREMENTAL = "incremental"
    """Pulls honour the cursor: a rerun with no change yields no records."""
    DELETIONS = "deletions"
    """Pulls report deleted records in ``Batch.deleted``."""
    BULK = "bulk"
    """Large initial pulls or pushes use a bulk API."""
    CREATE_FIELDS = "create_fields"
    """:meth:`Connector.create_fields` can create missing custom fields."""


PULL_CAPABILITY: Mapping[Stream, Capability] = {
    Stream.MEMBERS: Capability.PULL_MEMBERS,
    Stream.ORDERS: Capability.PULL_ORDERS,
    Stream.ACTIVITIES: Capability.PULL_ACTIVITIES,
}

Record = Member | Order | Activity


@dataclass(frozen=True)
class Rejection:
    """A source record that could not be read: where it is, which field, and why.

    ``locator`` says where a person finds it (``orders.csv:17`` or ``Sales_Orders 4711``); ``raw`` keeps the
    source values so nothing is lost (the store quarantines it; a rerun picks the record up once fixed).
    """

    stream: Stream
    locator: str
    field: str | None
    reason: str
    record_id: str | None = None
    raw: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        where = f"{self.locator} field {self.field!r}" if self.field else self.locator
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Batch:
    """Records of one stream, stored in one transaction together with ``cursor``."""

    stream: Stream
    records: Sequence[Record] = ()
    deleted: Sequence[str] = ()
    """External ids of records deleted in the source since the last cursor."""
    rejects: Sequence[Rejection] = ()
    cursor: str | None = None
    """The cursor to resume from once this batch is stored (``None``: keep the previous one)."""
    snapshot_complete: bool = False
    """Set on the last batch of a pull that returned the *whole* current set of the stream (a full CSV
    export): records of this stream and connector that none of this pull's batches contained are then
    marked deleted. Leave ``False`` for incremental pulls, which report deletions in ``deleted``."""
    table: pa.Table | None = None
    """Records in columnar form, for large pulls (optional; may be combined with ``records``, which come after the
    table's rows): an Arrow table with columns named as in :data:`crmsync.store.records.SCHEMAS` for the stream.
    ``source`` and ``amount_base`` are filled in by the store; other missing columns are null; ``deleted`` defaults
    to false. An optional string column ``_locator`` says where each row came from (``orders.csv:17``), as
    ``locator`` does for a record. The connector validates the values as it would for records; the store applies
    the same rules to both (:mod:`crmsync.store.staging`): it rejects rows without ``external_id`` and orders in a
    currency without an exchange rate (as :class:`Rejection` values naming the locator), and a later row wins over
    an earlier one with the same id."""


@dataclass(frozen=True)
class ProfileChange:
    """One member whose pushed values differ from what this target last received.

    ``values`` holds every pushed field (canonical names, see :data:`crmsync.models.PUSHED_FIELDS`),
    ``changed`` names those that differ from ``previous`` (empty ``previous``: never pushed before).
    """

    member_id: str
    values: Mapping[str, Any]
    previous: Mapping[str, Any]
    changed: frozenset[str]
    profile: Profile | None = None


@dataclass(frozen=True)
class RecordResult:
    """The outcome of pushing one :class:`ProfileChange`."""

    member_id: str
    ok: bool
    reason: str | None = None
    field: str | None = None
    retryable: bool = True
    """``False`` when retrying cannot succeed without a change (the record was deleted in the CRM)."""


@dataclass(frozen=True)
class CheckResult:
    """One line of ``crmsync check``: what was checked, whether it is fine, and what to do if not."""

    name: str
    ok: bool
    detail: str = ""


class KeyValueState(Protocol):
    """Small persistent state a connector may keep in the store (e.g. an OAuth token cache)."""

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str | None) -> None: ...


class _MemoryState:
    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self._data.pop(key, None)
        else:
            self._data[key] = value


@dataclass
class ConnectorContext:
    """What the host gives a connector besides its settings."""

    name: str
    """The connector's name in the configuration (``[connectors.NAME]``); use it as ``Record.source``."""
    base_currency: str = "EUR"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    """Read naive source datetimes in this zone."""
    state: KeyValueState = field(default_factory=_MemoryState)
    """Small state kept in the store between runs, in clear: cursors' helpers, counters, ids — never a credential."""
    secrets: KeyValueState = field(default_factory=_MemoryState)
    """State for what would be a usable credential (an access token): the host encrypts each value with a key
    derived from the connector's ``SecretStr`` settings before it reaches the store, so a copy of the store file
    alone cannot call the CRM (see :mod:`crmsync.store.sealed`). Values sealed with other secrets read as absent.
    Without ``SecretStr`` settings it keeps values for the run only."""
    http_factory: Callable[..., httpx.Client] | None = None
    """Builds the shared HTTP client (retries, rate limit, call counts, redaction); see :mod:`crmsync.http`."""
    api_calls: dict[str, int] = field(default_factory=dict)
    """Calls made, by endpoint kind; the shared HTTP client fills it, the report shows it."""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("crmsync.connector"))
    verbose: bool = False
    """Personal data (emails, names) may appear in logs and messages only when this is set."""
    tier_names: tuple[str, ...] = ()
    """Every tier the policy can assign, highest first: what a picklist must allow (for ``check``)."""
    tag_names: tuple[str, ...] = ()
    """Every tag the policy can assign (plugins may add more at run time)."""
    forgotten: Callable[[Iterable[object]], bool] = field(default=lambda values: False)
    """Whether any of the values is the id or the email of a forgotten member (``crmsync forget``): a connector that
    writes source rows to files of its own (a rejects file) leaves out a row for which this holds."""
    push_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Every value a push can write, per canonical field with a fixed set of values (``tier``, ``rfm_segment``,
    ``lifecycle``, ``tags``): what the target's picklists or select options must allow. ``check`` compares them
    with the target's fields and names each missing one; ``create_fields`` adds what is missing."""

    def http(self, **kwargs: Any) -> httpx.Client:
        """Return a client from the shared factory (built on first use if the host gave none)."""
        if self.http_factory is None:
            from crmsync.http import make_client

            self.http_factory = make_client
        return self.http_factory(counter=self.api_calls, **kwargs)


class Connector:
    """Base class of every connector. Subclass it, set ``capabilities``, implement what they promise."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    push_batch_size: ClassVar[int] = 100
    """At most this many changes are passed to one :meth:`push` call."""
    push_fields: ClassVar[tuple[str, ...] | None] = None
    """Canonical fields this connector writes back (``None``: all of :data:`crmsync.models.PUSHED_FIELDS`)."""

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        self.settings = settings
        self.context = context

    @property
    def name(self) -> str:
        return self.context.name

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        """Yield batches of ``stream`` changed since ``cursor`` (everything when ``cursor`` is ``None``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot pull {stream}")

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        """Write ``changes`` to the system; return one result per change, in any order."""
        raise NotImplementedError(f"{type(self).__name__} cannot push profiles")

    def push_batches(
        self, batches: Iterable[Sequence[ProfileChange]]
    ) -> Iterator[tuple[Sequence[ProfileChange], list[RecordResult]]]:
        """Push several batches (each at most ``push_batch_size``); yield ``(batch, results)`` as each completes.

        The engine records every yielded pair at once, so a crash loses at most the batches in flight (which are
        pushed again by the next run). The default pushes one batch after the other; override it to run
        independent batches concurrently or to hand a large set to a bulk API.
        """
        for batch in batches:
            yield batch, self.push(batch)

    def push_table(self, table: pa.Table) -> pa.Table:
        """Optional columnar push of *every* pending change at once, for targets that write files or bulk APIs.

        ``table`` has a ``member_id`` column and one column per field of :attr:`push_fields` (``points`` int64,
        ``tags`` a list of strings, the others strings). Return a table with one row per member: ``member_id``,
        ``ok`` (bool), ``reason``, ``field`` (strings, null when ok) and ``retryable`` (bool). A connector that
        overrides this method is pushed through it instead of :meth:`push_batches`.
        """
        raise NotImplementedError(f"{type(self).__name__} has no columnar push")

    def check(self) -> list[CheckResult]:
        """Verify credentials, permissions and the fields pushes need; never write anything."""
        return []

    def create_fields(self) -> list[CheckResult]:
        """Create missing custom fields (only with :attr:`Capability.CREATE_FIELDS`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot create fields")

    def fields_fingerprint(self) -> str | None:
        """A short text that changes whenever the target's field metadata changes, or ``None`` (the default) when
        the connector cannot tell.

        The metadata is what decides whether a push is accepted: picklist or select options, field types and
        lengths, which fields exist. The engine asks only while the target has refused changes (at most once per
        run) and keeps the answer; when it differs from the last one, the changes given up after their attempts get
        a fresh set, so that a value refused until an administrator added the missing option arrives with the next
        run. A hash of the fields API's answer is a good fingerprint::

            def fields_fingerprint(self) -> str:
                fields = self.client.get_json("/settings/fields", params={"module": "Contacts"})["fields"]
                return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
        """
        return None

    def erase(self, member: Member) -> int:
        """Remove a forgotten member from the files this connector itself writes (a rejects file, an output file);
        return the number of rows removed. The default writes no such file and removes nothing.

        ``crmsync forget`` calls it with the member as the store held it (``external_id``, ``email``, ``phone``,
        names; only ``external_id`` when the store no longer knew more). Remove every row naming the member's id,
        email or phone, and rewrite the file so that none of its bytes remain (write a new file and move it into
        place). Rows the connector writes later for a member of the erasure list are refused by
        :attr:`ConnectorContext.forgotten`. The connector's source system is not changed.
        """
        return 0

    def close(self) -> None:
        """Release clients and files."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
