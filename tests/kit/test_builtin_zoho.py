"""The conformance kit run against the built-in ``zoho`` connector, through an adapter that gives the Zoho
tests' fake org (tests/zoho/fake.py) the operations the kit needs."""

from __future__ import annotations

import importlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from crmsync_zoho import ZohoConnector  # noqa: F401  (the package must import)
from crmsync_zoho.client import classify

from crmsync import Stream
from crmsync.testing import ConnectorContract, InMemoryCrm
from crmsync.testing.checks_push import GRADES
from crmsync.testing.data import CURRENCIES, LATE_BY

# the Zoho tests' fake org: "zoho.fake" next to this package ("tests.zoho.fake" if tests/ is a package)
_fake = importlib.import_module(".".join(filter(None, [__package__.rpartition(".")[0], "zoho", "fake"])))
CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN = _fake.CLIENT_ID, _fake.CLIENT_SECRET, _fake.REFRESH_TOKEN
DEFAULT_FIELDS, FakeZoho, err, push_field = _fake.DEFAULT_FIELDS, _fake.FakeZoho, _fake.err, _fake.push_field
zoho_time = _fake.zoho_time

MODULE = {Stream.MEMBERS: "Contacts", Stream.ORDERS: "Sales_Orders", Stream.ACTIVITIES: "Tasks"}
FIELD_NAMES = {
    "tier": "Loyalty_Tier",
    "points": "Loyalty_Points",
    "tags": "Loyalty_Tags",
    "rfm_segment": "RFM_Segment",
    "lifecycle": "Lifecycle_Stage",
}
KIT_TAGS = sorted({t for g in GRADES for t in g["tags"]})
RATES = {"EUR": "1", "USD": "1.08", "CNY": "7.81", "GBP": "0.85"}
"""Zoho's Exchange_Rate: units of the order's currency per unit of the home currency (EUR)."""
UNREADABLE = {Stream.MEMBERS: "Created_Time", Stream.ORDERS: "Grand_Total", Stream.ACTIVITIES: "Created_Time"}
"""The field a corrupted record of each stream is served with an impossible value in (a blanked one without it)."""


class ZohoDouble(InMemoryCrm):
    """The kit's operations on a :class:`FakeZoho`; failures and per-record refusals are layered on top."""

    field_names = FIELD_NAMES

    def __init__(self) -> None:
        super().__init__()
        self.originals: dict[tuple[Stream, str], dict[str, Any]] = {}
        self.fake = FakeZoho()
        tags = push_field("Loyalty_Tags", "multiselectpicklist", KIT_TAGS, 3)
        self.fake.fields["Contacts"] = [tags if f["api_name"] == "Loyalty_Tags" else dict(f) for f in DEFAULT_FIELDS]
        self.fake.router.routes[0].side_effect = self.handle

    def settings(self) -> dict[str, Any]:
        return {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "rate_per_minute": None,
            "bulk_threshold": None,
            "tier_names": ["Bronze", "Silver", "Gold", "Platinum"],
            "activities": {"module": "Tasks", "kind": "task"},
        }

    def transport(self) -> httpx.BaseTransport:
        return self.fake.transport

    # ------------------------------------------------------------------ records
    def seed(self, stream: Stream, count: int) -> list[str]:
        if stream is not Stream.MEMBERS and not self.fake.records["Contacts"]:
            self.seed(Stream.MEMBERS, max(2, count // 2))
        contacts = list(self.fake.records["Contacts"])
        ids = []
        for i in range(count):
            if stream is Stream.MEMBERS:
                n = len(self.fake.records["Contacts"])
                rid = self.fake.add("Contacts", First_Name=f"Ann{n}", Last_Name=f"Lee{n}", Email=f"ann{n}@example.com")
            elif stream is Stream.ORDERS:
                currency = CURRENCIES[i % len(CURRENCIES)]
                contact = contacts[i % len(contacts)]
                rid = self.fake.add_order(contact, f"{19 + i}.90", Currency=currency, Exchange_Rate=RATES[currency])
            else:
                who = {"name": "Some One", "id": contacts[i % len(contacts)]}
                rid = self.fake.add("Tasks", Subject=f"Call {i}", Who_Id=who)
            ids.append(rid)
        return ids

    def change(self, stream: Stream, ids: Any) -> None:
        """A mass update: one second for all of them; a corrupted record gets its value back."""
        self.fake.mass_update(MODULE[stream], list(ids), Description="changed")
        for rid in ids:
            if rid in self.malformed[stream]:
                self.malformed[stream].discard(rid)
                self.fake.records[MODULE[stream]][rid].update(self.originals.pop((stream, rid)))

    def corrupt(self, stream: Stream, ids: Any, value: Any = "31/02/2024 25:61") -> None:
        field = UNREADABLE[stream]
        for rid in ids:
            self.originals[(stream, rid)] = {field: self.fake.records[MODULE[stream]][rid][field]}
            self.malformed[stream].add(rid)
        self.fake.mass_update(MODULE[stream], list(ids), **{field: value})

    def blank(self, stream: Stream, ids: Any) -> None:
        self.corrupt(stream, ids, None)

    def delete(self, stream: Stream, ids: Any) -> None:
        for rid in ids:
            self.fake.delete(MODULE[stream], rid)

    def commit_late(self, stream: Stream, ids: Any) -> None:
        """Records saved in a transaction that began a few seconds before the newest change it commits after."""
        rows = self.fake.records[MODULE[stream]]
        when = max(datetime.fromisoformat(r["Modified_Time"]) for r in rows.values()) - LATE_BY
        for rid in ids:
            rows[rid].update(self.originals.pop((stream, rid), {}), Description="late", Modified_Time=zoho_time(when))
            self.malformed[stream].discard(rid)
        self.fake.versions[MODULE[stream]] += 1

    def omit_optional(self, stream: Stream, ids: Any) -> None:
        """Zoho leaves an empty field null; a contact always has its Last_Name, every record its Created_Time."""
        empty = {Stream.MEMBERS: ("Email", "First_Name"), Stream.ORDERS: ("Contact_Name",)}.get(stream, ("Who_Id",))
        self.fake.mass_update(MODULE[stream], list(ids), **dict.fromkeys(empty))

    def expected(self, stream: Stream, external_id: str) -> dict[str, Any] | None:
        row = self.fake.records[MODULE[stream]].get(external_id)
        if row is None or external_id in self.malformed[stream]:
            return None
        if stream is Stream.MEMBERS:
            return {
                "email": row["Email"],
                "first_name": row["First_Name"],
                "last_name": row["Last_Name"],
                "updated_at": datetime.fromisoformat(row["Modified_Time"]),
            }
        if stream is Stream.ORDERS:
            return {"member_external_id": (row["Contact_Name"] or {}).get("id"), "amount": Decimal(row["Grand_Total"]),
                    "currency": row["Currency"]}  # fmt: skip
        return {
            "member_external_id": (row["Who_Id"] or {}).get("id"),
            "occurred_at": datetime.fromisoformat(row["Created_Time"]),
        }

    # ------------------------------------------------------------------ pushes
    def pushed(self) -> dict[str, dict[str, Any]]:
        out = {}
        for body in self.fake.updates:
            for rec in body.get("data", []):
                row = self.fake.records["Contacts"].get(str(rec["id"]), {})
                out[str(rec["id"])] = {f: row.get(api) for f, api in FIELD_NAMES.items() if api in row}
        return out

    def push_log(self) -> list[list[str]]:
        return [[str(r["id"]) for r in body.get("data", [])] for body in self.fake.updates]

    def drop_field(self, field: str) -> str:
        api = FIELD_NAMES[field]
        self.fake.fields["Contacts"] = [f for f in self.fake.fields["Contacts"] if f["api_name"] != api]
        return api

    # ------------------------------------------------------------------ requests
    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        failure = self.next_failure()
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
            code = {429: "TOO_MANY_REQUESTS", 400: "INVALID_REQUEST", 404: "INVALID_URL_PATTERN"}
            response = err(status, code.get(status, "INTERNAL_ERROR"), "injected by the kit")
            return httpx.Response(status, json=json.loads(response.content), headers=headers)
        if classify(request) == "update Contacts" and (self.rejections or self.unanswered):
            return self.refuse_some(request)
        return self.fake._handle(request)

    def refuse_some(self, request: httpx.Request) -> httpx.Response:
        """Send the fake the records it may write; answer the refused ones with Zoho's per-record error, and leave
        the ones the kit dropped from answers out (unwritten)."""
        data = [r for r in json.loads(request.content)["data"] if self.answers(str(r["id"]))]
        keep = [r for r in data if str(r["id"]) not in self.rejections]
        answers: list[dict[str, Any]] = []
        if keep:
            forwarded = httpx.Request(request.method, request.url, headers=request.headers, json={"data": keep})
            answers = json.loads(self.fake._handle(forwarded).content)["data"]
        out = []
        for i, rec in enumerate(data):
            if str(rec["id"]) in self.rejections:
                field, reason = self.rejections[str(rec["id"])]
                details = {"api_name": FIELD_NAMES.get(field, field), "json_path": f"$.data[{i}]"}
                out.append({"code": "INVALID_DATA", "details": details, "message": reason, "status": "error"})
            else:
                out.append(answers.pop(0))
        ok = sum(a["status"] == "success" for a in out)
        return httpx.Response(207 if ok else 400, json={"data": out})


class TestZohoConnector(ConnectorContract):
    spec = "zoho"

    @pytest.fixture
    def crm(self) -> ZohoDouble:
        return ZohoDouble()
