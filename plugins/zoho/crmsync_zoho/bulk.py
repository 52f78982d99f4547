"""Zoho's bulk APIs: Bulk Read for first pulls and large read-backs, Bulk Write for large pushes.

Both are asynchronous jobs: create, poll (with the injected ``sleep``, bounded by ``bulk_max_wait_seconds``),
then download a zip holding one CSV. A job is never done the moment it is created, so the first status call
comes one ``bulk_poll_seconds`` after the creation: one status call usually suffices. Bulk Read rows are turned
into the REST record shape (``id`` key, lookups as ids, empty cells as ``None``) so the same mapping reads both.
"""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import httpx

from crmsync import AuthError, FatalAPIError, ProfileChange, RecordResult, RetryableError
from crmsync_zoho.client import ZohoClient, loads
from crmsync_zoho.mapping import push_value

ROWS_PER_BATCH = 5000
_ZOHO_HOST = re.compile(r"^[a-z0-9-]+\.(zoho|zohocrm|zohoapis|zohocloud)\.[a-z.]+$")
DONE_OK = {"COMPLETED"}
DONE_BAD = {"FAILURE", "FAILED"}


def read_zipped_csv(content: bytes) -> list[dict[str, str]]:
    """Rows of the first CSV in a zip (UTF-8, BOM tolerated)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise FatalAPIError("bulk result zip holds no CSV file")
            text = archive.read(names[0]).decode("utf-8-sig")
    except zipfile.BadZipFile:
        raise FatalAPIError("bulk result is not a zip file") from None
    return list(csv.DictReader(io.StringIO(text)))


def csv_record(row: dict[str, str]) -> dict[str, Any]:
    """A Bulk Read row in REST shape: ``Id`` -> ``id``, ``X.id`` -> ``X``, empty -> ``None``."""
    record: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            continue
        name = "id" if key.lower() == "id" else key.removesuffix(".id")
        record[name] = value if value != "" else None
    return record


class BulkWriteRefused(FatalAPIError):
    """Zoho refused the Bulk Write path (scope, upload, job): the same changes can go as updates instead."""


class _Job:
    def __init__(self, client: ZohoClient, sleep: Callable[[float], None] | None) -> None:
        self.client = client
        self.sleep = sleep or time.sleep
        self.poll = client.settings.bulk_poll_seconds
        self.max_wait = client.settings.bulk_max_wait_seconds
        self.log = client.context.logger

    def wait(self, url: str, state_of: Callable[[dict[str, Any]], str], what: str) -> dict[str, Any]:
        waited = 0.0
        while True:
            self.sleep(self.poll)
            waited += self.poll
            body = self.client.json("GET", url) or {}
            detail = (body.get("data") or [body])[0]
            state = str(state_of(detail)).upper()
            job = detail.get("id")
            self.log.debug("%s: Zoho %s job %s is %s after %.0f s", self.client.context.name, what, job, state, waited)
            if state in DONE_OK:
                self.log.info("%s: Zoho %s job %s %s after %.0f s", self.client.context.name, what, job, state, waited)
                return detail
            if state in DONE_BAD:
                self.log.warning("%s: Zoho %s job %s ended in state %s", self.client.context.name, what, job, state)
                raise FatalAPIError(f"Zoho {what} job {job} ended in state {state}")
            if waited >= self.max_wait:
                raise RetryableError(
                    f"Zoho {what} job {job} still {state} after {waited:.0f} s",
                    hint="raise bulk_max_wait_seconds if Zoho is slow; the next run tries again",
                )

    def download(self, url: str) -> bytes:
        target = httpx.URL(url) if url.startswith("http") else httpx.URL(self.client.api_url + url)
        if target.host != httpx.URL(self.client.api_url).host:
            if target.scheme != "https" or not _ZOHO_HOST.match(target.host):
                raise FatalAPIError(f"bulk result offered on an unexpected host: {target.host}")
            self.client.auth.allow_host(target.host)
        response = self.client.request("GET", str(target))
        if response.status_code != 200:
            self.client.fail(response)
        return response.content


class BulkReader(_Job):
    """Export a module (or what changed in it since a time): one job per 200,000 records, each zip read in batches.

    ``started`` is the creation time of the first job, as Zoho states it: records changed after it may be missing
    from the export or exported in their older version, so a cursor must not pass it.
    """

    started: datetime | None = None

    def pages(
        self, module: str, fields: Sequence[str], since: datetime | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        query: dict[str, Any] = {"module": {"api_name": module}, "fields": [f for f in fields if f != "id"], "page": 1}
        if since is not None:
            condition = {
                "field": {"api_name": "Modified_Time"},
                "comparator": "greater_equal",
                "value": since.isoformat(timespec="seconds"),
            }
            query["criteria"] = {"group_operator": "and", "group": [condition]}
        while True:
            body = self.client.json("POST", self.client.bulk_url("read"), json={"query": query, "file_type": "csv"})
            details = ((body or {}).get("data") or [{}])[0].get("details", {})
            job_id = details.get("id")
            if not job_id:
                raise FatalAPIError(f"Bulk Read of {module}: the job answer carries no id")
            self.log.info("%s: Zoho Bulk Read job %s created for %s", self.client.context.name, job_id, module)
            self.client.note_user(details.get("created_by"))
            self._note_start(details.get("created_time"))
            detail = self.wait(self.client.bulk_url(f"read/{job_id}"), lambda d: d.get("state", ""), "Bulk Read")
            result = detail.get("result") or {}
            if result.get("count") == 0 and not result.get("more_records"):
                return  # nothing matched: no file to fetch
            rows = read_zipped_csv(self.download(result.get("download_url") or f"/crm/bulk/v8/read/{job_id}/result"))
            for start in range(0, len(rows), ROWS_PER_BATCH):
                yield [csv_record(r) for r in rows[start : start + ROWS_PER_BATCH]]
            if not result.get("more_records"):
                return
            query = {k: v for k, v in query.items() if k not in ("page", "page_token")}
            if result.get("next_page_token"):
                query["page_token"] = result["next_page_token"]
            else:
                query["page"] = int(result.get("page") or 1) + 1

    def _note_start(self, value: object) -> None:
        try:
            created = datetime.fromisoformat(str(value)) if value else None
        except ValueError:
            created = None
        if created is not None and created.tzinfo is not None and self.started is None:
            self.started = created  # without it the cursor stays at the newest change exported


class BulkWriter(_Job):
    """Update many contacts with one CSV: upload, job, poll, per-row results from the result file.

    Raises :class:`BulkWriteRefused` when Zoho refuses the path itself (missing scope or org id, refused upload or
    job, a job that ends FAILED): nothing was written that updates would not write again.
    """

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        mapping = self.client.settings.push_fields.mapping()
        changed = set().union(*(c.changed for c in changes)) if changes else set()
        columns = [(c, api) for c, api in mapping.items() if c in changed]
        if not columns:
            return [RecordResult(c.member_id, ok=True) for c in changes]
        try:
            rows = self._run(changes, columns)
        except (AuthError, FatalAPIError) as exc:
            raise BulkWriteRefused(exc.message) from None
        return self._results(changes, rows, dict(columns))

    def _run(self, changes: Sequence[ProfileChange], columns: list[tuple[str, str]]) -> list[dict[str, str]]:
        settings = self.client.settings
        file_id = self._upload(self._zip(changes, columns))
        payload = {
            "operation": "update",
            "ignore_empty": False,
            "resource": [
                {
                    "type": "data",
                    "module": {"api_name": settings.contacts_module},
                    "file_id": file_id,
                    "file_names": ["contacts.csv"],
                    "find_by": "id",
                    "field_mappings": [{"api_name": "id", "index": 0}]
                    + [{"api_name": api, "index": i + 1} for i, (_, api) in enumerate(columns)],
                }
            ],
        }
        body = self.client.json("POST", self.client.bulk_url("write"), json=payload) or {}
        details = body.get("details") or {}
        job_id = details.get("id")
        if not job_id:
            raise FatalAPIError("Bulk Write: the job answer carries no id")
        self.log.info("%s: Zoho Bulk Write job %s created for %d contacts", self.client.context.name, job_id,
                      len(changes))  # fmt: skip
        self.client.note_user(details.get("created_by"))
        detail = self.wait(self.client.bulk_url(f"write/{job_id}"), lambda d: d.get("status", ""), "Bulk Write")
        url = (detail.get("result") or {}).get("download_url")
        return read_zipped_csv(self.download(url)) if url else []

    @staticmethod
    def _zip(changes: Sequence[ProfileChange], columns: list[tuple[str, str]]) -> bytes:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["id", *(api for _, api in columns)])
        for change in changes:
            row = [change.member_id]
            for canonical, _ in columns:
                row.append(_cell(push_value(canonical, change.values.get(canonical))))
            writer.writerow(row)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("contacts.csv", text.getvalue())
        return buffer.getvalue()

    def _upload(self, content: bytes) -> str:
        org_id = self.client.org_id()
        response = self.client.request(
            "POST",
            f"{self.client.upload_url}/crm/{self.client.settings.api_version}/upload",
            files={"file": ("contacts.zip", content, "application/zip")},
            headers={"feature": "bulk-write", "X-CRM-ORG": org_id},
        )
        if response.status_code not in (200, 201):
            self.client.fail(response)
        file_id = (loads(response.content).get("details") or {}).get("file_id")
        if not file_id:
            raise FatalAPIError("Bulk Write upload: the answer carries no file_id")
        return str(file_id)

    @staticmethod
    def _results(
        changes: Sequence[ProfileChange], rows: list[dict[str, str]], columns: dict[str, str]
    ) -> list[RecordResult]:
        """A result per change from the result file's rows; ``columns`` maps canonical fields to api names."""
        by_id = {}
        for row in rows:
            rid = row.get("id") or row.get("RECORD_ID") or row.get("ID") or ""
            by_id[rid] = row
        canonical = {api: c for c, api in columns.items()}
        results = []
        for change in changes:
            row = by_id.get(change.member_id)
            status = (row or {}).get("STATUS", "").lower()
            if row is not None and status in ("updated", "added"):
                results.append(RecordResult(change.member_id, ok=True))
                continue
            errors = (row or {}).get("ERRORS") or ("not in the result file" if row is None else status or "skipped")
            code, _, field = errors.split(":")[0].partition("-")
            if field == "id" and code == "INVALID_DATA":
                reason, retryable, field = "contact not found in Zoho (deleted meanwhile?)", False, ""
            else:
                name = canonical.get(field)
                value = push_value(name, change.values.get(name)) if name else None
                reason, retryable = (f"{errors} ({field} = {value!r})" if field else errors), True
            failure = RecordResult(change.member_id, False, f"Bulk Write: {reason}", field or None, retryable)
            results.append(failure)
        return results


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ";".join(value)
    return "" if value is None else str(value)
