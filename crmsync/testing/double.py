"""What the conformance kit asks of a test double, and an in-memory base that keeps a CRM's state.

A double stands in for the system a connector talks to. The kit seeds it, edits it (one record, or many at one
instant, or in a transaction that commits late), makes it serve a malformed record or one without its optional
values, reads back what was pushed, makes it refuse a record, leave a record
out of a write answer, or fail its next calls; :class:`CrmDouble` lists those operations. :class:`InMemoryCrm` keeps
the state (records in canonical form, deletions, malformed records, pushed values, queued failures) so a concrete
double only renders that state in its API's shape: :class:`crmsync.testing.PagedJsonApi` does it for a typical
paged JSON API over respx; a file-based double writes files instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from crmsync.connector import Stream
from crmsync.models import PUSHED_FIELDS
from crmsync.testing.data import (
    BASE_CURRENCY,
    COMPARED_FIELDS,
    EPOCH,
    LATE_BY,
    OPTIONAL_FIELDS,
    changed_record,
    sample_record,
)

if TYPE_CHECKING:
    import httpx


@runtime_checkable
class CrmDouble(Protocol):
    """The operations the kit performs on a double of the system under test."""

    def settings(self) -> dict[str, Any]:
        """A valid ``[connectors.NAME]`` table (without ``plugin``) pointing the connector at this double."""

    def seed(self, stream: Stream, count: int) -> list[str]:
        """Create ``count`` records of ``stream``; return their external ids."""

    def change(self, stream: Stream, ids: Sequence[str]) -> None:
        """Edit these records, all at one instant (a mass update when there are many), so that an incremental pull
        must return them again; a record served malformed is repaired."""

    def corrupt(self, stream: Stream, ids: Sequence[str]) -> None:
        """Edit these records at one instant so that the API serves each with a value that cannot be read (an
        impossible date, an amount that is not a number): the connector must reject them, not drop them."""

    def blank(self, stream: Stream, ids: Sequence[str]) -> None:
        """Edit these orders or activities at one instant so that the API serves each without a value it cannot do
        without (an order's date or amount, an activity's date): the connector must reject them, not invent one."""

    def commit_late(self, stream: Stream, ids: Sequence[str]) -> None:
        """Edit these records in a transaction that commits late: their modification time is a few seconds
        (:data:`~crmsync.testing.data.LATE_BY`) before the newest change of ``stream`` the source holds, so a pull
        that resumes exactly at its watermark never sees them; one that re-reads an overlap window does."""

    def omit_optional(self, stream: Stream, ids: Sequence[str]) -> None:
        """Edit these records at one instant so that the API serves each without the values it may lack (a
        member's email, names and creation date; an order's contact and currency; an activity's contact, as far
        as the system allows): the connector must leave them empty, not invent them."""

    def delete(self, stream: Stream, ids: Sequence[str]) -> None:
        """Delete these records in the source."""

    def expected(self, stream: Stream, external_id: str) -> Mapping[str, Any] | None:
        """The canonical values the connector must produce for this record (``None``: not compared)."""

    def pushed(self) -> dict[str, dict[str, Any]]:
        """What the system holds now, by member id and canonical field, for every member written to."""

    def push_log(self) -> list[list[str]]:
        """Member ids written by each write call, in call order."""

    def reject_push(self, member_id: str, field: str, reason: str) -> None:
        """Make the system refuse writes to this member (a per-record error, the rest of the call succeeds)."""

    def drop_from_answer(self, member_id: str) -> None:
        """Make the system leave this member out of the answers to writes (as an API does with an id it ignores):
        it is not written, and the write answer says nothing about it."""

    def drop_field(self, field: str) -> str:
        """Remove the custom field holding canonical ``field``; return its name in the system."""

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` calls with HTTP ``status`` (only doubles of HTTP APIs); token requests count
        too, so ``fail_next(401, times=100)`` refuses the credentials on every call."""

    @property
    def calls(self) -> int:
        """Calls received so far, failed ones included."""

    def transport(self) -> httpx.BaseTransport | None:
        """The transport the shared HTTP client should use (``None``: no HTTP)."""


class InMemoryCrm:
    """State of a fake CRM in canonical form, with the bookkeeping every double needs.

    Subclasses serve :attr:`records` in their API's shape (a value that is ``None`` left out or ``null``, a record
    in :attr:`malformed` with an unreadable value, one in :attr:`blanked` without its date, naive times in
    :attr:`timezone`), call :meth:`next_failure` at the start of each request, :meth:`begin_write` once per write call
    and :meth:`write` for each record it writes, leaving out of the answer (and unwritten) the members
    :meth:`answers` says no to.
    """

    field_names: Mapping[str, str] = {f: f for f in PUSHED_FIELDS}
    """Canonical pushed field -> the system's custom field name."""
    optional_fields: Mapping[Stream, tuple[str, ...]] = OPTIONAL_FIELDS
    """The canonical fields :meth:`omit_optional` leaves out, by stream: narrow it to what your system may lack (an
    account name or a creation time the system always fills stays)."""

    def __init__(self) -> None:
        self.records: dict[Stream, dict[str, dict[str, Any]]] = {s: {} for s in Stream}
        self.deleted_at: dict[Stream, dict[str, datetime]] = {s: {} for s in Stream}
        self.clock = EPOCH
        self.written: dict[str, dict[str, Any]] = {}
        self._push_log: list[list[str]] = []
        self.rejections: dict[str, tuple[str, str]] = {}
        self.missing_fields: set[str] = set()
        self.failures: deque[tuple[int, float | None]] = deque()
        self.requests: list[Any] = []
        self.malformed: dict[Stream, set[str]] = {s: set() for s in Stream}
        """Records served with an unreadable value (see :meth:`corrupt`)."""
        self.blanked: dict[Stream, set[str]] = {s: set() for s in Stream}
        """Records served without a value they need (see :meth:`blank`)."""
        self.unanswered: set[str] = set()
        """Members left out of write answers (see :meth:`drop_from_answer`)."""
        self.timezone: tzinfo = ZoneInfo("UTC")
        """The connector's ``context.timezone``, set by the kit: a source that serves naive times serves them in it."""

    # ---------------------------------------------------------------- kit operations
    def _tick(self, minutes: int = 60) -> datetime:
        self.clock += timedelta(minutes=minutes)
        return self.clock

    def seed(self, stream: Stream, count: int) -> list[str]:
        members = list(self.records[Stream.MEMBERS])
        if stream is not Stream.MEMBERS and not members:
            members = self.seed(Stream.MEMBERS, max(2, count // 2))
        start = len(self.records[stream]) + len(self.deleted_at[stream])
        base = self._tick()
        ids = []
        for i in range(count):
            record = sample_record(stream, start + i, base + timedelta(minutes=i // 2), members)
            self.records[stream][record["external_id"]] = record
            ids.append(record["external_id"])
        self._tick(count)
        return ids

    def change(self, stream: Stream, ids: Sequence[str]) -> None:
        at = self._tick()
        for rid in ids:
            self.records[stream][rid] = changed_record(stream, self.records[stream][rid], at)
            self.malformed[stream].discard(rid)
            self.blanked[stream].discard(rid)

    def corrupt(self, stream: Stream, ids: Sequence[str]) -> None:
        at = self._tick()
        for rid in ids:
            self.records[stream][rid] = dict(self.records[stream][rid], updated_at=at)
            self.malformed[stream].add(rid)

    def blank(self, stream: Stream, ids: Sequence[str]) -> None:
        at = self._tick()
        for rid in ids:
            self.records[stream][rid] = dict(self.records[stream][rid], updated_at=at)
            self.blanked[stream].add(rid)

    def commit_late(self, stream: Stream, ids: Sequence[str]) -> None:
        at = max(r["updated_at"] for r in self.records[stream].values()) - LATE_BY
        for rid in ids:
            self.records[stream][rid] = changed_record(stream, self.records[stream][rid], at)
            self.malformed[stream].discard(rid)
            self.blanked[stream].discard(rid)

    def omit_optional(self, stream: Stream, ids: Sequence[str]) -> None:
        at = self._tick()
        for rid in ids:
            self.records[stream][rid] = dict(
                self.records[stream][rid], updated_at=at, **dict.fromkeys(self.optional_fields.get(stream, ()))
            )

    def delete(self, stream: Stream, ids: Sequence[str]) -> None:
        at = self._tick()
        for rid in ids:
            self.records[stream].pop(rid)
            self.deleted_at[stream][rid] = at

    def expected(self, stream: Stream, external_id: str) -> Mapping[str, Any] | None:
        record = self.records[stream].get(external_id)
        if record is None or external_id in self.malformed[stream] | self.blanked[stream]:
            return None
        values = {k: record[k] for k in COMPARED_FIELDS[stream]}
        if stream is Stream.ORDERS and values["currency"] is None:
            values["currency"] = BASE_CURRENCY  # an order that names no currency is in the home currency
        return values

    def pushed(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.written.items()}

    def push_log(self) -> list[list[str]]:
        return [list(ids) for ids in self._push_log]

    def reject_push(self, member_id: str, field: str, reason: str) -> None:
        self.rejections[member_id] = (field, reason)

    def drop_from_answer(self, member_id: str) -> None:
        self.unanswered.add(member_id)

    def drop_field(self, field: str) -> str:
        self.missing_fields.add(field)
        return self.field_names[field]

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        self.failures.extend([(status, retry_after)] * times)

    @property
    def calls(self) -> int:
        return len(self.requests)

    def transport(self) -> httpx.BaseTransport | None:
        return None

    # ---------------------------------------------------------------- for subclasses
    def next_failure(self) -> tuple[int, float | None] | None:
        return self.failures.popleft() if self.failures else None

    def answers(self, member_id: str) -> bool:
        """Whether a write answer speaks of this member (``False``: leave it out, and do not write it)."""
        return member_id not in self.unanswered

    def begin_write(self) -> list[str]:
        """Start logging one write call; append member ids to the returned list."""
        ids: list[str] = []
        self._push_log.append(ids)
        return ids

    def write(self, member_id: str, values: Mapping[str, Any]) -> tuple[str, str] | None:
        """Store canonical ``values`` for a member; return ``(field, reason)`` if the system refuses it."""
        if member_id not in self.records[Stream.MEMBERS]:
            return ("id", f"no contact with id {member_id}")
        if member_id in self.rejections:
            return self.rejections[member_id]
        for name in values:
            if name in self.missing_fields:
                return (self.field_names[name], f"unknown field {self.field_names[name]}")
        self.written.setdefault(member_id, {}).update(values)
        return None
