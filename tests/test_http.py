"""The shared client: retries, Retry-After, budgets, pacing, concurrency, call counts, HTTPS rule."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from crmsync.connector import ConnectorContext
from crmsync.errors import ConfigError, RetryableError
from crmsync.http import default_classify, is_loopback, make_client, parse_retry_after

BASE = "https://api.example.com"


class FakeTime:
    """A clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def client(router: respx.MockRouter, ft: FakeTime, **kwargs) -> httpx.Client:
    return make_client(
        base_url=BASE, transport=httpx.MockTransport(router.handler), sleep=ft.sleep, clock=ft.clock, **kwargs
    )


def test_429_with_retry_after_seconds_is_honoured_then_succeeds() -> None:
    router = respx.MockRouter(assert_all_called=False)
    route = router.get(f"{BASE}/items").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"code": "TOO_MANY_REQUESTS"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    ft = FakeTime()
    counter: dict[str, int] = {}
    with client(router, ft, counter=counter) as c:
        response = c.get("/items")
    assert response.json() == {"ok": True}
    assert route.call_count == 2
    assert ft.sleeps == [7.0]
    assert counter == {"GET /items": 1, "retries": 1}


def test_429_with_http_date_retry_after() -> None:
    now = datetime(2025, 7, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=lambda: now) == pytest.approx(30.0)
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


def test_429_without_retry_after_backs_off_exponentially() -> None:
    router = respx.MockRouter()
    router.get(f"{BASE}/items").mock(
        side_effect=[httpx.Response(429), httpx.Response(429), httpx.Response(429), httpx.Response(200)]
    )
    ft = FakeTime()
    with client(router, ft, backoff_initial=1.0) as c:
        assert c.get("/items").status_code == 200
    assert len(ft.sleeps) == 3
    # base 1, 2, 4 plus jitter of at most the initial delay
    for expected, slept in zip([1.0, 2.0, 4.0], ft.sleeps, strict=True):
        assert expected <= slept <= expected + 1.0


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"code": "INTERNAL_ERROR"}),
        httpx.Response(503),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection reset by peer"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_transient_failures_are_retried(failure) -> None:
    router = respx.MockRouter()
    route = router.get(f"{BASE}/items").mock(side_effect=[failure, httpx.Response(200, json=[])])
    ft = FakeTime()
    with client(router, ft) as c:
        assert c.get("/items").status_code == 200
    assert route.call_count == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 412])
def test_other_4xx_are_never_retried(status: int) -> None:
    router = respx.MockRouter()
    route = router.get(f"{BASE}/items").mock(return_value=httpx.Response(status, json={"code": "X"}))
    ft = FakeTime()
    with client(router, ft) as c:
        assert c.get("/items").status_code == status
    assert route.call_count == 1
    assert ft.sleeps == []


def test_exhaustion_raises_retryable_error_without_query_values() -> None:
    router = respx.MockRouter()
    route = router.get(f"{BASE}/items").mock(return_value=httpx.Response(502))
    ft = FakeTime()
    with client(router, ft, max_retries=2) as c, pytest.raises(RetryableError) as info:
        c.get("/items", params={"page_token": "very-secret-token"})
    assert route.call_count == 3
    message = str(info.value)
    assert "GET api.example.com/items" in message and "HTTP 502" in message
    assert "very-secret-token" not in message and "page_token" not in message


def test_retry_after_beyond_budget_stops_at_once_and_reports_it() -> None:
    router = respx.MockRouter()
    route = router.get(f"{BASE}/items").mock(return_value=httpx.Response(429, headers={"Retry-After": "3600"}))
    ft = FakeTime()
    with client(router, ft, max_retry_wait=60) as c, pytest.raises(RetryableError) as info:
        c.get("/items")
    assert route.call_count == 1
    assert ft.sleeps == []
    assert info.value.retry_after == 3600.0


def test_total_wait_is_bounded() -> None:
    router = respx.MockRouter()
    router.get(f"{BASE}/items").mock(return_value=httpx.Response(503))
    ft = FakeTime()
    with (
        client(router, ft, max_retries=50, max_retry_wait=20, backoff_initial=1.0) as c,
        pytest.raises(RetryableError),
    ):
        c.get("/items")
    assert sum(ft.sleeps) <= 20


def test_rate_limit_paces_requests() -> None:
    router = respx.MockRouter()
    router.get(f"{BASE}/items").mock(return_value=httpx.Response(200))
    ft = FakeTime()
    with client(router, ft, rate_per_minute=30) as c:
        for _ in range(5):
            c.get("/items")
    # 30/min = one every 2 s: the first goes at once, the next four each wait 2 s.
    assert ft.sleeps == pytest.approx([2.0, 2.0, 2.0, 2.0])
    assert ft.now - 1000.0 == pytest.approx(8.0)


def test_concurrency_cap_is_never_exceeded() -> None:
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        release.wait(0.05)
        with lock:
            in_flight -= 1
        return httpx.Response(200)

    with make_client(base_url=BASE, transport=httpx.MockTransport(handler), concurrency=2) as c:
        threads = [threading.Thread(target=c.get, args=("/items",)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert peak == 2


def test_counts_by_endpoint_kind_with_custom_classifier() -> None:
    router = respx.MockRouter()
    router.get(url__regex=rf"{BASE}/crm/v8/Contacts.*").mock(return_value=httpx.Response(204))
    router.put(f"{BASE}/crm/v8/Contacts").mock(return_value=httpx.Response(200, json={"data": []}))
    counter: dict[str, int] = {}
    ft = FakeTime()
    kind = lambda r: "read" if r.method == "GET" else "write"  # noqa: E731
    with client(router, ft, counter=counter, classify=kind) as c:
        c.get("/crm/v8/Contacts")
        c.get("/crm/v8/Contacts", params={"page": 2})
        c.put("/crm/v8/Contacts", json={"data": []})
    assert counter == {"read": 2, "write": 1}


def test_default_classify_replaces_ids() -> None:
    request = httpx.Request("GET", "https://x.example/crm/v8/Contacts/4876876000000102300")
    assert default_classify(request) == "GET /crm/v8/Contacts/{id}"


@pytest.mark.parametrize("url", ["http://api.example.com", "ftp://x.example/", "http://10.0.0.1:8080"])
def test_plain_http_refused_except_loopback(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_client(base_url=url)
    assert "https" in str(info.value)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


def test_plain_http_allowed_to_loopback_and_refused_per_request_elsewhere() -> None:
    router = respx.MockRouter()
    router.get("http://127.0.0.1:8080/ping").mock(return_value=httpx.Response(200))
    with make_client(base_url="http://127.0.0.1:8080", transport=httpx.MockTransport(router.handler)) as c:
        assert c.get("/ping").status_code == 200
        with pytest.raises(ConfigError):
            c.get("http://evil.example.com/steal")


def test_works_with_respx_global_mock() -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{BASE}/items").mock(return_value=httpx.Response(200, json={"n": 1}))
        with make_client(base_url=BASE) as c:
            assert c.get("/items").json() == {"n": 1}


def test_connector_context_http_uses_the_factory_signature() -> None:
    router = respx.MockRouter()
    router.get(f"{BASE}/items").mock(return_value=httpx.Response(200))
    ctx = ConnectorContext(name="crm")
    with ctx.http(base_url=BASE, transport=httpx.MockTransport(router.handler)) as c:
        c.get("/items")
    assert ctx.api_calls == {"GET /items": 1}
