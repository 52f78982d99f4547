"""A fake Zoho CRM (accounts server, REST v8, Bulk Read/Write) on a respx router, with Zoho's answer shapes.

Use it as ``httpx.MockTransport(fake.router.handler)`` or through ``fake.transport``::

    fake = FakeZoho()
    fake.seed_contacts(250)
    fake.seed_orders([...])
    connector = ZohoConnector(settings, context, transport=fake.transport, sleep=fake.sleep)

Seed, modify and delete records, read back what was pushed (``fake.contact(id)``), and inject failures
(``fake.fail_next("update Contacts", httpx.Response(429))``; kinds as in ``crmsync_zoho.client.classify``).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import zipfile
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import respx
from crmsync_zoho.client import classify
from crmsync_zoho.settings import DataCentre, dc_urls

IST = timezone(timedelta(hours=5, minutes=30))
CLIENT_ID = "1000.FAKECLIENT"
CLIENT_SECRET = "fake-client-secret-0123456789"
REFRESH_TOKEN = "1000.fakerefresh0123456789abcdef.0123456789abcdef"


def err(status: int, code: str, message: str, details: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "details": details or {}, "message": message, "status": "error"})


def zoho_time(value: datetime) -> str:
    return value.astimezone(IST).isoformat(timespec="seconds")


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral() else int(value)
    return value


def push_field(api: str, data_type: str, values: list[str] | None = None, fid: int = 0) -> dict[str, Any]:
    """A field metadata entry shaped like ``GET /settings/fields``."""
    meta: dict[str, Any] = {
        "api_name": api,
        "field_label": api.replace("_", " "),
        "display_label": api.replace("_", " "),
        "id": f"48768760000007{fid:05d}",
        "data_type": data_type,
        "json_type": {"integer": "integer", "multiselectpicklist": "jsonarray"}.get(data_type, "string"),
        "custom_field": True,
        "read_only": False,
        "operation_type": {"web_update": True, "api_create": True, "web_create": True, "api_update": True},
        "pick_list_values": [],
    }
    if values is not None:
        options = ([] if data_type == "multiselectpicklist" else ["-None-"]) + list(values)
        meta["pick_list_values"] = [
            {"display_value": v, "actual_value": v, "reference_value": v, "sequence_number": i + 1, "type": "used"}
            for i, v in enumerate(options)
        ]
    return meta


DEFAULT_FIELDS = [
    push_field("Loyalty_Tier", "picklist", ["Bronze", "Silver", "Gold", "Platinum"], 1),
    push_field("Loyalty_Points", "integer", None, 2),
    push_field("Loyalty_Tags", "multiselectpicklist", ["at_risk_vip", "big_spender", "loyal"], 3),
    push_field("RFM_Segment", "text", None, 4),
    push_field("Lifecycle_Stage", "text", None, 5),
]
STANDARD = ["Email", "Phone", "First_Name", "Last_Name", "Created_Time", "Modified_Time", "Email_Opt_Out"]


class FakeZoho:
    """In-memory Zoho org behind a respx router."""

    def __init__(
        self,
        dc: DataCentre = DataCentre.US,
        *,
        accounts: str | None = None,
        api: str | None = None,
        upload: str | None = None,
        bulk_page_size: int = 200_000,
        bulk_job_seconds: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        d_accounts, d_api, d_upload = dc_urls(dc)
        self.accounts, self.api, self.upload = accounts or d_accounts, api or d_api, upload or d_upload
        self.router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        self.router.route().mock(side_effect=self._handle)
        self.records: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.deleted: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.fields: dict[str, list[dict[str, Any]]] = {"Contacts": [dict(f) for f in DEFAULT_FIELDS]}
        self.now = datetime(2025, 7, 1, 9, 0, 0, tzinfo=UTC)
        self.ids = itertools.count(4876876000000100001)
        self.valid_refresh = {REFRESH_TOKEN}
        self.access: dict[str, datetime] = {}
        self.token_scope: str | None = "ZohoCRM.modules.ALL ZohoCRM.settings.fields.ALL ZohoCRM.bulk.ALL"
        self.failures: dict[str, deque[httpx.Response | Exception]] = defaultdict(deque)
        self.requests: list[httpx.Request] = []
        self.updates: list[dict[str, Any]] = []
        self.page_tokens: dict[str, tuple[str, int]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.bulk_page_size, self.bulk_job_seconds = bulk_page_size, bulk_job_seconds
        self.sleeps: list[float] = []
        self.elapsed = 0.0
        self.clock = clock or (lambda: self.elapsed)
        """Seconds, for bulk jobs: by default advanced only by :meth:`sleep` (the connector's injected sleep)."""

    # -- test API ---------------------------------------------------------------------------------------

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.router.handler)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds

    def tick(self, seconds: int = 1) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def add(self, module: str, **values: Any) -> str:
        rid = str(values.pop("id", None) or next(self.ids))
        stamp = zoho_time(self.tick())
        self.records[module][rid] = {"id": rid, "Created_Time": stamp, "Modified_Time": stamp, **values}
        return rid

    def seed_contacts(self, n: int, **common: Any) -> list[str]:
        return [
            self.add("Contacts", First_Name=f"Ann{i}", Last_Name=f"Lee{i}", Email=f"ann{i}@example.com", **common)
            for i in range(n)
        ]

    def add_order(self, contact_id: str | None, amount: str, *, module: str = "Sales_Orders", **values: Any) -> str:
        contact = {"name": "Some One", "id": contact_id} if contact_id else None
        base = {"Subject": "SO", "Contact_Name": contact, "Grand_Total": Decimal(amount), "Status": "Delivered"}
        return self.add(module, **(base | values))

    def modify(self, module: str, rid: str, **values: Any) -> None:
        self.records[module][rid].update(values, Modified_Time=zoho_time(self.tick()))

    def delete(self, module: str, rid: str) -> None:
        self.records[module].pop(rid)
        entry = {
            "id": rid,
            "display_name": None,
            "type": "recycle",
            "deleted_time": zoho_time(self.tick()),
            "deleted_by": {"name": "Sync User", "id": "1"},
            "created_by": {"name": "Sync User", "id": "1"},
        }
        self.deleted[module].append(entry)

    def contact(self, rid: str) -> dict[str, Any]:
        return self.records["Contacts"][rid]

    def fail_next(self, kind: str, *answers: httpx.Response | Exception) -> None:
        self.failures[kind].extend(answers)

    def expire_access_tokens(self) -> None:
        self.access.clear()

    def calls(self, kind: str) -> int:
        return sum(1 for r in self.requests if classify(r) == kind)

    # -- dispatch ---------------------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.failures.get(classify(request))
        if queue:
            answer = queue.popleft()
            if isinstance(answer, Exception):
                raise answer
            return answer
        url = str(request.url)
        if url.startswith(self.accounts) and request.url.path == "/oauth/v2/token":
            return self._token(request)
        if not (url.startswith((self.api, self.upload)) or request.url.host == "download.zohocrm.com"):
            return err(400, "INVALID_HOST", "the host given seems to be invalid")
        if not self._authorised(request):
            return err(401, "INVALID_TOKEN", "invalid oauth token")
        path = request.url.path
        parts = [p for p in path.split("/") if p]
        if url.startswith(self.upload) and parts[-1] == "upload":
            return self._upload(request)
        if parts[:2] == ["crm", "bulk"]:
            return self._bulk(request, parts[3:])
        if parts[:2] == ["v2", "bulk"]:
            return self._bulk_write_result(parts[-2])
        rest = parts[2:]
        if rest[0] == "settings":
            return self._fields(request)
        if rest[0] == "org":
            return httpx.Response(200, json={"org": [{"id": "4876876000000000001", "zgid": "700000001"}]})
        module = rest[0]
        if len(rest) == 1 and request.method == "GET":
            return self._read(request, module)
        if len(rest) == 1 and request.method == "PUT":
            return self._update(request, module)
        if rest[1:] == ["deleted"]:
            return self._deleted(request, module)
        if rest[1:] == ["actions", "count"]:
            return httpx.Response(200, json={"count": len(self.records[module])})
        return err(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("client_id") != CLIENT_ID:
            return httpx.Response(200, json={"error": "invalid_client"})
        if form.get("client_secret") != CLIENT_SECRET or form.get("refresh_token") not in self.valid_refresh:
            return httpx.Response(200, json={"error": "invalid_code"})
        token = f"1000.{len(self.access) + 1:032x}.{next(self.ids):032x}"
        self.access[token] = self.now + timedelta(hours=1)
        body = {"access_token": token, "api_domain": self.api, "token_type": "Bearer", "expires_in": 3600}
        if self.token_scope:
            body["scope"] = self.token_scope
        return httpx.Response(200, json=body)

    def _authorised(self, request: httpx.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Zoho-oauthtoken" and token in self.access

    # -- reads ------------------------------------------------------------------------------------------

    def _page(self, request: httpx.Request, rows: list[dict[str, Any]], key: str) -> httpx.Response:
        params = request.url.params
        if "page" in params and "page_token" in params:
            return err(400, "AMBIGUITY_DURING_PROCESSING", "both page and page_token given")
        per_page = int(params.get("per_page", 200))
        if "page_token" in params:
            if params["page_token"] not in self.page_tokens:
                return err(400, "EXPIRED_VALUE", "Page token expired", {"api_name": "page_token"})
            _, offset = self.page_tokens[params["page_token"]]
            page = offset // per_page + 1
        else:
            page = int(params.get("page", 1))
            offset = (page - 1) * per_page
            if offset >= 2000:
                return err(
                    400,
                    "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                    "You can only get the first 2000 records without using page_token param",
                    {"limit": 2000},
                )
        chunk = rows[offset : offset + per_page]
        if not chunk:
            return httpx.Response(304 if "If-Modified-Since" in request.headers else 204)
        more = offset + per_page < len(rows)
        token = None
        if more:
            token = f"c8582e7c{len(self.page_tokens):012x}"
            self.page_tokens[token] = (key, offset + per_page)
        info = {
            "call": False,
            "per_page": per_page,
            "count": len(chunk),
            "page": page,
            "sort_by": "id",
            "sort_order": "desc",
            "more_records": more,
            "email": False,
            "next_page_token": token,
            "previous_page_token": None,
            "page_token_expiry": zoho_time(self.now + timedelta(days=1)),
        }
        return httpx.Response(
            200,
            content=json.dumps({"data": chunk, "info": info}, default=_json).encode(),
            headers={"Content-Type": "application/json"},
        )

    def _since(self, request: httpx.Request) -> datetime | None:
        ims = request.headers.get("If-Modified-Since")
        return datetime.fromisoformat(ims) if ims else None

    def _read(self, request: httpx.Request, module: str) -> httpx.Response:
        params = request.url.params
        if "fields" not in params:
            return err(400, "REQUIRED_PARAM_MISSING", "required param is missing", {"param_name": "fields"})
        fields = params["fields"].split(",")
        if len(fields) > 50:
            return err(400, "LIMIT_EXCEEDED", "too many fields", {"limit": 50, "param_name": "fields"})
        rows = list(self.records[module].values())
        if "ids" in params:
            wanted = params["ids"].split(",")
            rows = [r for r in rows if r["id"] in wanted]
        since = self._since(request)
        if since:
            rows = [r for r in rows if datetime.fromisoformat(r["Modified_Time"]) > since]
        if params.get("sort_by") == "Modified_Time":
            rows.sort(key=lambda r: (datetime.fromisoformat(r["Modified_Time"]), r["id"]))
        rows = [{"id": r["id"], **{f: r.get(f) for f in fields if f != "id"}} for r in rows]
        return self._page(request, rows, module)

    def _deleted(self, request: httpx.Request, module: str) -> httpx.Response:
        rows = list(self.deleted[module])
        since = self._since(request)
        if since:
            rows = [r for r in rows if datetime.fromisoformat(r["deleted_time"]) > since]
        response = self._page(request, rows, f"{module}/deleted")
        if response.status_code == 200:  # the deleted-records info block has no tokens
            body = json.loads(response.content)
            body["info"] = {k: body["info"][k] for k in ("per_page", "count", "page", "more_records")}
            return httpx.Response(200, json=body)
        return response

    # -- writes -----------------------------------------------------------------------------------------

    def _check_value(self, meta: dict[str, Any], value: Any, i: int) -> dict[str, Any] | None:
        api, kind = meta["api_name"], meta["data_type"]
        base = {"api_name": api, "json_path": f"$.data[{i}].{api}"}
        options = [p["actual_value"] for p in meta["pick_list_values"] if p["actual_value"] != "-None-"]
        if kind == "integer" and value is not None and not isinstance(value, int):
            return {"expected_data_type": "integer", **base}
        if kind == "picklist" and value is not None and value not in options:
            return {"expected_data_type": "picklist", "supported_values": options, **base}
        if (
            kind == "multiselectpicklist"
            and value is not None
            and (not isinstance(value, list) or any(v not in options for v in value))
        ):
            return {"expected_data_type": "multiselectpicklist", "supported_values": options, **base}
        return None

    def _update(self, request: httpx.Request, module: str) -> httpx.Response:
        body = json.loads(request.content)
        data = body.get("data") or []
        if len(data) > 100:
            return httpx.Response(
                400,
                json={
                    "data": [
                        {
                            "code": "LIMIT_EXCEEDED",
                            "details": {"maximum_length": 100, "api_name": "data"},
                            "message": "count of records in your request exceeds the limit",
                            "status": "error",
                        }
                    ]
                },
            )
        self.updates.append(body)
        metas = {f["api_name"]: f for f in self.fields.get(module, [])}
        answers = []
        for i, rec in enumerate(data):
            rid = str(rec.get("id"))
            problem = None
            if rid not in self.records[module]:
                problem = (
                    "INVALID_DATA",
                    "the id given seems to be invalid",
                    {"api_name": "id", "json_path": f"$.data[{i}].id"},
                )
            for api, value in rec.items():
                if problem or api == "id":
                    continue
                if api not in metas and api not in STANDARD:
                    problem = (
                        "INVALID_DATA",
                        "the field api name given seems to be invalid",
                        {"api_name": api, "json_path": f"$.data[{i}].{api}"},
                    )
                elif api in metas and (details := self._check_value(metas[api], value, i)):
                    problem = ("INVALID_DATA", "invalid data", details)
            if problem:
                answers.append({"code": problem[0], "details": problem[2], "message": problem[1], "status": "error"})
                continue
            self.modify(module, rid, **{k: v for k, v in rec.items() if k != "id"})
            answers.append(
                {
                    "code": "SUCCESS",
                    "status": "success",
                    "message": "record updated",
                    "details": {
                        "id": rid,
                        "Modified_Time": self.records[module][rid]["Modified_Time"],
                        "Modified_By": {"name": "Sync User", "id": "4876876000000225013"},
                    },
                }
            )
        ok = sum(a["status"] == "success" for a in answers)
        status = 200 if ok == len(answers) else (400 if ok == 0 else 207)
        return httpx.Response(status, json={"data": answers})

    def _fields(self, request: httpx.Request) -> httpx.Response:
        module = request.url.params.get("module", "")
        if request.method == "GET":
            return httpx.Response(200, json={"fields": self.fields.get(module, [])})
        answers = []
        for definition in json.loads(request.content)["fields"]:
            api = definition["field_label"].replace(" ", "_")
            values = [v["display_value"] for v in definition.get("pick_list_values", [])] or None
            meta = push_field(api, definition["data_type"], values, len(self.fields.get(module, [])) + 10)
            self.fields.setdefault(module, []).append(meta)
            answers.append(
                {"code": "SUCCESS", "details": {"id": meta["id"]}, "message": "field created", "status": "success"}
            )
        return httpx.Response(201, json={"fields": answers})

    # -- bulk -------------------------------------------------------------------------------------------

    def _bulk(self, request: httpx.Request, rest: list[str]) -> httpx.Response:
        op = rest[0]
        if len(rest) == 1 and request.method == "POST":
            job_id = str(next(self.ids))
            body = json.loads(request.content)
            self.jobs[job_id] = {"op": op, "body": body, "started": self.clock()}
            if op == "write":
                return httpx.Response(
                    201,
                    json={
                        "status": "success",
                        "code": "SUCCESS",
                        "message": "success",
                        "details": {"id": job_id, "created_by": {"id": "1"}},
                    },
                )
            details = {
                "id": job_id,
                "operation": "read",
                "state": "ADDED",
                "created_by": {"id": "1", "name": "Sync"},
                "created_time": zoho_time(self.now),
            }
            return httpx.Response(
                201,
                json={
                    "data": [
                        {
                            "status": "success",
                            "code": "ADDED_SUCCESSFULLY",
                            "message": "Added successfully.",
                            "details": details,
                        }
                    ],
                    "info": {},
                },
            )
        job = self.jobs.get(rest[1])
        if job is None:
            return err(404, "RESOURCE_NOT_FOUND", "the requested resource is not found")
        if len(rest) == 3 and rest[2] == "result":
            return self._bulk_read_result(job)
        # a job runs for bulk_job_seconds after its creation: a status call before that sees it in progress
        done = self.clock() - job["started"] >= self.bulk_job_seconds
        if op == "read":
            return httpx.Response(200, json={"data": [self._read_job(rest[1], job, done)]})
        return httpx.Response(200, json=self._write_job(rest[1], job, done))

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
        detail = {
            "id": job_id,
            "operation": "read",
            "state": "COMPLETED" if done else "IN PROGRESS",
            "file_type": "csv",
            "query": job["body"]["query"],
            "created_time": zoho_time(self.now),
        }
        if done:
            rows, start, more = self._read_rows(job)
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
        rows, _, _ = self._read_rows(job)
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
                cells.append("" if v is None else str(v))
            writer.writerow(cells)
        return httpx.Response(
            200,
            content=_zip(f"{job['body']['query']['module']['api_name']}.csv", text.getvalue()),
            headers={"Content-Type": "application/zip"},
        )

    def _upload(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("feature") != "bulk-write" or not request.headers.get("X-CRM-ORG"):
            return err(400, "INVALID_DATA", "check if headers [feature, X-CRM-ORG] are present and valid")
        content = request.content
        start = content.index(b"PK\x03\x04")
        file_id = str(next(self.ids))
        self.jobs[file_id] = {"op": "file", "zip": content[start:]}
        return httpx.Response(
            200,
            json={
                "status": "success",
                "code": "FILE_UPLOAD_SUCCESS",
                "message": "file uploaded.",
                "details": {"file_id": file_id, "created_time": zoho_time(self.now)},
            },
        )

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
        module = resource["module"]["api_name"]
        with zipfile.ZipFile(io.BytesIO(self.jobs[resource["file_id"]]["zip"])) as archive:
            rows = list(csv.reader(io.StringIO(archive.read(archive.namelist()[0]).decode())))
        names = {m["index"]: m["api_name"] for m in resource["field_mappings"]}
        metas = {f["api_name"]: f for f in self.fields.get(module, [])}
        out = []
        for row in rows[1:]:
            values = {names[i]: cell for i, cell in enumerate(row) if i in names}
            rid = values.pop("id")
            if rid not in self.records[module]:
                out.append((rid, "SKIPPED", "INVALID_DATA-id"))
                continue
            decoded: dict[str, Any] = {}
            error = ""
            for api, cell in values.items():
                kind = metas.get(api, {}).get("data_type")
                value: Any = cell or None
                if kind == "multiselectpicklist":
                    value = cell.split(";") if cell else []
                elif kind == "integer" and cell:
                    value = int(cell)
                if api in metas and self._check_value(metas[api], value, 0):
                    error = f"INVALID_DATA-{api}"
                decoded[api] = value
            if error:
                out.append((rid, "SKIPPED", error))
            else:
                self.modify(module, rid, **decoded)
                out.append((rid, "UPDATED", ""))
        return out

    def _bulk_write_result(self, job_id: str) -> httpx.Response:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["id", "RECORD_ID", "STATUS", "ERRORS"])
        for rid, status, errors in self.jobs[job_id].get("results", []):
            writer.writerow([rid, rid if status == "UPDATED" else "", status, errors])
        return httpx.Response(
            200, content=_zip("Contacts-contacts.csv", text.getvalue()), headers={"Content-Type": "application/zip"}
        )


def _zip(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()
