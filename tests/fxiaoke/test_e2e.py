"""End to end through the engine: customers and sales orders from the fake tenant, graded, tiers written back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import respx

from crmsync.engine import RunResult
from crmsync.plugins import PluginHost
from crmsync.store import Store
from tests.support import run_sync

from .conftest import POINTS, TIER
from .fake import APP_ID, APP_SECRET, PERMANENT_CODE, T0, FakeFxiaoke

AS_OF = datetime.fromtimestamp(T0, UTC)
DAY_MS = 86_400_000

CONFIG = f"""
[store]
path = "store.duckdb"

[sync]
members = "fx"
orders = ["fx"]
push = ["fx"]
base_currency = "CNY"

[connectors.fx]
plugin = "fxiaoke"
app_id = "{APP_ID}"
app_secret = "{APP_SECRET}"
permanent_code = "{PERMANENT_CODE}"
user_id = "1000"
daily_budget = 1000
tier_names = ["Bronze", "Silver", "Gold"]

[connectors.fx.push_fields]
tier = "{TIER}"
points = "{POINTS}"

[connectors.fx.orders]
status_map = {{ "7" = "paid", "6" = "pending" }}

[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 1000"

[[policy.tiers]]
name = "Silver"
condition = "spend_365d >= 200"

[[policy.tiers]]
name = "Bronze"
"""


@pytest.fixture
def host() -> PluginHost:
    import crmsync_fxiaoke

    h = PluginHost()
    h.register(crmsync_fxiaoke, "fxiaoke")
    return h


@pytest.fixture
def tenant(fake: FakeFxiaoke) -> Iterator[FakeFxiaoke]:
    for rid, name in [("a1", "上海示例"), ("a2", "杭州演示"), ("a3", "北京样例")]:
        fake.put("AccountObj", {"_id": rid, "name": name, "email": f"{rid}@example.cn"})
    orders = [
        ("o1", "a1", "800.00", "7"),
        ("o2", "a1", "300.50", "7"),
        ("o3", "a2", "250", "7"),
        ("o4", "a3", "5000", "6"),
    ]  # fmt: skip  (o4 is not confirmed yet: pending, not counted)
    for oid, account, amount, status in orders:
        fake.put("SalesOrderObj", {"_id": oid, "account_id": account, "order_amount": amount,
                                   "order_time": fake.now_ms - 10 * DAY_MS, "order_status": status})  # fmt: skip

    def tick(obj: str, rid: str, values: dict) -> None:
        fake.now += 1  # each write is a later change on the server

    fake.on_write = tick
    with respx.mock(assert_all_called=False) as router:
        router.route(host="open.fxiaoke.com").mock(side_effect=fake.handle)
        yield fake


@pytest.fixture
def run(tmp_path: Path, host: PluginHost, tenant: FakeFxiaoke):
    config = tmp_path / "crmsync.toml"
    config.write_text(CONFIG, encoding="utf-8")

    def _run() -> RunResult:
        return run_sync(config, host, AS_OF)

    return _run


def calls(fake: FakeFxiaoke, start: int = 0) -> list[tuple[str, str | None]]:
    return [(c["path"].rsplit("/", 1)[-1], _obj(c["body"])) for c in fake.calls[start:]]


def _obj(body: dict) -> str | None:
    data = body.get("data") or {}
    return data.get("dataObjectApiName") or data.get("apiName") or (data.get("object_data") or {}).get("_id")


def test_sync_grades_customers_and_writes_tiers_back(run, tenant: FakeFxiaoke) -> None:
    report = run().report
    assert report.status == "ok", report.error
    assert calls(tenant) == [("token", None), ("query", "AccountObj"), ("query", "SalesOrderObj"),
                             ("describe", "AccountObj"), ("update", "a1"), ("update", "a2"),
                             ("update", "a3")]  # fmt: skip
    accounts = tenant.objects["AccountObj"]
    assert {k: (v[TIER], v[POINTS]) for k, v in accounts.items()} == {
        "a1": ("opt_gold", "0"), "a2": ("opt_silver", "0"), "a3": ("opt_bronze", "0")
    }  # fmt: skip
    update = tenant.calls[-1]["body"]
    assert update["triggerWorkFlow"] is False and update["triggerApprovalFlow"] is False
    assert report.pulled["fx"]["members"].pulled == 3 and report.pulled["fx"]["orders"].pulled == 4
    assert report.pushed == {"fx": 3}
    assert report.api_calls["fx"] == {"token": 1, "query AccountObj": 1, "query SalesOrderObj": 1,
                                      "describe AccountObj": 1, "update AccountObj": 3,
                                      "daily_budget_left": 993}  # fmt: skip

    # a second run: our own write-backs are not customer changes, nothing to push, the token is reused
    first = len(tenant.calls)
    again = run().report
    assert again.status == "ok", again.error
    assert calls(tenant, first) == [("query", "AccountObj"), ("query", "SalesOrderObj")]
    assert again.pulled["fx"]["members"].pulled == 0 and again.pulled["fx"]["orders"].pulled == 0
    assert again.pushed == {"fx": 0}
    assert again.api_calls["fx"]["daily_budget_left"] == 991

    # the pending order is confirmed: a3 becomes Gold, one update with the changed field only
    tenant.now += 60
    tenant.objects["SalesOrderObj"]["o4"].update(order_status="7", last_modified_time=tenant.now_ms)
    second = len(tenant.calls)
    third = run().report
    assert third.status == "ok", third.error
    assert calls(tenant, second) == [("query", "AccountObj"), ("query", "SalesOrderObj"),
                                     ("describe", "AccountObj"), ("update", "a3")]  # fmt: skip
    assert tenant.calls[-1]["body"]["data"]["object_data"] == {"dataObjectApiName": "AccountObj", "_id": "a3",
                                                                 TIER: "opt_gold"}  # fmt: skip
    assert third.pushed == {"fx": 1}


def test_refused_write_is_reported_and_retried_next_run(run, tenant: FakeFxiaoke) -> None:
    tenant.refuse["a2"] = (32000, "数据已锁定")
    report = run().report
    assert report.status == "rejected"
    assert report.pushed == {"fx": 2} and report.push_rejected == {"fx": 1}
    (item,) = [r for r in report.rejected if r.stream == "push"]
    assert item.locator == "member a2" and "数据已锁定" in item.reason
    del tenant.refuse["a2"]
    start = len(tenant.calls)
    retry = run().report
    assert retry.status == "ok", retry.error
    assert ("update", "a2") in calls(tenant, start)
    assert tenant.objects["AccountObj"]["a2"][TIER] == "opt_silver"


def test_no_usable_access_token_is_left_in_the_store(run, tenant: FakeFxiaoke, tmp_path: Path) -> None:
    """The cached token is sealed; a token an earlier version cached in clear is removed by the first sync."""
    path = tmp_path / "store.duckdb"
    legacy = "AT-0123456789ab"
    tenant.tokens[legacy] = ("header", tenant.now - 6700)  # valid at the tenant for 500 s more
    with Store.open(path) as store:
        store.state("fx").set("fxiaoke:fx:token", json.dumps({"style": "header", "app": APP_ID, "token": legacy,
                                                             "org": "acme01", "renew_at": 4e9}))  # fmt: skip
    assert run().report.status == "ok" and run().report.status == "ok"
    tokens = [legacy, *tenant.tokens]
    assert [c["path"] for c in tenant.calls].count("/oauth2.0/token") == 1  # the second run used the sealed cache
    with Store.open(path) as store:
        rows = store.con.execute("SELECT key, value FROM connector_state").fetchall()
        assert any(key == "sealed:fxiaoke:fx:token" for key, _ in rows)
        assert not [(k, v) for k, v in rows for t in tokens if t in k or t in v or "accessToken" in v]
        store.con.execute("CHECKPOINT")
    data = path.read_bytes()
    assert not [t for t in tokens if t.encode() in data]


def test_invalidated_customers_are_reported_as_deleted(run, tenant: FakeFxiaoke, tmp_path: Path) -> None:
    assert run().report.status == "ok"
    tenant.now += 60
    tenant.mass_update("AccountObj", ["a2", "a3"], life_status="invalid")  # 作废 in the CRM
    report = run().report
    assert report.status == "ok", report.error
    counts = report.pulled["fx"]["members"]
    assert (counts.pulled, counts.deleted) == (0, 2)
    with Store.open(tmp_path / "store.duckdb") as store:
        deleted = store.con.execute("SELECT external_id FROM members WHERE deleted ORDER BY 1").fetchall()
    assert deleted == [("a2",), ("a3",)]
