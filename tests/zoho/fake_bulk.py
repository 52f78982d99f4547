"""Bulk Read and Bulk Write of the fake Zoho org: jobs that run for ``bulk_job_seconds``, zipped CSV files.

A Bulk Write applies every row at the present second, as the sync user, with the same per-value checks as REST
updates (a refused row is ``SKIPPED`` with ``INVALID_DATA-<field>``). An upload without a zip file or without the
``feature`` / ``X-CRM-ORG`` headers is refused.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx


def _zip(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "details": {}, "message": message, "status": "error"})


class BulkMixin:
    """``/crm/bulk/v8/{read,write}``, the upload host and the write result download."""

    records: dict[str, dict[str, dict[str, Any]]]
    jobs: dict[str, dict[str, Any]]
    page_tokens: dict[str, tuple[Any, int]]
    bulk_page_size: int
    bulk_job_seconds: float
    clock: Callable[[], float]
    now: datetime
    ids: Any

    def _bulk(self, request: httpx.Request, rest: list[str], scopes: str) -> httpx.Response:
        from .fake import SYNC_USER, _granted, zoho_time

        op = rest[0]
        wanted = ("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.READ" if op == "read" else "ZohoCRM.bulk.CREATE")
        if not _granted(scopes, *wanted):
            return _error(401, "OAUTH_SCOPE_MISMATCH", "Unauthorized")
        if len(rest) == 1 and request.method == "POST":
            job_id = str(next(self.ids))
            body = json.loads(request.content)
            self.jobs[job_id] = {"op": op, "body": body, "started": self.clock()}
            if op == "write":
                return self._write_created(job_id, body)
            details = {"id": job_id, "operation": "read", "state": "ADDED", "created_by": dict(SYNC_USER),
                       "created_time": zoho_time(self.now)}  # fmt: skip
            return httpx.Response(201, json={"data": [{"status": "success", "code": "ADDED_SUCCESSFULLY",
                                  "message": "Added successfully.", "details": details}], "info": {}})  # fmt: skip
        job = self.jobs.get(rest[1])
        if job is None or job["op"] != op:
            return _error(404, "RESOURCE_NOT_FOUND", "the requested resource is not found")
        if len(rest) == 3 and rest[2] == "result":
            return self._bulk_read_result(job)
        # a job runs for bulk_job_seconds after its creation: a status call before that sees it in progress
        done = self.clock() - job["started"] >= self.bulk_job_seconds
        if op == "read":
            return httpx.Response(200, json={"data": [self._read_job(rest[1], job, done)]})
        return httpx.Response(200, json=self._write_job(rest[1], job, done))

    def _write_created(self, job_id: str, body: dict[str, Any]) -> httpx.Response:
        from .fake import SYNC_USER

        resource = (body.get("resource") or [{}])[0]
        file = self.jobs.get(str(resource.get("file_id")))
        if body.get("operation") not in ("insert", "update", "upsert") or file is None or file["op"] != "file":
            self.jobs.pop(job_id)
            return _error(400, "INVALID_DATA", "invalid data")
        if body["operation"] != "insert" and resource.get("find_by") != "id":
            self.jobs.pop(job_id)
            return _error(400, "MANDATORY_NOT_FOUND", "required field not found")
        return httpx.Response(201, json={"status": "success", "code": "SUCCESS", "message": "success",
                              "details": {"id": job_id, "created_by": {"id": SYNC_USER["id"]}}})  # fmt: skip

    def _read_rows(self, job: dict[str, Any]) -> tuple[list[dict[str, Any]], int, bool]:
        query = job["body"]["query"]
        module = query["module"]["api_name"]
        rows = sorted(self.records[module].values(), key=lambda r: r["id"])
        for condition in (query.get("criteria") or {}).get("group", []):
            assert condition["field"]["api_name"] == "Modified_Time" and condition["comparator"] == "greater_equal"
            since = datetime.fromisoformat(condition["value"])
            rows = [r for r in rows if datetime.fromisoformat(r["Modified_Time"]) >= since]
        if "page_token" in query:
            start = self.page_tokens[query["page_token"]][1]
        else:
            start = (int(query.get("page", 1)) - 1) * self.bulk_page_size
        end = start + self.bulk_page_size
        return rows[start:end], start, end < len(rows)

    def _read_job(self, job_id: str, job: dict[str, Any], done: bool) -> dict[str, Any]:
        from .fake import zoho_time

        detail = {
            "id": job_id,
            "operation": "read",
            "state": "COMPLETED" if done else "IN PROGRESS",
            "file_type": "csv",
            "query": job["body"]["query"],
            "created_time": zoho_time(self.now),
        }
        if done:
            if "rows" not in job:  # the export is what matched when the job ran
                job["rows"] = self._read_rows(job)
            rows, start, more = job["rows"]
            token = None
            if more:
                token = f"bulk{len(self.page_tokens):010x}"
                self.page_tokens[token] = ("bulk", start + self.bulk_page_size)
            detail["result"] = {
                "page": start // self.bulk_page_size + 1,
                "count": len(rows),
                "per_page": self.bulk_page_size,
                "more_records": more,
                "next_page_token": token,
                "download_url": f"/crm/bulk/v8/read/{job_id}/result",
            }
        return detail

    def _bulk_read_result(self, job: dict[str, Any]) -> httpx.Response:
        if "rows" not in job:
            return _error(400, "INVALID_REQUEST", "the job is not completed yet")
        rows, _, _ = job["rows"]
        fields = job["body"]["query"]["fields"]
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["Id", *fields])
        for r in rows:
            cells = [r["id"]]
            for f in fields:
                v = r.get(f)
                if isinstance(v, dict):
                    v = v.get("id")
                elif isinstance(v, list):
                    v = ";".join(v)
                elif isinstance(v, bool):
                    v = str(v).lower()
                cells.append("" if v is None else str(v))
            writer.writerow(cells)
        return httpx.Response(
            200,
            content=_zip(f"{job['body']['query']['module']['api_name']}.csv", text.getvalue()),
            headers={"Content-Type": "application/zip"},
        )

    def _upload(self, request: httpx.Request) -> httpx.Response:
        from .fake import zoho_time

        if request.headers.get("feature") != "bulk-write" or not request.headers.get("X-CRM-ORG"):
            return _error(400, "INVALID_DATA", "check if headers [feature, X-CRM-ORG] are present and valid")
        content = request.content
        start = content.find(b"PK\x03\x04")
        if start < 0:
            return _error(400, "INVALID_DATA", "invalid file format. only zip format is supported")
        file_id = str(next(self.ids))
        self.jobs[file_id] = {"op": "file", "zip": content[start:]}
        details = {"file_id": file_id, "created_time": zoho_time(self.now)}
        return httpx.Response(200, json={"status": "success", "code": "FILE_UPLOAD_SUCCESS", "message":
                              "file uploaded.", "details": details})  # fmt: skip

    def _write_job(self, job_id: str, job: dict[str, Any], done: bool) -> dict[str, Any]:
        resource = job["body"]["resource"][0]
        if done and "results" not in job:
            job["results"] = self._apply_bulk_write(resource)
        results = job.get("results", [])
        updated = sum(1 for r in results if r[1] == "UPDATED")
        file = {
            "status": "COMPLETED" if done else "IN PROGRESS",
            "name": resource["file_names"][0],
            "added_count": 0,
            "updated_count": updated,
            "skipped_count": len(results) - updated,
            "total_count": len(results),
        }
        body = {
            "id": job_id,
            "status": "COMPLETED" if done else "IN PROGRESS",
            "operation": "update",
            "character_encoding": "UTF-8",
            "resource": [{"status": file["status"], "type": "data", "module": resource["module"], "file": file}],
        }
        if done:
            body["result"] = {"download_url": f"https://download.zohocrm.com/v2/bulk/write/{job_id}/result"}
        return body

    def _apply_bulk_write(self, resource: dict[str, Any]) -> list[tuple[str, str, str]]:
        from .fake import SYNC_USER

        module = resource["module"]["api_name"]
        with zipfile.ZipFile(io.BytesIO(self.jobs[resource["file_id"]]["zip"])) as archive:
            rows = list(csv.reader(io.StringIO(archive.read(archive.namelist()[0]).decode())))
        names = {m["index"]: m["api_name"] for m in resource["field_mappings"]}
        metas = {f["api_name"]: f for f in self.fields.get(module, [])}  # type: ignore[attr-defined]
        out, written = [], []
        for row in rows[1:]:
            values = {names[i]: cell for i, cell in enumerate(row) if i in names}
            rid = values.pop("id")
            if rid not in self.records[module]:
                out.append((rid, "SKIPPED", "INVALID_DATA-id"))
                continue
            decoded = {api: self._cell(metas.get(api, {}).get("data_type"), cell) for api, cell in values.items()}
            problem = self.refusal(module, decoded, 0)  # type: ignore[attr-defined]
            if problem:
                out.append((rid, "SKIPPED", f"INVALID_DATA-{problem[1]['api_name']}"))
                continue
            self.records[module][rid].update(decoded)
            written.append(rid)
            out.append((rid, "UPDATED", ""))
        self.stamp(module, written, SYNC_USER)  # type: ignore[attr-defined]
        return out

    @staticmethod
    def _cell(kind: str | None, cell: str) -> Any:
        if kind == "multiselectpicklist":
            return cell.split(";") if cell else []
        if kind in ("integer", "bigint") and cell:
            try:
                return int(cell)
            except ValueError:
                return cell
        return cell or None

    def _bulk_write_result(self, job_id: str) -> httpx.Response:
        job = self.jobs.get(job_id)
        if job is None or "results" not in job:
            return _error(404, "RESOURCE_NOT_FOUND", "the requested resource is not found")
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["id", "RECORD_ID", "STATUS", "ERRORS"])
        for rid, status, errors in job["results"]:
            writer.writerow([rid, rid if status == "UPDATED" else "", status, errors])
        return httpx.Response(
            200, content=_zip("Contacts-contacts.csv", text.getvalue()), headers={"Content-Type": "application/zip"}
        )
