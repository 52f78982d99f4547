"""Secrets never leave through URLs, headers, reprs or log records."""

from __future__ import annotations

import io
import logging

import httpx
from pydantic import SecretStr

from crmsync.auth import OAuthRefreshAuth
from crmsync.connector import _MemoryState
from crmsync.redact import (
    MASK,
    RedactingFilter,
    describe_request,
    redact_headers,
    redact_mapping,
    redact_text,
    redact_url,
    register_secret,
)

TOKEN = "1000.4f3e9a27c1b0d8e2f6a5b4c3d2e1f0a9.b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3"


def test_describe_request_keeps_method_host_path_only() -> None:
    request = httpx.Request(
        "GET",
        "https://www.zohoapis.com/crm/v8/Contacts?fields=Email&page_token=secret123",
        headers={"Authorization": f"Zoho-oauthtoken {TOKEN}"},
    )
    assert describe_request(request) == "GET www.zohoapis.com/crm/v8/Contacts"


def test_describe_request_shows_non_default_port() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:8765/oauth/v2/token?refresh_token=abc")
    assert describe_request(request) == "POST 127.0.0.1:8765/oauth/v2/token"


def test_redact_url_masks_every_query_value_and_userinfo() -> None:
    out = redact_url("https://user:pw@accounts.zoho.eu/oauth/v2/token?refresh_token=1000.abc&grant_type=x")
    assert "1000.abc" not in out and "pw" not in out and "user" not in out
    assert f"refresh_token={MASK}" in out and f"grant_type={MASK}" in out


def test_redact_headers_masks_credentials_and_cookies() -> None:
    headers = httpx.Headers({"Authorization": "Bearer x", "Cookie": "a=b", "Accept": "application/json"})
    out = redact_headers(headers)
    assert out["authorization"] == MASK and out["cookie"] == MASK and out["accept"] == "application/json"


def test_redact_mapping_masks_secret_keys_recursively() -> None:
    out = redact_mapping({"client_id": "1000.X", "nested": {"client_secret": "s3cr3t"}, "refresh_token": "r"})
    assert out == {"client_id": "1000.X", "nested": {"client_secret": MASK}, "refresh_token": MASK}


def test_redact_text_masks_token_shapes_and_registered_values() -> None:
    register_secret("hunter2-very-secret")
    text = (
        f"Authorization: Zoho-oauthtoken {TOKEN} body access_token={TOKEN}&x=1 "
        '{"refresh_token": "abcdef123"} pw hunter2-very-secret'
    )
    out = redact_text(text)
    assert TOKEN not in out and "abcdef123" not in out and "hunter2-very-secret" not in out
    assert "Zoho-oauthtoken ***" in out


def test_log_filter_redacts_messages_args_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("crmsync.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("sending %s", f"Bearer {TOKEN}")
        try:
            raise ValueError(f"refused refresh_token={TOKEN}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert TOKEN not in out
    assert "sending Bearer ***" in out and "failed" in out and "ValueError" in out


def test_auth_repr_hides_secrets() -> None:
    auth = OAuthRefreshAuth(
        token_url="https://accounts.zoho.com/oauth/v2/token",
        client_id="1000.CLIENT",
        client_secret=SecretStr("the-client-secret"),
        refresh_token=SecretStr("1000.refresh.value"),
        state=_MemoryState(),
    )
    text = repr(auth)
    assert "1000.CLIENT" in text
    assert "the-client-secret" not in text and "1000.refresh.value" not in text
