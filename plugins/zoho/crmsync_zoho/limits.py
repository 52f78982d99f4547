"""Zoho's API limits: exhausted daily credits stop a run at once; a concurrency 429 is retried.

Zoho answers both with HTTP 429 ``TOO_MANY_REQUESTS`` and does not document how to tell them apart, nor whether
``Retry-After`` is sent. :class:`ZohoLimitsTransport` sits under the shared client's retries and reads every
answer: ``X-API-CREDITS-REMAINING`` (sent once half the org's credits are used), and on a 429 Zoho's message and
details. A 429 counts as exhausted credits when that header says 0, when the last one seen was nearly used up, or
when the message speaks of credits; it then raises :class:`~crmsync.RetryableError` with Zoho's reason and when
credits come back (``Retry-After`` or ``details.retry_after`` when given, else as the rolling 24-hour window moves
on), which no retry intercepts. Any other 429 (concurrency) goes back to the shared client, which retries it.
429s, 5xx answers, timeouts and dropped connections are logged (method, host and path only).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from crmsync import RetryableError
from crmsync.helpers import RETRY_STATUSES, describe_request, parse_retry_after

CREDITS_HEADER = "X-API-CREDITS-REMAINING"
NEARLY_EXHAUSTED = 10
"""A 429 right after an answer said this few credits remained means the credits are gone."""
CREDITS_WINDOW = timedelta(hours=24)


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content) if response.content else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _credits(response: httpx.Response) -> int | None:
    value = response.headers.get(CREDITS_HEADER)
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None


class ZohoLimitsTransport(httpx.BaseTransport):
    """Tells exhausted credits from a concurrency 429 (see the module docstring); logs 429 and 5xx answers."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        logger: logging.Logger,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._inner = inner
        self._log = logger
        self._now = now
        self._lock = threading.Lock()
        self.remaining: int | None = None
        """Credits left, as the last answer that said so put it."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._inner.handle_request(request)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            self._log.info("%s to %s; retried within the budget", type(exc).__name__, describe_request(request))
            raise
        left = _credits(response)
        if response.status_code == 429:
            response.read()
            self._too_many(request, response, left)
        elif response.status_code >= 500:
            then = "retried within the budget" if response.status_code in RETRY_STATUSES else "not retried"
            self._log.info("Zoho answered HTTP %d to %s; %s", response.status_code, describe_request(request), then)
        if left is not None:
            with self._lock:
                self.remaining = left
        return response

    def _too_many(self, request: httpx.Request, response: httpx.Response, left: int | None) -> None:
        body = _body(response)
        message = str(body.get("message") or "").strip()
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        with self._lock:
            before = self.remaining
        exhausted = (
            (left is not None and left <= 0)
            or (left is None and before is not None and before <= NEARLY_EXHAUSTED)
            or "credit" in message.lower()
        )
        where = describe_request(request)
        if not exhausted:
            self._log.info("Zoho answered 429 (concurrency) to %s: %s; retried", where, message or "no message")
            return
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is None and isinstance(details.get("retry_after"), int | float):
            wait = float(details["retry_after"])
        if wait is not None:
            renew = f"credits come back at {(self._now() + timedelta(seconds=wait)).isoformat(timespec='minutes')}"
        else:
            latest = (self._now() + CREDITS_WINDOW).isoformat(timespec="minutes")
            renew = f"credits come back as the rolling 24-hour window moves on (all of them by {latest} at the latest)"
        text = f"{where}: Zoho's daily API credits are exhausted ({message or 'TOO_MANY_REQUESTS'}); {renew}"
        self._log.warning("%s", text)
        raise RetryableError(
            text,
            retry_after=wait if wait is not None else CREDITS_WINDOW.total_seconds(),
            hint="the run stopped without retrying; the next run resumes where this one stopped. Add-on credits "
            "or a run at a quieter time help; see the credits per edition in Zoho's API limits",
        )

    def close(self) -> None:
        self._inner.close()
