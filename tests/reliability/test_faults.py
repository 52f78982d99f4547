"""Fault campaign: the engine drives the Zoho connector against the fake org while the API misbehaves.

Every run either completes with exactly the state of an undisturbed run, or stops with a clear error and exit
code 3 (2 when credentials are refused) within a bounded number of attempts and of (injected, no-op) sleep;
nothing half-written remains, and a rerun without the fault reaches the undisturbed state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.zoho.fake import CLIENT_SECRET, REFRESH_TOKEN, err

from .rel_support import digest
from .zoho_harness import (
    MAX_RETRIES,
    RETRY_BUDGET,
    FaultyZoho,
    crm_state,
    run_sync,
    secrets_env,
    seed,
    write_config,
)

HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>nginx</body></html>"


def comparable(store: dict[str, Any]) -> dict[str, Any]:
    # cursors hold the fake's modification times, which depend on the order concurrent pushes landed in
    return {k: v for k, v in store.items() if k != "cursors"}


def times(n: int, answer: Callable[[httpx.Request], httpx.Response | None]) -> Callable[..., Any]:
    """Answer the first ``n`` requests of a kind with ``answer`` (n = 0: every request)."""

    def fault(zoho: FaultyZoho, request: httpx.Request, i: int) -> httpx.Response | None:
        return answer(request) if n == 0 or i <= n else None

    return fault


def on_call(k: int, answer: Callable[[FaultyZoho, httpx.Request], httpx.Response | None]) -> Callable[..., Any]:
    """Answer only the ``k``-th request of a kind (later pages: the middle of the run)."""

    def fault(zoho: FaultyZoho, request: httpx.Request, i: int) -> httpx.Response | None:
        return answer(zoho, request) if i == k else None

    return fault


def raise_(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc("injected", request=request)

    return answer


def status(code: int, **kw: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, **kw)


def repeat_first(zoho: FaultyZoho, request: httpx.Request) -> httpx.Response:
    first = zoho.answers["read Contacts"][0]
    return httpx.Response(200, content=first.content, headers={"Content-Type": "application/json"})


def revoke(zoho: FaultyZoho, request: httpx.Request) -> None:
    zoho.fake.valid_refresh.clear()  # the refresh token is revoked while the run is under way
    zoho.fake.expire_access_tokens()
    return None


def expire(zoho: FaultyZoho, request: httpx.Request) -> None:
    zoho.fake.expire_access_tokens()  # the access token dies in the middle of the run
    return None


@dataclass
class Case:
    kind: str
    fault: Callable[..., Any]
    outcome: str  # "complete" or "fail"
    exit: int = 0
    message: str = ""
    max_attempts: int | None = None
    """Most requests of ``kind`` the run may make."""
    slept: float | None = None
    """A wait the run must have honoured (Retry-After)."""
    retry_after: float | None = None
    """When a failed run's report says the failed call may succeed (the API's Retry-After)."""


CASES: dict[str, Case] = {
    "429 storm with Retry-After": Case(
        "read Contacts", times(3, status(429, headers={"Retry-After": "7"})), "complete", slept=7.0
    ),
    "429 storm without Retry-After, endless": Case(
        "update Contacts", times(0, status(429)), "fail", 3, "HTTP 429", (MAX_RETRIES + 1) * 5
    ),
    "429 with Retry-After beyond the budget": Case(
        "read Sales_Orders",
        times(0, status(429, headers={"Retry-After": "3600"})),
        "fail",
        3,
        "HTTP 429",
        1,
        retry_after=3600.0,
    ),
    "500 once": Case("read Contacts", times(1, status(500)), "complete"),
    "502 twice": Case("read Sales_Orders", times(2, status(502)), "complete"),
    "503 on push": Case("update Contacts", times(2, status(503)), "complete"),
    "504 on the token call": Case("oauth token", times(1, status(504)), "complete"),
    "503 endless": Case("read Contacts", times(0, status(503)), "fail", 3, "HTTP 503", MAX_RETRIES + 1),
    "timeouts": Case("read Contacts", times(2, raise_(httpx.ReadTimeout)), "complete"),
    "timeouts endless on push": Case(
        "update Contacts", times(0, raise_(httpx.ReadTimeout)), "fail", 3, "timed out", (MAX_RETRIES + 1) * 5
    ),
    "connection resets": Case("read Sales_Orders", times(2, raise_(httpx.RemoteProtocolError)), "complete"),
    "connection refused endless": Case(
        "read Contacts", times(0, raise_(httpx.ConnectError)), "fail", 3, "connection failed", MAX_RETRIES + 1
    ),
    "truncated JSON page": Case(
        "read Contacts",
        on_call(2, lambda z, r: httpx.Response(200, content=b'{"data": [{"id": "48')),
        "fail",
        3,
        "not a JSON object",
    ),
    "HTML error page with 200 from a proxy": Case(
        "read Sales_Orders",
        times(1, status(200, content=HTML, headers={"Content-Type": "text/html"})),
        "fail",
        3,
        "not a JSON object (text/html",
    ),
    "HTML error page with 502 from a proxy": Case(
        "read Contacts", times(1, status(502, content=HTML, headers={"Content-Type": "text/html"})), "complete"
    ),
    "truncated JSON push answer": Case(
        "update Contacts", on_call(2, lambda z, r: httpx.Response(200, content=b'{"data": [{"code": "SUC')), "fail", 3
    ),
    "401 in the middle (access token expired)": Case("read Sales_Orders", on_call(1, expire), "complete"),
    "401 in the middle (refresh token revoked)": Case("read Sales_Orders", on_call(1, revoke), "fail", 2),
    "a page repeating the previous page": Case("read Contacts", on_call(2, repeat_first), "fail", 3, "repeats"),
    "invalid token answer on push": Case(
        "update Contacts", on_call(1, lambda z, r: err(401, "INVALID_TOKEN", "invalid oauth token")), "complete"
    ),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    secrets_env(mp)
    try:
        zoho = FaultyZoho()
        seed(zoho.fake)
        config = write_config(tmp_path_factory.mktemp("reference"))
        report = run_sync(config, zoho)
        assert report.status == "ok", report.error
        return comparable(digest(config.parent / "store.duckdb")), crm_state(zoho.fake)
    finally:
        mp.undo()


def _assert_consistent(store_path: Path, zoho: FaultyZoho) -> None:
    """After a failed run: no order twice, the cursor not past unstored records, the outbox covers every change."""
    import duckdb

    con = duckdb.connect(str(store_path), read_only=True)
    try:
        count, distinct = con.execute("SELECT count(*), count(DISTINCT (source, external_id)) FROM orders").fetchone()
        assert count == distinct
        stored = {
            stream: {r[0] for r in con.execute(f"SELECT external_id FROM {stream}").fetchall()}
            for stream in ("members", "orders")
        }
        for stream, module in (("members", "Contacts"), ("orders", "Sales_Orders")):
            row = con.execute("SELECT value FROM cursors WHERE stream = ?", [stream]).fetchone()
            at = json.loads(row[0])["records"]["at"] if row else None
            if at is None:
                continue
            mark = datetime.fromisoformat(at)
            behind = {
                rid
                for rid, rec in zoho.fake.records[module].items()
                if datetime.fromisoformat(rec["Modified_Time"]) <= mark
            }
            # records modified by our own pushes after they were pulled are newer than the mark anyway
            assert behind <= stored[stream], f"{stream}: the cursor passed records that were never stored"
        profiles = {r[0] for r in con.execute("SELECT member_id FROM profiles").fetchall()}
        covered = {
            r[0]
            for r in con.execute(
                "SELECT o.member_id FROM outbox o WHERE status = 'pending' UNION SELECT p.member_id FROM pushed p"
            ).fetchall()
        }
        assert profiles <= covered, "a graded change is neither pushed nor waiting in the outbox"
        assert not con.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("name", list(CASES))
def test_fault(
    name: str, reference: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    secrets_env(monkeypatch)
    ref_store, ref_crm = reference
    zoho = FaultyZoho(faults={case.kind: case.fault})
    seed(zoho.fake)
    config = write_config(tmp_path)
    report = run_sync(config, zoho)
    code = int(report.exit_code)
    # bounded: attempts per kind and total (no-op) sleep
    assert sum(zoho.fake.sleeps) <= RETRY_BUDGET * max(1, zoho.seen[case.kind])
    assert all(s <= RETRY_BUDGET for s in zoho.fake.sleeps)
    if case.max_attempts is not None:
        assert zoho.seen[case.kind] <= case.max_attempts, dict(zoho.seen)
    if case.slept is not None:
        assert zoho.fake.sleeps.count(case.slept) >= 3
    if case.outcome == "complete":
        assert report.status == "ok", report.error
        assert code == 0
    else:
        assert report.status == "failed"
        assert code == (case.exit or 3), report.error
        assert report.error is not None and report.error.exit_code == code
        assert report.error.retry_after == case.retry_after
        error = str(report.error)
        assert case.message in error
        assert report.error.kind != "unexpected" and not error.startswith("unexpected"), f"not a clear error: {error}"
        assert "Traceback" not in error and CLIENT_SECRET not in error and REFRESH_TOKEN not in error
        _assert_consistent(config.parent / "store.duckdb", zoho)
        zoho.faults.clear()
        if case.exit == 2:
            zoho.fake.valid_refresh.add(REFRESH_TOKEN)  # the credentials are fixed
        again = run_sync(config, zoho)
        assert again.status == "ok", again.error
    assert comparable(digest(config.parent / "store.duckdb")) == ref_store
    assert crm_state(zoho.fake) == ref_crm
