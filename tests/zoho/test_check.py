"""check(): credentials, scopes, pushed fields and tier picklist values; create_fields()."""

from __future__ import annotations

import json

from .fake import FakeZoho, push_field


def by_name(results) -> dict:
    return {r.name: r for r in results}


def test_check_passes_on_a_ready_org(fake: FakeZoho, connect) -> None:
    results = connect().check()
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    names = by_name(results)
    assert {"credentials", "scopes", "read Contacts", "read Sales_Orders", "field Loyalty_Tier (tier)"} <= set(names)
    assert not any(r.method in ("PUT", "POST") and "oauth" not in r.url.path for r in fake.requests)


def test_check_names_missing_fields_wrong_types_and_tiers(fake: FakeZoho, connect) -> None:
    fake.fields["Contacts"] = [
        push_field("Loyalty_Tier", "picklist", ["Bronze", "Silver"], 1),
        push_field("Loyalty_Points", "text", None, 2),
    ]
    names = by_name(connect().check())
    tier = names["field Loyalty_Tier (tier)"]
    assert not tier.ok and "Gold" in tier.detail and "Platinum" in tier.detail and "-None-" not in tier.detail
    assert not names["field Loyalty_Points (points)"].ok and "integer" in names["field Loyalty_Points (points)"].detail
    assert not names["field Loyalty_Tags (tags)"].ok and "missing" in names["field Loyalty_Tags (tags)"].detail


def test_check_without_tier_names_stores_and_reports_allowed_values(fake: FakeZoho, connect, context) -> None:
    names = by_name(connect(tier_names=[]).check())
    assert names["field Loyalty_Tier (tier)"].ok and "Platinum" in names["field Loyalty_Tier (tier)"].detail
    stored = json.loads(context.state.get("zoho:crm:picklist:Loyalty_Tier"))
    assert stored == ["Bronze", "Silver", "Gold", "Platinum"]


def test_check_reports_missing_scopes(fake: FakeZoho, connect) -> None:
    fake.token_scope = "ZohoCRM.modules.contacts.READ"
    scopes = by_name(connect().check())["scopes"]
    assert not scopes.ok
    assert "ZohoCRM.modules.contacts.UPDATE" in scopes.detail and "ZohoCRM.settings.fields.READ" in scopes.detail


def test_create_fields_creates_only_missing_ones(fake: FakeZoho, connect) -> None:
    fake.fields["Contacts"] = [push_field("Loyalty_Tier", "picklist", ["Bronze", "Silver", "Gold", "Platinum"], 1)]
    results = connect(tag_names=["vip", "at_risk_vip"]).create_fields()
    assert {r.name for r in results if r.ok} == {
        "create Loyalty_Points", "create Loyalty_Tags", "create RFM_Segment", "create Lifecycle_Stage"
    }  # fmt: skip
    created = json.loads([r for r in fake.requests if r.method == "POST"][-1].content)["fields"]
    kinds = {f["field_label"]: f["data_type"] for f in created}
    assert kinds == {"Loyalty Points": "integer", "Loyalty Tags": "multiselectpicklist",
                     "RFM Segment": "picklist", "Lifecycle Stage": "picklist"}  # fmt: skip
    assert all(r.ok for r in connect().check())


def test_create_fields_needs_values_for_a_new_tier_picklist(fake: FakeZoho, connect) -> None:
    fake.fields["Contacts"] = []
    results = by_name(connect(tier_names=[]).create_fields())
    assert not results["create Loyalty_Tier"].ok and "tier_names" in results["create Loyalty_Tier"].detail
