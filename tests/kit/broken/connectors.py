"""Deliberately broken connectors: each differs from :mod:`.reference` by one realistic bug.

:data:`CASES` maps each one to the check that must catch it and a phrase its failure message must contain.
"""

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

    def read_results(self, items: list[dict[str, Any]]) -> list[RecordResult]:
        return [RecordResult(item["id"], True) for item in items]


class FailsBatchOnOneRejection(ReferenceConnector):
    """Raises when any record of the answer is an error, failing the records that were written too."""

    def read_results(self, items: list[dict[str, Any]]) -> list[RecordResult]:
        errors = [item for item in items if item["status"] != "success"]
        if errors:
            raise FatalAPIError(f"{len(errors)} record(s) refused", connector=self.name)
        return super().read_results(items)


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
        return self.read_results(self.send(rows))  # no early return for an empty list


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


def _spec(connector: type[ReferenceConnector], settings: type[BaseModel] = ExampleSettings) -> ConnectorSpec:
    spec = make_spec(connector, "broken")
    return ConnectorSpec(spec.name, settings, spec.factory, capabilities=spec.capabilities)


CASES: dict[str, tuple[ConnectorSpec, str, str]] = {
    "drops_last_page": (_spec(DropsLastPage), "test_full_pull_returns_each_seeded_record_once", "never pulled"),
    "rereads_first_page": (_spec(RereadsFirstPage), "test_full_pull_returns_each_seeded_record_once", "did not end"),
    "duplicates_across_pages": (
        _spec(DuplicatesAcrossPages),
        "test_full_pull_returns_each_seeded_record_once",
        "more than once",
    ),
    "naive_datetimes": (_spec(NaiveDatetimes), "test_pulled_records_are_valid_canonical_records", "naive datetime"),
    "drops_offset": (_spec(DropsOffset), "test_pulled_records_are_valid_canonical_records", "the source holds"),
    "float_money": (_spec(FloatMoney), "test_pulled_records_are_valid_canonical_records", "money must be Decimal"),
    "cursor_before_store": (
        _spec(CursorBeforeStore),
        "test_resuming_from_any_batch_cursor_loses_nothing",
        "runs ahead of its records",
    ),
    "loses_records_on_resume": (
        _spec(LosesRecordsOnResume),
        "test_resuming_from_any_batch_cursor_loses_nothing",
        "runs ahead of its records",
    ),
    "cursor_in_memory": (
        _spec(CursorInMemory),
        "test_cursor_survives_a_restart_and_only_moves_forward",
        "not in the connector's memory",
    ),
    "ignores_deletions": (_spec(IgnoresDeletions), "test_deletions_are_reported", "did not report them"),
    "swallows_429": (_spec(Swallows429), "test_transient_errors_are_retried", "was not retried"),
    "retries_400": (_spec(Retries400), "test_client_errors_are_not_retried", "was retried"),
    "leaks_token_in_repr": (_spec(LeaksToken), "test_secrets_stay_out_of_reprs_logs_and_errors", "appears in"),
    "plain_str_token": (_spec(PlainToken, PlainTokenSettings), "test_secret_settings_are_secretstr", "not SecretStr"),
    "accepts_unknown_keys": (_spec(ReferenceConnector, LooseSettings), "test_settings_reject_unknown_keys", "silently"),
    "per_record_errors_as_success": (
        _spec(PerRecordErrorsAsSuccess),
        "test_per_record_rejections_are_reported_without_failing_the_batch",
        "reported ok=True",
    ),
    "fails_batch_on_one_rejection": (
        _spec(FailsBatchOnOneRejection),
        "test_per_record_rejections_are_reported_without_failing_the_batch",
        "made push() raise",
    ),
    "pushes_unchanged_records": (_spec(PushesUnchanged), "test_rerun_pushes_only_what_changed", "no buffer"),
    "pushes_empty_batch": (_spec(PushesEmptyBatch), "test_push_of_no_changes_makes_no_call", "without calling"),
    "check_ignores_missing_fields": (
        _spec(CheckIgnoresFields),
        "test_check_reports_missing_fields",
        "is missing in the system",
    ),
}
