"""More broken connectors, one per realistic bug of each class plugin authors were seen to make: clusters of one
timestamp across pages, write answers that omit records, batches cut short, bad rows dropped, refused credentials
read as data, pushes retried on 4xx, times read in the wrong zone, tokens logged while starting, input changed by
``push``, and orders filed under the wrong currency. Each subclasses :mod:`.reference` and overrides one method."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import Field

from crmsync import AuthError, ConnectorError, FatalAPIError, ProfileChange, Record, RecordResult, Rejection, Stream
from crmsync.helpers import aware, describe_request

from .reference import FIELDS, RESOURCE, ExampleSettings, ReferenceConnector

# ------------------------------------------------------------------ paging through clusters of one timestamp


class RequeriesFromLastTimeInclusive(ReferenceConnector):
    """Pages by asking again for "updated since the last time seen" (inclusive), always page 1: more than a page
    sharing one time brings the same page back forever."""

    again = "updated_since"

    def first_page(self, stream: Stream, since: str | None, last: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"page": 1, "per_page": self.settings.page_size}
        if last or since:
            params[self.again if last else "updated_after"] = last or since
        return self.request("GET", f"/{RESOURCE[stream]}", params=params)

    def pages(self, stream: Stream, since: str | None) -> Iterator[list[dict[str, Any]]]:
        last = None
        while True:
            body = self.first_page(stream, since, last)
            yield body["data"]
            if body["meta"]["next_page"] is None:
                return
            last = body["data"][-1]["updated_at"]


class RequeriesFromLastTimeExclusive(RequeriesFromLastTimeInclusive):
    """Pages by asking again for "updated after the last time seen": the rest of a cluster of that time is
    skipped."""

    again = "updated_after"


class RequeriesAndStopsOnNothingNew(RequeriesFromLastTimeInclusive):
    """Re-queries "updated since the last time seen" and drops ids it already has, stopping when a page brings
    nothing new: inside a cluster larger than a page the first page comes back, and the pull stops early."""

    def pages(self, stream: Stream, since: str | None) -> Iterator[list[dict[str, Any]]]:
        seen: set[str] = set()
        last = None
        while True:
            body = self.first_page(stream, since, last)
            new = [r for r in body["data"] if r["id"] not in seen]
            if not new:
                return
            seen.update(r["id"] for r in new)
            yield new
            if body["meta"]["next_page"] is None:
                return
            last = body["data"][-1]["updated_at"]


# ------------------------------------------------------------------ write answers that leave records out


class AnswerGapsReadAsSuccess(ReferenceConnector):
    """Counts a record as written unless the answer lists it as an error."""

    def read_results(self, changes: Sequence[ProfileChange], items: list[dict[str, Any]]) -> list[RecordResult]:
        errors = {str(i["id"]): i for i in items if i["status"] != "success"}
        return [
            RecordResult(c.member_id, False, errors[c.member_id].get("message"), errors[c.member_id].get("field"))
            if c.member_id in errors
            else RecordResult(c.member_id, True)
            for c in changes
        ]


class ZipsAnswersByPosition(ReferenceConnector):
    """Pairs answers with records by position and takes a missing answer for a success."""

    def read_results(self, changes: Sequence[ProfileChange], items: list[dict[str, Any]]) -> list[RecordResult]:
        pairs = itertools.zip_longest(changes, items, fillvalue={"status": "success"})
        return [RecordResult(c.member_id, a["status"] == "success", a.get("message"), a.get("field")) for c, a in pairs]


# ------------------------------------------------------------------ batches larger than the API accepts


class TruncatesToTheApiLimit(ReferenceConnector):
    """Declares 250 changes per push but sends the first 100 (the API's limit) and reports every change written."""

    push_batch_size = 250

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        if not changes:
            return []
        rows = [{"id": c.member_id, **{FIELDS[k]: v for k, v in c.values.items()}} for c in changes[:100]]
        answered = self.read_results(changes[:100], self.send(rows))
        return answered + [RecordResult(c.member_id, True) for c in changes[100:]]


class DropsTheLastPartialChunk(ReferenceConnector):
    """Splits 250 changes into calls of 100 with integer division, which drops the last 50; reports all written."""

    push_batch_size = 250

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        if not changes:
            return []
        rows = [{"id": c.member_id, **{FIELDS[k]: v for k, v in c.values.items()}} for c in changes]
        for start in range(0, len(rows) // 100 * 100, 100):
            self.send(rows[start : start + 100])
        return [RecordResult(c.member_id, True) for c in changes]


class BatchLargerThanTheApiAccepts(ReferenceConnector):
    """Declares 250 changes per push and sends them in one call, which the API refuses (at most 100)."""

    push_batch_size = 250


# ------------------------------------------------------------------ unreadable source rows


class SkipsUnreadableRows(ReferenceConnector):
    """Skips a row it cannot map, silently."""

    def map_rows(self, stream: Stream, rows: Sequence[dict[str, Any]]) -> tuple[list[Record], list[Rejection]]:
        records = []
        for row in rows:
            try:
                records.append(self.to_record(stream, row))
            except (KeyError, ValueError):
                continue
        return records, []


class LogsAndDropsUnreadableRows(ReferenceConnector):
    """Logs a warning about a row it cannot map, and drops it."""

    def map_rows(self, stream: Stream, rows: Sequence[dict[str, Any]]) -> tuple[list[Record], list[Rejection]]:
        records = []
        for row in rows:
            try:
                records.append(self.to_record(stream, row))
            except (KeyError, ValueError) as exc:
                self.context.logger.warning("%s: skipped %s %s: %s", self.name, stream.value, row.get("id"), exc)
        return records, []


class DecimalErrorEscapes(ReferenceConnector):
    """Reads amounts with ``Decimal(text)``, whose InvalidOperation is no ValueError: one bad amount ends the pull."""

    def money(self, text: str) -> Any:
        return Decimal(text)


class UnreadableTimeEscapes(ReferenceConnector):
    """Maps rows without catching what a bad value raises: one bad row ends the pull."""

    def map_rows(self, stream: Stream, rows: Sequence[dict[str, Any]]) -> tuple[list[Record], list[Rejection]]:
        return [self.to_record(stream, row) for row in rows], []


# ------------------------------------------------------------------ refused credentials


class AuthErrorsAsEmptyAnswers(ReferenceConnector):
    """Reads a 401/403 answer as "nothing there", like the end of the data."""

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code in (401, 403):
            return {"data": [], "meta": {"next_page": None}, "fields": []}
        if response.is_error:
            raise FatalAPIError(f"{describe_request(response.request)}: HTTP {response.status_code}")
        return response.json()


class AuthErrorsAsFatal(ReferenceConnector):
    """Raises the same FatalAPIError for every 4xx, 401/403 included (the run fails with exit 3, not 2)."""

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.is_error:
            raise FatalAPIError(f"{describe_request(response.request)}: HTTP {response.status_code}")
        return response.json()


class PushFailuresAsRecordFailures(ReferenceConnector):
    """Turns any failed write call into per-record failures, a refused token included (retried forever)."""

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        try:
            return super().push(changes)
        except ConnectorError as exc:
            return [RecordResult(c.member_id, False, exc.message) for c in changes]


class LenientCheck(ReferenceConnector):
    """Reports the fields as fine when they cannot be read ("check() must not fail the run")."""

    def check(self) -> list[Any]:
        try:
            return super().check()
        except AuthError:
            return []


# ------------------------------------------------------------------ 4xx on pushes


class RetriesPushOnAnyError(ReferenceConnector):
    """Tries each write call three times, whatever the error."""

    def send(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for _attempt in range(2):
            try:
                return super().send(rows)
            except ConnectorError:
                continue
        return super().send(rows)


class RetriesErrorAnswersOfWrites(ReferenceConnector):
    """Its own loop around the write call repeats any error answer before giving up."""

    def send(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = None
        for _attempt in range(3):
            response = self.client.request("PATCH", "/contacts", json={"data": rows})
            if not response.is_error:
                return response.json()["data"]
        assert response is not None
        raise FatalAPIError(f"{describe_request(response.request)}: HTTP {response.status_code}")


# ------------------------------------------------------------------ time zones


class ZuluParsedNaive(ReferenceConnector):
    """Parses ``2024-03-01T09:00:00Z`` with a format that drops the Z, then reads it in the configured zone."""

    def parse_time(self, text: str) -> datetime:
        return aware(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ"), self.context.timezone)


class ZuluStripped(ReferenceConnector):
    """Strips the trailing Z before parsing and reads the rest in the configured zone."""

    def parse_time(self, text: str) -> datetime:
        return aware(datetime.fromisoformat(text.rstrip("Z")), self.context.timezone)


class NaiveReadAsUtc(ReferenceConnector):
    """Reads naive times as UTC instead of the configured zone."""

    def parse_time(self, text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)


class ZoneWrittenIn(ReferenceConnector):
    """Reads naive times in the zone its author lives in, not the configured one."""

    def parse_time(self, text: str) -> datetime:
        return aware(datetime.fromisoformat(text), "Asia/Kolkata")


# ------------------------------------------------------------------ tokens logged


class LogsTokenAtStart(ReferenceConnector):
    """Logs the token it was given while it starts ("to help debugging")."""

    def make_client(self) -> Any:
        token = self.settings.api_token.get_secret_value()
        self.context.logger.debug("%s: client for %s with token %s", self.name, self.settings.base_url, token)
        return super().make_client()


class LogsHeadersAtStart(ReferenceConnector):
    """Logs its default headers, the Authorization header included, through its own logger."""

    def make_client(self) -> Any:
        headers = {"Authorization": f"Bearer {self.settings.api_token.get_secret_value()}"}
        logging.getLogger("crmsync_acme.http").info("default headers: %s", headers)
        return self.context.http(base_url=self.settings.base_url, headers=headers)


class TokenInErrorMessages(ReferenceConnector):
    """Names a failed request with its headers in the error it raises."""

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code in (401, 403):
            raise AuthError(f"{describe_request(response.request)}: HTTP {response.status_code}")
        if response.is_error:
            raise FatalAPIError(
                f"{method} {path}: HTTP {response.status_code} (headers {dict(response.request.headers)})"
            )
        return response.json()


# ------------------------------------------------------------------ input changed by push


class ConvertsValuesInPlace(ReferenceConnector):
    """Joins the tags in the change it was given, to send them as one string."""

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        for change in changes:
            if "tags" in change.values:
                change.values["tags"] = ";".join(change.values["tags"])  # type: ignore[index]
        return super().push(changes)


class ConsumesTheChangeList(ReferenceConnector):
    """Takes the changes off the list it was given as it sends them."""

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        pending, results = changes, []
        while pending:
            chunk = list(pending[:50])
            del pending[:50]  # type: ignore[attr-defined]
            results += super().push(chunk)
        return results


class AddsAMarkerTag(ReferenceConnector):
    """Appends its own marker tag to every change's tag list."""

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        for change in changes:
            if isinstance(change.values.get("tags"), list):
                change.values["tags"].append("crmsync")
        return super().push(changes)


# ------------------------------------------------------------------ currencies


class BaseCurrencyForEveryOrder(ReferenceConnector):
    """Files every order under the base currency."""

    def currency(self, row: dict[str, Any]) -> str:
        return self.context.base_currency


class CurrencyFromTheWrongKey(ReferenceConnector):
    """Reads the currency from a key the API does not send, falling back to the base currency."""

    def currency(self, row: dict[str, Any]) -> str:
        return row.get("currency_code") or self.context.base_currency


# ------------------------------------------------------------------ what the held-out family taught the kit


class NoneWrittenAsText(ReferenceConnector):
    """Writes every grade as text, so a cleared segment becomes the word "None"."""

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        if not changes:
            return []
        rows = [{"id": c.member_id, **{FIELDS[k]: v if k == "tags" else str(v) for k, v in c.values.items()}}
                for c in changes]  # fmt: skip
        return self.read_results(changes, self.send(rows))


class UnknownStatusAsPaid(ReferenceConnector):
    """Knows "paid" and "refunded"; any other status is taken for paid."""

    def to_record(self, stream: Stream, row: dict[str, Any]) -> Record:
        if stream is Stream.ORDERS and row.get("status") not in ("paid", "refunded"):
            row = {**row, "status": "paid"}
        return super().to_record(stream, row)


class MissingDateBecomesNow(ReferenceConnector):
    """Fills a missing time with the present moment."""

    def parse_time(self, text: str) -> datetime:
        return super().parse_time(text) if text else datetime.now(UTC)


class PageSizeBeyondTheApi(ReferenceConnector):
    """Lets users ask for pages of up to 500 records; the API serves at most 100."""


class LooserPageSettings(ExampleSettings):
    page_size: int = Field(100, ge=1, le=500)
