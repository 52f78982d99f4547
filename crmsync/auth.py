"""OAuth 2.0 refresh-token flow as an :class:`httpx.Auth`, with the access token cached in connector state.

:class:`OAuthRefreshAuth` overrides ``sync_auth_flow`` because it does I/O: when the cached token is missing
or about to expire it first yields the token request (which travels through the same client, so it is
rate-limited, retried on 5xx and counted), then the real request. One "invalid token" answer triggers one
forced refresh and one resend; a second is returned to the caller. Refreshes are serialised by a lock, so
concurrent requests never refresh twice.

Failures of the token endpoint become :class:`~crmsync.AuthError` (exit code 2, never retried) naming where
the credentials belong (``label``, e.g. "Zoho data centre eu (accounts.zoho.eu)"); a throttle answer becomes
:class:`~crmsync.RetryableError` with a long ``retry_after``. The access token is only attached to the
configured API hosts; the refresh credentials only go to the configured token URL.

The ``crmsync.auth`` logger records renewals, refused tokens and refused credentials at INFO and the reuse of a
cached token at DEBUG: hosts, lifetimes and error codes, never a token or a secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from crmsync.connector import KeyValueState
from crmsync.errors import AuthError, CrmsyncError, FatalAPIError, RetryableError
from crmsync.http import ensure_secure_url
from crmsync.redact import describe_request, register_secret, safe_repr

log = logging.getLogger("crmsync.auth")

PERMANENT_ERRORS = frozenset(
    {
        "invalid_code",
        "invalid_client",
        "invalid_client_secret",
        "invalid_grant",
        "unauthorized_client",
        "invalid_scope",
        "invalid_redirect_uri",
    }
)
THROTTLE_BACKOFF = 600.0
"""Seconds to wait after the token endpoint says "too many requests" (it heals in minutes, not seconds)."""


@dataclass
class Token:
    """An access token and what came with it."""

    access_token: str = field(repr=False)
    expires_at: float
    api_domain: str | None = None
    scope: str | None = None

    def to_json(self, fingerprint: str) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "expires_at": self.expires_at,
                "api_domain": self.api_domain,
                "scope": self.scope,
                "fingerprint": fingerprint,
            }
        )


def parse_token_payload(payload: Any, *, now: float, label: str) -> Token:
    """Read a token endpoint answer; success is the presence of ``access_token``, never the status code.

    ``expires_in`` is seconds, unless ``expires_in_sec`` is present (older answers: ``expires_in`` in ms).
    """
    if not isinstance(payload, dict):
        raise FatalAPIError(f"token endpoint of {label} answered something that is not a JSON object")
    error = payload.get("error")
    if "access_token" not in payload or error:
        error_text = str(error or "no access_token in the answer")
        description = str(payload.get("error_description") or "")
        if "too many requests" in description.lower() or error_text.lower() == "access denied":
            raise RetryableError(
                f"token endpoint of {label} throttled refreshes ({error_text}); try again in a few minutes",
                retry_after=THROTTLE_BACKOFF,
            )
        raise AuthError(
            f"the OAuth credentials were refused by {label}: {error_text}",
            hint="check client id, client secret and refresh token, and that they belong to this data centre; "
            "a revoked refresh token must be generated again",
        )
    if "expires_in_sec" in payload:
        lifetime = float(payload["expires_in_sec"])
    else:
        lifetime = float(payload.get("expires_in") or 3600)
    token = Token(
        access_token=str(payload["access_token"]),
        expires_at=now + lifetime,
        api_domain=payload.get("api_domain"),
        scope=payload.get("scope"),
    )
    register_secret(token.access_token)
    return token


class OAuthRefreshAuth(httpx.Auth):
    """OAuth 2.0 refresh-token grant with a cached access token.

    Args:
        token_url: the token endpoint (HTTPS, or HTTP to loopback).
        client_id, client_secret, refresh_token: the credentials (secrets as ``SecretStr``).
        state: where the token is cached between runs (``ConnectorContext.state``).
        api_hosts: hosts that may receive the access token; requests to any other host go out without it.
        scheme: the ``Authorization`` scheme (``"Bearer"``; Zoho wants ``"Zoho-oauthtoken"``).
        is_invalid_token: says whether a response means "token expired or revoked, refresh and retry once".
        label: names the accounts server in error messages (e.g. the data centre).
        refresh_margin: refresh this many seconds before expiry.
        state_key: the key in ``state``.
        on_token: called with every new or cached token (e.g. to learn the API domain it belongs to).
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        refresh_token: SecretStr,
        state: KeyValueState,
        api_hosts: Iterable[str] = (),
        scheme: str = "Bearer",
        is_invalid_token: Callable[[httpx.Response], bool] | None = None,
        label: str = "the accounts server",
        refresh_margin: float = 300.0,
        state_key: str = "oauth_token",
        clock: Callable[[], float] = time.time,
        on_token: Callable[[Token], None] | None = None,
    ) -> None:
        self.token_url = ensure_secure_url(token_url, "token URL")
        self.client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self.state = state
        self.api_hosts = {h.lower() for h in api_hosts}
        self.scheme = scheme
        self.is_invalid_token = is_invalid_token or (lambda r: r.status_code == 401)
        self.label = label
        self.refresh_margin = refresh_margin
        self.state_key = state_key
        self.clock = clock
        self.on_token = on_token
        self._lock = threading.RLock()
        self._token: Token | None = None
        self.refreshes = 0
        register_secret(client_secret.get_secret_value())
        register_secret(refresh_token.get_secret_value())
        digest = f"{token_url}|{client_id}|{refresh_token.get_secret_value()}".encode()
        self._fingerprint = hashlib.sha256(digest).hexdigest()[:24]

    def __repr__(self) -> str:
        return safe_repr(self, ["token_url", "client_id"], ["client_secret", "refresh_token"])

    def allow_host(self, host: str) -> None:
        """Let ``host`` receive the access token too (e.g. an upload host the API itself pointed to)."""
        self.api_hosts.add(host.lower())

    # -- token cache ------------------------------------------------------------------------------------

    def cached_token(self) -> Token | None:
        """The usable token from memory or state, if any (``None`` when missing, stale or for other creds)."""
        token = self._token
        if token is None:
            raw = self.state.get(self.state_key)
            if raw:
                try:
                    data = json.loads(raw)
                    if data.get("fingerprint") == self._fingerprint:
                        token = Token(
                            data["access_token"], float(data["expires_at"]), data.get("api_domain"), data.get("scope")
                        )
                        register_secret(token.access_token)
                        log.debug("reusing the access token from %s kept from an earlier run", self.label)
                except (ValueError, KeyError, TypeError):
                    token = None
        if token is None or token.expires_at - self.refresh_margin <= self.clock():
            return None
        self._token = token
        return token

    def invalidate(self) -> None:
        self._token = None
        self.state.set(self.state_key, None)

    def build_refresh_request(self) -> httpx.Request:
        """The token request (credentials in a form body, never in the URL)."""
        return httpx.Request(
            "POST",
            self.token_url,
            data={
                "grant_type": "refresh_token",
                "client_id": self.client_id,
                "client_secret": self._client_secret.get_secret_value(),
                "refresh_token": self._refresh_token.get_secret_value(),
            },
            headers={"Accept": "application/json"},
        )

    def _accept(self, response: httpx.Response) -> Token:
        response.read()
        if response.status_code >= 500:
            raise RetryableError(f"token endpoint of {self.label} answered HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError:
            raise FatalAPIError(
                f"token endpoint of {self.label} answered HTTP {response.status_code} without JSON"
            ) from None
        try:
            token = parse_token_payload(payload, now=self.clock(), label=self.label)
        except CrmsyncError as exc:
            log.info("%s", exc.message)  # the error itself reaches the user: no warning on the terminal too
            raise
        log.info("access token renewed at %s (valid for %.0f s)", self.label, token.expires_at - self.clock())
        self.refreshes += 1
        self._token = token
        self.state.set(self.state_key, token.to_json(self._fingerprint))
        return token

    def _ensure_token(self, force: bool, stale: Token | None) -> Generator[httpx.Request, httpx.Response, Token]:
        with self._lock:
            token = self.cached_token()
            # Another thread may have refreshed while we waited for the lock.
            if token is not None and not (force and token is stale):
                return token
            response = yield self.build_refresh_request()
            token = self._accept(response)
        if self.on_token:
            self.on_token(token)
        return token

    def token(self) -> Token | None:
        """The current usable token without any I/O (``None`` if a refresh is due)."""
        return self.cached_token()

    def ensure(self, client: httpx.Client) -> Token:
        """Return a usable token, refreshing through ``client`` first if needed (e.g. to learn the API host)."""
        with self._lock:
            token = self.cached_token()
            if token is not None:
                return token
            token = self._accept(client.send(self.build_refresh_request(), auth=None))
        if self.on_token:
            self.on_token(token)
        return token

    # -- httpx.Auth -------------------------------------------------------------------------------------

    def _authorize(self, request: httpx.Request, token: Token) -> None:
        if request.url.host.lower() in self.api_hosts:
            request.headers["Authorization"] = f"{self.scheme} {token.access_token}"
        else:
            request.headers.pop("Authorization", None)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.host.lower() not in self.api_hosts:
            request.headers.pop("Authorization", None)
            yield request
            return
        token = yield from self._ensure_token(force=False, stale=None)
        self._authorize(request, token)
        response = yield request
        if not self.is_invalid_token(response):
            return
        log.info(
            "%s: the access token was refused (HTTP %d); renewing it once",
            describe_request(request),
            response.status_code,
        )
        response.read()
        token = yield from self._ensure_token(force=True, stale=token)
        self._authorize(request, token)
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> Any:  # pragma: no cover - sync only
        raise NotImplementedError("OAuthRefreshAuth supports the synchronous client only")
        yield request
