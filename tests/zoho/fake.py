"""A fake Zoho CRM (accounts server, REST v8, field settings, Bulk Read/Write) on a respx router, as strict as the
service is documented to be (shared reference, section 11: where a behaviour is unconfirmed, the side harder on
the client).

Use it as ``httpx.MockTransport(fake.router.handler)`` or through ``fake.transport``::

    fake = FakeZoho()
    fake.seed_contacts(250)
    fake.add_order(contact_id, "19.90")
    connector = ZohoConnector(settings, context, transport=fake.transport, sleep=fake.sleep)

What it holds to:

- time is ``fake.now`` (moved by :meth:`tick`); every answer carries it as ``Date``. A person's edit
  (:meth:`modify`) takes a new second; an API write stamps every record it touches with the present second (a
  write-back of thousands shares one ``Modified_Time``), as does :meth:`mass_update`. ``Modified_By`` names the
  admin for a person's edits and :data:`SYNC_USER` for API writes;
- ``If-Modified-Since`` is exclusive; ``fields`` is mandatory, at most 50; ``page`` reaches 2,000 records,
  ``page_token`` beyond; 204 for nothing, 304 for nothing changed;
- writes: at most 100 records; an unknown field name, a value off a picklist's or multi-select's options, a
  non-integer for an integer field, a text longer than the field are refused per record (``INVALID_DATA`` with the
  field's ``json_path``); a deleted record's id is refused;
- field settings: ``POST`` creates fields (labels become api names), ``PATCH`` adds options (entries without
  ``id``) to at most five fields per call;
- scopes are enforced per call (``OAUTH_SCOPE_MISMATCH``); tokens are per data centre; the token answer names
  ``api_domain`` (``token_api_domain`` to name another host);
- API credits (``credits_limit``): ``X-API-CREDITS-REMAINING`` once half are used, then a 429 when none are
  left; :meth:`too_many` builds the credits and concurrency 429s, with or without ``Retry-After``.

Inject failures with ``fake.fail_next("update Contacts", httpx.Response(429))`` (kinds as in
``crmsync_zoho.client.classify``).
"""

from __future__ import annotations

import email.utils
import itertools
import json
import math
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

from .fake_bulk import BulkMixin
from .fake_settings import FieldsMixin, push_field

IST = timezone(timedelta(hours=5, minutes=30))
CLIENT_ID = "1000.FAKECLIENT"
CLIENT_SECRET = "fake-client-secret-0123456789"
REFRESH_TOKEN = "1000.fakerefresh0123456789abcdef.0123456789abcdef"
SYNC_USER = {"name": "Sync User", "id": "4876876000000225013"}
ADMIN_USER = {"name": "Pat Admin", "id": "4876876000000225001", "email": "pat.admin@example.com"}
ALL_SCOPES = "ZohoCRM.modules.ALL ZohoCRM.settings.fields.ALL ZohoCRM.bulk.ALL ZohoCRM.org.READ ZohoFiles.files.ALL"
CREDITS_MESSAGE = "You have exceeded the maximum API credits allowed for your organization in 24 hours"
CONCURRENCY_MESSAGE = "You have exceeded the concurrency limit of your organization"

__all__ = [
    "ADMIN_USER",
    "ALL_SCOPES",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "DEFAULT_FIELDS",
    "REFRESH_TOKEN",
    "SYNC_USER",
    "FakeZoho",
    "err",
    "push_field",
    "zoho_time",
]  # fmt: skip


def err(status: int, code: str, message: str, details: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "details": details or {}, "message": message, "status": "error"})


def zoho_time(value: datetime) -> str:
    return value.astimezone(IST).isoformat(timespec="seconds")


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral() else int(value)
    return value


DEFAULT_FIELDS = [
    push_field("Loyalty_Tier", "picklist", ["Bronze", "Silver", "Gold", "Platinum"], 1),
    push_field("Loyalty_Points", "integer", None, 2),
    push_field("Loyalty_Tags", "multiselectpicklist", ["at_risk_vip", "big_spender", "loyal"], 3),
    push_field("RFM_Segment", "text", None, 4),
    push_field("Lifecycle_Stage", "text", None, 5),
]
STANDARD = ["Email", "Phone", "First_Name", "Last_Name", "Created_Time", "Modified_Time", "Modified_By",
            "Email_Opt_Out", "Description"]  # fmt: skip


def _granted(scopes: str, *wanted: str) -> bool:
    have = {s.lower() for s in scopes.replace(",", " ").split()}
    return any(w.lower() in have for w in wanted)


def module_scopes(module: str, op: str) -> tuple[str, ...]:
    m = module.replace("_", "").lower()
    ops = {"READ": ("READ", "ALL"), "UPDATE": ("UPDATE", "WRITE", "ALL")}[op]
    return tuple(f"ZohoCRM.modules.{m}.{o}" for o in ops) + tuple(f"ZohoCRM.modules.{o}" for o in ops)


class FakeZoho(FieldsMixin, BulkMixin):
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
        self.token_api_domain: str | None = None
        """The ``api_domain`` the token answer names (default: the host the fake serves the API on)."""
        self.router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        self.router.route().mock(side_effect=self._handle)
        self.records: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.deleted: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.versions: dict[str, int] = defaultdict(int)
        self.fields: dict[str, list[dict[str, Any]]] = {"Contacts": [dict(f) for f in DEFAULT_FIELDS]}
        self.now = datetime(2025, 7, 1, 9, 0, 0, tzinfo=UTC)
        self.ids = itertools.count(4876876000000100001)
        self.valid_refresh = {REFRESH_TOKEN}
        self.access: dict[str, str] = {}
        """Live access tokens and the scopes each was granted."""
        self.token_scope: str = ALL_SCOPES
        self.show_scope = True
        """Whether the token answer lists the scopes (Zoho may leave ``scope`` out)."""
        self.credits_limit: int | None = None
        self.credits_used = 0
        self.credits_answer: Callable[[], httpx.Response] = lambda: self.too_many("credits", remaining=0)
        self.failures: dict[str, deque[httpx.Response | Exception]] = defaultdict(deque)
        self.requests: list[httpx.Request] = []
        self.statuses: list[tuple[str, int]] = []
        self.updates: list[dict[str, Any]] = []
        self.page_tokens: dict[str, tuple[Any, int]] = {}
        self._views: dict[Any, list[dict[str, Any]]] = {}
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
        self.records[module][rid] = {
            "id": rid, "Created_Time": stamp, "Modified_Time": stamp, "Modified_By": dict(ADMIN_USER), **values,
        }  # fmt: skip
        self.versions[module] += 1
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
        """A person's edit: a new second, the admin as the last modifier."""
        self.tick()
        self.stamp(module, [rid], ADMIN_USER, **values)

    def mass_update(self, module: str, ids: list[str], **values: Any) -> None:
        """An admin's mass update or import: every record in one second."""
        self.tick()
        self.stamp(module, ids, ADMIN_USER, **values)

    def stamp(self, module: str, ids: list[str], user: dict[str, str], **values: Any) -> None:
        """Change records at the present second (``fake.now``), ``user`` as the last modifier."""
        when = zoho_time(self.now)
        for rid in ids:
            self.records[module][rid].update(values, Modified_Time=when, Modified_By=dict(user))
        self.versions[module] += 1

    def delete(self, module: str, rid: str) -> None:
        self.records[module].pop(rid)
        self.versions[module] += 1
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

    def too_many(
        self, kind: str = "concurrency", *, retry_after: int | None = None, remaining: int | None = None,
        message: str | None = None,
    ) -> httpx.Response:  # fmt: skip
        """A 429 ``TOO_MANY_REQUESTS``: ``kind`` "credits" (daily credits gone) or "concurrency"."""
        text = message or (CREDITS_MESSAGE if kind == "credits" else CONCURRENCY_MESSAGE)
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        if remaining is not None:
            headers["X-API-CREDITS-REMAINING"] = str(remaining)
        body = {"code": "TOO_MANY_REQUESTS", "details": {}, "message": text, "status": "error"}
        return httpx.Response(429, json=body, headers=headers)

    # -- dispatch ---------------------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self._answer(request)
        if "Date" not in response.headers:
            response.headers["Date"] = email.utils.format_datetime(self.now, usegmt=True)
        self.statuses.append((classify(request), response.status_code))
        return response

    def answers_to(self, kind: str) -> list[int]:
        """HTTP statuses of the answers to calls of ``kind``, in order."""
        return [status for k, status in self.statuses if k == kind]

    def _answer(self, request: httpx.Request) -> httpx.Response:
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
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Zoho-oauthtoken" or token not in self.access:
            return err(401, "INVALID_TOKEN", "invalid oauth token")
        return self._metered(request, self.access[token])

    def _metered(self, request: httpx.Request, scopes: str) -> httpx.Response:
        cost = self._cost(request)
        limit = self.credits_limit
        if limit is not None and self.credits_used + cost > limit:
            return self.credits_answer()
        response = self._api_call(request, scopes)
        if limit is not None:
            self.credits_used += cost
            if self.credits_used * 2 >= limit:
                response.headers["X-API-CREDITS-REMAINING"] = str(limit - self.credits_used)
        return response

    @staticmethod
    def _cost(request: httpx.Request) -> int:
        if request.method == "PUT":
            return max(1, math.ceil(len(json.loads(request.content).get("data") or []) / 10))
        return 1

    def _api_call(self, request: httpx.Request, scopes: str) -> httpx.Response:
        parts = [p for p in request.url.path.split("/") if p]
        if str(request.url).startswith(self.upload) and parts[-1] == "upload":
            return self._scoped(scopes, ("ZohoFiles.files.ALL", "ZohoFiles.files.CREATE"), self._upload, request)
        if parts[:2] == ["crm", "bulk"]:
            return self._bulk(request, parts[3:], scopes)
        if parts[:2] == ["v2", "bulk"]:
            return self._scoped(scopes, ("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.CREATE"), self._bulk_write_result,
                                parts[-2])  # fmt: skip
        rest = parts[2:]
        if rest[0] == "settings":
            return self._fields(request, scopes)
        if rest[0] == "org":
            org = {"id": "4876876000000000001", "zgid": "700000001", "company_name": "Zylker"}
            return self._scoped(scopes, ("ZohoCRM.org.READ", "ZohoCRM.org.ALL"), lambda: httpx.Response(200, json={
                "org": [org]}))  # fmt: skip
        module = rest[0]
        if request.method == "GET" and rest[1:] in ([], ["deleted"], ["actions", "count"]):
            if not _granted(scopes, *module_scopes(module, "READ")):
                return self.scope_mismatch()
            if rest[1:] == ["deleted"]:
                return self._deleted(request, module)
            if rest[1:] == ["actions", "count"]:
                return httpx.Response(200, json={"count": len(self.records[module])})
            return self._read(request, module)
        if len(rest) == 1 and request.method == "PUT":
            return self._scoped(scopes, module_scopes(module, "UPDATE"), self._update, request, module)
        return err(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")

    @staticmethod
    def scope_mismatch() -> httpx.Response:
        return err(401, "OAUTH_SCOPE_MISMATCH", "Unauthorized")

    def _scoped(self, scopes: str, wanted: tuple[str, ...], answer: Callable[..., httpx.Response], *args: Any):
        return answer(*args) if _granted(scopes, *wanted) else self.scope_mismatch()

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("client_id") != CLIENT_ID:
            return httpx.Response(200, json={"error": "invalid_client"})
        if form.get("client_secret") != CLIENT_SECRET or form.get("refresh_token") not in self.valid_refresh:
            return httpx.Response(200, json={"error": "invalid_code"})
        token = f"1000.{len(self.access) + 1:032x}.{next(self.ids):032x}"
        self.access[token] = self.token_scope
        api_domain = self.token_api_domain or self.api
        body = {"access_token": token, "api_domain": api_domain, "token_type": "Bearer", "expires_in": 3600}
        if self.show_scope:
            body["scope"] = self.token_scope
        return httpx.Response(200, json=body)

    # -- reads ------------------------------------------------------------------------------------------

    def _page(self, request: httpx.Request, view: Any, project: Callable[[list], list]) -> httpx.Response:
        """One page of ``self._views[view]``: ``page`` within the first 2,000 records, ``page_token`` beyond."""
        params = request.url.params
        if "page" in params and "page_token" in params:
            return err(400, "AMBIGUITY_DURING_PROCESSING", "both page and page_token given")
        per_page = int(params.get("per_page", 200))
        if not 1 <= per_page <= 200:
            return err(400, "INVALID_DATA", "invalid data", {"param_name": "per_page"})
        if "page_token" in params:
            if params["page_token"] not in self.page_tokens:
                return err(400, "EXPIRED_VALUE", "Page token expired", {"api_name": "page_token"})
            view, offset = self.page_tokens[params["page_token"]]
            page = offset // per_page + 1
        else:
            page = int(params.get("page", 1))
            offset = (page - 1) * per_page
            if offset >= 2000:
                return err(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                           "You can only get the first 2000 records without using page_token param",
                           {"limit": 2000})  # fmt: skip
        if offset >= 100_000:
            return err(400, "PAGINATION_LIMIT_EXCEEDED", "You can only get upto 100000 records using page_token param",
                       {"param_name": "page_token"})  # fmt: skip
        rows = self._views[view]
        chunk = project(rows[offset : offset + per_page])
        if not chunk:
            return httpx.Response(304 if "If-Modified-Since" in request.headers else 204)
        more = offset + per_page < len(rows)
        token = None
        if more:
            token = f"c8582e7c{len(self.page_tokens):012x}"
            self.page_tokens[token] = (view, offset + per_page)
        info = {
            "call": False, "per_page": per_page, "count": len(chunk), "page": page, "sort_by": "id",
            "sort_order": "desc", "more_records": more, "email": False, "next_page_token": token,
            "previous_page_token": None, "page_token_expiry": zoho_time(self.now + timedelta(days=1)),
        }  # fmt: skip
        return httpx.Response(
            200,
            content=json.dumps({"data": chunk, "info": info}, default=_json).encode(),
            headers={"Content-Type": "application/json"},
        )

    def _since(self, request: httpx.Request) -> datetime | None:
        ims = request.headers.get("If-Modified-Since")
        return datetime.fromisoformat(ims) if ims else None

    def _view(self, module: str, since: datetime | None, by_time: bool, ids: str | None) -> Any:
        """The rows a query matches, computed once per query and module version (page tokens point into it)."""
        key = (module, self.versions[module], since, by_time, ids)
        if key not in self._views:
            rows = list(self.records[module].values())
            if ids is not None:
                wanted = set(ids.split(","))
                rows = [r for r in rows if r["id"] in wanted]
            stamps = {r["id"]: datetime.fromisoformat(r["Modified_Time"]) for r in rows}
            if since is not None:  # "modified after": exclusive
                rows = [r for r in rows if stamps[r["id"]] > since]
            if by_time:
                rows.sort(key=lambda r: (stamps[r["id"]], r["id"]))
            self._views[key] = rows
        return key

    def _read(self, request: httpx.Request, module: str) -> httpx.Response:
        params = request.url.params
        if "fields" not in params:
            return err(400, "REQUIRED_PARAM_MISSING", "required param is missing", {"param_name": "fields"})
        fields = params["fields"].split(",")
        if len(fields) > 50:
            return err(400, "LIMIT_EXCEEDED", "too many fields", {"limit": 50, "param_name": "fields"})
        sort = params.get("sort_by", "id")
        if sort not in ("id", "Created_Time", "Modified_Time"):
            return err(400, "INVALID_DATA", "invalid data", {"param_name": "sort_by",
                       "supported_values": ["id", "Created_Time", "Modified_Time"]})  # fmt: skip
        view = self._view(module, self._since(request), sort == "Modified_Time", params.get("ids"))

        def project(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"id": r["id"], **{f: r.get(f) for f in fields if f != "id"}} for r in rows]

        return self._page(request, view, project)

    def _deleted(self, request: httpx.Request, module: str) -> httpx.Response:
        rows = list(self.deleted[module])
        since = self._since(request)
        if since:
            rows = [r for r in rows if datetime.fromisoformat(r["deleted_time"]) > since]
        key = ("deleted", module, len(self.deleted[module]), since)
        self._views[key] = rows
        response = self._page(request, key, list)
        if response.status_code == 200:  # the deleted-records info block has no tokens
            body = json.loads(response.content)
            body["info"] = {k: body["info"][k] for k in ("per_page", "count", "page", "more_records")}
            return httpx.Response(200, json=body)
        return response

    # -- writes -----------------------------------------------------------------------------------------

    def _update(self, request: httpx.Request, module: str) -> httpx.Response:
        body = json.loads(request.content)
        data = body.get("data") or []
        if len(data) > 100:
            return httpx.Response(400, json={"data": [{
                "code": "LIMIT_EXCEEDED", "details": {"maximum_length": 100, "api_name": "data"},
                "message": "count of records in your request exceeds the limit", "status": "error"}]})  # fmt: skip
        self.updates.append(body)
        answers = [self._update_one(module, i, rec) for i, rec in enumerate(data)]
        ok = sum(a["status"] == "success" for a in answers)
        status = 200 if ok == len(answers) else (400 if ok == 0 else 207)
        return httpx.Response(status, json={"data": answers})

    def _update_one(self, module: str, i: int, rec: dict[str, Any]) -> dict[str, Any]:
        rid = str(rec.get("id"))
        if rid not in self.records[module]:
            details = {"api_name": "id", "json_path": f"$.data[{i}].id"}
            return {"code": "INVALID_DATA", "details": details, "message": "the id given seems to be invalid",
                    "status": "error"}  # fmt: skip
        values = {k: v for k, v in rec.items() if k != "id"}
        problem = self.refusal(module, values, i)
        if problem:
            return {"code": "INVALID_DATA", "details": problem[1], "message": problem[0], "status": "error"}
        self.stamp(module, [rid], SYNC_USER, **values)
        record = self.records[module][rid]
        details = {"id": rid, "Modified_Time": record["Modified_Time"], "Modified_By": dict(SYNC_USER),
                   "Created_Time": record["Created_Time"], "Created_By": dict(SYNC_USER)}  # fmt: skip
        return {"code": "SUCCESS", "status": "success", "message": "record updated", "details": details}
