"""crmsync's conformance kit run against the Fxiaoke connector, with the fake tenant as the kit's double."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import crmsync_fxiaoke
import httpx
import pytest

from crmsync.connector import Stream
from crmsync.testing import ConnectorContract, InMemoryCrm

from .conftest import LIFECYCLE, POINTS, RFM, STAGE, TAGS, TIER
from .fake import APP_ID, APP_SECRET, PERMANENT_CODE, USER_ID, FakeFxiaoke, account_describe, order_describe

FIRST = "field_First1__c"
CURRENCY = "field_Currency__c"
"""A custom text field holding each order's ISO currency code."""
STATUS = {"paid": "7", "refunded": "12", "cancelled": "13", "pending": "14"}
SPEC = next(iter(crmsync_fxiaoke.crmsync_connectors()))


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class KitFxiaoke(InMemoryCrm):
    """The kit's canonical state rendered as Fxiaoke records in a :class:`FakeFxiaoke`."""

    field_names: Mapping[str, str] = {"tier": TIER, "points": POINTS, "tags": TAGS, "rfm_segment": RFM,
                                      "lifecycle": STAGE}  # fmt: skip
    objects = {Stream.MEMBERS: "AccountObj", Stream.ORDERS: "SalesOrderObj"}
    optional_fields = {Stream.MEMBERS: ("email", "first_name"), Stream.ORDERS: ("member_external_id", "currency")}
    """A customer always has its name (``name``) and ``create_time``."""

    def __init__(self) -> None:
        super().__init__()
        self.fake = FakeFxiaoke()
        self.fake.per_window = None
        self.fake.describes["AccountObj"] = account_describe(
            **{
                FIRST: {"type": "text", "label": "名"},
                TIER: {"type": "select_one", "options": [{"label": t, "value": f"opt_{t}"}
                                                         for t in ("Bronze", "Silver", "Gold")]},
                POINTS: {"type": "number"},
                TAGS: {"type": "select_many", "options": [{"label": t, "value": f"tag_{t}"}
                                                          for t in ("at_risk_vip", "newsletter", "new")]},
                RFM: {"type": "text"},
                STAGE: {"type": "select_one", "options": [{"label": s, "value": f"st_{s}"} for s in LIFECYCLE]},
            }
        )  # fmt: skip
        currency = {"api_name": CURRENCY, "type": "text", "label": "币种", "define_type": "custom"}
        self.fake.describes["SalesOrderObj"] = order_describe() | {CURRENCY: currency}
        self.fake.before = self._before
        self.fake.on_write = self._on_write

    def settings(self) -> dict[str, Any]:
        return {
            "app_id": APP_ID,
            "app_secret": APP_SECRET,
            "permanent_code": PERMANENT_CODE,
            "user_id": USER_ID,
            "page_size": 3,
            "calls_per_window": None,
            "backoff_seconds": 0,
            "members": {"first_name_field": FIRST},
            "orders": {"currency_field": CURRENCY, "status_map": {v: k for k, v in STATUS.items()}},
            "push_fields": dict(self.field_names),
            "tier_names": ["Bronze", "Silver", "Gold"],
        }

    def transport(self) -> httpx.BaseTransport:
        return self.fake.transport

    @property
    def calls(self) -> int:
        return len(self.fake.calls)

    # -- keep the fake's tables equal to the kit's canonical state ---------------------------------------

    def _native(self, stream: Stream, r: Mapping[str, Any]) -> dict[str, Any]:
        common = {"_id": r["external_id"], "last_modified_time": ms(r["updated_at"]), "last_modified_by": ["1001"],
                  "life_status": "normal"}  # fmt: skip
        unreadable = r["external_id"] in self.malformed[stream]
        if stream is Stream.MEMBERS:
            return {**common, "name": r["last_name"], FIRST: r["first_name"], "email": r["email"],
                    "create_time": "31/02/2024" if unreadable else ms(r["created_at"])}  # fmt: skip
        return {**common, "account_id": r["member_external_id"], CURRENCY: r["currency"],
                "order_amount": "19,9O" if unreadable else str(r["amount"]),
                "order_time": None if r["external_id"] in self.blanked[stream] else ms(r["placed_at"]),
                "order_status": STATUS[str(r["status"])]}  # fmt: skip

    def _render(self, stream: Stream) -> None:
        table = self.fake.objects.setdefault(self.objects[stream], {})
        for rid in list(table):
            if rid not in self.records[stream]:
                del table[rid]
        for rid, record in self.records[stream].items():
            kept = {k: v for k, v in table.get(rid, {}).items() if k in self.field_names.values()}
            table[rid] = {**kept, **self._native(stream, record)}

    def seed(self, stream: Stream, count: int) -> list[str]:
        ids = super().seed(stream, count)
        for s in self.objects:
            self._render(s)
        return ids

    def change(self, stream: Stream, ids: Sequence[str]) -> None:
        super().change(stream, ids)
        self._render(stream)

    def corrupt(self, stream: Stream, ids: Sequence[str]) -> None:
        super().corrupt(stream, ids)
        self._render(stream)

    def blank(self, stream: Stream, ids: Sequence[str]) -> None:
        super().blank(stream, ids)
        self._render(stream)

    def delete(self, stream: Stream, ids: Sequence[str]) -> None:
        super().delete(stream, ids)
        self._render(stream)

    def commit_late(self, stream: Stream, ids: Sequence[str]) -> None:
        super().commit_late(stream, ids)
        self._render(stream)

    def omit_optional(self, stream: Stream, ids: Sequence[str]) -> None:
        super().omit_optional(stream, ids)
        self._render(stream)

    def drop_field(self, field: str) -> str:
        name = super().drop_field(field)
        self.fake.describes["AccountObj"].pop(name, None)
        return name

    # -- requests -------------------------------------------------------------------------------------

    def _before(self, request: httpx.Request) -> httpx.Response | None:
        failure = self.next_failure()
        if failure is None:
            return None
        status, retry_after = failure
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return httpx.Response(status, text="<html>gateway error</html>", headers=headers)

    def _on_write(self, obj: str, rid: str, values: dict[str, Any]) -> tuple[int, str] | None:
        self.begin_write().append(rid)
        by_api = {api: canonical for canonical, api in self.field_names.items()}
        describe = self.fake.describes[obj]
        canonical: dict[str, Any] = {}
        for api, value in values.items():
            labels = {str(o["value"]): o["label"] for o in describe[api].get("options") or []}
            if isinstance(value, list):
                value = [labels.get(str(v), v) for v in value]
            elif labels:
                value = labels.get(str(value), value)
            canonical[by_api[api]] = value
        refused = self.write(rid, canonical)
        return (32000, refused[1]) if refused else None


class TestFxiaokeConformance(ConnectorContract):
    spec = SPEC
    batch_answers = False  # one data/update call per customer

    @pytest.fixture
    def crm(self) -> KitFxiaoke:
        return KitFxiaoke()
