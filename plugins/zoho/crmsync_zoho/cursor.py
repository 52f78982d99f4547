"""The Zoho pull cursor: a forward-only :class:`~crmsync.helpers.Watermark` per stream and one for its deletions.

``If-Modified-Since`` has one-second resolution and its inclusivity is not documented, and a record may become
visible a little after its ``Modified_Time`` (a late commit), so a pull re-reads an ``overlap`` window before the
watermark; the watermark remembers which ``(id, time)`` versions inside that window were already delivered, so the
overlap never delivers a record twice.

The window is only re-read while it may still hold late commits. A complete pull notes the server's time when it
began (``checked``: the ``Date`` of its first answer, or a Bulk Read job's creation time): every record changed
``overlap`` before that was visible to it. Once ``checked`` is ``overlap`` past the watermark, the next pull asks
from the watermark itself, so a steady rerun is answered 304 even after thousands of records changed in the
watermark's second (a write-back, a mass update). Each pull costs time linear in what it reads (see
:mod:`crmsync.helpers`).

The text is versioned (:class:`~crmsync.helpers.CursorCodec`): version 2 groups the remembered ids by time;
version 1 (``seen`` as ``{id: time}``, no ``checked``) is still read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmsync.helpers import CursorCodec, Watermark

VERSION = 2


@dataclass
class ZohoCursor:
    records: Watermark[datetime] = field(default_factory=Watermark)
    deleted: Watermark[datetime] = field(default_factory=Watermark)

    def dumps(self) -> str:
        return CODEC.dumps(self)

    @classmethod
    def loads(cls, text: str | None) -> ZohoCursor:
        """Read a cursor of this version or of version 1."""
        return CODEC.loads(text)


def _mark(data: Any) -> Watermark[datetime]:
    return Watermark.from_json(data) if isinstance(data, Mapping) else Watermark()


def _mark_v1(data: Any) -> Watermark[datetime]:
    if not isinstance(data, Mapping):
        return Watermark()
    at = data.get("at")
    seen = {str(rid): datetime.fromisoformat(when) for rid, when in (data.get("seen") or {}).items()}
    return Watermark(datetime.fromisoformat(at) if at else None, None, seen)


CODEC = CursorCodec(
    "Zoho",
    VERSION,
    lambda c: {"records": c.records.to_json(), "deleted": c.deleted.to_json()},
    {
        1: lambda d: ZohoCursor(_mark_v1(d.get("records")), _mark_v1(d.get("deleted"))),
        2: lambda d: ZohoCursor(_mark(d.get("records")), _mark(d.get("deleted"))),
    },
    ZohoCursor,
)
