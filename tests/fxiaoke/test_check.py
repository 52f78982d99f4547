"""check(): credentials, operator permissions, source fields, every pushed field and select option."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.connector import ProfileChange
from crmsync.policy import Policy
from crmsync.policy.stages import push_values

from .conftest import LIFECYCLE, POINTS, POLICY, RFM, STAGE, TAGS, TIER, custom_fields, make_context, make_settings
from .fake import APP_SECRET, FakeFxiaoke, account_describe, order_describe

SELECTS = {"tier": TIER, "rfm_segment": RFM, "lifecycle": STAGE, "tags": TAGS}
BENEFITS = Policy.model_validate(
    {**POLICY.model_dump(exclude={"tiers"}), "benefit_tags": True, "benefit_tag_prefix": "b_",
     "tiers": [{"name": "Gold", "condition": "spend_365d >= 1000", "benefits": ["lounge", "free shipping"]},
               {"name": "Bronze", "benefits": ["newsletter"]}]}
)  # fmt: skip


def listed_options(detail: str) -> str:
    """The options a failed check asks for, as it lists them."""
    return detail.split("in this order: ", 1)[1].split(", giving each option", 1)[0]


def tenant_with_options(options: dict[str, list[str]]) -> FakeFxiaoke:
    """A tenant whose four select fields offer ``options`` (labels; values are opaque ids)."""
    fake = FakeFxiaoke()
    fields = custom_fields()
    for canonical, api in SELECTS.items():
        kind = "select_many" if canonical == "tags" else "select_one"
        opts = [{"label": label, "value": f"option{i}"} for i, label in enumerate(options[canonical])]
        fields[api] = {"type": kind, "label": api.removeprefix("field_").removesuffix("__c"), "options": opts}
    fake.describes["AccountObj"] = account_describe(**fields)
    fake.describes["SalesOrderObj"] = order_describe()
    return fake


def connector_for(fake: FakeFxiaoke, policy: Policy = POLICY, **overrides):
    from crmsync_fxiaoke.connector import FxiaokeConnector

    return FxiaokeConnector(make_settings(**overrides), make_context(policy), transport=fake.transport,
                            sleep=fake.sleep, clock=lambda: fake.now, monotonic=lambda: fake.now)  # fmt: skip


@st.composite
def offered(draw: st.DrawFn, policy: Policy) -> dict[str, list[str]]:
    """For each select field: a random subset of the values a push can write, in random order, plus strangers."""
    out = {}
    for canonical, values in push_values(policy).items():
        kept = draw(st.lists(st.sampled_from(values), unique=True)) if values else []
        out[canonical] = kept + draw(st.lists(st.sampled_from(["Platinum", "旧等级", "Dormant "]), unique=True))
    return out


@settings(max_examples=40, deadline=None)
@given(policy=st.sampled_from([POLICY, BENEFITS, Policy()]), data=st.data())
def test_every_value_a_push_can_write_is_checked_against_the_select_options(policy: Policy, data) -> None:
    options = data.draw(offered(policy))
    fake = tenant_with_options(options)
    results = {r.name: r for r in connector_for(fake, policy).check()}
    for canonical, api in SELECTS.items():
        wanted = push_values(policy)[canonical]
        missing = [v for v in wanted if v not in options[canonical]]
        result = results[f"field {api} ({canonical})"]
        assert result.ok == (not missing), (canonical, result.detail)
        if missing:  # each missing value named, in the policy's order, and nothing else
            listed = listed_options(result.detail)
            assert listed == ", ".join(json.dumps(v, ensure_ascii=False) for v in missing)
            assert f"{len(missing)} of the {len(wanted)} values" in result.detail
    assert all(c["path"] != "/cgi/crm/v2/data/update" for c in fake.calls)  # check never writes


def test_missing_options_say_what_to_add_in_the_console(fake: FakeFxiaoke, connect) -> None:
    options = [{"label": "Champions", "value": "rfm1"}, {"label": "Lost", "value": "rfm2"}]
    fake.describes["AccountObj"][RFM] = {"api_name": RFM, "type": "select_one", "label": "RFM分群",
                                         "define_type": "custom", "options": options}  # fmt: skip
    result = by_name(connect().check())[f"field {RFM} (rfm_segment)"]
    assert not result.ok
    assert result.detail.startswith("9 of the 11 values a push can write are not options of this select_one field")
    assert (
        "object management → AccountObj → field RFM分群 (field_Rfm01__c) → options), in this order: "
        '"Need Attention", "Loyal", "Potential Loyalist", "New", "Promising", "About to Sleep", '
        '"Can\'t Lose Them", "At Risk", "Hibernating", giving each option a label'
    ) in result.detail
    assert "option_map.rfm_segment" in result.detail and "check --create-fields cannot" in result.detail


def test_tags_and_benefit_tags_must_be_options_of_a_multi_select() -> None:
    fake = tenant_with_options({"tier": ["Gold", "Bronze"], "rfm_segment": [], "lifecycle": LIFECYCLE,
                                "tags": ["vip", "at_risk_vip", "b_lounge"]})  # fmt: skip
    fake.describes["AccountObj"][RFM] = {"api_name": RFM, "type": "text"}
    results = {r.name: r for r in connector_for(fake, BENEFITS).check()}
    tags = results[f"field {TAGS} (tags)"]
    assert not tags.ok and 'in this order: "b_free shipping", "b_newsletter", giving' in tags.detail
    assert results[f"field {RFM} (rfm_segment)"].ok  # a text field takes any segment


def test_option_map_names_the_option_a_value_is_written_as() -> None:
    fake = tenant_with_options(
        {"tier": ["金卡", "银卡", "普卡"], "rfm_segment": [], "lifecycle": LIFECYCLE, "tags": []}
    )
    option_map = {"tier": {"Gold": "金卡", "Silver": "银卡"}}
    result = {r.name: r for r in connector_for(fake, option_map=option_map).check()}[f"field {TIER} (tier)"]
    assert not result.ok and 'in this order: "Bronze", giving' in result.detail
    option_map["tier"]["Bronze"] = "普卡"
    assert {r.name: r for r in connector_for(fake, option_map=option_map).check()}[f"field {TIER} (tier)"].ok


def test_once_the_options_named_by_check_exist_every_grade_is_written() -> None:
    """What check names is what the tenant refuses; after an administrator adds it, nothing is refused."""
    fake = tenant_with_options({"tier": ["Gold"], "rfm_segment": ["Champions"], "lifecycle": ["new"], "tags": []})
    fake.put("AccountObj", {"_id": "a1", "name": "甲"})
    values = push_values(POLICY)
    changes = [ProfileChange("a1", {"tier": t, "rfm_segment": r, "lifecycle": lc, "tags": list(values["tags"])}, {},
                             frozenset(SELECTS)) for t in values["tier"] for r in ("Champions", "At Risk")
               for lc in ("new", "churned")]  # fmt: skip
    refused = [r for r in connector_for(fake).push(changes) if not r.ok]
    assert refused and all(r.retryable and r.field in SELECTS.values() for r in refused)
    for name, result in by_name(connector_for(fake).check()).items():
        if not result.ok and name.startswith("field "):
            api = name.split()[1]
            listed = json.loads(f"[{listed_options(result.detail)}]")
            meta = fake.describes["AccountObj"][api]
            meta["options"] += [{"label": v, "value": f"new{i}"} for i, v in enumerate(listed)]
    assert all(r.ok for r in connector_for(fake).check())
    assert all(r.ok for r in connector_for(fake).push(changes))


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
    assert "单选 (select_one) with options Gold, Silver, Bronze" in result.detail
    assert "push_fields.tier" in result.detail


def test_missing_select_options_are_listed(fake: FakeFxiaoke, connect) -> None:
    fake.describes["AccountObj"][STAGE]["options"] = [{"label": "loyal", "value": "stage_loyal"}]
    result = by_name(connect().check())[f"field {STAGE} (lifecycle)"]
    assert not result.ok
    assert 'in this order: "potential", "new", "returning", "mature", "dormant", "churned", giving' in result.detail


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
    assert "the operator (user_id 1000) needs the list and view permission on AccountObj" in result.detail
    assert "admin console" in result.detail
