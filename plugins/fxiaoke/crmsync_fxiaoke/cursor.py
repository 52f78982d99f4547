"""The pull cursor: a ``last_modified_time`` watermark plus the ``_id`` position inside an unfinished pull.

A pull reads ``last_modified_time GTE since`` ordered by ``_id`` and pages with ``_id GT <last id>`` (the
documented way past the 10,000-offset ceiling), so the window is fixed for the whole pull and the ``_id``
position is a safe resume point after any batch. ``since`` is the watermark minus an overlap (late index
updates); the ids already delivered inside that overlap are remembered with their time, so re-reading the
overlap never delivers the same version twice and a rerun without changes yields nothing.

Many records can share one modification time (a mass update, an import, our own write-back): the remembered
ids then number in the tens of thousands. Every step stays linear: noting a record is O(1), old entries are
dropped once the map has doubled since the last pruning (amortised O(1) a record), and a large map is written
into a batch's cursor only once the rows read since the last written cursor make up half of it
(:meth:`FxCursor.checkpoint_due`), so writing cursors costs O(rows read) in all. Batches in between carry no
cursor: a crash re-reads at most that many rows, and records are keyed by id, so nothing counts twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from crmsync.errors import FatalAPIError

PRUNE_AT_LEAST = 1024
"""The remembered ids are pruned once they number this many and twice what the last pruning kept."""
CHECKPOINT_ALWAYS = 2000
"""Every batch carries the cursor while it remembers at most this many ids (a cheap write)."""


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
    _kept: int = 0
    """How many ids the last pruning kept."""

    def start(self, overlap_ms: int) -> None:
        """Begin a pull (or keep the one a crash interrupted)."""
        if not self.active:
            self.active = True
            self.since = None if self.watermark is None else self.watermark - overlap_ms
            self.after_id = None
        self._kept = len(self.seen)

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
        self._kept = len(self.seen)

    def note(self, record_id: str, modified: int | None, overlap_ms: int) -> None:
        """Remember a delivered record (O(1): a rising watermark does not prune here, see :meth:`page_read`)."""
        if modified is None:
            return
        if self.watermark is None or modified > self.watermark:
            self.watermark = modified
        floor = self._floor(overlap_ms)
        if floor is None or modified >= floor:
            self.seen[record_id] = modified

    def page_read(self, overlap_ms: int) -> None:
        """After each page: drop old entries once the map has doubled since it was last pruned."""
        if len(self.seen) >= max(PRUNE_AT_LEAST, 2 * self._kept):
            self._prune(overlap_ms)

    def checkpoint_due(self, rows_since: int) -> bool:
        """Whether the batch after ``rows_since`` rows read since the last written cursor should carry one.

        Always while the remembered ids are few; else once the rows read since make up half the map, so a
        cluster that grows the map as fast as rows are read is written at doubling sizes (O(rows) in all).
        """
        return len(self.seen) <= CHECKPOINT_ALWAYS or 2 * rows_since >= len(self.seen)

    def dumps(self) -> str:
        """The cursor as text; ids are grouped by time, so a cluster of one modification time stays compact."""
        by_time: dict[int, list[str]] = {}
        for rid, modified in self.seen.items():
            by_time.setdefault(modified, []).append(rid)
        data: dict[str, Any] = {"v": 2, "wm": self.watermark, "seen": [[t, ids] for t, ids in by_time.items()]}
        if self.active:
            data["run"] = {"since": self.since, "after": self.after_id}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | None) -> FxCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            version, raw = data.get("v"), data.get("seen") or []
            if version == 1:  # the first format: {id: time}
                seen = {str(k): int(v) for k, v in dict(raw).items()}
            elif version == 2:
                seen = {str(rid): int(t) for t, ids in raw for rid in ids}
            else:
                raise ValueError("unknown cursor version")
            cursor = cls(data.get("wm"), seen)
            run = data.get("run")
            if isinstance(run, dict):
                cursor.active, cursor.since, cursor.after_id = True, run.get("since"), run.get("after")
            return cursor
        except (ValueError, AttributeError, TypeError) as exc:
            raise FatalAPIError(f"stored Fxiaoke cursor cannot be read ({exc}); reset the stream's cursor") from None
