"""A fake Fxiaoke tenant served through respx, in the envelope shapes of the public OpenAPI documentation.

It implements both token endpoints (same token for 6,600 s, a new one afterwards, the old one valid until
7,200 s), the header and the legacy (body) credential styles, ``data/query`` over in-memory tables (AND-ed
filters, ``_id``/``last_modified_time`` orders, projection, empty fields omitted, ``offset > 10000`` -> 10013),
``object/describe``, ``data/update`` (``_id`` and ``dataObjectApiName`` inside ``object_data``, select values
checked against the options, ``last_modified_time``/``last_modified_by`` bumped), ``user/getByMobile``, a
sliding 100-calls/20 s window per path, a daily quota and an unlicensed tenant.

It is at least as strict as the documentation, and stricter where it is silent: a ``thirdTraceId`` that is
missing, not a v4 UUID or used before (by any call that reached the gateway, a retry after a 5xx included) is
refused; a field the object's describe does not list is refused in a query's projection, filters and orders and
in an update; a select value off the field's usable options, a list for a ``select_one`` or a single value for a
``select_many`` is refused per record; an invalidated (作废) or locked record is not updated; an operator denied
an object (:meth:`FakeFxiaoke.deny`) is refused with a permission message. :meth:`FakeFxiaoke.mass_update`
stamps one modification time on many records, as a mass edit, an import or a write-back does.

Assumptions where the documentation is silent (marked ASSUMED below): the error code for a missing operator
id, for ``limit`` > 100, for an offset that is not a multiple of ``limit``, for per-record update refusals and
for a missing permission; whether query returns invalidated records (it does here).
"""

from __future__ import annotations

import bisect
import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable
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
NO_PERMISSION = 320001401  # ASSUMED: no code is documented; the message carries "权限" as the gateway's do
SYSTEM_FIELDS = {"_id": "text", "name": "text", "owner": "employee", "create_time": "date_time",
                 "created_by": "employee", "last_modified_time": "date_time", "last_modified_by": "employee",
                 "life_status": "select_one", "lock_status": "select_one", "record_type": "record_type",
                 "is_deleted": "true_or_false", "version": "number", "data_own_department": "department"}  # fmt: skip
"""System fields every object has (reference section 3.3)."""
QUERY_OPERATORS = {"EQ", "N", "GT", "GTE", "LT", "LTE", "LIKE", "NLIKE", "IS", "ISN", "IN", "NIN", "BETWEEN",
                   "NBETWEEN", "STARTWITH", "ENDWITH", "CONTAINS", "HASANYOF", "NHASANYOF"}  # fmt: skip
"""The operators the query pages document; others are refused."""
NUMBER = re.compile(r"-?\d+(\.\d+)?")
OPERATION_NAMES = {"query": "列表", "describe": "查看", "update": "编辑"}


def envelope(code: int = 0, message: str = "OK", **extra: Any) -> httpx.Response:
    body = {"errorCode": code, "errorMessage": message, "errorDescription": "success" if code == 0 else message,
            "traceId": f"E-O.{EA}.{uuid.uuid4().hex[:8]}", **extra}  # fmt: skip
    return httpx.Response(200, json=body)


def _num(x: Any) -> Any:
    """A number for a number or a plain decimal string (``"1280.00"``, epoch ms); any other value as text."""
    if isinstance(x, int | Decimal):
        return x
    text = str(x)
    return Decimal(text) if NUMBER.fullmatch(text) else text


def _cmp(value: Any, op: str, args: list[str], *, text: bool = False) -> bool:
    """``value op args`` as the gateway compares: numbers as numbers, ids (``text``) and other values as text."""
    num = str if text else _num
    if op == "EQ":
        return str(value) == args[0]
    if op == "N":
        return str(value) != args[0]
    if op == "IN":
        return str(value) in args
    if op == "NIN":
        return str(value) not in args
    if op not in {"GT", "GTE", "LT", "LTE", "BETWEEN"}:
        raise NotImplementedError(f"the fake does not implement the documented operator {op}")
    if value is None:
        return False
    v = num(value)
    a = [num(x) for x in args]
    if isinstance(v, str) or any(isinstance(x, str) for x in a):
        v, a = str(value), [str(x) for x in args]
    return {"GT": v > a[0], "GTE": v >= a[0], "LT": v < a[0], "LTE": v <= a[0],
            "BETWEEN": len(a) == 2 and a[0] <= v <= a[1]}.get(op, False)  # fmt: skip


class Table(dict[str, dict[str, Any]]):
    """Records of one object by ``_id``; keeps its ids sorted (rebuilt only after ids were added or removed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sorted: list[str] | None = None

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        if key not in self:
            self._sorted = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._sorted = None
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self._sorted = None
        return super().pop(key, *default)

    def ids(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self)
        return self._sorted


class FakeFxiaoke:
    def __init__(self) -> None:
        self.now = T0
        self.objects: dict[str, Table] = {"AccountObj": Table(), "SalesOrderObj": Table()}
        self.describes: dict[str, dict[str, dict[str, Any]]] = {"AccountObj": {}, "SalesOrderObj": {}}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (style, issued at)
        self.calls: list[dict[str, Any]] = []
        self.trace_ids: set[str] = set()
        self.reused_traces = 0
        """Calls refused for a reused thirdTraceId."""
        self.http_errors: deque[int] = deque()
        """HTTP statuses (5xx from the gateway) to answer the next calls with, before anything else."""
        self.denied: dict[tuple[str, str], str] = {}
        """(operation, object) -> the permission message the operator is refused with (see :meth:`deny`)."""
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

    def deny(self, op: str, obj: str, label: str = "客户") -> None:
        """Take the operator's ``op`` permission (query, describe, update) on ``obj`` away."""
        self.denied[(op, obj)] = f"没有{label}的{OPERATION_NAMES[op]}权限"

    def mass_update(self, obj: str, ids: Iterable[str], *, by: str = OTHER_USER, **values: Any) -> int:
        """Change many records within one millisecond (a mass edit or an import); the time stamped."""
        stamp = self.now_ms
        for rid in ids:
            self.objects[obj][rid].update(values, last_modified_time=stamp, last_modified_by=[by])
        return stamp

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
        trace = request.url.params.get("thirdTraceId")
        self.calls.append({"path": path, "headers": dict(request.headers), "body": body, "trace": trace})
        if refused := self._trace(trace):
            return refused
        if self.http_errors:
            return httpx.Response(self.http_errors.popleft(), text="<html>502 Bad Gateway</html>")
        if self.before is not None and (answer := self.before(request)) is not None:
            return answer
        if request.method != "POST":
            return httpx.Response(405)
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

    def _trace(self, trace: str | None) -> httpx.Response | None:
        """Refuse a missing, malformed or reused thirdTraceId ("a fresh RFC 4122 v4 UUID" per call)."""
        try:
            valid = uuid.UUID(trace or "").version == 4
        except ValueError:
            valid = False
        if trace in self.trace_ids:
            self.reused_traces += 1
        if not valid or trace in self.trace_ids:
            return envelope(PARAM_ERROR, "thirdTraceId missing, not a v4 UUID or reused")
        self.trace_ids.add(str(trace))
        return None

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

    def _table(self, path: str, obj: str | None, op: str) -> Table | httpx.Response:
        if obj not in self.objects:
            return envelope(PARAM_ERROR, f"object {obj} does not exist")
        if ("/custom/" in path) != str(obj).endswith("__c"):
            return envelope(PARAM_ERROR, "wrong API family for this object")
        if denied := self.denied.get((op, str(obj))):
            return envelope(NO_PERMISSION, denied)
        return self.objects[obj]

    def _unknown(self, obj: str, names: Iterable[str]) -> httpx.Response | None:
        """Refuse a field the object's describe does not list (ASSUMED code; the documentation is silent)."""
        fields = self.describes.get(obj, {})
        missing = [n for n in names if n not in fields and n not in SYSTEM_FIELDS]
        return envelope(PARAM_ERROR, f"字段 {missing[0]} 不存在") if missing else None

    def _query(self, path: str, body: dict[str, Any]) -> httpx.Response:
        data = body.get("data") or {}
        obj = data.get("dataObjectApiName")
        table = self._table(path, obj, "query")
        if isinstance(table, httpx.Response):
            return table
        info = data.get("search_query_info") or {}
        limit, offset = int(info.get("limit", 20)), int(info.get("offset", 0))
        if offset > 10000:
            return envelope(10013, "offset out of range 10000")
        if not 1 <= limit <= 100 or offset % limit:
            return envelope(PARAM_ERROR, "limit must be 1..100 and offset a multiple of limit")
        filters, orders = info.get("filters") or [], info.get("orders") or []
        projection = info.get("fieldProjection")
        names = [f.get("field_name") for f in filters] + [o.get("fieldName") for o in orders] + list(projection or [])
        if unknown := self._unknown(str(obj), names):
            return unknown
        bad = [
            f
            for f in filters
            if f.get("operator") not in QUERY_OPERATORS or not isinstance(f.get("field_values"), list)
        ]
        if bad:
            return envelope(PARAM_ERROR, f"bad filter operator or values: {bad[0]!r}")
        rows = self._rows(table, filters, orders, offset + limit)
        page = [
            {k: v for k, v in r.items() if v not in (None, "", []) and (not projection or k in projection)}
            for r in rows[offset : offset + limit]
        ]
        total = len(rows) if data.get("find_explicit_total_num", True) else 0
        return envelope(0, "OK", data={"offset": offset, "limit": limit, "total": total, "dataList": page})

    def _rows(self, table: Table, filters: list[dict[str, Any]], orders: list[dict[str, Any]], want: int) -> list:
        """Matching rows in order; ordered by ``_id`` alone, it reads only from the ``_id GT`` position onwards."""

        def match(r: dict[str, Any]) -> bool:
            return all(
                _cmp(r.get(f["field_name"]), f["operator"], list(f["field_values"]), text=f["field_name"] == "_id")
                for f in filters
            )

        if orders == [{"fieldName": "_id", "isAsc": True}]:
            ids = table.ids()
            after = [f["field_values"][0] for f in filters if f["field_name"] == "_id" and f["operator"] == "GT"]
            start = bisect.bisect_right(ids, max(after)) if after else 0
            rows = []
            for rid in ids[start:]:
                if match(table[rid]):
                    rows.append(table[rid])
                    if len(rows) >= want:
                        break
            return rows
        rows = [r for r in table.values() if match(r)]
        for order in reversed(orders):
            rows.sort(key=lambda r, o=order: (r.get(o["fieldName"]) is None, r.get(o["fieldName"])),
                      reverse=not order.get("isAsc", True))  # fmt: skip
        return rows

    def _describe(self, body: dict[str, Any]) -> httpx.Response:
        obj = (body.get("data") or {}).get("apiName") or body.get("apiName")
        if obj not in self.describes:
            return envelope(PARAM_ERROR, f"object {obj} does not exist")
        if denied := self.denied.get(("describe", str(obj))):
            return envelope(NO_PERMISSION, denied)
        return envelope(0, "OK", data={"describe": {"api_name": obj, "fields": self.describes[obj]}})

    def _update(self, path: str, body: dict[str, Any]) -> httpx.Response:
        values = dict((body.get("data") or {}).get("object_data") or {})
        obj, rid = values.pop("dataObjectApiName", None), values.pop("_id", None)
        table = self._table(path, obj, "update")
        if isinstance(table, httpx.Response):
            return table
        record = table.get(str(rid))
        if record is None:
            return envelope(PARAM_ERROR, "数据不存在或已作废")
        if rid in self.refuse:
            return envelope(*self.refuse[rid])
        fields = self.describes[str(obj)]
        for api, value in values.items():
            if refused := self._field_value(fields.get(api), api, value):
                return refused
        if self.on_write is not None and (refused := self.on_write(str(obj), str(rid), values)):
            return envelope(*refused)
        if record.get("life_status") == "invalid":
            return envelope(PARAM_ERROR, "数据已作废")
        if record.get("lock_status") not in (None, "0"):
            return envelope(PARAM_ERROR, "数据已锁定")
        user = body.get("currentOpenUserId") or USER_ID
        record.update(values, last_modified_time=self.now_ms, last_modified_by=[str(user)])
        return envelope(0, "OK", dataId=rid)

    def _field_value(self, meta: dict[str, Any] | None, api: str, value: Any) -> httpx.Response | None:
        """Refuse an unknown or system field, or a select value off the usable options (ASSUMED code)."""
        if meta is None or meta.get("define_type") == "system" or api in SYSTEM_FIELDS:
            return envelope(PARAM_ERROR, f"字段 {api} 不存在或不可编辑")
        kind = meta.get("type")
        if kind not in ("select_one", "select_many") or value is None:
            return None
        if (kind == "select_many") != isinstance(value, list):
            return envelope(PARAM_ERROR, f"字段 {api} 的值格式不正确: {value!r}")
        usable = {str(o["value"]) for o in meta.get("options") or []
                  if not o.get("not_usable") and o.get("is_active", True) is not False}  # fmt: skip
        chosen = value if isinstance(value, list) else [value]
        if off := [v for v in chosen if str(v) not in usable]:
            return envelope(PARAM_ERROR, f"字段 {api} 的选项值不存在: {off[0]!r}")
        return None


def path_needs_user(path: str) -> bool:
    return path != "/cgi/user/getByMobile"


def account_describe(**custom: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An ``AccountObj`` describe with the preset fields the connector reads plus ``custom`` fields."""
    fields = system_describe()
    fields |= {
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
    package = {k: {"api_name": k, "type": t, "label": k, "define_type": "package"} for k, t in names.items()}
    return system_describe() | package


def system_describe() -> dict[str, dict[str, Any]]:
    return {k: {"api_name": k, "type": t, "label": k, "define_type": "system"} for k, t in SYSTEM_FIELDS.items()}
