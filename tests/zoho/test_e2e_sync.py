"""A whole sync through the engine: Zoho contacts and sales orders in, grades back into Contacts.

The connector is built by the engine from the configuration, exactly as in production; the fake Zoho org answers
through respx's global mock. Every update call and its body is asserted, and a rerun makes no write at all.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from crmsync.engine import Engine
from crmsync.plugins import PluginHost
from crmsync.settings import load_settings
from crmsync.store import Store
from tests.support import run_sync

from .fake import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, FakeZoho

CONFIG = f"""
[store]
path = "store.duckdb"

[sync]
members = "crm"
orders = ["crm"]
push = ["crm"]
base_currency = "USD"

[connectors.crm]
plugin = "zoho"
data_centre = "eu"
client_id = "{CLIENT_ID}"
tier_names = ["Bronze", "Silver", "Gold"]
bulk_read = false
rate_per_minute = 60000

[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 1000"

[[policy.tiers]]
name = "Silver"
condition = "spend_365d >= 200"

[[policy.tiers]]
name = "Bronze"

[policy.tags]
big_spender = "spend_lifetime >= 1000"
"""


@pytest.fixture
def zoho(monkeypatch: pytest.MonkeyPatch) -> FakeZoho:
    from crmsync_zoho.settings import DataCentre

    fake = FakeZoho(DataCentre.EU)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__REFRESH_TOKEN", REFRESH_TOKEN)
    return fake


def sync(tmp_path: Path, fake: FakeZoho, config: str = CONFIG) -> dict:
    """One scheduled run, half an hour after the previous one."""
    fake.tick(1800)
    path = tmp_path / "crmsync.toml"
    path.write_text(textwrap.dedent(config))
    host = PluginHost()
    host.load_entrypoints()
    with fake.router:
        report = run_sync(path, host, fake.now + timedelta(days=1)).report
    assert report.status == "ok", report.error
    return report.model_dump(mode="json")


def updates(fake: FakeZoho, since: int = 0) -> list[dict]:
    return [
        json.loads(r.content) for r in fake.requests[since:] if r.method == "PUT" and r.url.path.endswith("/Contacts")
    ]


def test_zoho_to_grades_to_zoho_with_minimal_calls(tmp_path: Path, zoho: FakeZoho) -> None:
    contacts = zoho.seed_contacts(250)
    gold, silver = contacts[0], contacts[1]
    zoho.add_order(gold, "700.00")
    zoho.add_order(gold, "400.00")
    zoho.add_order(silver, "250.50")
    zoho.add_order(silver, "99.00", Status="Cancelled")

    report = sync(tmp_path, zoho)
    assert report["pulled"]["crm"]["members"]["pulled"] == 250
    assert report["pulled"]["crm"]["orders"]["pulled"] == 4
    assert report["tier_distribution"] == {"Gold": 1, "Silver": 1, "Bronze": 248}
    assert report["pushed"] == {"crm": 250}
    # every host is the EU data centre's; nothing went anywhere else
    assert {r.url.host for r in zoho.requests} <= {"accounts.zoho.eu", "www.zohoapis.eu"}
    # the minimum: 1 token, 2 contact pages of 200 + 1 order page, deleted-record checks, 3 updates of <= 100
    calls = report["api_calls"]["crm"]
    assert calls["oauth token"] == 1
    assert calls["read Contacts"] == 2 and calls["read Sales_Orders"] == 1
    assert calls["update Contacts"] == 3
    bodies = updates(zoho)
    assert sorted(len(b["data"]) for b in bodies) == [50, 100, 100]  # batches run concurrently
    assert all(b["trigger"] == [] for b in bodies)
    by_id = {rec["id"]: rec for b in bodies for rec in b["data"]}
    assert by_id[gold]["Loyalty_Tier"] == "Gold" and by_id[gold]["Loyalty_Tags"] == ["big_spender"]
    assert by_id[silver]["Loyalty_Tier"] == "Silver"
    assert set(by_id[contacts[5]]) == {"id", "Loyalty_Tier", "Loyalty_Points", "Loyalty_Tags", "Lifecycle_Stage"}
    assert zoho.contact(gold)["Loyalty_Tier"] == "Gold"

    # a rerun with no change in Zoho: incremental reads only, no write at all
    seen = len(zoho.requests)
    report = sync(tmp_path, zoho)
    assert report["pushed"] == {"crm": 0}
    assert updates(zoho, seen) == []
    assert all(
        r.headers.get("If-Modified-Since")
        for r in zoho.requests[seen:]
        if r.method == "GET" and "deleted" not in r.url.path
    )
    assert "oauth token" not in report["api_calls"]["crm"]  # the cached token was reused

    # a new big order for the Silver contact: one update call, only the fields that changed
    zoho.add_order(silver, "900.00")
    before = {cid: dict(zoho.contact(cid)) for cid in contacts}
    seen = len(zoho.requests)
    report = sync(tmp_path, zoho)
    assert report["pulled"]["crm"]["orders"]["pulled"] == 1
    body = updates(zoho, seen)
    assert len(body) == 1
    changed = {rec["id"]: rec for rec in body[0]["data"]}
    assert changed[silver]["Loyalty_Tier"] == "Gold" and changed[silver]["Loyalty_Tags"] == ["big_spender"]
    for cid, rec in changed.items():  # only fields whose value differs from what Zoho holds are sent
        assert all(before[cid].get(k) != v for k, v in rec.items() if k != "id"), rec
    assert zoho.contact(silver)["Loyalty_Tier"] == "Gold"
    # the order was refunded in Zoho (status Cancelled): the grade goes back down
    order_id = next(rid for rid, o in zoho.records["Sales_Orders"].items() if o["Grand_Total"] == Decimal("900.00"))
    zoho.modify("Sales_Orders", order_id, Status="Cancelled")
    seen = len(zoho.requests)
    report = sync(tmp_path, zoho)
    changed = {rec["id"]: rec for b in updates(zoho, seen) for rec in b["data"]}
    assert changed[silver]["Loyalty_Tier"] == "Silver" and changed[silver]["Loyalty_Tags"] == []


BULK_CONFIG = CONFIG.replace(
    "bulk_read = false\n", "bulk_threshold = 200\nbulk_write_threshold = 200\nbulk_poll_seconds = 0.01\n"
)


def test_bulk_sync_reads_back_its_own_bulk_write_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crmsync_zoho.settings import DataCentre

    zoho = FakeZoho(DataCentre.EU, clock=time.monotonic, bulk_job_seconds=0.01)  # jobs take 10 ms
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__REFRESH_TOKEN", REFRESH_TOKEN)
    contacts = zoho.seed_contacts(250)
    zoho.add_order(contacts[0], "1200.00")
    zoho.add_order(contacts[1], "300.00")

    # first sync: one export per stream (no count call), one Bulk Write (the org id looked up once)
    report = sync(tmp_path, zoho, BULK_CONFIG)
    assert report["pulled"]["crm"]["members"]["pulled"] == 250 and report["pushed"] == {"crm": 250}
    assert report["api_calls"]["crm"] == {
        "oauth token": 1,
        "bulk_read create": 2, "bulk_read status": 2, "bulk_read download": 2,
        "org": 1, "bulk_write upload": 1, "bulk_write create": 1, "bulk_write status": 1,
        "bulk_write download": 1,
    }  # fmt: skip
    assert zoho.contact(contacts[0])["Loyalty_Tier"] == "Gold"

    # the rerun reads back the 250 contacts the Bulk Write touched (the write could have hidden a person's edit
    # made after the read), in one export, and delivers only the one a person edited since: the others are
    # recognised by value as the connector's own writes
    zoho.modify("Contacts", contacts[7], Email="changed@example.com")
    report = sync(tmp_path, zoho, BULK_CONFIG)
    assert report["pushed"] == {"crm": 0}
    assert report["pulled"]["crm"]["members"]["pulled"] == 1
    assert report["api_calls"]["crm"] == {
        "bulk_read create": 1, "bulk_read status": 1, "bulk_read download": 1,
        "deleted Contacts": 1, "read Sales_Orders": 1, "deleted Sales_Orders": 1,
    }  # fmt: skip
    export = [r for r in zoho.requests if r.method == "POST" and r.url.path == "/crm/bulk/v8/read"][-1]
    assert json.loads(export.content)["query"]["module"]["api_name"] == "Contacts"

    # the next rerun reads only what changed after that: nothing, so one call per stream and per deletion look
    report = sync(tmp_path, zoho, BULK_CONFIG)
    assert report["pulled"]["crm"]["members"]["pulled"] == 0
    assert report["api_calls"]["crm"] == {
        "read Contacts": 1, "deleted Contacts": 1, "read Sales_Orders": 1, "deleted Sales_Orders": 1,
    }  # fmt: skip


def test_check_verifies_the_policy_tiers_against_the_picklist(tmp_path: Path, zoho: FakeZoho) -> None:
    path = tmp_path / "crmsync.toml"
    text = textwrap.dedent(CONFIG).replace('tier_names = ["Bronze", "Silver", "Gold"]\n', "")
    path.write_text(text.replace('name = "Gold"', 'name = "Diamond"'))
    host = PluginHost()
    host.load_entrypoints()
    settings = load_settings(path, host=host)
    with zoho.router, Store.open(settings.store.path) as store:
        engine = Engine(settings, host, store)
        try:
            results = {r.name: r for r in engine.connector("crm").check()}
        finally:
            engine.close()
    tier = results["field Loyalty_Tier (tier)"]
    assert not tier.ok and "Diamond" in tier.detail
    assert results["credentials"].ok


def test_the_store_holds_no_usable_token(tmp_path: Path, zoho: FakeZoho) -> None:
    contacts = zoho.seed_contacts(3)
    zoho.add_order(contacts[0], "50.00")
    with Store.open(tmp_path / "store.duckdb") as store:  # what an earlier version left: a token in clear
        store.state("crm").set("zoho:crm:token", '{"access_token": "1000.cleartoken", "expires_at": 9e12}')
    sync(tmp_path, zoho)
    tokens = list(zoho.access)
    assert tokens
    files = b"".join(p.read_bytes() for p in tmp_path.glob("store.duckdb*"))
    for token in tokens:
        assert token.encode() not in files  # the file's bytes, WAL included
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    try:
        rows = dict(con.execute("SELECT key, value FROM connector_state WHERE connector = 'crm'").fetchall())
    finally:
        con.close()
    assert "zoho:crm:token" not in rows and "1000.cleartoken" not in str(rows)  # the clear one is removed
    assert rows["sealed:zoho:crm:token"].startswith("sealed1:")
    assert not any(token in value for token in tokens for value in rows.values())
    # the sealed cache opens with the secrets of the environment: the next run needs no new token
    report = sync(tmp_path, zoho)
    assert "oauth token" not in report["api_calls"]["crm"] and len(zoho.access) == 1


def test_bulk_jobs_token_renewals_and_429s_are_logged_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from crmsync_zoho.settings import DataCentre

    zoho = FakeZoho(DataCentre.EU, clock=time.monotonic, bulk_job_seconds=0.01)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__REFRESH_TOKEN", REFRESH_TOKEN)
    contacts = zoho.seed_contacts(250)
    zoho.add_order(contacts[0], "1200.00")
    zoho.fail_next("bulk_write create", zoho.too_many("concurrency", retry_after=0))
    with caplog.at_level("DEBUG", logger="crmsync.connector"):
        sync(tmp_path, zoho, BULK_CONFIG)
    text = caplog.text
    assert re.search(r"new access token from accounts\.zoho\.eu, valid \d+ min", text)
    assert re.search(r"Bulk Read job \d+ created for Contacts", text)
    assert re.search(r"Bulk Read job \d+ COMPLETED after", text) and re.search(r"Bulk Write job \d+ COMPLETED", text)
    assert "429 (concurrency) to POST www.zohoapis.eu/crm/bulk/v8/write" in text
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *zoho.access):
        assert secret not in text
