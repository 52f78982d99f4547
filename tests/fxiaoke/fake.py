"""A fake Fxiaoke tenant served through respx, in the envelope shapes of the public OpenAPI documentation.

It implements both token endpoints (same token for 6,600 s, a new one afterwards, the old one valid until
7,200 s), the header and the legacy (body) credential styles, ``data/query`` over in-memory tables (AND-ed
filters, ``_id``/``last_modified_time`` orders, projection, empty fields omitted, ``offset > 10000`` -> 10013),
``object/describe``, ``data/update`` (``_id`` and ``dataObjectApiName`` inside ``object_data``, select values
checked against the options, ``last_modified_time``/``last_modified_by`` bumped), ``user/getByMobile``, a
sliding 100-calls/20 s window per path, a daily quota and an unlicensed tenant.

Assumptions where the documentation is silent (marked ASSUMED below): the error code for a missing operator
id, for ``limit`` > 100, for an offset that is not a multiple of ``limit`` and for per-record update refusals.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import respx

BASE = "https://open.fxiaoke.com"
APP_ID = "FSAID_1317a2c"
APP_SECRET = "fx-app-secret-7d41c9e0b2"
PERMANENT_CODE = "fx-permanent-code-5e8a3f61"
USER_ID = "1000"
OTHER_USER = "1001"
EA = "acme01"
CORP_ID = "FSCID_ACME01"
OPEN_USER_ID = "FSUID_9F8E7D"
MOBILE = "13800000000"
T0 = 1_718_000_000.0
"""Fake wall clock at start (2024-06-10 06:13:20 UTC), seconds."""

PARAM_ERROR = 32000  # "参数错误" in the global code table; ASSUMED for per-record refusals and bad paging
MISSING_OPERATOR = 10010  # "缺少参数 openUserId"; ASSUMED for a missing x-fs-userid


def envelope(code: int = 0, message: str = "OK", **extra: Any) -> httpx.Response:
    body = {"errorCode": code, "errorMessage": message, "errorDescription": "success" if code == 0 else message,
            "traceId": f"E-O.{EA}.{uuid.uuid4().hex[:8]}", **extra}  # fmt: skip
    return httpx.Response(200, json=body)


def _cmp(value: Any, op: str, args: list[str]) -> bool:
    def num(x: Any) -> Any:
        try:
            return Decimal(str(x))
        except Exception:
            return str(x)

    if op == "EQ":
        return str(value) == args[0]
    if op == "IN":
        return str(value) in args
    if value is None:
        return False
    v = num(value)
    a = [num(x) for x in args]
    if type(v) is not type(a[0]):
        v, a = str(value), [str(x) for x in args]
    return {"GT": v > a[0], "GTE": v >= a[0], "LT": v < a[0], "LTE": v <= a[0],
            "BETWEEN": len(a) == 2 and a[0] <= v <= a[1]}.get(op, False)  # fmt: skip


class FakeFxiaoke:
    def __init__(self) -> None:
        self.now = T0
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"AccountObj": {}, "SalesOrderObj": {}}
        self.describes: dict[str, dict[str, dict[str, Any]]] = {"AccountObj": {}, "SalesOrderObj": {}}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (style, issued at)
        self.calls: list[dict[str, Any]] = []
        self.trace_ids: list[str] = []
        self.codes: deque[tuple[int, str]] = deque()
        """errorCodes to answer the next business calls with."""
        self.token_codes: deque[tuple[int, str]] = deque()
        self.refuse: dict[str, tuple[int, str]] = {}
        """record id -> (errorCode, message) its updates get."""
        self.per_window: int | None = 100
        self.rate_code = 30004
        self.window: dict[str, deque[float]] = {}
        self.daily_quota: int | None = None
        self.unlicensed = False
        self.used_today = 0
        self.before: Callable[[httpx.Request], httpx.Response | None] | None = None
        self.on_write: Callable[[str, str, dict[str, Any]], tuple[int, str] | None] | None = None
        self.router = respx.MockRouter(base_url=BASE, assert_all_called=False)
        self.router.route().mock(side_effect=self.handle)
        self.transport = httpx.MockTransport(self.router.handler)

    # -- helpers for tests ------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    @property
    def now_ms(self) -> int:
        return int(self.now * 1000)

    def put(self, obj: str, record: dict[str, Any]) -> dict[str, Any]:
        record = {"life_status": "normal", "last_modified_by": [OTHER_USER], "create_time": self.now_ms,
                  "last_modified_time": self.now_ms, **record}  # fmt: skip
        self.objects[obj][record["_id"]] = record
        return record

    def business_calls(self) -> list[tuple[str, str | None]]:
        """``(path, object)`` of every call except token calls, in order."""
        out = []
        for c in self.calls:
            if c["path"] in ("/oauth2.0/token", "/cgi/corpAccessToken/get/V2"):
                continue
            data = c["body"].get("data") or {}
            obj = (
                data.get("dataObjectApiName")
                or data.get("apiName")
                or (data.get("object_data") or {}).get("dataObjectApiName")
            )
            out.append((c["path"], obj))
        return out

    # -- dispatch ---------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        path = request.url.path
        self.calls.append({"path": path, "headers": dict(request.headers), "body": body,
                           "trace": request.url.params.get("thirdTraceId")})  # fmt: skip
        if self.before is not None and (answer := self.before(request)) is not None:
            return answer
        if request.method != "POST":
            return httpx.Response(405)
        trace = request.url.params.get("thirdTraceId")
        try:
            if uuid.UUID(trace or "").version != 4 or trace in self.trace_ids:
                return envelope(PARAM_ERROR, "thirdTraceId missing, not a v4 UUID or reused")
        except ValueError:
            return envelope(PARAM_ERROR, "thirdTraceId missing, not a v4 UUID or reused")
        self.trace_ids.append(str(trace))
        if limited := self._limits(path):
            return limited
        if path in ("/oauth2.0/token", "/cgi/corpAccessToken/get/V2"):
            return self._token(path, body)
        if denied := self._auth(request, body):
            return denied
        if self.codes:
            code, message = self.codes.popleft()
            return envelope(code, message)
        if path.endswith("/data/query"):
            return self._query(path, body)
        if path.endswith("/data/update"):
            return self._update(path, body)
        if path == "/cgi/crm/v2/object/describe":
            return self._describe(body)
        if path == "/cgi/user/getByMobile":
            found = body.get("mobile") == MOBILE
            emp = [{"openUserId": OPEN_USER_ID, "name": "管理员", "mobile": MOBILE}] if found else []
            return envelope(0 if found else 30027, "OK" if found else "员工不存在", empList=emp)
        return httpx.Response(404, text="<html>not found</html>")

    def _limits(self, path: str) -> httpx.Response | None:
        if self.unlicensed:
            return envelope(30003, "客户没有购买openapi配额")
        if self.daily_quota is not None:
            if self.used_today >= self.daily_quota:
                return envelope(30002, "当天访问频次超限")
            self.used_today += 1
        if self.per_window is not None:
            recent = self.window.setdefault(path, deque())
            while recent and recent[0] <= self.now - 20:
                recent.popleft()
            if len(recent) >= self.per_window:
                return envelope(self.rate_code, "秒频次超限")
            recent.append(self.now)
        return None

    def _token(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if self.token_codes:
            code, message = self.token_codes.popleft()
            return envelope(code, message)
        legacy = path != "/oauth2.0/token"
        good = (body.get("appId"), body.get("appSecret"), body.get("permanentCode")) == (
            APP_ID, APP_SECRET, PERMANENT_CODE
        )  # fmt: skip
        if not good or (not legacy and body.get("grantType") != "app_secret"):
            return envelope(10006, "the parameter appSecret is missing or illegal", error="非法请求")
        style = "legacy" if legacy else "header"
        live = [(t, at) for t, (s, at) in self.tokens.items() if s == style and self.now - at < 6600]
        if live:
            token, issued = live[-1]
        else:
            token, issued = f"{'CAT' if legacy else 'AT'}-{uuid.uuid4().hex[:12]}", self.now
            self.tokens[token] = (style, issued)
        left = int(7200 - (self.now - issued))
        if legacy:
            return envelope(0, "success", corpAccessToken=token, corpId=CORP_ID, expiresIn=left)
        return envelope(0, "success", accessToken=token, ea=EA, expiresIn=left, appId=APP_ID, openUserId="FSCID_1A2B")

    def _auth(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response | None:
        auth = request.headers.get("authorization", "")
        if auth:
            token, org, user = (
                auth.removeprefix("Bearer "),
                request.headers.get("x-fs-ea"),
                request.headers.get("x-fs-userid"),
            )
            style, want_org, want_user = "header", EA, USER_ID
        elif "corpAccessToken" in body:
            token, org, user = body["corpAccessToken"], body.get("corpId"), body.get("currentOpenUserId")
            style, want_org, want_user = "legacy", CORP_ID, OPEN_USER_ID
        else:
            return envelope(20017, "corpAccessToken为必填项，不能为空")  # noqa: RUF001
        issued = self.tokens.get(token)
        if issued is None or issued[0] != style or self.now - issued[1] >= 7200 or org != want_org:
            return envelope(20016, "the cropId,cropAccessToken or authorization is error")
        if path_needs_user(request.url.path):
            if not user:
                return envelope(MISSING_OPERATOR, "缺少参数openUserId")
            if user != want_user:
                return envelope(30027, "员工不存在")
        return None

    # -- endpoints --------------------------------------------------------------------------------------

    def _table(self, path: str, obj: str | None) -> dict[str, dict[str, Any]] | httpx.Response:
        if obj not in self.objects:
            return envelope(PARAM_ERROR, f"object {obj} does not exist")
        if ("/custom/" in path) != str(obj).endswith("__c"):
            return envelope(PARAM_ERROR, "wrong API family for this object")
        return self.objects[obj]

    def _query(self, path: str, body: dict[str, Any]) -> httpx.Response:
        data = body.get("data") or {}
        table = self._table(path, data.get("dataObjectApiName"))
        if isinstance(table, httpx.Response):
            return table
        info = data.get("search_query_info") or {}
        limit, offset = int(info.get("limit", 20)), int(info.get("offset", 0))
        if offset > 10000:
            return envelope(10013, "offset out of range 10000")
        if not 1 <= limit <= 100 or offset % limit:
            return envelope(PARAM_ERROR, "limit must be 1..100 and offset a multiple of limit")
        rows = list(table.values())
        for f in info.get("filters") or []:
            if f["field_name"] == "_id" and f["operator"] == "GT":  # ids compare as strings
                rows = [r for r in rows if r["_id"] > f["field_values"][0]]
                continue
            rows = [r for r in rows if _cmp(r.get(f["field_name"]), f["operator"], list(f["field_values"]))]
        for order in reversed(info.get("orders") or []):
            rows.sort(key=lambda r, o=order: (r.get(o["fieldName"]) is None, r.get(o["fieldName"])),
                      reverse=not order.get("isAsc", True))  # fmt: skip
        projection = info.get("fieldProjection")
        page = [
            {k: v for k, v in r.items() if v not in (None, "", []) and (not projection or k in projection)}
            for r in rows[offset : offset + limit]
        ]
        total = len(rows) if data.get("find_explicit_total_num", True) else 0
        return envelope(0, "OK", data={"offset": offset, "limit": limit, "total": total, "dataList": page})

    def _describe(self, body: dict[str, Any]) -> httpx.Response:
        obj = (body.get("data") or {}).get("apiName") or body.get("apiName")
        if obj not in self.describes:
            return envelope(PARAM_ERROR, f"object {obj} does not exist")
        return envelope(0, "OK", data={"describe": {"api_name": obj, "fields": self.describes[obj]}})

    def _update(self, path: str, body: dict[str, Any]) -> httpx.Response:
        values = dict((body.get("data") or {}).get("object_data") or {})
        obj, rid = values.pop("dataObjectApiName", None), values.pop("_id", None)
        table = self._table(path, obj)
        if isinstance(table, httpx.Response):
            return table
        if rid not in table:
            return envelope(PARAM_ERROR, "数据不存在或已作废")
        if rid in self.refuse:
            return envelope(*self.refuse[rid])
        fields = self.describes[str(obj)]
        for api, value in values.items():
            meta = fields.get(api)
            if meta is None:
                return envelope(PARAM_ERROR, f"字段 {api} 不存在")
            allowed = {str(o["value"]) for o in meta.get("options") or []}
            chosen = value if isinstance(value, list) else [value]
            if allowed and any(v is not None and str(v) not in allowed for v in chosen):
                return envelope(PARAM_ERROR, f"字段 {api} 的选项值不存在: {value!r}")
        if self.on_write is not None and (refused := self.on_write(str(obj), str(rid), values)):
            return envelope(*refused)
        record = table[rid]
        if record.get("lock_status") not in (None, "0"):
            return envelope(PARAM_ERROR, "数据已锁定")
        user = body.get("currentOpenUserId") or USER_ID
        record.update(values, last_modified_time=self.now_ms, last_modified_by=[str(user)])
        return envelope(0, "OK", dataId=rid)


def path_needs_user(path: str) -> bool:
    return path != "/cgi/user/getByMobile"


def account_describe(**custom: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An ``AccountObj`` describe with the preset fields the connector reads plus ``custom`` fields."""
    fields = {
        "_id": {"api_name": "_id", "type": "text", "label": "ID", "define_type": "system"},
        "name": {"api_name": "name", "type": "text", "label": "客户名称", "define_type": "package"},
        "email": {"api_name": "email", "type": "email", "label": "邮件", "define_type": "package"},
        "tel": {"api_name": "tel", "type": "phone_number", "label": "电话", "define_type": "package"},
    }
    for api, meta in custom.items():
        fields[api] = {"api_name": api, "define_type": "custom", "is_active": True, **meta}
    return fields


def order_describe() -> dict[str, dict[str, Any]]:
    names = {"account_id": "object_reference", "order_amount": "currency", "order_time": "date",
             "order_status": "select_one", "life_status": "select_one", "name": "auto_number"}  # fmt: skip
    return {k: {"api_name": k, "type": t, "label": k, "define_type": "package"} for k, t in names.items()}
