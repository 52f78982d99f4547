"""Deliberately broken connectors: each differs from :mod:`.reference` by one realistic bug (more in
:mod:`.variants`; :mod:`.cases` maps each to the check that must catch it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from crmsync import Batch, CheckResult, ConnectorSpec, FatalAPIError, ProfileChange, RecordResult, Stream
from crmsync.connector import Record
from crmsync.models import aware

from .reference import FIELDS, RESOURCE, ExampleSettings, ReferenceConnector, make_spec


class DropsLastPage(ReferenceConnector):
    """Checks for a next page before yielding the current one, so the last page is never yielded."""

    def pages(self, stream: Stream, since: str | None) -> Iterator[list[dict[str, Any]]]:
        page = 1
        while True:
            body = self.get_page(stream, page, since)
            if body["meta"]["next_page"] is None:
                return
            yield body["data"]
            page = body["meta"]["next_page"]


class RereadsFirstPage(ReferenceConnector):
    """Never advances the page number: reads page 1 forever."""

    def pages(self, stream: Stream, since: str | None) -> Iterator[list[dict[str, Any]]]:
        page = 1
        while True:
            body = self.get_page(stream, page, since)
            yield body["data"]
            if body["meta"]["next_page"] is None:
                return


class DuplicatesAcrossPages(ReferenceConnector):
    """Counts pages from 0; the API reads page 0 as page 1, so the first page comes twice."""

    def pages(self, stream: Stream, since: str | None) -> Iterator[list[dict[str, Any]]]:
        page = 0
        while True:
            body = self.get_page(stream, page, since)
            yield body["data"]
            if body["meta"]["next_page"] is None:
                return
            page += 1


class NaiveDatetimes(ReferenceConnector):
    """Drops the offset and builds records with model_construct "for speed", so nothing catches it."""

    def parse_time(self, text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=None)

    def build(self, model: type[Record], **values: Any) -> Record:
        return model.model_construct(**values)


class DropsOffset(ReferenceConnector):
    """Cuts the "+08:00" off and reads the wall time in the configured zone: aware, but hours off."""

    def parse_time(self, text: str) -> datetime:
        return aware(datetime.fromisoformat(text[:19]), self.context.timezone)


class FloatMoney(ReferenceConnector):
    """Reads amounts through float and skips validation with model_construct."""

    def money(self, text: str) -> Any:
        return float(text)

    def build(self, model: type[Record], **values: Any) -> Record:
        return model.model_construct(**values)


class CursorBeforeStore(ReferenceConnector):
    """Hands the pull's start time as the new cursor on a first, empty batch, before any record is stored."""

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        yield Batch(stream, cursor=datetime.now(UTC).isoformat())
        for rows in self.pages(stream, cursor):
            records, rejects = self.map_rows(stream, rows)
            yield Batch(stream, records, rejects=rejects)


class LosesRecordsOnResume(ReferenceConnector):
    """Hands each page's newest updated_at as its cursor: a record sharing that instant on the next page is
    skipped when a run resumes from it (the API filters updated_after exclusively)."""

    since_param = "updated_after"

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        newest = cursor
        for rows in self.pages(stream, cursor):
            records, rejects = self.map_rows(stream, rows)
            newest = max([newest, *(self.utc(r["updated_at"]) for r in rows)], key=lambda v: v or "")
            yield Batch(stream, records, rejects=rejects, cursor=newest)
        gone = self.deleted(stream, cursor) if cursor else []
        yield Batch(stream, deleted=[r["id"] for r in gone])


class CursorInMemory(ReferenceConnector):
    """Keeps the watermark on the instance and hands a placeholder cursor: a restart pulls everything."""

    watermark: dict[Stream, str] = {}

    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self.watermark = {}

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        since = self.watermark.get(stream) if cursor else None
        for batch in super().pull(stream, since):
            if batch.cursor:
                self.watermark[stream] = batch.cursor
                batch = Batch(stream, batch.records, batch.deleted, batch.rejects, cursor="incremental")
            yield batch


class IgnoresDeletions(ReferenceConnector):
    """Declares DELETIONS but never asks the API which records were deleted."""

    def deleted(self, stream: Stream, since: str) -> list[dict[str, Any]]:
        return []


class Swallows429(ReferenceConnector):
    """Uses its own client and reads any non-200 answer as "no more data", so a 429 ends the pull quietly."""

    def make_client(self) -> Any:
        token = self.settings.api_token.get_secret_value()
        return httpx.Client(base_url=self.settings.base_url, headers={"Authorization": f"Bearer {token}"})

    def get_page(self, stream: Stream, page: int, since: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "per_page": self.settings.page_size}
        if since:
            params["updated_after"] = since
        response = self.client.get(f"/{RESOURCE[stream]}", params=params)
        if response.status_code != 200:
            return {"data": [], "meta": {"next_page": None}}
        return response.json()


class Retries400(ReferenceConnector):
    """Wraps every call in its own retry loop that retries any error, a 400 included."""

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for _attempt in range(3):
            try:
                return super().request(method, path, **kwargs)
            except FatalAPIError:
                continue
        return super().request(method, path, **kwargs)


@dataclass
class Credentials:
    base_url: str
    token: str


class LeaksToken(ReferenceConnector):
    """Keeps the token in a dataclass whose default repr shows it, and logs and reprs that dataclass."""

    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self.credentials = Credentials(settings.base_url, settings.api_token.get_secret_value())
        context.logger.debug("connector ready: %r", self.credentials)

    def __repr__(self) -> str:
        return f"<LeaksToken {self.credentials!r}>"


class PerRecordErrorsAsSuccess(ReferenceConnector):
    """Looks only at the HTTP status: a 200 answer means every record was written."""

    def read_results(self, changes: Sequence[ProfileChange], items: list[dict[str, Any]]) -> list[RecordResult]:
        return [RecordResult(item["id"], True) for item in items]


class FailsBatchOnOneRejection(ReferenceConnector):
    """Raises when any record of the answer is an error, failing the records that were written too."""

    def read_results(self, changes: Sequence[ProfileChange], items: list[dict[str, Any]]) -> list[RecordResult]:
        errors = [item for item in items if item["status"] != "success"]
        if errors:
            raise FatalAPIError(f"{len(errors)} record(s) refused", connector=self.name)
        return super().read_results(changes, items)


class PushesUnchanged(ReferenceConnector):
    """Buffers changes to send them together but never empties the buffer: every call resends all of it."""

    def __init__(self, settings: Any, context: Any) -> None:
        super().__init__(settings, context)
        self.pending: dict[str, ProfileChange] = {}

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        if not changes:
            return []
        self.pending.update({c.member_id: c for c in changes})
        wanted = {c.member_id for c in changes}
        results = super().push(list(self.pending.values()))
        return [r for r in results if r.member_id in wanted]


class PushesEmptyBatch(ReferenceConnector):
    """Sends a write call even when there is nothing to write."""

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        rows = [{"id": c.member_id, **{FIELDS[k]: v for k, v in c.values.items()}} for c in changes]
        return self.read_results(changes, self.send(rows))  # no early return for an empty list


class CheckIgnoresFields(ReferenceConnector):
    """Only checks that the API answers, not that the custom fields exist."""

    def check(self) -> list[CheckResult]:
        self.request("GET", "/fields")
        return [CheckResult("connection", True)]


class PlainTokenSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str
    api_token: str
    page_size: int = 100


class PlainToken(ReferenceConnector):
    """Declares the token as a plain str, so it shows in every repr of the settings."""

    def make_client(self) -> Any:
        token = self.settings.api_token
        return self.context.http(base_url=self.settings.base_url, headers={"Authorization": f"Bearer {token}"})


class LooseSettings(BaseModel):
    model_config = ConfigDict(frozen=True)  # extra keys are ignored: a misspelt key is never reported
    base_url: str
    api_token: SecretStr
    page_size: int = 100


def broken_spec(connector: type[ReferenceConnector], settings: type[BaseModel] = ExampleSettings) -> ConnectorSpec:
    spec = make_spec(connector, "broken")
    return ConnectorSpec(spec.name, settings, spec.factory, capabilities=spec.capabilities)
