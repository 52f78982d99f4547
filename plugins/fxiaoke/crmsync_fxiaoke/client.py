"""Fxiaoke OpenAPI protocol: access token, operator, trace ids, the ``errorCode`` envelope, query/describe/update.

Every call is ``POST`` with a JSON body and ``?thirdTraceId=<uuid4>``, a fresh one for every attempt: the shared
client's retries after a 5xx or a timeout resend the request, and :meth:`FxiaokeClient.stamp` gives each its own
id first. Business errors come back as HTTP 200
with ``errorCode != 0``; :meth:`FxiaokeClient.call` maps them (see :data:`AUTH_CODES` and friends): a stale
token (20016) is renewed once and the call repeated, rate-limit and busy codes are retried with backoff,
bad credentials raise :class:`~crmsync.AuthError`, a used-up daily quota :class:`~crmsync.RetryableError`
with the time until 00:00 Beijing, anything else :class:`~crmsync_fxiaoke.errors.ApiError` (a per-record
rejection on writes). A read refused for want of permission is :class:`~crmsync_fxiaoke.errors.PermissionRefused`
(exit 2) with what to grant. Token requests, retries and errors are logged through the connector's logger.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from crmsync import AuthError, ConnectorContext, FatalAPIError
from crmsync.helpers import describe_request, safe_repr
from crmsync_fxiaoke.errors import (
    TOKEN_CODES,
    TRANSIENT_CODES,
    ApiError,
    PermissionRefused,
    is_permission_refusal,
    permission_hint,
    raise_for,
)
from crmsync_fxiaoke.limits import CallBudget
from crmsync_fxiaoke.settings import FxiaokeSettings
from crmsync_fxiaoke.token import TokenCache


def data_path(obj: str, op: str) -> str:
    """``/cgi/crm/v2/data/<op>`` for preset objects, ``/cgi/crm/custom/v2/data/<op>`` for ``…__c`` ones."""
    return f"/cgi/crm/custom/v2/data/{op}" if obj.endswith("__c") else f"/cgi/crm/v2/data/{op}"


def classify(request: httpx.Request) -> str:
    """Endpoint kind for ``context.api_calls``: ``"query AccountObj"``, ``"update AccountObj"``, ``"token"``."""
    path = request.url.path
    if path.startswith("/oauth2.0/token") or "corpAccessToken" in path:
        return "token"
    op = path.rstrip("/").rsplit("/", 1)[-1]
    try:
        body = json.loads(request.content or b"{}")
        data = body.get("data") or {}
        obj = data.get("dataObjectApiName") or (data.get("object_data") or {}).get("dataObjectApiName")
        obj = obj or data.get("apiName")
    except (ValueError, AttributeError):
        obj = None
    return f"{op} {obj}" if obj else op


def loads(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of an answer; numbers with a fraction as Decimal. Raises FatalAPIError otherwise."""
    where = describe_request(response.request)
    if response.status_code in (401, 403):
        raise AuthError(f"{where}: HTTP {response.status_code}")
    if response.status_code != 200:
        raise FatalAPIError(f"{where}: HTTP {response.status_code}")
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise FatalAPIError(f"{where}: the answer is not a JSON object (is base_url the open-… API host?)")
    return body


class FxiaokeClient:
    """Authenticated, budgeted calls to one Fxiaoke tenant."""

    def __init__(
        self,
        settings: FxiaokeSettings,
        context: ConnectorContext,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        **http_options: Any,
    ) -> None:
        self.settings = settings
        self.context = context
        self.sleep = sleep
        options: dict[str, Any] = {
            "base_url": settings.base_url,
            "classify": classify,
            "max_retries": settings.max_retries,
            "max_retry_wait": settings.retry_budget_seconds,
            "timeout": settings.timeout_seconds,
            "headers": {"Content-Type": "application/json"},
            "on_attempt": self.stamp,
        }
        if sleep is not time.sleep:
            options["sleep"] = sleep
        options.update(http_options)
        self.http = context.http(**options)
        self.budget = CallBudget(
            context,
            per_window=settings.calls_per_window,
            window=settings.window_seconds,
            daily=settings.daily_budget,
            clock=clock,
            monotonic=monotonic,
            sleep=sleep,
        )
        self.tokens = TokenCache(settings, context, self._post, clock=clock)

    def __repr__(self) -> str:
        return safe_repr(self, ["base_url"], ["app_secret", "permanent_code", "token"])

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    # -- transport --------------------------------------------------------------------------------------

    def stamp(self, request: httpx.Request) -> None:
        """Give this attempt of ``request`` its own ``thirdTraceId`` (called by the shared client's retries)."""
        attempt = int(request.extensions.get("fxiaoke_attempt", 0)) + 1
        request.extensions["fxiaoke_attempt"] = attempt
        trace = str(uuid.uuid4())
        if attempt > 1:
            self.context.logger.info("%s: %s attempt %d with thirdTraceId %s", self.context.name,
                                     describe_request(request), attempt, trace)  # fmt: skip
        request.url = request.url.copy_set_param("thirdTraceId", trace)

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        """One budgeted POST (each attempt stamped by :meth:`stamp`); the envelope, errorCode not yet looked at."""
        self.budget.acquire(path)
        return loads(self.http.post(path, json=body, headers=headers))

    def _error(self, envelope: dict[str, Any], path: str) -> str:
        code, message = envelope.get("errorCode"), envelope.get("errorMessage") or ""
        trace = envelope.get("traceId")
        return (
            f"POST {path}: errorCode {code}"
            + (f" ({message})" if message else "")
            + (f" traceId {trace}" if trace else "")
        )

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call a business endpoint as the operator; the envelope on ``errorCode`` 0, else raise (see module)."""
        renewed, attempt, waited = False, 0, 0.0
        name = self.context.name
        while True:
            headers, full = self.tokens.sign(body)
            envelope = self._post(path, full, headers)
            code = _code(envelope)
            if code == 0:
                return envelope
            text = self._error(envelope, path)
            log = self.context.logger
            if code in TOKEN_CODES and not renewed:
                log.info("%s: %s: renewing the access token and repeating the call once", name, text)
                self.tokens.invalidate()
                renewed = True
                continue
            if code in TRANSIENT_CODES:
                delay = self.settings.backoff_seconds * 2**attempt
                if attempt < self.settings.max_retries and waited + delay <= self.settings.retry_budget_seconds:
                    log.info("%s: %s: retry %d in %.0f s", name, text, attempt + 1, delay)
                    self.context.api_calls["retries"] = self.context.api_calls.get("retries", 0) + 1
                    self.sleep(delay)
                    attempt, waited = attempt + 1, waited + delay
                    continue
                text += f"; gave up after {attempt + 1} attempt(s)"
            log.info("%s: %s", name, text)
            raise_for(code, text, str(envelope.get("errorMessage") or ""), connector=name, clock=self.budget.clock)

    def read(self, path: str, body: dict[str, Any], obj: str) -> dict[str, Any]:
        """:meth:`call` for a read of ``obj``: a refusal for want of permission stops the run (exit 2)."""
        try:
            return self.call(path, body)
        except ApiError as exc:
            if not is_permission_refusal(exc.api_message):
                raise
            operator = self.tokens.operator(self.tokens.get())
            raise PermissionRefused(exc.message.removeprefix(f"{self.context.name}: "), connector=self.context.name,
                                    hint=permission_hint(obj, operator)) from None  # fmt: skip

    # -- endpoints --------------------------------------------------------------------------------------

    def query(
        self,
        obj: str,
        *,
        fields: list[str],
        filters: list[dict[str, Any]],
        limit: int,
        after_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """One page of ``obj`` ordered by ``_id``, after ``after_id`` (the documented deep-paging cursor)."""
        conditions = list(filters)
        if after_id is not None:
            conditions.append({"field_name": "_id", "operator": "GT", "field_values": [after_id]})
        info = {
            "limit": limit,
            "offset": 0,
            "filters": conditions,
            "orders": [{"fieldName": "_id", "isAsc": True}],
            "fieldProjection": fields,
        }
        body = {"data": {"dataObjectApiName": obj, "find_explicit_total_num": False, "search_query_info": info}}
        data = self.read(data_path(obj, "query"), body, obj).get("data")
        if isinstance(data, dict) and isinstance(data.get("dataList"), list):
            return [r for r in data["dataList"] if isinstance(r, dict)]
        if isinstance(data, dict) and "_id" in data:  # some pages document a single map
            return [data]
        return []

    def describe(self, obj: str) -> dict[str, dict[str, Any]]:
        """Field descriptions of ``obj`` by api name."""
        args = {"apiName": obj, "includeDetail": False}
        data = self.read("/cgi/crm/v2/object/describe", {**args, "data": args}, obj).get("data") or {}
        fields = (data.get("describe") or {}).get("fields") or {}
        return {str(k): v for k, v in fields.items() if isinstance(v, dict)}

    def update(self, obj: str, record_id: str, values: dict[str, Any]) -> None:
        """Update one record (there is no batch update); automations only if configured."""
        body = {
            "triggerWorkFlow": self.settings.trigger_workflow,
            "triggerApprovalFlow": self.settings.trigger_approval,
            "data": {"object_data": {"dataObjectApiName": obj, "_id": record_id, **values}},
        }
        self.call(data_path(obj, "update"), body)

    def close(self) -> None:
        """Write the exact daily count (a phase that failed did not) and close the HTTP client."""
        try:
            self.budget.settle()
        finally:
            self.http.close()


def _code(envelope: dict[str, Any]) -> int:
    try:
        return int(envelope.get("errorCode", 0))
    except (TypeError, ValueError):
        return -1
