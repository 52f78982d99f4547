"""The shared HTTP client every connector uses: retries, rate limit, concurrency cap, call counts, HTTPS rule.

:func:`make_client` returns a plain :class:`httpx.Client` whose transport is wrapped twice::

    RetryTransport        tenacity: 429 (Retry-After or exponential backoff with jitter), 5xx, timeouts,
      │                   connection resets; bounded attempts and total wait; RetryableError when exhausted
      └─ LimitTransport   requests-per-minute pacing (a token bucket) and a cap on concurrent requests
           └─ transport   httpx's default, or the one a test passes (``httpx.MockTransport(router.handler)``)

Event hooks count calls per endpoint kind (``classify(request)``) into ``counter``; the run report shows them.
The ``crmsync.http`` logger records every answer at DEBUG (method, host, path, status, time), answers of 400 and
above, retries with their wait and give-ups at INFO, and waits for the rate limit at DEBUG; never a query value,
header or body.
Plain HTTP is refused except towards loopback hosts (a local fake server): :class:`~crmsync.ConfigError`.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import tenacity

from crmsync.errors import ConfigError, RetryableError
from crmsync.redact import describe_request

log = logging.getLogger("crmsync.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_ID_SEGMENT = re.compile(r"^(?:\d{4,}|[0-9a-f]{16,}|[0-9a-f-]{36})$")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_secure_url(url: httpx.URL | str, what: str = "URL") -> httpx.URL:
    """Return ``url`` parsed; raise :class:`ConfigError` unless it is HTTPS or plain HTTP to a loopback host."""
    parsed = httpx.URL(str(url))
    if parsed.scheme == "https" and parsed.host:
        return parsed
    if parsed.scheme == "http" and parsed.host and is_loopback(parsed.host):
        return parsed
    shown = f"{parsed.scheme}://{parsed.host}{parsed.path}" if parsed.host else str(parsed.scheme or "?")
    raise ConfigError(f"{what} must use https (plain http only to localhost/127.0.0.1/::1): {shown}")


def default_classify(request: httpx.Request) -> str:
    """Endpoint kind for call counts: ``"GET /crm/v8/Contacts"``, ids replaced by ``{id}``."""
    parts = ["{id}" if _ID_SEGMENT.match(p) else p for p in request.url.path.split("/")]
    return f"{request.method} {'/'.join(parts)}"


def parse_retry_after(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


class LimitTransport(httpx.BaseTransport):
    """Paces requests to ``rate_per_minute`` (token bucket, burst ``burst``) and caps concurrent requests.

    The bucket is kept as a "theoretical arrival time" (GCRA), so a request computes its own wait once and
    sleeps it: an injected ``sleep`` in tests never loops. The response body is read before the concurrency
    slot is released, so a slot really covers the whole exchange.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        *,
        rate_per_minute: float | None = None,
        concurrency: int | None = None,
        burst: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._interval = 60.0 / rate_per_minute if rate_per_minute else 0.0
        self._tolerance = max(0, burst - 1) * self._interval
        self._tat = 0.0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None
        self._sleep = sleep
        self._clock = clock

    def _pace(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            wait = tat - self._tolerance - now
            self._tat = tat + self._interval
        if wait > 0:
            log.debug("waiting %.2f s for the rate limit", wait)
            self._sleep(wait)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._pace()
        if self._slots is None:
            return self._exchange(request)
        with self._slots:
            return self._exchange(request)

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        try:
            content = response.read()
        finally:
            response.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            request=request,
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RetryTransport(httpx.BaseTransport):
    """Retries transient failures with tenacity; gives up with :class:`RetryableError` within a budget.

    Retried: HTTP 429 (``Retry-After`` honoured), 500/502/503/504, timeouts, connection errors and resets.
    Never retried: any other status (returned to the caller as is). Stops after ``max_attempts`` attempts
    or when the total wait would exceed ``max_wait`` seconds (a ``Retry-After`` beyond the budget stops at
    once: the error carries ``retry_after`` so the next run knows when to come back).
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        *,
        max_attempts: int = 5,
        max_wait: float = 120.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[httpx.Request], None] | None = None,
        on_attempt: Callable[[httpx.Request], None] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._inner = inner
        self._on_attempt = on_attempt
        self.max_attempts = max(1, max_attempts)
        self.max_wait = max_wait
        self._initial = backoff_initial
        self._max = backoff_max
        self._sleep = sleep
        self._on_retry = on_retry
        self._jitter = jitter

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        base = min(self._max, self._initial * 2 ** (state.attempt_number - 1))
        return base + self._jitter() * min(base, self._initial)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= self.max_attempts:
            return True
        return state.idle_for + (state.upcoming_sleep or 0.0) > self.max_wait

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            wait=self._wait,
            stop=self._stop,
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda state: self._before_retry(request, state),
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    return self._attempt(request)
        except _Transient as exc:
            log.info("%s: %s; gave up after %d attempt(s)", describe_request(request), exc.reason, attempts)
            raise RetryableError(
                f"{describe_request(request)}: {exc.reason}; gave up after {attempts} attempt(s)",
                retry_after=exc.retry_after,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _before_retry(self, request: httpx.Request, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info(
            "%s: %s; retry %d of %d in %.1f s",
            describe_request(request),
            exc.reason if isinstance(exc, _Transient) else type(exc).__name__,
            state.attempt_number,
            self.max_attempts - 1,
            state.upcoming_sleep or 0.0,
        )
        if self._on_retry:
            self._on_retry(request)

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        if self._on_attempt is not None:
            self._on_attempt(request)  # e.g. a fresh request id for every attempt
        started = time.monotonic()
        try:
            response = self._inner.handle_request(request)
        except httpx.TimeoutException:
            raise _Transient("timed out") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from None
        took = (time.monotonic() - started) * 1000
        level = logging.INFO if response.status_code >= 400 else logging.DEBUG
        log.log(level, "%s: HTTP %d in %.0f ms", describe_request(request), response.status_code, took)
        if response.status_code in RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            raise _Transient(f"HTTP {response.status_code}", retry_after)
        return response

    def close(self) -> None:
        self._inner.close()


class _Counter:
    def __init__(self, counter: dict[str, int], classify: Callable[[httpx.Request], str]) -> None:
        self.counter = counter
        self.classify = classify
        self._lock = threading.Lock()

    def add(self, kind: str) -> None:
        with self._lock:
            self.counter[kind] = self.counter.get(kind, 0) + 1

    def on_request(self, request: httpx.Request) -> None:
        ensure_secure_url(request.url, "request URL")
        self.add(self.classify(request))


def make_client(
    *,
    counter: dict[str, int] | None = None,
    base_url: str | httpx.URL = "",
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
    rate_per_minute: float | None = None,
    concurrency: int | None = None,
    burst: int = 1,
    max_retries: int = 4,
    max_retry_wait: float = 120.0,
    backoff_initial: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    classify: Callable[[httpx.Request], str] = default_classify,
    timeout: float | httpx.Timeout = 30.0,
    headers: dict[str, str] | None = None,
    on_attempt: Callable[[httpx.Request], None] | None = None,
    **kwargs: Any,
) -> httpx.Client:
    """Build the shared client.

    Args:
        counter: calls by endpoint kind are added here (``counter["retries"]`` counts extra attempts).
        base_url: must be HTTPS (plain HTTP only to loopback hosts).
        auth: an :class:`httpx.Auth`, e.g. :class:`crmsync.auth.OAuthRefreshAuth`.
        transport: the innermost transport (tests pass ``httpx.MockTransport(router.handler)``).
        rate_per_minute: request pacing; ``None`` for none.
        concurrency: most requests in flight at once; ``None`` for no cap.
        max_retries: retries after the first attempt (so ``max_retries + 1`` attempts at most).
        max_retry_wait: total seconds of waiting between attempts before giving up.
        sleep, clock: injectable for tests.
        classify: maps a request to its endpoint kind for ``counter``.
        on_attempt: called with the request before every attempt, the first and each retry; it may change the
            request (an API that wants a fresh id per call sets it here).

    Raises:
        ConfigError: ``base_url`` is not HTTPS and not loopback.
    """
    if base_url:
        base_url = ensure_secure_url(base_url, "base URL")
    calls = _Counter(counter if counter is not None else {}, classify)
    inner = transport if transport is not None else httpx.HTTPTransport()
    limited = LimitTransport(
        inner, rate_per_minute=rate_per_minute, concurrency=concurrency, burst=burst, sleep=sleep, clock=clock
    )
    retrying = RetryTransport(
        limited,
        max_attempts=max_retries + 1,
        max_wait=max_retry_wait,
        backoff_initial=backoff_initial,
        sleep=sleep,
        on_retry=lambda _request: calls.add("retries"),
        on_attempt=on_attempt,
    )
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        transport=retrying,
        timeout=timeout,
        headers=headers,
        event_hooks={"request": [calls.on_request]},
        follow_redirects=False,
        **kwargs,
    )
