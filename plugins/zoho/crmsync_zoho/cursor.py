"""The Zoho pull cursor: a forward-only watermark per stream, serialised as JSON.

``If-Modified-Since`` has one-second resolution and its inclusivity is not documented, so pulls re-read an
overlap window before the watermark; the cursor remembers which ``(id, time)`` pairs inside that window were
already delivered, so the overlap never delivers a record twice and a rerun with no change yields nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from crmsync.errors import FatalAPIError


@dataclass
class Watermark:
    """The newest time seen, plus the ids delivered within ``overlap`` of it."""

    at: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)

    def since(self, overlap: timedelta) -> datetime | None:
        return None if self.at is None else self.at - overlap

    def admit(self, record_id: str, when: datetime | None) -> bool:
        """False when this exact version was delivered already (re-read through the overlap window)."""
        return when is None or self.seen.get(record_id) != when.isoformat()

    def advance(self, record_id: str, when: datetime | None, overlap: timedelta) -> None:
        if when is None:
            return
        if self.at is None or when > self.at:
            self.at = when
        self.seen[record_id] = when.isoformat()
        floor = self.at - overlap
        self.seen = {k: v for k, v in self.seen.items() if datetime.fromisoformat(v) >= floor}

    def cap(self, limit: datetime) -> None:
        """Hold the watermark at ``limit`` at most (the start of an unordered export: a record changed while it
        ran may have been exported in its older version, so the next pull reads from before the start)."""
        if self.at is None or self.at > limit:
            self.at = limit

    def to_json(self) -> dict[str, object]:
        return {"at": self.at.isoformat() if self.at else None, "seen": self.seen}

    @classmethod
    def from_json(cls, data: object) -> Watermark:
        if not isinstance(data, dict):
            return cls()
        at = data.get("at")
        return cls(datetime.fromisoformat(at) if at else None, dict(data.get("seen") or {}))


@dataclass
class ZohoCursor:
    records: Watermark = field(default_factory=Watermark)
    deleted: Watermark = field(default_factory=Watermark)

    def dumps(self) -> str:
        return json.dumps({"v": 1, "records": self.records.to_json(), "deleted": self.deleted.to_json()})

    @classmethod
    def loads(cls, text: str | None) -> ZohoCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("v") != 1:
                raise ValueError("unknown cursor version")
            return cls(Watermark.from_json(data.get("records")), Watermark.from_json(data.get("deleted")))
        except (ValueError, AttributeError, TypeError) as exc:
            raise FatalAPIError(f"stored Zoho cursor cannot be read ({exc}); reset the stream's cursor") from None
