"""The pull cursor: a ``last_modified_time`` watermark plus the ``_id`` position inside an unfinished pull.

A pull reads ``last_modified_time GTE since`` ordered by ``_id`` and pages with ``_id GT <last id>`` (the
documented way past the 10,000-offset ceiling), so the window is fixed for the whole pull and the ``_id``
position is a safe resume point after any batch. ``since`` is the watermark minus an overlap (late index
updates); the ids already delivered inside that overlap are remembered with their time, so re-reading the
overlap never delivers the same version twice and a rerun without changes yields nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from crmsync.errors import FatalAPIError


@dataclass
class FxCursor:
    watermark: int | None = None
    """Newest ``last_modified_time`` (epoch ms) delivered."""
    seen: dict[str, int] = field(default_factory=dict)
    """Ids delivered within the overlap of the watermark, with the time of the version delivered."""
    since: int | None = None
    """The window of the pull under way (``None`` also when no pull is under way: see ``active``)."""
    after_id: str | None = None
    active: bool = False

    def start(self, overlap_ms: int) -> None:
        """Begin a pull (or keep the one a crash interrupted)."""
        if not self.active:
            self.active = True
            self.since = None if self.watermark is None else self.watermark - overlap_ms
            self.after_id = None

    def finish(self, overlap_ms: int) -> None:
        self.active, self.since, self.after_id = False, None, None
        self._prune(overlap_ms)

    def delivered(self, record_id: str, modified: int | None) -> bool:
        """True when this version of the record was handed over already."""
        return modified is not None and self.seen.get(record_id) == modified

    def _floor(self, overlap_ms: int) -> int | None:
        """Entries older than this are no longer needed: outside the next window and the current one."""
        if self.watermark is None:
            return None
        floor = self.watermark - overlap_ms
        return min(floor, self.since) if self.active and self.since is not None else floor

    def _prune(self, overlap_ms: int) -> None:
        floor = self._floor(overlap_ms)
        if floor is not None:
            self.seen = {k: v for k, v in self.seen.items() if v >= floor}

    def note(self, record_id: str, modified: int | None, overlap_ms: int) -> None:
        if modified is None:
            return
        if self.watermark is None or modified > self.watermark:
            self.watermark = modified
            self._prune(overlap_ms)  # only a rising mark frees entries
        floor = self._floor(overlap_ms)
        if floor is None or modified >= floor:
            self.seen[record_id] = modified

    def dumps(self) -> str:
        data: dict[str, Any] = {"v": 1, "wm": self.watermark, "seen": self.seen}
        if self.active:
            data["run"] = {"since": self.since, "after": self.after_id}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> FxCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("v") != 1:
                raise ValueError("unknown cursor version")
            run = data.get("run")
            cursor = cls(data.get("wm"), {str(k): int(v) for k, v in (data.get("seen") or {}).items()})
            if isinstance(run, dict):
                cursor.active, cursor.since, cursor.after_id = True, run.get("since"), run.get("after")
            return cursor
        except (ValueError, AttributeError, TypeError) as exc:
            raise FatalAPIError(f"stored Fxiaoke cursor cannot be read ({exc}); reset the stream's cursor") from None
