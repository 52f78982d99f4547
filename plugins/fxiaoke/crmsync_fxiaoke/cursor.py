"""The pull cursor: a ``last_modified_time`` :class:`~crmsync.helpers.Watermark` (epoch ms) plus the ``_id``
position inside an unfinished pull.

A pull reads ``last_modified_time GTE since`` ordered by ``_id`` and pages with ``_id GT <last id>`` (the
documented way past the 10,000-offset ceiling), so the window is fixed for the whole pull and the ``_id``
position is a safe resume point after any batch. ``since`` is the watermark minus an overlap (late index
updates); the ids already delivered inside that overlap are remembered with their time, so re-reading the
overlap never delivers the same version twice and a rerun without changes yields nothing.

Many records can share one modification time (a mass update, an import, our own write-back): the remembered
ids then number in the tens of thousands. Every step stays linear (see :mod:`crmsync.helpers`): a large map is
written into a batch's cursor only at doubling sizes (:meth:`FxCursor.checkpoint_due`); batches in between carry
no cursor, so a crash re-reads at most that many rows, and records are keyed by id, so nothing counts twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crmsync.helpers import CursorCodec, Watermark

CHECKPOINT_ALWAYS = 2000
"""Every batch carries the cursor while it remembers at most this many ids (a cheap write)."""


@dataclass
class FxCursor:
    mark: Watermark[int] = field(default_factory=Watermark)
    """Newest ``last_modified_time`` (epoch ms) delivered, and the versions delivered within the overlap."""
    since: int | None = None
    """The window of the pull under way (``None`` also when no pull is under way: see ``active``)."""
    after_id: str | None = None
    active: bool = False

    @property
    def watermark(self) -> int | None:
        return self.mark.at

    @property
    def seen(self) -> dict[str, int]:
        return self.mark.seen

    def start(self, overlap_ms: int) -> None:
        """Begin a pull (or keep the one a crash interrupted)."""
        if not self.active:
            self.active = True
            self.since = self.mark.since(overlap_ms)
            self.after_id = None

    def finish(self, overlap_ms: int) -> None:
        self.active, self.since, self.after_id = False, None, None
        self.mark.prune(overlap_ms)

    def page_read(self, overlap_ms: int) -> None:
        """After each page: forget versions outside both the next window and the one under way."""
        self.mark.prune(overlap_ms, window_start=self.since if self.active else None)

    def checkpoint_due(self, rows_since: int) -> bool:
        """Whether the batch after ``rows_since`` rows read since the last written cursor should carry one."""
        return self.mark.checkpoint_due(rows_since, always=CHECKPOINT_ALWAYS)

    def dumps(self) -> str:
        """The cursor as text; ids are grouped by time, so a cluster of one modification time stays compact."""
        return CODEC.dumps(self)

    @classmethod
    def loads(cls, text: str | None) -> FxCursor:
        return CODEC.loads(text)


def _encode(cursor: FxCursor) -> dict[str, Any]:
    data: dict[str, Any] = {"wm": cursor.mark.at, "seen": [[t, ids] for t, ids in cursor.mark.grouped().items()]}
    if cursor.active:
        data["run"] = {"since": cursor.since, "after": cursor.after_id}
    return data


def _decode(data: Mapping[str, Any], seen: dict[str, int]) -> FxCursor:
    cursor = FxCursor(Watermark(data.get("wm"), None, seen))
    run = data.get("run")
    if isinstance(run, dict):
        cursor.active, cursor.since, cursor.after_id = True, run.get("since"), run.get("after")
    return cursor


CODEC = CursorCodec(
    "Fxiaoke",
    2,
    _encode,
    {
        1: lambda d: _decode(d, {str(k): int(v) for k, v in dict(d.get("seen") or {}).items()}),  # {id: time}
        2: lambda d: _decode(d, {str(rid): int(t) for t, ids in d.get("seen") or [] for rid in ids}),
    },
    FxCursor,
)
