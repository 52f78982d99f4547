"""Broken connectors for the classes the kit learnt last: changes committed late (no overlap window, or one too
small, or a watermark moved by deletions), values invented for ones the source leaves out, and cursors that grow
with a cluster handed over after every page. Each subclasses :mod:`.reference` and overrides one thing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync import Record, Stream
from crmsync.helpers import Watermark

from .reference import CODEC, ReferenceConnector

# ------------------------------------------------------------------ changes committed late


class NoOverlapWindow(ReferenceConnector):
    """Resumes exactly at the watermark: a change committed after the pull, stamped before the watermark, is lost."""

    overlap = timedelta(0)


class OverlapInMilliseconds(ReferenceConnector):
    """Reads ``overlap_seconds`` as milliseconds: 60 ms is no window at all."""

    overlap = timedelta(milliseconds=60)


class DeletionsMoveTheWatermark(ReferenceConnector):
    """Notes deletion times in the records' watermark: after a deletion the next read starts past a change that
    committed late."""

    def deletion_mark(self, marks: dict[str, Watermark[datetime]]) -> Watermark[datetime]:
        return marks["records"]


class DropsWhatIsNotNewerThanTheWatermark(ReferenceConnector):
    """Reads the overlap window but drops every row not newer than the watermark, taking it for a re-read."""

    def pages(self, stream: Stream, since: str | None) -> Any:
        floor = None if since is None else datetime.fromisoformat(since) + self.overlap
        for rows in super().pages(stream, since):
            yield [r for r in rows if floor is None or self.parse_time(r["updated_at"]) > floor]


# ------------------------------------------------------------------ values invented for ones left out


class MissingCreationDateBecomesNow(ReferenceConnector):
    """Gives a member without a creation date the present moment."""

    def to_record(self, stream: Stream, row: dict[str, Any]) -> Record:
        if stream is Stream.MEMBERS and not row.get("created_at"):
            row = {**row, "created_at": datetime.now(UTC).isoformat()}
        return super().to_record(stream, row)


class OrderWithoutCurrencyInDollars(ReferenceConnector):
    """Files an order that names no currency under US dollars instead of the home currency."""

    def currency(self, row: dict[str, Any]) -> str:
        return row.get("currency") or "USD"


class ContactIdThroughStr(ReferenceConnector):
    """Converts the contact id with ``str()``: an order without a contact names the member "None"."""

    def to_record(self, stream: Stream, row: dict[str, Any]) -> Record:
        if stream is not Stream.MEMBERS:
            row = {**row, "contact_id": str(row.get("contact_id"))}
        return super().to_record(stream, row)


class MissingNamesAsEmptyText(ReferenceConnector):
    """Reads a missing first or last name as an empty string."""

    def to_record(self, stream: Stream, row: dict[str, Any]) -> Record:
        if stream is Stream.MEMBERS:
            row = {"first_name": "", "last_name": "", **row}
        return super().to_record(stream, row)


# ------------------------------------------------------------------ cursors for large clusters


class CursorWithEveryPage(ReferenceConnector):
    """Hands its whole watermark over with every page, however many versions of one instant it holds."""

    def checkpoint(self, marks: dict[str, Watermark[datetime]], page: int) -> str | None:
        return CODEC.dumps(marks)


class CursorEveryTenPages(ReferenceConnector):
    """Hands its whole watermark over every tenth page: still quadratic in the size of a cluster."""

    def checkpoint(self, marks: dict[str, Watermark[datetime]], page: int) -> str | None:
        return CODEC.dumps(marks) if page % 10 == 0 else None
