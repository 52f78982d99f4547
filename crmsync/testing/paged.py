"""A respx double of a typical paged JSON REST API, ready for connectors built like the scaffold's example.

The API it serves (subclass and override ``render``/``resource``/``field_names``/``handle``/``list_page``/``update``
to match another shape)::

    GET   /contacts|/orders|/activities?page=1&per_page=100&updated_after=ISO   (or &updated_since=ISO)
          -> {"data": [...], "meta": {"page": 1, "per_page": 100, "next_page": 2 | null}}
             sorted by updated_at then id; updated_after is exclusive, updated_since inclusive; page < 1 reads
             as page 1; a filter time without an offset is refused (400)
    GET   /deleted?resource=contacts&deleted_after=ISO -> {"data": [{"id": ..., "deleted_at": ...}]}
    PATCH /contacts  {"data": [{"id": ..., "loyalty_tier": ...}]}  (1 to 100 records; 400 otherwise)
          -> {"data": [{"id": ..., "status": "success"} | {"id", "status": "error", "field", "message"}]}
             a member the kit dropped from answers is neither written nor answered
    GET   /fields -> {"fields": [{"name": "loyalty_tier", "type": "text"}, ...]}

Every call needs ``Authorization: Bearer <token>`` (401 otherwise). Datetimes are rendered with a +08:00 offset
(``time_style="offset"``), in UTC with ``Z`` (``"utc"``) or without an offset in the connector's zone
(``"naive"``), and amounts as strings, as real APIs do, so a connector that drops offsets, reads ``Z`` or naive
times in the wrong zone, or reads money as float is caught by the kit's comparison with the canonical values.
A record the kit corrupted is served with an impossible value in one field (:data:`MALFORMED`); one it blanked
without its date (``null``); a value a record lacks (an email, a currency, see ``omit_optional``) is left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import httpx
import respx

from crmsync.connector import Stream
from crmsync.testing.double import InMemoryCrm

_OFFSET = timezone(timedelta(hours=8))

MALFORMED: Mapping[str, str] = {
    "created_at": "31/02/2024 25:61",
    "total": "19,9O",
    "occurred_at": "yesterday",
}
"""The unreadable value a corrupted record is served with, by the API field that holds it."""


def iso(value: datetime) -> str:
    """An aware datetime as ISO 8601 with a +08:00 offset."""
    return value.astimezone(_OFFSET).isoformat()


class PagedJsonApi(InMemoryCrm):
    """In-memory paged JSON API served through a respx router (see the module docstring for its shape).

    Args:
        page_size: records per page the double's ``settings()`` asks for (keep it small: pages must end
            inside clusters of equal timestamps).
        time_style: ``"offset"`` (``+08:00``), ``"utc"`` (``...Z``) or ``"naive"`` (the connector's zone).
    """

    base_url = "https://crm.example.test/api/v1"
    token = "kit-token-5f1c9a7e2b"
    max_page_size = 100
    """Records per page and per write call the API accepts."""
    resource: Mapping[Stream, str] = {
        Stream.MEMBERS: "contacts",
        Stream.ORDERS: "orders",
        Stream.ACTIVITIES: "activities",
    }
    field_names: Mapping[str, str] = {
        "tier": "loyalty_tier",
        "points": "loyalty_points",
        "tags": "loyalty_tags",
        "rfm_segment": "rfm_segment",
        "lifecycle": "lifecycle_stage",
    }
    malformed_field: Mapping[Stream, str] = {
        Stream.MEMBERS: "created_at",
        Stream.ORDERS: "total",
        Stream.ACTIVITIES: "occurred_at",
    }
    """The API field a corrupted record of each stream is served with an unreadable value in."""
    required_field: Mapping[Stream, str] = {Stream.ORDERS: "placed_at", Stream.ACTIVITIES: "occurred_at"}
    """The API field a blanked record of each stream is served without (JSON null)."""

    def __init__(self, page_size: int = 3, time_style: Literal["offset", "utc", "naive"] = "offset") -> None:
        super().__init__()
        self.page_size = page_size
        self.time_style = time_style
        self.router = respx.MockRouter(base_url=self.base_url, assert_all_called=False)
        self.router.route().mock(side_effect=self.handle)

    def settings(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "api_token": self.token, "page_size": self.page_size}

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self.router.handler)

    def __enter__(self) -> PagedJsonApi:
        self.router.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.router.stop()

    # ---------------------------------------------------------------- rendering
    def time(self, value: datetime | None) -> str | None:
        """A datetime as this API writes it (see ``time_style``); ``None`` stays ``None``."""
        if value is None:
            return None
        if self.time_style == "utc":
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.time_style == "naive":
            return value.astimezone(self.timezone).replace(tzinfo=None).isoformat()
        return iso(value)

    def render(self, stream: Stream, record: Mapping[str, Any]) -> dict[str, Any]:
        """One record as the API returns it; a value the record lacks (``None``) is left out."""
        t = self.time
        if stream is Stream.MEMBERS:
            out = {k: record[k] for k in ("email", "first_name", "last_name")}
            out.update(created_at=t(record["created_at"]))
        elif stream is Stream.ORDERS:
            out = {
                "contact_id": record["member_external_id"],
                "placed_at": t(record["placed_at"]),
                "total": str(record["amount"]),
                "currency": record["currency"],
                "status": record["status"],
            }
        else:
            out = {
                "contact_id": record["member_external_id"],
                "type": record["kind"],
                "occurred_at": t(record["occurred_at"]),
            }
        out = {"id": record["external_id"], **{k: v for k, v in out.items() if v is not None}}
        out["updated_at"] = t(record["updated_at"])
        if record["external_id"] in self.malformed[stream]:
            field = self.malformed_field[stream]
            out[field] = MALFORMED.get(field, "\ufffdunreadable\ufffd")
        if record["external_id"] in self.blanked[stream]:
            out[self.required_field[stream]] = None
        return out

    @staticmethod
    def error(status: int, message: str, **headers: str) -> httpx.Response:
        return httpx.Response(status, json={"error": message}, headers=headers)

    # ---------------------------------------------------------------- request handling
    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request: a queued failure first, then the token, then the route."""
        self.requests.append(request)
        failure = self.next_failure()
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
            reason = {429: "rate_limited", 400: "bad_request", 401: "invalid_token", 403: "forbidden"}
            return self.error(
                status, reason.get(status, "server_error" if status >= 500 else "client_error"), **headers
            )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.error(401, "invalid_token")
        path = request.url.path.removeprefix(httpx.URL(self.base_url).path)
        by_path = {f"/{name}": stream for stream, name in self.resource.items()}
        if request.method == "GET" and path in by_path:
            return self.list_page(by_path[path], request.url.params)
        if request.method == "GET" and path == "/deleted":
            return self.list_deleted(request.url.params)
        if request.method == "PATCH" and path == f"/{self.resource[Stream.MEMBERS]}":
            return self.update(request)
        if request.method == "GET" and path == "/fields":
            names = [n for f, n in self.field_names.items() if f not in self.missing_fields]
            return httpx.Response(200, json={"fields": [{"name": n, "type": "text"} for n in names]})
        return self.error(404, "not_found")

    def changed_since(self, stream: Stream, params: httpx.QueryParams) -> list[Mapping[str, Any]]:
        """The records the filter parameters select, oldest change first (ties by id).

        Raises:
            ValueError: a filter time that is not ISO 8601 with an offset.
        """
        rows = sorted(self.records[stream].values(), key=lambda r: (r["updated_at"], r["external_id"]))
        for name, keep in (("updated_after", datetime.__gt__), ("updated_since", datetime.__ge__)):
            if name in params:
                when = datetime.fromisoformat(params[name].replace("Z", "+00:00"))
                if when.tzinfo is None:
                    raise ValueError(f"{name} has no offset")
                rows = [r for r in rows if keep(r["updated_at"], when)]
        return rows

    def list_page(self, stream: Stream, params: httpx.QueryParams) -> httpx.Response:
        try:
            page = max(1, int(params.get("page", "1")))
            per_page = int(params.get("per_page", str(self.max_page_size)))
            rows = self.changed_since(stream, params)
        except ValueError:
            return self.error(400, "invalid_parameter")
        if not 1 <= per_page <= self.max_page_size:
            return self.error(400, "invalid_parameter")
        chunk = rows[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(rows)
        meta = {"page": page, "per_page": per_page, "next_page": page + 1 if more else None}
        return httpx.Response(200, json={"data": [self.render(stream, r) for r in chunk], "meta": meta})

    def list_deleted(self, params: httpx.QueryParams) -> httpx.Response:
        streams = {name: stream for stream, name in self.resource.items()}
        if params.get("resource") not in streams:
            return self.error(400, "invalid_parameter")
        try:
            after = datetime.fromisoformat(params["deleted_after"]) if "deleted_after" in params else None
        except ValueError:
            return self.error(400, "invalid_parameter")
        if after is not None and after.tzinfo is None:
            return self.error(400, "invalid_parameter")
        gone = self.deleted_at[streams[params["resource"]]]
        data = [{"id": i, "deleted_at": self.time(t)} for i, t in sorted(gone.items()) if after is None or t > after]
        return httpx.Response(200, json={"data": data})

    def update(self, request: httpx.Request) -> httpx.Response:
        try:
            rows = json.loads(request.content).get("data")
        except (ValueError, AttributeError):
            return self.error(400, "the body must be a JSON object")
        if not isinstance(rows, list) or not 1 <= len(rows) <= self.max_page_size:
            return self.error(400, f"data must hold 1 to {self.max_page_size} records")
        by_name = {n: f for f, n in self.field_names.items()}
        log, results = self.begin_write(), []
        for row in rows:
            member_id = str(row.get("id"))
            if not self.answers(member_id):
                continue
            log.append(member_id)
            unknown = [k for k in row if k != "id" and k not in by_name]
            values = {by_name[k]: v for k, v in row.items() if k in by_name}
            refused = (unknown[0], f"unknown field {unknown[0]}") if unknown else self.write(member_id, values)
            if refused:
                results.append({"id": member_id, "status": "error", "field": refused[0], "message": refused[1]})
            else:
                results.append({"id": member_id, "status": "success"})
        return httpx.Response(200, json={"data": results})
