"""OAuth refresh-token flow: caching, expiry, one refresh on an invalid token, errors without retry storms."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from crmsync.auth import OAuthRefreshAuth
from crmsync.connector import _MemoryState
from crmsync.errors import AuthError, ExitCode, RetryableError
from crmsync.http import make_client

ACCOUNTS = "https://accounts.zoho.eu/oauth/v2/token"
API = "https://www.zohoapis.eu"


def token_json(n: int, expires_in: int = 3600) -> dict:
    return {
        "access_token": f"1000.access{n:028d}.x",
        "scope": "ZohoCRM.modules.ALL",
        "api_domain": API,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def build(router: respx.MockRouter, state=None, clock=None, refresh_token: str = "1000.refresh") -> tuple:
    state = state if state is not None else _MemoryState()
    auth = OAuthRefreshAuth(
        token_url=ACCOUNTS,
        client_id="1000.CLIENT",
        client_secret=SecretStr("client-secret-value"),
        refresh_token=SecretStr(refresh_token),
        state=state,
        api_hosts=["www.zohoapis.eu"],
        scheme="Zoho-oauthtoken",
        is_invalid_token=lambda r: (
            r.status_code == 401
            and json.loads(r.content or b"{}").get("code") in {"INVALID_TOKEN", "AUTHENTICATION_FAILURE"}
        ),
        label="Zoho data centre eu",
        clock=clock or Clock(),
    )
    client = make_client(base_url=API, auth=auth, transport=httpx.MockTransport(router.handler), sleep=lambda s: None)
    return auth, client, state


def test_refreshes_once_then_uses_cache_across_clients() -> None:
    router = respx.MockRouter()
    token = router.post(ACCOUNTS).mock(return_value=httpx.Response(200, json=token_json(1)))
    data = router.get(f"{API}/crm/v8/Contacts").mock(return_value=httpx.Response(204))
    _, client, state = build(router)
    with client:
        client.get("/crm/v8/Contacts")
        client.get("/crm/v8/Contacts")
    assert token.call_count == 1
    assert data.calls[0].request.headers["Authorization"] == f"Zoho-oauthtoken {token_json(1)['access_token']}"
    form = parse_qs(token.calls[0].request.content.decode())
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == ["1000.refresh"]
    assert "refresh_token" not in str(token.calls[0].request.url)
    # a second run with the same state reuses the cached token
    _, client2, _ = build(router, state=state)
    with client2:
        client2.get("/crm/v8/Contacts")
    assert token.call_count == 1


def test_refreshes_before_expiry() -> None:
    router = respx.MockRouter()
    token = router.post(ACCOUNTS).mock(
        side_effect=[httpx.Response(200, json=token_json(1)), httpx.Response(200, json=token_json(2))]
    )
    data = router.get(f"{API}/crm/v8/Contacts").mock(return_value=httpx.Response(204))
    clock = Clock()
    _, client, _ = build(router, clock=clock)
    with client:
        client.get("/crm/v8/Contacts")
        clock.now += 3600 - 299  # inside the 5-minute margin
        client.get("/crm/v8/Contacts")
    assert token.call_count == 2
    assert token_json(2)["access_token"] in data.calls[1].request.headers["Authorization"]


def test_legacy_expires_in_milliseconds() -> None:
    router = respx.MockRouter()
    legacy = token_json(1, expires_in=3_600_000) | {"expires_in_sec": 3600}
    router.post(ACCOUNTS).mock(return_value=httpx.Response(200, json=legacy))
    router.get(f"{API}/x").mock(return_value=httpx.Response(204))
    clock = Clock()
    auth, client, _ = build(router, clock=clock)
    with client:
        client.get("/x")
    assert auth.token().expires_at == clock.now + 3600


def test_invalid_token_refreshes_exactly_once_and_resends() -> None:
    router = respx.MockRouter()
    token = router.post(ACCOUNTS).mock(
        side_effect=[httpx.Response(200, json=token_json(1)), httpx.Response(200, json=token_json(2))]
    )
    invalid = {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}
    data = router.get(f"{API}/x").mock(side_effect=[httpx.Response(401, json=invalid), httpx.Response(204)])
    _, client, _ = build(router)
    with client:
        assert client.get("/x").status_code == 204
    assert token.call_count == 2 and data.call_count == 2


def test_scope_mismatch_does_not_refresh() -> None:
    router = respx.MockRouter()
    token = router.post(ACCOUNTS).mock(return_value=httpx.Response(200, json=token_json(1)))
    body = {"code": "OAUTH_SCOPE_MISMATCH", "details": {}, "message": "Unauthorized", "status": "error"}
    router.get(f"{API}/x").mock(return_value=httpx.Response(401, json=body))
    _, client, _ = build(router)
    with client:
        assert client.get("/x").status_code == 401
    assert token.call_count == 1


def test_second_invalid_token_is_returned_not_looped() -> None:
    router = respx.MockRouter()
    token = router.post(ACCOUNTS).mock(return_value=httpx.Response(200, json=token_json(1)))
    invalid = {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}
    data = router.get(f"{API}/x").mock(return_value=httpx.Response(401, json=invalid))
    _, client, _ = build(router)
    with client:
        assert client.get("/x").status_code == 401
    assert token.call_count == 2 and data.call_count == 2


@pytest.mark.parametrize("error", ["invalid_code", "invalid_client", "invalid_client_secret"])
def test_refused_credentials_raise_auth_error_once(error: str) -> None:
    router = respx.MockRouter()
    token = router.post(ACCOUNTS).mock(return_value=httpx.Response(200, json={"error": error}))
    data = router.get(f"{API}/x").mock(return_value=httpx.Response(204))
    _, client, _ = build(router, refresh_token="1000.revoked-refresh")
    with client, pytest.raises(AuthError) as info:
        client.get("/x")
    assert token.call_count == 1 and data.call_count == 0
    assert info.value.exit_code == ExitCode.CONFIG
    assert "Zoho data centre eu" in str(info.value) and error in str(info.value)
    assert "1000.revoked-refresh" not in str(info.value)


@pytest.mark.parametrize("status", [200, 400])
def test_token_throttle_is_retryable_with_long_backoff(status: int) -> None:
    router = respx.MockRouter()
    body = {
        "error_description": "You have made too many requests continuously. Please try again after some time.",
        "error": "Access Denied",
        "status": "failure",
    }
    token = router.post(ACCOUNTS).mock(return_value=httpx.Response(status, json=body))
    router.get(f"{API}/x").mock(return_value=httpx.Response(204))
    _, client, _ = build(router)
    with client, pytest.raises(RetryableError) as info:
        client.get("/x")
    assert token.call_count == 1
    assert info.value.retry_after >= 300


def test_token_only_sent_to_api_host() -> None:
    router = respx.MockRouter()
    router.post(ACCOUNTS).mock(return_value=httpx.Response(200, json=token_json(1)))
    other = router.get("https://files.example.com/result.zip").mock(return_value=httpx.Response(200))
    _, client, _ = build(router)
    with client:
        client.get("https://files.example.com/result.zip", headers={"Authorization": "Zoho-oauthtoken forged"})
    assert "Authorization" not in other.calls[0].request.headers


def test_cached_token_for_other_credentials_is_ignored() -> None:
    router = respx.MockRouter()
    token = router.post(ACCOUNTS).mock(
        side_effect=[httpx.Response(200, json=token_json(1)), httpx.Response(200, json=token_json(2))]
    )
    router.get(f"{API}/x").mock(return_value=httpx.Response(204))
    _, client, state = build(router, refresh_token="1000.first")
    with client:
        client.get("/x")
    _, client2, _ = build(router, state=state, refresh_token="1000.second")
    with client2:
        client2.get("/x")
    assert token.call_count == 2
