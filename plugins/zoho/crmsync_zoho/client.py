"""Zoho CRM REST protocol: hosts and token, paging, ``fields`` chunking, error envelopes, call kinds.

:class:`ZohoClient` wraps the shared client (``context.http(...)``) with Zoho's OAuth flavour
(``Zoho-oauthtoken`` scheme, ``INVALID_TOKEN`` answers, ``api_domain`` from the token answer) and reads
JSON with :class:`~decimal.Decimal` numbers so money never passes through float.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from crmsync import AuthError, ConnectorContext, FatalAPIError
from crmsync.helpers import OAuthRefreshAuth, Paginator, Token, describe_request
from crmsync_zoho.limits import ZohoLimitsTransport
from crmsync_zoho.settings import ZohoSettings

PER_PAGE = 200
PAGE_LIMIT = 2000
"""Records reachable with ``page``; beyond it Zoho wants ``page_token``."""
MAX_FIELDS = 50
INVALID_TOKEN_CODES = frozenset({"INVALID_TOKEN", "AUTHENTICATION_FAILURE"})


def loads(content: bytes) -> Any:
    """Parse a Zoho JSON body; numbers with a fraction become :class:`Decimal`."""
    return json.loads(content, parse_float=Decimal)


def error_code(response: httpx.Response) -> str | None:
    """The ``code`` of a Zoho error envelope (top level or first ``data`` element), if any."""
    try:
        body = loads(response.content) if response.content else None
    except ValueError:
        return None
    if isinstance(body, dict):
        if "code" in body:
            return str(body["code"])
        data = body.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return data[0].get("code")
    return None


def _read_params(fields: Sequence[str] | None) -> tuple[dict[str, Any], list[list[str]]]:
    """Query of a records read (oldest change first), and the fields beyond the first 50 (read by ``ids``)."""
    params: dict[str, Any] = {"per_page": PER_PAGE}
    if fields is None:  # deleted records
        return params | {"type": "all"}, []
    names = list(dict.fromkeys(fields))
    if "Modified_Time" in names:  # the first call carries what the cursor needs
        names.insert(0, names.pop(names.index("Modified_Time")))
    rest = [names[i : i + MAX_FIELDS] for i in range(MAX_FIELDS, len(names), MAX_FIELDS)]
    params |= {"fields": ",".join(names[:MAX_FIELDS]), "sort_by": "Modified_Time", "sort_order": "asc"}
    return params, rest


def is_invalid_token(response: httpx.Response) -> bool:
    return response.status_code == 401 and error_code(response) in INVALID_TOKEN_CODES


def classify(request: httpx.Request) -> str:
    """Endpoint kind of a Zoho call, for ``context.api_calls``."""
    path = request.url.path
    parts = [p for p in path.split("/") if p]
    if path.endswith("/oauth/v2/token"):
        return "oauth token"
    if "bulk" in parts[:2]:
        after = parts[parts.index("bulk") + 1 :]
        if after and re.fullmatch(r"v\d+(\.\d+)?", after[0]):
            after = after[1:]
        op = after[0] if after else "?"
        step = "create" if len(after) == 1 else ("download" if after[-1] == "result" else "status")
        return f"bulk_{op} {step}"
    if "upload" in parts:
        return "bulk_write upload"
    if len(parts) >= 3 and parts[2] == "settings":
        module = request.url.params.get("module", "?")
        return f"{'create_fields' if request.method == 'POST' else 'fields'} {module}"
    if len(parts) >= 3 and parts[2] == "org":
        return "org"
    if len(parts) >= 3:
        module = parts[2]
        if len(parts) >= 4 and parts[3] == "deleted":
            return f"deleted {module}"
        if len(parts) >= 5 and parts[3] == "actions":
            return f"{parts[4]} {module}"
        verb = {"GET": "read", "PUT": "update", "POST": "insert", "DELETE": "delete"}.get(request.method, "call")
        return f"{verb} {module}"
    return f"{request.method} {path}"


@dataclass
class Page:
    records: list[dict[str, Any]]
    info: dict[str, Any]


class ServerClock:
    """The server's time when a read began: the ``Date`` header of its first answer (``None`` without one)."""

    def __init__(self) -> None:
        self.first: datetime | None = None
        self._seen = False

    def see(self, response: httpx.Response) -> None:
        if self._seen:
            return
        self._seen = True
        try:
            when = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
        except (TypeError, ValueError):
            return
        self.first = when if when.tzinfo is not None else None


class ZohoClient:
    """Authenticated calls to one Zoho org."""

    def __init__(self, settings: ZohoSettings, context: ConnectorContext, **http_options: Any) -> None:
        self.settings = settings
        self.context = context
        accounts, api, upload = settings.urls
        self.accounts_url = accounts
        self._api = api
        self.upload_url = upload
        self.label = f"Zoho data centre {settings.data_centre.value} ({httpx.URL(accounts).host})"
        token_key = f"zoho:{context.name}:token"
        if context.state.get(token_key) is not None:
            context.state.set(token_key, None)  # a token an earlier version cached in clear
        self.auth = OAuthRefreshAuth(
            token_url=f"{accounts}/oauth/v2/token",
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            refresh_token=settings.refresh_token,
            state=context.secrets,
            api_hosts=[httpx.URL(api).host, httpx.URL(upload).host],
            scheme="Zoho-oauthtoken",
            is_invalid_token=is_invalid_token,
            label=self.label,
            state_key=token_key,
            on_token=self._renewed,
        )
        options: dict[str, Any] = {
            "auth": self.auth,
            "classify": classify,
            "rate_per_minute": settings.rate_per_minute,
            "concurrency": settings.concurrency,
            "max_retries": settings.max_retries,
            "max_retry_wait": settings.retry_budget_seconds,
            "timeout": settings.timeout_seconds,
        }
        options.update(http_options)
        # Zoho's 429s are told apart under the shared client's retries; a host's own client factory that picks
        # the transport itself (the conformance kit's) keeps it.
        self.limits: ZohoLimitsTransport | None = None
        if options.get("transport") is not None or context.http_factory is None:
            inner = options.get("transport") or httpx.HTTPTransport()
            options["transport"] = self.limits = ZohoLimitsTransport(inner, context.logger)
        self.http = context.http(**options)

    # -- hosts ------------------------------------------------------------------------------------------

    def _renewed(self, token: Token) -> None:
        minutes = max(0.0, token.expires_at - time.time()) / 60
        self.context.logger.info("%s: new access token from %s, valid %.0f min", self.context.name,
                                 httpx.URL(self.accounts_url).host, minutes)  # fmt: skip
        self._learn_api_domain(token)

    def _learn_api_domain(self, token: Token) -> None:
        """Use the token answer's ``api_domain`` once it is known to belong with the accounts server."""
        if self.settings.api_url or not token.api_domain:
            return
        api = self.settings.api_url_from_token(token.api_domain)
        if api != self._api:
            self._api = api
            self.auth.allow_host(httpx.URL(api).host)

    @property
    def api_url(self) -> str:
        """The API domain: the configured override, else the token answer's ``api_domain``."""
        return self._api

    def connect(self) -> Token:
        """Make sure a token is at hand (one refresh at most), which also settles the API host."""
        token = self.auth.ensure(self.http)
        self._learn_api_domain(token)
        return token

    def url(self, path: str) -> str:
        """Absolute URL of a REST path on the API host (settling the host through the token first)."""
        self.connect()
        return f"{self._api}/crm/{self.settings.api_version}/{path.lstrip('/')}"

    def bulk_url(self, path: str) -> str:
        self.connect()
        return f"{self._api}/crm/bulk/{self.settings.api_version}/{path.lstrip('/')}"

    # -- calls ------------------------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.connect()
        return self.http.request(method, url, **kwargs)

    def fail(self, response: httpx.Response) -> None:
        """Raise the error an unusable answer stands for (auth problems are :class:`AuthError`)."""
        code = error_code(response) or f"HTTP {response.status_code}"
        where = describe_request(response.request)
        try:
            message = loads(response.content).get("message", "") if response.content else ""
        except (ValueError, AttributeError):
            message = ""
        text = f"{where}: {code}" + (f" ({message})" if message else "")
        if response.status_code == 401 and code == "OAUTH_SCOPE_MISMATCH":
            raise AuthError(f"{text}: the token lacks a scope this call needs", hint="see the scopes in the README")
        if response.status_code in (401, 403):
            raise AuthError(f"{text} at {self.label}")
        raise FatalAPIError(text)

    def json(self, method: str, url: str, *, ok: Sequence[int] = (200, 201), **kwargs: Any) -> Any:
        """Call and parse; ``None`` for 204/304 (bodies never parsed); anything else not in ``ok`` raises."""
        return self.exchange(method, url, ok=ok, **kwargs)[0]

    def exchange(
        self, method: str, url: str, *, ok: Sequence[int] = (200, 201), **kwargs: Any
    ) -> tuple[Any, httpx.Response]:
        """:meth:`json` and the response it came with (its headers)."""
        response = self.request(method, url, **kwargs)
        if response.status_code in (204, 304):
            return None, response
        if response.status_code not in ok:
            self.fail(response)
        try:
            body = loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):  # a truncated body, or a proxy's HTML page
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise FatalAPIError(
                f"{describe_request(response.request)}: HTTP {response.status_code} answer is not a JSON object "
                f"({kind}, {len(response.content)} bytes)"
            )
        return body, response

    # -- records ----------------------------------------------------------------------------------------

    def records(
        self,
        module: str,
        fields: Sequence[str] | None,
        *,
        since: datetime | None = None,
        path: str = "",
        on_response: Callable[[httpx.Response], None] | None = None,
    ) -> Iterator[Page]:
        """Pages of ``module`` oldest change first with every field in ``fields`` (or of ``module/deleted``).

        ``page`` is used for the first 2,000 records and ``page_token`` after; more than 50 fields are
        fetched in extra calls by ``ids`` and merged, never dropped. ``on_response`` sees each page's answer
        (its ``Date``), a 304 or 204 included.
        """
        headers = {"If-Modified-Since": since.isoformat(timespec="seconds")} if since else {}
        params, rest = _read_params(fields)
        target = self.url(f"{module}/{path}" if path else module)
        pages: Paginator[tuple[str, Any]] = Paginator(f"{module}{'/' + path if path else ''}", ("page", 1))
        for kind, position in pages:
            query = params | ({"page": position} if kind == "page" else {"page_token": position})
            body, response = self.exchange("GET", target, params=query, headers=headers)
            if on_response is not None:
                on_response(response)
            if body is None:
                return
            records = list(body.get("data") or [])
            info = dict(body.get("info") or {})
            if kind == "page" and info.get("page") not in (None, position):
                # a cached or replayed page: going on would move the cursor past records never received
                raise FatalAPIError(
                    f"{module}{'/' + path if path else ''}: page {position} repeats page {info.get('page')} (a caching "
                    "proxy?); stopped so that no record is skipped, the next run resumes"
                )
            after, stuck = self._next_page(module, kind, position, info)
            pages.advance(after, [r.get("id") for r in records if isinstance(r, dict)])
            for chunk in rest:
                self._merge_fields(module, records, chunk)
            yield Page(records, info)
            if stuck is not None:
                raise stuck

    @staticmethod
    def _next_page(
        module: str, kind: str, position: Any, info: dict[str, Any]
    ) -> tuple[tuple[str, Any] | None, FatalAPIError | None]:
        """The next page (by number up to 2,000 records, then by ``next_page_token``; ``None`` after the last), or
        the error to raise once this page is handed over (more records announced without a way to reach them)."""
        if not info.get("more_records"):
            return None, None
        if kind == "page" and position * PER_PAGE < PAGE_LIMIT:
            return ("page", position + 1), None
        token = info.get("next_page_token")
        if not token:
            return None, FatalAPIError(f"{module}: more records announced but no next_page_token to reach them")
        return ("token", token), None

    def _merge_fields(self, module: str, records: list[dict[str, Any]], fields: list[str]) -> None:
        by_id = {str(r["id"]): r for r in records}
        if not by_id:
            return
        body = self.json("GET", self.url(module), params={"ids": ",".join(by_id), "fields": ",".join(fields)})
        for extra in (body or {}).get("data") or []:
            target = by_id.get(str(extra.get("id")))
            if target is not None:
                target.update({k: v for k, v in extra.items() if k != "id"})

    def org_id(self) -> str:
        """The org's zgid (the ``X-CRM-ORG`` header of Bulk Write uploads): the ``org_id`` setting, else looked up
        with ``GET /org`` once and kept in the connector state (it never changes for an org)."""
        if self.settings.org_id:
            return self.settings.org_id
        self.connect()  # settles the API host the key names
        key = f"zoho:{self.context.name}:org:{httpx.URL(self._api).host}"
        cached = self.context.state.get(key)
        if cached:
            return cached
        org = ((self.json("GET", self.url("org")) or {}).get("org") or [{}])[0]
        zgid = str(org.get("zgid") or org.get("id") or "")
        if not zgid:
            raise FatalAPIError("GET org: the answer carries no zgid (needed by Bulk Write uploads)")
        self.context.state.set(key, zgid)
        return zgid

    # -- the connector's own CRM user ------------------------------------------------------------------

    @property
    def _user_key(self) -> str:
        return f"zoho:{self.context.name}:user"

    def own_user(self) -> str | None:
        """The id of the CRM user crmsync acts as, once a write or bulk job answer has named it."""
        return self.context.state.get(self._user_key)

    def note_user(self, user: Any) -> None:
        """Remember the user a write answer names (``Modified_By`` / ``created_by``: ``{"id": ...}``)."""
        uid = str(user.get("id") or "") if isinstance(user, dict) else ""
        if uid and uid != self.own_user():
            self.context.state.set(self._user_key, uid)

    def fields_metadata(self, module: str) -> list[dict[str, Any]]:
        body = self.json("GET", self.url("settings/fields"), params={"module": module})
        return list((body or {}).get("fields") or [])

    def update(self, module: str, data: list[dict[str, Any]], trigger: Sequence[str]) -> list[dict[str, Any]]:
        """PUT up to 100 records; the per-record answers in input order (200, 207 and 400 all carry them)."""
        response = self.request("PUT", self.url(module), json={"data": data, "trigger": list(trigger)})
        if response.status_code in (200, 201, 202, 207, 400):
            try:
                body = loads(response.content)
            except ValueError:
                body = None
            results = body.get("data") if isinstance(body, dict) else None
            if isinstance(results, list) and (response.status_code != 400 or len(results) == len(data)):
                return results
        self.fail(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.http.close()
