"""check(): credentials, scopes, pushed fields and every value a push can write; create_fields(): missing fields
with all their values, missing options added to existing fields; Bulk Write prerequisites."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from crmsync_zoho.connector import ZohoConnector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.connector import ConnectorContext, ProfileChange

from .conftest import make_settings
from .fake import FakeZoho, push_field

SEGMENTS = ("Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About to Sleep",
            "At Risk", "Can't Lose Them", "Hibernating", "Lost")  # fmt: skip
STAGES = ("potential", "new", "returning", "mature", "loyal", "dormant", "churned")
POLICY_VALUES = {
    "tier": ("Gold", "Silver", "Bronze"),
    "rfm_segment": SEGMENTS,
    "lifecycle": STAGES,
    "tags": ("at_risk_vip", "big_spender", "benefit_free_shipping"),
}


def by_name(results) -> dict:
    return {r.name: r for r in results}


@pytest.fixture
def policy_context() -> ConnectorContext:
    return ConnectorContext(name="crm", push_values=POLICY_VALUES)


def connector(fake: FakeZoho, context: ConnectorContext, **overrides: Any) -> ZohoConnector:
    overrides.setdefault("tier_names", [])
    return ZohoConnector(make_settings(**overrides), context, transport=fake.transport, sleep=fake.sleep)


def picklist_org(fake: FakeZoho, **values: list[str]) -> None:
    """Every pushed field a picklist (tags a multi-select) holding ``values`` (default: none of the policy's)."""
    fake.fields["Contacts"] = [
        push_field("Loyalty_Tier", "picklist", values.get("tier", ["Gold"]), 1),
        push_field("Loyalty_Points", "integer", None, 2),
        push_field("Loyalty_Tags", "multiselectpicklist", values.get("tags", ["big_spender"]), 3),
        push_field("RFM_Segment", "picklist", values.get("rfm_segment", ["Champions", "Loyal"]), 4),
        push_field("Lifecycle_Stage", "picklist", values.get("lifecycle", ["new"]), 5),
    ]


def test_check_passes_on_a_ready_org(fake: FakeZoho, policy_context) -> None:
    picklist_org(fake, **{k: list(v) for k, v in POLICY_VALUES.items()})
    results = connector(fake, policy_context).check()
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    names = by_name(results)
    assert {"credentials", "scopes", "read Contacts", "read Sales_Orders", "field Loyalty_Tier (tier)"} <= set(names)
    assert "allows all 11 values" in names["field RFM_Segment (rfm_segment)"].detail
    writes = [r for r in fake.requests if r.method in ("PUT", "POST", "PATCH") and "oauth" not in r.url.path]
    assert all(r.url.path.endswith("/upload") and b"PK" not in r.content for r in writes)  # an empty probe only


def test_check_names_every_missing_value_of_every_field(fake: FakeZoho, policy_context) -> None:
    picklist_org(fake)
    names = by_name(connector(fake, policy_context).check())
    expected = {
        "field Loyalty_Tier (tier)": ["'Silver'", "'Bronze'"],
        "field RFM_Segment (rfm_segment)": [f"'{s}'" for s in SEGMENTS[2:]],
        "field Lifecycle_Stage (lifecycle)": [f"'{s}'" for s in STAGES if s != "new"],
        "field Loyalty_Tags (tags)": ["'at_risk_vip'", "'benefit_free_shipping'"],
    }
    for name, missing in expected.items():
        result = names[name]
        assert not result.ok and all(m in result.detail for m in missing), result
        assert f"lacks {len(missing)} value(s)" in result.detail and "--create-fields" in result.detail
        assert "-None-" not in result.detail
    assert names["field Loyalty_Points (points)"].ok


def test_explicit_tier_and_tag_names_win_over_the_policy(fake: FakeZoho, policy_context) -> None:
    picklist_org(fake, tier=["Gold", "Silver", "Bronze", "Diamond"])
    names = by_name(connector(fake, policy_context, tier_names=["Diamond"], tag_names=["vip"]).check())
    assert names["field Loyalty_Tier (tier)"].ok
    tags = names["field Loyalty_Tags (tags)"]
    assert not tags.ok and "'vip'" in tags.detail and "at_risk_vip" not in tags.detail.split("(has")[0]


def test_check_names_missing_fields_wrong_types_and_short_text(fake: FakeZoho, policy_context) -> None:
    short = push_field("RFM_Segment", "text", None, 4) | {"length": 12}
    fake.fields["Contacts"] = [push_field("Loyalty_Points", "text", None, 2), short]
    names = by_name(connector(fake, policy_context).check())
    assert not names["field Loyalty_Points (points)"].ok and "integer" in names["field Loyalty_Points (points)"].detail
    assert not names["field Loyalty_Tags (tags)"].ok and "missing" in names["field Loyalty_Tags (tags)"].detail
    rfm = names["field RFM_Segment (rfm_segment)"]
    assert not rfm.ok and "'Potential Loyalist'" in rfm.detail and "'Lost'" not in rfm.detail


def test_check_reports_missing_scopes(fake: FakeZoho, connect) -> None:
    fake.token_scope = "ZohoCRM.modules.contacts.READ"
    scopes = by_name(connect().check())["scopes"]
    assert not scopes.ok
    assert "ZohoCRM.modules.contacts.UPDATE" in scopes.detail and "ZohoCRM.settings.fields.READ" in scopes.detail


def test_create_fields_creates_missing_fields_with_every_value(fake: FakeZoho, policy_context) -> None:
    fake.fields["Contacts"] = [push_field("Loyalty_Tier", "picklist", ["Gold", "Silver", "Bronze"], 1)]
    results = connector(fake, policy_context).create_fields()
    assert {r.name for r in results if r.ok} == {
        "create Loyalty_Points", "create Loyalty_Tags", "create RFM_Segment", "create Lifecycle_Stage"
    }  # fmt: skip
    (post,) = [r for r in fake.requests if r.method == "POST" and "settings" in r.url.path]
    created = {f["field_label"]: f for f in json.loads(post.content)["fields"]}
    assert {k: f["data_type"] for k, f in created.items()} == {"Loyalty Points": "integer",
        "Loyalty Tags": "multiselectpicklist", "RFM Segment": "picklist", "Lifecycle Stage": "picklist"}  # fmt: skip
    assert [o["display_value"] for o in created["RFM Segment"]["pick_list_values"]] == list(SEGMENTS)
    assert all(r.ok for r in connector(fake, policy_context).check())


def test_create_fields_adds_missing_options_to_existing_fields(fake: FakeZoho, policy_context) -> None:
    picklist_org(fake)
    before = {f["api_name"]: [o["id"] for o in f["pick_list_values"]] for f in fake.fields["Contacts"]}
    results = by_name(connector(fake, policy_context).create_fields())
    rfm = results["add options to RFM_Segment"]
    assert rfm.ok and "'Can't Lose Them'" in rfm.detail and "'Champions'" not in rfm.detail
    patches = [json.loads(r.content)["fields"] for r in fake.requests if r.method == "PATCH"]
    assert len(patches) == 1 and len(patches[0]) == 4 <= 5  # tier, tags, segment, stage: one call
    assert all("id" not in o for f in patches[0] for o in f["pick_list_values"])  # entries without id: added
    after = {f["api_name"]: [o["id"] for o in f["pick_list_values"]] for f in fake.fields["Contacts"]}
    assert all(after[api][: len(ids)] == ids for api, ids in before.items())  # the options already there stay
    assert all(r.ok for r in connector(fake, policy_context).check())
    assert by_name(connector(fake, policy_context).create_fields())["create fields"].ok  # nothing left to add


def test_create_fields_reports_what_zoho_refused(fake: FakeZoho, policy_context) -> None:
    picklist_org(fake)
    fake.token_scope = "ZohoCRM.modules.ALL ZohoCRM.settings.fields.READ"
    refused = by_name(connector(fake, policy_context).create_fields())
    assert not refused["add options to Loyalty_Tier"].ok and "OAUTH_SCOPE_MISMATCH" in (
        refused["add options to Loyalty_Tier"].detail
    )


def test_create_fields_needs_values_for_a_new_picklist(fake: FakeZoho) -> None:
    fake.fields["Contacts"] = []
    results = by_name(connector(fake, ConnectorContext(name="crm")).create_fields())
    assert not results["create Loyalty_Tier"].ok and "tier_names" in results["create Loyalty_Tier"].detail


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    have=st.fixed_dictionaries({k: st.lists(st.sampled_from(v), unique=True) for k, v in POLICY_VALUES.items()}),
    tier=st.sampled_from(POLICY_VALUES["tier"]), segment=st.sampled_from(SEGMENTS), stage=st.sampled_from(STAGES),
    tags=st.lists(st.sampled_from(POLICY_VALUES["tags"]), unique=True),
)  # fmt: skip
def test_after_create_fields_every_value_a_push_can_write_is_accepted(have, tier, segment, stage, tags) -> None:
    """Whatever options an org starts with, after create_fields a push of any policy value is never refused."""
    fake = FakeZoho()
    picklist_org(fake, **{k: v or [POLICY_VALUES[k][0]] for k, v in have.items()})
    context = ConnectorContext(name="crm", push_values=POLICY_VALUES)
    conn = connector(fake, context)
    assert all(r.ok for r in conn.create_fields())
    (contact,) = fake.seed_contacts(1)
    values = {"tier": tier, "points": 7, "tags": tags, "rfm_segment": segment, "lifecycle": stage}
    (result,) = conn.push([ProfileChange(contact, values, {}, frozenset(values))])
    assert result.ok, result.reason


# -- Bulk Write prerequisites ------------------------------------------------------------------------------


def bulk_results(results) -> dict:
    return {r.name: r for r in results if r.name.startswith("Bulk Write")}


def test_bulk_write_is_not_checked_when_its_threshold_cannot_be_reached(fake: FakeZoho, connect) -> None:
    fake.seed_contacts(3)
    (result,) = bulk_results(connect(bulk_write_threshold=10).check()).values()
    assert result.ok and "not used: 3 contacts" in result.detail
    assert not fake.calls("org") and not fake.calls("bulk_write upload")
    assert bulk_results(connect(bulk_write_threshold=None).check()) == {}


def test_bulk_write_prerequisites_are_checked_when_reachable(fake: FakeZoho, connect) -> None:
    fake.seed_contacts(3)
    (result,) = bulk_results(connect(bulk_write_threshold=3).check()).values()
    assert result.ok and "700000001" in result.detail and "content.zohoapis.com" in result.detail
    (probe,) = [r for r in fake.requests if r.url.path.endswith("/upload")]
    assert probe.headers["X-CRM-ORG"] == "700000001" and b"PK" not in probe.content
    assert not fake.jobs  # nothing was uploaded


@pytest.mark.parametrize(
    ("scope", "answer", "words"),
    [
        ("ZohoCRM.modules.ALL ZohoCRM.settings.fields.ALL ZohoCRM.org.READ", None,
         ["ZohoCRM.bulk.CREATE", "ZohoFiles.files.ALL", "fall back"]),
        (None, ("org", httpx.Response(200, json={"org": [{"company_name": "Zylker"}]})), ["zgid", "fall back"]),
        (None, ("bulk_write upload", httpx.Response(403, json={"code": "NO_PERMISSION", "details": {},
                "message": "permission denied", "status": "error"})), ["refused the token", "fall back"]),
        (None, ("bulk_write upload", httpx.ConnectError("unreachable")), ["connection failed", "fall back"]),
    ],
)  # fmt: skip
def test_bulk_write_problems_are_named(fake: FakeZoho, connect, scope, answer, words) -> None:
    fake.seed_contacts(3)
    if scope:
        fake.token_scope = scope
    if answer:
        fake.fail_next(answer[0], *[answer[1]] * 6)
    results = bulk_results(connect(bulk_write_threshold=2, max_retries=1).check())
    failed = " ".join(r.detail for r in results.values() if not r.ok)
    assert failed and all(w in failed for w in words), results
