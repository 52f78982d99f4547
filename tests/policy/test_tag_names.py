"""Tag names: letters and digits of any script (Chinese tags like 生日月), never what breaks a CSV cell or a CRM
multi-select (separators, quotes, line breaks, control characters)."""

from __future__ import annotations

import csv
import io
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_support import Store, day, grade
from pydantic import ValidationError

from crmsync.policy import Policy
from crmsync.policy.names import TAG_NAME_MAX, tag_name_problem
from crmsync.policy.stages import push_values

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LETTERS = st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl"))
INNER = st.one_of(LETTERS, st.characters(categories=("Mn", "Mc")), st.sampled_from("_- "))
names = st.builds(
    lambda first, middle, last: unicodedata.normalize("NFC", first + middle + last),
    LETTERS,
    st.text(INNER, max_size=20),
    LETTERS,
).filter(lambda n: len(n) <= TAG_NAME_MAX and unicodedata.normalize("NFC", n) == n and n[0] not in "- ")
BREAKING = st.sampled_from(
    [",", ";", "|", "\n", "\r", "\t", '"', "'", "\x00", "\x7f", "、", "\uff0c", "\uff1b", "\u3000", "\u00a0"]
)


@pytest.mark.parametrize(
    "name", ["生日月", "VIP客户", "618大促", "高价值_回头客", "at-risk vip", "Müller", "कलम", "\uff36\uff29\uff30"]
)
def test_unicode_tag_names_are_accepted_and_graded(store: Store, name: str) -> None:
    store.member("m")
    store.order("m", "10", day(3))
    tags = grade(store, {"tags": {name: "orders_lifetime >= 1", "other": "false"}}, columns="tags")
    assert tags == {"m": [name]}
    assert push_values(Policy.model_validate({"tags": {name: "true"}}))["tags"] == (name,)


@FAST
@given(name=names)
def test_every_allowed_name_survives_a_csv_cell_and_a_multi_select(name: str) -> None:
    assert tag_name_problem(name) is None
    for sep in ("|", ";"):
        buf = io.StringIO()
        csv.writer(buf).writerow(["m1", sep.join([name, "vip", name + "2"])])
        (row,) = list(csv.reader(io.StringIO(buf.getvalue())))
        assert row[1].split(sep) == [name, "vip", name + "2"]
    assert name == name.strip() and not any(unicodedata.category(c).startswith(("C", "Z")) and c != " " for c in name)


@FAST
@given(name=names, bad=BREAKING, at=st.integers(min_value=0, max_value=30))
def test_a_breaking_character_is_refused_naming_it_and_its_position(name: str, bad: str, at: int) -> None:
    pos = min(at, len(name))
    text = name[:pos] + bad + name[pos:]
    with pytest.raises(ValidationError) as info:
        Policy.model_validate({"tags": {text: "true"}})
    message = str(info.value)
    assert f"U+{ord(bad):04X}" in message and f"at position {pos + 1}:" in message
    assert "letters and digits of any script" in message


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "is empty"),
        ("x" * (TAG_NAME_MAX + 1), f"is {TAG_NAME_MAX + 1} characters long"),
        ("-vip", "starts with '-'"),
        (" vip", "starts with ' '"),
        ("vip ", "ends with ' '"),
        ("e\u0301te", "not in composed form (Unicode NFC); write it as '\\xe9te'"),
        ("=cmd", "has '=' (U+003D) at position 1"),
    ],
)
def test_other_refusals_say_why(name: str, why: str) -> None:
    problem = tag_name_problem(name)
    assert problem is not None and why in problem


def test_benefit_tags_follow_the_same_rule() -> None:
    tiers = [{"name": "金卡", "condition": "true", "benefits": ["包邮", "生日礼"]}, {"name": "银卡"}]
    policy = Policy.model_validate({"tiers": tiers, "benefit_tags": True, "benefit_tag_prefix": "权益_"})
    assert push_values(policy)["tags"] == ("权益_包邮", "权益_生日礼")
    bad = [{**tiers[0], "benefits": ["包邮|次日达"]}, tiers[1]]
    with pytest.raises(ValidationError, match=r"tiers\[0\]\.benefits: benefit tag '权益_包邮\|次日达' has '\|'"):
        Policy.model_validate({"tiers": bad, "benefit_tags": True, "benefit_tag_prefix": "权益_"})
    assert Policy.model_validate({"tiers": bad}).tiers[0].benefits == ["包邮|次日达"]  # not tags: not checked
