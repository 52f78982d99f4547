"""The Zoho pull cursor: a forward-only watermark per stream, serialised as JSON.

``If-Modified-Since`` has one-second resolution and its inclusivity is not documented, and a record may become
visible a little after its ``Modified_Time`` (a late commit), so a pull re-reads an ``overlap`` window before the
watermark; the cursor remembers which ``(id, time)`` versions inside that window were already delivered, so the
overlap never delivers a record twice.

The window is only re-read while it may still hold late commits. A complete pull notes the server's time when it
began (``checked``: the ``Date`` of its first answer, or a Bulk Read job's creation time): every record changed
``overlap`` before that was visible to it. Once ``checked`` is ``overlap`` past the watermark, the next pull asks
from the watermark itself, so a steady rerun is answered 304 even after thousands of records changed in the
watermark's second (a write-back, a mass update).

Each pull costs time linear in what it reads: versions are kept in a dict with a heap ordered by time, and
expired ones are dropped once per page, not once per record.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crmsync.errors import FatalAPIError

VERSION = 2


@dataclass
class Watermark:
    """The newest time seen, when the last complete read began, and the versions delivered near the newest."""

    at: datetime | None = None
    checked: datetime | None = None
    """Server time at the start of the last complete read (``None`` while a read is under way)."""
    seen: dict[str, datetime] = field(default_factory=dict)
    _heap: list[tuple[datetime, str]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.seen and not self._heap:
            self._heap = [(when, rid) for rid, when in self.seen.items()]
            heapq.heapify(self._heap)

    def since(self, overlap: timedelta) -> datetime | None:
        """Where the next read starts: ``overlap`` before the watermark, or the watermark once settled."""
        if self.at is None:
            return None
        start = self.at - overlap
        if self.checked is not None:
            start = max(start, min(self.at, self.checked - overlap))
        return start

    def admit(self, record_id: str, when: datetime | None) -> bool:
        """False when this exact version was delivered already (re-read through the overlap window)."""
        return when is None or self.seen.get(record_id) != when

    def note(self, record_id: str, when: datetime | None) -> None:
        """Remember a delivered version; raises the watermark. Constant time (amortised)."""
        if when is None:
            return
        self.checked = None  # a read is under way: the window is settled again only when it completes
        if self.at is None or when > self.at:
            self.at = when
        if self.seen.get(record_id) != when:
            self.seen[record_id] = when
            heapq.heappush(self._heap, (when, record_id))

    def prune(self, overlap: timedelta) -> None:
        """Forget versions older than the next read's start (call once per page)."""
        floor = self.since(overlap)
        heap, seen = self._heap, self.seen
        while heap and (floor is None or heap[0][0] < floor):
            when, rid = heapq.heappop(heap)
            if seen.get(rid) == when:
                del seen[rid]
        if len(heap) > 2 * len(seen) + 64:  # stale entries of records seen again in a newer version
            self._heap = [(when, rid) for rid, when in seen.items()]
            heapq.heapify(self._heap)

    def complete(self, started: datetime | None, overlap: timedelta) -> None:
        """A read that began at server time ``started`` went through to its end."""
        if started is not None and started.tzinfo is not None:
            self.checked = started if self.checked is None else max(self.checked, started)
        self.prune(overlap)

    def cap(self, limit: datetime) -> None:
        """Hold the watermark at ``limit`` at most (the start of an unordered export: a record changed while it
        ran may have been exported in its older version, so the next pull reads from before the start)."""
        if self.at is None or self.at > limit:
            self.at = limit

    def to_json(self) -> dict[str, Any]:
        groups: dict[datetime, list[str]] = {}
        for rid, when in self.seen.items():
            groups.setdefault(when, []).append(rid)
        return {
            "at": self.at.isoformat() if self.at else None,
            "checked": self.checked.isoformat() if self.checked else None,
            "seen": {when.isoformat(): ids for when, ids in groups.items()},
        }

    @classmethod
    def from_json(cls, data: object, version: int) -> Watermark:
        if not isinstance(data, dict):
            return cls()
        at, checked = data.get("at"), data.get("checked")
        raw = data.get("seen") or {}
        if version == 1:  # {id: time}
            seen = {str(rid): datetime.fromisoformat(when) for rid, when in raw.items()}
        else:  # {time: [ids]}
            seen = {}
            for when, ids in raw.items():
                stamp = datetime.fromisoformat(when)
                seen.update(dict.fromkeys(map(str, ids), stamp))
        return cls(
            datetime.fromisoformat(at) if at else None, datetime.fromisoformat(checked) if checked else None, seen
        )


@dataclass
class ZohoCursor:
    records: Watermark = field(default_factory=Watermark)
    deleted: Watermark = field(default_factory=Watermark)

    def dumps(self) -> str:
        data = {"v": VERSION, "records": self.records.to_json(), "deleted": self.deleted.to_json()}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | None) -> ZohoCursor:
        """Read a cursor of this version or of version 1 (``seen`` as ``{id: time}``, no ``checked``)."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            version = data.get("v")
            if version not in (1, VERSION):
                raise ValueError(f"unknown cursor version {version!r}")
            return cls(
                Watermark.from_json(data.get("records"), version), Watermark.from_json(data.get("deleted"), version)
            )
        except (ValueError, AttributeError, TypeError) as exc:
            raise FatalAPIError(f"stored Zoho cursor cannot be read ({exc}); reset the stream's cursor") from None
