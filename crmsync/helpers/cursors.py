"""Cursors that survive restarts and clusters of equal timestamps.

:class:`CursorCodec` writes a connector's cursor state as JSON text carrying a format version, and reads every
version it was given a reader for: a cursor stored by an older release keeps working, a malformed one stops the
pull with a message saying how to recover.

:class:`Watermark` is the state of an incremental pull by modification time: the newest time delivered, and the
versions delivered inside an overlap window before it. A pull asks from ``since(overlap)`` (the watermark minus the
overlap: a record committed late, or sharing the watermark's instant across a page boundary, is read again) and
skips what :meth:`Watermark.delivered` says was handed over already, so a rerun without changes yields nothing and
resuming after any batch loses nothing. Every step stays linear when tens of thousands of records share one
timestamp (a mass update, an import, the connector's own write-back): noting a version is O(1) amortised (a dict
and a heap ordered by time), pruning pops only what left the window, and :meth:`Watermark.checkpoint_due` hands a
large cursor over at doubling sizes, so serialising cursors costs O(records read) in all.

Import these from :mod:`crmsync.helpers`.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from crmsync.errors import FatalAPIError

S = TypeVar("S")
T = TypeVar("T", datetime, int)

CHECKPOINT_ALWAYS = 2000
"""A watermark remembering at most this many versions is cheap to write: hand it over with every batch."""


class CursorCodec(Generic[S]):
    """Reads and writes one connector's cursor state as ``{"v": <version>, ...}`` JSON text.

    Args:
        name: what the cursor belongs to, for messages (``"HubSpot"``).
        version: the version :meth:`dumps` writes.
        encode: the state as a JSON object (without ``"v"``).
        decoders: a reader per version it can load, the current one included (older ones keep stored cursors
            working after an upgrade).
        empty: the state of a first pull (no cursor stored yet).

    Example::

        CODEC = CursorCodec("HubSpot", 1, Watermark.to_json, {1: Watermark.from_json}, Watermark)
        mark = CODEC.loads(cursor)          # a Watermark; a fresh one for cursor=None
        ...
        yield Batch(stream, records, cursor=CODEC.dumps(mark))
    """

    def __init__(
        self,
        name: str,
        version: int,
        encode: Callable[[S], Mapping[str, Any]],
        decoders: Mapping[int, Callable[[Mapping[str, Any]], S]],
        empty: Callable[[], S],
    ) -> None:
        if version not in decoders:
            raise ValueError(f"{name} cursor codec: no reader for the version it writes ({version})")
        self.name, self.version, self.encode, self.decoders, self.empty = name, version, encode, dict(decoders), empty

    def dumps(self, state: S) -> str:
        """The cursor text of ``state`` (compact JSON)."""
        return json.dumps({"v": self.version, **self.encode(state)}, separators=(",", ":"), ensure_ascii=False)

    def loads(self, text: str | None) -> S:
        """The state stored as ``text``; the empty state for ``None`` or ``""``.

        Raises:
            FatalAPIError: the text is not a cursor of a known version (the message says to reset the cursor).
        """
        if not text:
            return self.empty()
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            version = data.get("v")
            decode = self.decoders.get(version) if isinstance(version, int) else None
            if decode is None:
                newer = isinstance(version, int) and version > self.version
                raise ValueError(
                    f"unknown cursor version {version!r}" + (" (written by a newer release)" if newer else "")
                )
            return decode(data)
        except (ValueError, AttributeError, TypeError, KeyError) as exc:
            raise FatalAPIError(
                f"stored {self.name} cursor cannot be read ({exc}); reset the stream's cursor"
            ) from None


class Watermark(Generic[T]):
    """The newest modification time delivered, and the versions delivered inside the overlap window before it.

    Times are aware datetimes (with ``timedelta`` overlaps) or integers such as epoch milliseconds (with integer
    overlaps). See the module docstring for how a pull uses it.

    Args:
        at: the newest time delivered (``None`` before the first pull).
        checked: when the last complete read began (the server's clock), see :meth:`complete`.
        seen: ``{record id: time of the version delivered}`` inside the window.
    """

    def __init__(self, at: T | None = None, checked: T | None = None, seen: Mapping[str, T] | None = None) -> None:
        self.at = at
        self.checked = checked
        self.seen: dict[str, T] = dict(seen or {})
        self._heap: list[tuple[T, str]] = [(when, rid) for rid, when in self.seen.items()]
        heapq.heapify(self._heap)

    def __repr__(self) -> str:
        return f"<Watermark at={self.at!r} checked={self.checked!r} seen={len(self.seen)}>"

    def since(self, overlap: Any) -> T | None:
        """Where the next read starts: ``overlap`` before the watermark (``None``: read everything).

        Once a complete read began at least ``overlap`` after the watermark (:meth:`complete`), every late commit
        was visible to it, and the next read starts at the watermark itself.
        """
        if self.at is None:
            return None
        start = self.at - overlap
        if self.checked is not None:
            start = max(start, min(self.at, self.checked - overlap))
        return start

    def delivered(self, record_id: str, when: T | None) -> bool:
        """True when this version of the record was handed over already (re-read through the overlap)."""
        return when is not None and self.seen.get(record_id) == when

    def note(self, record_id: str, when: T | None) -> None:
        """Remember a delivered version and raise the watermark to it. O(1) amortised."""
        if when is None:
            return
        self.checked = None  # a read is under way: the window is settled again only when one completes
        if self.at is None or when > self.at:
            self.at = when
        if self.seen.get(record_id) != when:
            self.seen[record_id] = when
            heapq.heappush(self._heap, (when, record_id))

    def prune(self, overlap: Any, *, window_start: T | None = None) -> None:
        """Forget versions older than the next read's start (call once per page).

        ``window_start`` keeps the versions of a read under way that pages by something else than time (a fixed
        window paged by id re-reads all of it after a crash).
        """
        floor = self.since(overlap)
        if floor is None:
            return
        if window_start is not None:
            floor = min(floor, window_start)
        heap, seen = self._heap, self.seen
        while heap and heap[0][0] < floor:
            when, rid = heapq.heappop(heap)
            if seen.get(rid) == when:
                del seen[rid]
        if len(heap) > 2 * len(seen) + 64:  # stale entries of records seen again in a newer version
            self._heap = [(when, rid) for rid, when in seen.items()]
            heapq.heapify(self._heap)

    def complete(self, started: T | None, overlap: Any) -> None:
        """A read that began at server time ``started`` went through to its end."""
        if started is not None and not (isinstance(started, datetime) and started.tzinfo is None):
            self.checked = started if self.checked is None else max(self.checked, started)
        self.prune(overlap)

    def cap(self, limit: T) -> None:
        """Hold the watermark at ``limit`` at most (the start of an unordered export: a record changed while it ran
        may have been exported in its older version, so the next read starts before it)."""
        if self.at is None or self.at > limit:
            self.at = limit

    def checkpoint_due(self, rows_since: int, *, always: int = CHECKPOINT_ALWAYS) -> bool:
        """Whether the batch after ``rows_since`` rows read since the last handed-over cursor should carry one.

        Always while the watermark remembers at most ``always`` versions; else once the rows read since make up
        half of them, so a cluster that grows the window as fast as rows are read is written at doubling sizes.
        """
        return len(self.seen) <= always or 2 * rows_since >= len(self.seen)

    def grouped(self) -> dict[T, list[str]]:
        """The remembered ids by time (a cluster of one time is written once, not once per id)."""
        groups: dict[T, list[str]] = {}
        for rid, when in self.seen.items():
            groups.setdefault(when, []).append(rid)
        return groups

    def to_json(self) -> dict[str, Any]:
        """A datetime watermark as ``{"at", "checked", "seen": {time: [ids]}}`` (ISO 8601 times)."""
        return {
            "at": _iso(self.at),
            "checked": _iso(self.checked),
            "seen": {_iso(when): ids for when, ids in self.grouped().items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Watermark[datetime]:
        """Read what :meth:`to_json` wrote (an empty watermark for ``None``)."""
        if not data:
            return Watermark()
        at, checked = data.get("at"), data.get("checked")
        seen: dict[str, datetime] = {}
        for when, ids in (data.get("seen") or {}).items():
            seen.update(dict.fromkeys(map(str, ids), _aware(when)))
        return Watermark(_aware(at) if at else None, _aware(checked) if checked else None, seen)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"naive time {text!r} in a cursor")
    return value
