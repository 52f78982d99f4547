"""A correct connector for the paged JSON API that :class:`crmsync.testing.PagedJsonApi` serves.

The broken connectors beside it subclass it and override one method each, so every one differs from a
correct connector by exactly one bug.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from crmsync import (
    Activity,
    AuthError,
    Batch,
    Capability,
    CheckResult,
    Connector,
    ConnectorSpec,
    FatalAPIError,
    Member,
    Order,
    ProfileChange,
    Record,
    RecordResult,
    Rejection,
    Stream,
)
from crmsync.helpers import BadValue, CursorCodec, Watermark, describe_request, parse_decimal, parse_time, safe_repr

RESOURCE = {Stream.MEMBERS: "contacts", Stream.ORDERS: "orders", Stream.ACTIVITIES: "activities"}
FIELDS = {
    "tier": "loyalty_tier",
    "points": "loyalty_points",
    "tags": "loyalty_tags",
    "rfm_segment": "rfm_segment",
    "lifecycle": "lifecycle_stage",
}
OVERLAP = timedelta(seconds=60)
"""Each pull re-reads this much before the newest change it delivered (changes committed late)."""
CODEC = CursorCodec(
    "reference",
    1,
    lambda marks: {k: m.to_json() for k, m in marks.items()},
    {1: lambda d: {k: Watermark.from_json(d[k]) for k in ("records", "deleted")}},
    lambda: {"records": Watermark(), "deleted": Watermark()},
)


class ExampleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https://")
    api_token: SecretStr
    page_size: int = Field(100, ge=1, le=100)


class ReferenceConnector(Connector):
    since_param = "updated_since"
    """Inclusive: the overlap window before the watermark is read again."""
    overlap = OVERLAP
    capabilities = frozenset(
        {
            Capability.PULL_MEMBERS,
            Capability.PULL_ORDERS,
            Capability.PULL_ACTIVITIES,
            Capability.PUSH_PROFILES,
            Capability.INCREMENTAL,
            Capability.DELETIONS,
        }
    )

    def __init__(self, settings: ExampleSettings, context: Any) -> None:
        super().__init__(settings, context)
        self.settings: ExampleSettings = settings
        self.client = self.make_client()

    def make_client(self) -> Any:
        token = self.settings.api_token.get_secret_value()
        return self.context.http(base_url=self.settings.base_url, headers={"Authorization": f"Bearer {token}"})

    def __repr__(self) -> str:
        return safe_repr(self, ["name"], ["api_token"])

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code in (401, 403):
            raise AuthError(f"{describe_request(response.request)}: HTTP {response.status_code}", connector=self.name)
        if response.is_error:
            raise FatalAPIError(
                f"{describe_request(response.request)}: HTTP {response.status_code}", connector=self.name
            )
        return response.json()

    def get_page(self, stream: Stream, page: int, since: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "per_page": self.settings.page_size}
        if since:
            params[self.since_param] = since
        return self.request("GET", f"/{RESOURCE[stream]}", params=params)

    def pages(self, stream: Stream, since: str | None) -> Iterator[list[dict[str, Any]]]:
        page: int | None = 1
        while page is not None:
            body = self.get_page(stream, page, since)
            yield body["data"]
            page = body["meta"]["next_page"]

    def deleted(self, stream: Stream, since: str | None) -> list[dict[str, Any]]:
        params = {"resource": RESOURCE[stream], **({"deleted_after": since} if since else {})}
        return self.request("GET", "/deleted", params=params)["data"]

    # ------------------------------------------------------------------ pull
    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        marks = CODEC.loads(cursor)
        mark = marks["records"]
        since, start = mark.since(self.overlap), mark.at
        for page, rows in enumerate(self.pages(stream, since.isoformat() if since else None), 1):
            fresh = []
            for row in rows:
                when = self.parse_time(row["updated_at"])
                # skip only a version an earlier pull delivered (read again through the overlap window)
                if start is None or when > start or not mark.delivered(str(row["id"]), when):
                    mark.note(str(row["id"]), when)
                    fresh.append(row)
            records, rejects = self.map_rows(stream, fresh)
            mark.prune(self.overlap)
            yield Batch(stream, records, rejects=rejects, cursor=self.checkpoint(marks, page))
        gone = self.new_deletions(stream, self.deletion_mark(marks)) if cursor else []
        yield Batch(stream, deleted=gone, cursor=CODEC.dumps(marks))

    def checkpoint(self, marks: dict[str, Watermark[datetime]], page: int) -> str | None:
        """The cursor of a page's batch: none until every page is stored (a crash re-reads the pull)."""
        return None

    def deletion_mark(self, marks: dict[str, Watermark[datetime]]) -> Watermark[datetime]:
        return marks["deleted"]

    def new_deletions(self, stream: Stream, mark: Watermark[datetime]) -> list[str]:
        since, gone = mark.since(self.overlap), []
        for row in self.deleted(stream, since.isoformat() if since else None):
            when = self.parse_time(row["deleted_at"])
            if not mark.delivered(str(row["id"]), when):
                mark.note(str(row["id"]), when)
                gone.append(str(row["id"]))
        mark.prune(self.overlap)
        return gone

    def utc(self, text: str) -> str:
        return self.parse_time(text).astimezone(UTC).isoformat()

    def parse_time(self, text: str) -> datetime:
        when = parse_time(text, "time", self.context.timezone)
        if when is None:
            raise BadValue("time", "missing")
        return when

    def map_rows(self, stream: Stream, rows: Sequence[dict[str, Any]]) -> tuple[list[Record], list[Rejection]]:
        records: list[Record] = []
        rejects: list[Rejection] = []
        for row in rows:
            try:
                records.append(self.to_record(stream, row))
            except (KeyError, ValueError, ValidationError) as exc:
                rejects.append(Rejection(stream, f"{RESOURCE[stream]} {row.get('id')}", None, str(exc), row.get("id")))
        return records, rejects

    def to_record(self, stream: Stream, row: dict[str, Any]) -> Record:
        common = {"source": self.name, "external_id": str(row["id"])}
        if stream is Stream.MEMBERS:
            return self.build(
                Member,
                **common,
                email=row.get("email"),
                first_name=row.get("first_name"),
                last_name=row.get("last_name"),
                created_at=parse_time(row.get("created_at"), "created_at", self.context.timezone),
                updated_at=self.parse_time(row["updated_at"]),
            )
        if stream is Stream.ORDERS:
            return self.build(
                Order,
                **common,
                member_external_id=row.get("contact_id"),
                placed_at=self.parse_time(row["placed_at"]),
                amount=self.money(row["total"]),
                currency=self.currency(row),
                status=row["status"],
                updated_at=self.parse_time(row["updated_at"]),
            )
        return self.build(
            Activity,
            **common,
            member_external_id=row.get("contact_id"),
            kind=row["type"],
            occurred_at=self.parse_time(row["occurred_at"]),
        )

    def build(self, model: type[Record], **values: Any) -> Record:
        return model(**values)

    def money(self, text: str) -> Any:
        return parse_decimal(text, "total")

    def currency(self, row: dict[str, Any]) -> str:
        return row.get("currency") or self.context.base_currency  # an order without one is in the home currency

    # ------------------------------------------------------------------ push
    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        if not changes:
            return []
        rows = [{"id": c.member_id, **{FIELDS[k]: v for k, v in c.values.items()}} for c in changes]
        return self.read_results(changes, self.send(rows))

    def send(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.request("PATCH", "/contacts", json={"data": rows})["data"]

    def read_results(self, changes: Sequence[ProfileChange], items: list[dict[str, Any]]) -> list[RecordResult]:
        by_id = {str(item.get("id")): item for item in items}
        results = []
        for change in changes:
            item = by_id.get(change.member_id)
            if item is None:
                results.append(RecordResult(change.member_id, False, "not in the answer"))
                continue
            ok = item["status"] == "success"
            results.append(RecordResult(change.member_id, ok, None if ok else item.get("message"), item.get("field")))
        return results

    def check(self) -> list[CheckResult]:
        present = {f["name"] for f in self.request("GET", "/fields")["fields"]}
        return [
            CheckResult(f"custom field {name}", name in present, "" if name in present else f"create field {name!r}")
            for name in FIELDS.values()
        ]


def make_spec(connector: type[ReferenceConnector], name: str = "reference") -> ConnectorSpec:
    return ConnectorSpec(name, ExampleSettings, connector, capabilities=connector.capabilities)


REFERENCE_SPEC = make_spec(ReferenceConnector)
