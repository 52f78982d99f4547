"""check(): credentials, operator permissions, source fields, every pushed field and select option."""

from __future__ import annotations

from .conftest import POINTS, STAGE, TIER
from .fake import APP_SECRET, FakeFxiaoke


def by_name(results) -> dict:
    return {r.name: r for r in results}


def test_healthy_tenant_passes_every_check(fake: FakeFxiaoke, connect) -> None:
    results = connect(daily_budget=1000).check()
    assert [r.name for r in results if not r.ok] == []
    names = [r.name for r in results]
    assert names == ["credentials", "read AccountObj", "read SalesOrderObj", "AccountObj fields",
                     "SalesOrderObj fields", f"field {TIER} (tier)", f"field {POINTS} (points)",
                     "field field_Tags01__c (tags)", "field field_Rfm01__c (rfm_segment)",
                     f"field {STAGE} (lifecycle)", "daily budget"]  # fmt: skip
    assert "Gold=opt_gold" in by_name(results)[f"field {TIER} (tier)"].detail
    assert by_name(results)["daily budget"].detail.startswith("99")
    assert all(c["path"] != "/cgi/crm/v2/data/update" for c in fake.calls)  # check never writes


def test_missing_field_says_what_the_admin_must_create(fake: FakeFxiaoke, connect) -> None:
    del fake.describes["AccountObj"][TIER]
    result = by_name(connect().check())[f"field {TIER} (tier)"]
    assert not result.ok
    assert "an administrator must create it in the admin console" in result.detail
    assert "单选 (select_one) with options Bronze, Silver, Gold" in result.detail
    assert "push_fields.tier" in result.detail


def test_missing_select_options_are_listed(fake: FakeFxiaoke, connect) -> None:
    fake.describes["AccountObj"][STAGE]["options"] = [{"label": "loyal", "value": "stage_loyal"}]
    result = by_name(connect().check())[f"field {STAGE} (lifecycle)"]
    assert not result.ok
    assert "potential, new, returning, mature, dormant, churned" in result.detail


def test_wrong_field_type_is_reported(fake: FakeFxiaoke, connect) -> None:
    fake.describes["AccountObj"][POINTS]["type"] = "date"
    result = by_name(connect().check())[f"field {POINTS} (points)"]
    assert not result.ok and "is date, needs number or currency or text" in result.detail


def test_source_field_names_are_checked(fake: FakeFxiaoke, connect) -> None:
    result = by_name(connect(members={"email_field": "field_mail__c"}).check())["AccountObj fields"]
    assert not result.ok and "field_mail__c" in result.detail and "[connectors.NAME.members]" in result.detail


def test_bad_credentials_give_one_failed_line_without_secrets(fake: FakeFxiaoke, connect) -> None:
    results = connect(app_secret="not-the-secret-99").check()
    assert [(r.name, r.ok) for r in results] == [("credentials", False)]
    assert "10006" in results[0].detail
    assert "not-the-secret-99" not in results[0].detail and APP_SECRET not in results[0].detail


def test_operator_without_permission_fails_the_read_check(fake: FakeFxiaoke, connect) -> None:
    conn = connect()
    conn.client.tokens.get()
    fake.codes.append((32000, "没有客户的列表权限"))
    result = by_name(conn.check())["read AccountObj"]
    assert not result.ok
    assert "needs list and data permission on AccountObj" in result.detail and "user_id 1000" in result.detail
