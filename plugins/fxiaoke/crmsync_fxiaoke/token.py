"""The access token and the operator: fetched, cached sealed in the store, renewed before they lapse.

Two generations of the API are served side by side:

* ``header`` (current): ``POST /oauth2.0/token`` (``appId``, ``appSecret``, ``permanentCode``,
  ``grantType=app_secret``) returns ``accessToken`` and ``ea``; each call sends ``authorization: Bearer …``,
  ``x-fs-ea`` and ``x-fs-userid`` headers.
* ``legacy``: ``POST /cgi/corpAccessToken/get/V2`` returns ``corpAccessToken`` and ``corpId``; each call puts
  them and ``currentOpenUserId`` at the top of its JSON body.

A token lives 7,200 s; asking again after 6,600 s issues a new one while the old one stays valid until 7,200 s,
so the cache renews at ``expiresIn - RENEW_MARGIN`` (and at once when a call answers 20016).

The token is a usable credential for up to two hours, so it is cached in ``context.secrets`` (encrypted with a
key derived from ``app_secret`` and ``permanent_code``, which live in the environment), never in the plain
connector state; a token an earlier version left there in clear is removed the first time the cache is read.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crmsync import AuthError, ConnectorContext
from crmsync.helpers import register_secret
from crmsync_fxiaoke.errors import ApiError, raise_for
from crmsync_fxiaoke.settings import FxiaokeSettings

RENEW_MARGIN = 500.0
"""Seconds before the end of a token's life at which it is renewed (6,700 s into a 7,200 s token)."""
TOKEN_PATHS = {"header": "/oauth2.0/token", "legacy": "/cgi/corpAccessToken/get/V2"}
Post = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass
class Token:
    value: str
    org: str
    """``ea`` (header style) or ``corpId`` (legacy)."""
    renew_at: float

    def __repr__(self) -> str:
        return f"<Token org={self.org!r} value=***>"


class TokenCache:
    """One token per connector, shared through ``context.secrets`` by every run of the same store."""

    def __init__(
        self, settings: FxiaokeSettings, context: ConnectorContext, post: Post, *, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.context = context
        self._post = post
        self.clock = clock
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._operator: str | None = settings.user_id
        self._key = f"fxiaoke:{context.name}:token"
        self._cleared = False

    # -- token ------------------------------------------------------------------------------------------

    def _clear_plain(self) -> None:
        """Remove a token an earlier version cached in clear in the connector state (once per process)."""
        if not self._cleared:
            self._cleared = True
            if self.context.state.get(self._key) is not None:
                self.context.state.set(self._key, None)
                self.context.logger.info("%s: removed an access token cached in clear by an earlier version",
                                         self.context.name)  # fmt: skip

    def _load(self) -> Token | None:
        self._clear_plain()
        raw = self.context.secrets.get(self._key)
        try:
            data = json.loads(raw) if raw else None
            if not data or data.get("style") != self.settings.auth_style or data.get("app") != self.settings.app_id:
                return None
            token = Token(str(data["token"]), str(data["org"]), float(data["renew_at"]))
        except (ValueError, KeyError, TypeError):
            return None
        register_secret(token.value)
        return token

    def _fetch(self) -> Token:
        style = self.settings.auth_style
        body = {
            "appId": self.settings.app_id,
            "appSecret": self.settings.app_secret.get_secret_value(),
            "permanentCode": self.settings.permanent_code.get_secret_value(),
        }
        if style == "header":
            body["grantType"] = "app_secret"
        self.context.logger.info("%s: requesting an access token (%s style)", self.context.name, style)
        answer = self._post(TOKEN_PATHS[style], body)
        code = answer.get("errorCode")
        value = answer.get("accessToken" if style == "header" else "corpAccessToken")
        org = answer.get("ea" if style == "header" else "corpId")
        if code != 0 or not value or not org:
            where = f"POST {TOKEN_PATHS[style]}: errorCode {code} ({answer.get('errorMessage') or 'no token'})"
            message = str(answer.get("errorMessage") or "")
            if isinstance(code, int) and code != 0:
                with contextlib.suppress(ApiError):  # any other code: refused below
                    raise_for(code, where, message, connector=self.context.name, clock=self.clock)
            raise AuthError(f"{where}: the token was refused", connector=self.context.name)
        register_secret(str(value))
        try:
            lifetime = float(answer.get("expiresIn") or 7200)
        except (TypeError, ValueError):
            lifetime = 7200.0
        renew_in = lifetime - RENEW_MARGIN if lifetime > 2 * RENEW_MARGIN else lifetime / 2
        token = Token(str(value), str(org), self.clock() + renew_in)
        self.context.logger.info("%s: new access token for %s, valid %.0f s, renewed after %.0f s",
                                 self.context.name, token.org, lifetime, renew_in)  # fmt: skip
        self.context.secrets.set(
            self._key,
            json.dumps({"style": style, "app": self.settings.app_id, "token": token.value, "org": token.org,
                        "renew_at": token.renew_at}),
        )  # fmt: skip
        return token

    def get(self) -> Token:
        """A token that is good for a while yet (fetched or renewed if needed; never two fetches at once)."""
        with self._lock:
            token = self._token or self._load()
            if token is not None and self.clock() >= token.renew_at:
                self.context.logger.info("%s: the cached access token is due for renewal", self.context.name)
                token = None
            if token is None:
                token = self._fetch()
            self._token = token
            return token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self.context.secrets.set(self._key, None)

    # -- operator ---------------------------------------------------------------------------------------

    def operator(self, token: Token) -> str:
        """The operator id; in legacy style found once from ``operator_mobile`` when ``user_id`` is not set."""
        if self._operator:
            return self._operator
        key = f"fxiaoke:{self.context.name}:operator:{self.settings.operator_mobile}"
        found = self.context.state.get(key)
        if not found:
            body = {"corpAccessToken": token.value, "corpId": token.org, "mobile": self.settings.operator_mobile}
            answer = self._post("/cgi/user/getByMobile", body)
            employees = answer.get("empList") or []
            if answer.get("errorCode") != 0 or not employees or not employees[0].get("openUserId"):
                raise AuthError(
                    f"POST /cgi/user/getByMobile: no employee with the configured operator_mobile "
                    f"(errorCode {answer.get('errorCode')})",
                    connector=self.context.name,
                    hint="set user_id to the operator's FSUID_… openUserId instead",
                )
            found = str(employees[0]["openUserId"])
            self.context.state.set(key, found)
        self._operator = found
        return found

    def sign(self, body: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
        """Headers and body of a business call carrying the token and the operator in the configured style."""
        token = self.get()
        user = self.operator(token)
        if self.settings.auth_style == "header":
            headers = {"authorization": f"Bearer {token.value}", "x-fs-ea": token.org, "x-fs-userid": user}
            return headers, body
        return {}, {"corpAccessToken": token.value, "corpId": token.org, "currentOpenUserId": user, **body}
