"""Every example policy loads, compiles and grades."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from policy_support import NOW, Store, day

from crmsync.policy import Policy, compile_policy

# buyer: 15 orders of 900 within the last 75 days, 15 reviews and 1 comment.
EXPECTED = {
    "retail": "Platinum",  # spend_365d 13500 >= 5000 and orders_365d 15 >= 6
    "retail_cn": "金卡",  # spend_this_period: the orders of this year (2024, up to 30 June) 13500 >= 10000
    "b2b": "Strategic",  # orders_90d 15 >= 12
    "community": "Contributor",  # 15 reviews * 25 + 1 comment * 5 = 380 points >= 300
}
EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "policies").glob("*.toml"))


def test_the_examples_exist() -> None:
    assert [p.name for p in EXAMPLES] == ["b2b.toml", "community.toml", "retail.toml", "retail_cn.toml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_compiles_and_grades(path: Path, store: Store) -> None:
    policy = Policy.model_validate(tomllib.loads(path.read_text(encoding="utf-8"))["policy"])
    compiled = compile_policy(policy, timezone="Asia/Shanghai" if path.stem.endswith("_cn") else "UTC")
    store.member("buyer")
    store.member("idle")
    for i in range(15):
        store.order("buyer", "900", day(5 + i * 5))
        store.activity("buyer", "review", day(1 + i))
    store.activity("buyer", "comment", day(1))
    compiled.grade(store.con, NOW)
    tiers = store.graded("tier")
    assert tiers["idle"] == compiled.tier_names[-1]
    assert tiers["buyer"] == EXPECTED[path.stem]
    if path.stem == "retail_cn":  # the classic 8 segments with their Chinese names; the bonus of 金卡 is pushed
        segment, points = store.graded("rfm_segment, points")["buyer"]
        assert segment == "一般挽留客户"  # the only buyer is not above the mean of the buyers: low on R, F and M
        assert points == 13500 + 500  # earned before any tier was held (1x), and the entry bonus


def test_retail_cn_example_paid_membership_and_yearly_tiers(store: Store) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    path = next(p for p in EXAMPLES if p.stem == "retail_cn")
    compiled = compile_policy(
        Policy.model_validate(tomllib.loads(path.read_text(encoding="utf-8"))["policy"]), timezone="Asia/Shanghai"
    )
    store.member("vip", attributes='{"vip_until": "2026-06-30"}')
    store.member("gold")
    store.member("silver")
    for i in range(12):
        store.order("gold", "1000", datetime(2026, 1, 5, 12, tzinfo=tz) + timedelta(days=14 * i))
    store.order("silver", "3500", datetime(2025, 11, 1, 12, tzinfo=tz))  # earned in 2025: 银卡 through 2026
    compiled.grade(store.con, datetime(2026, 6, 28, 10, tzinfo=tz))
    compiled.grade(store.con, datetime(2026, 6, 30, 23, 59, tzinfo=tz))
    assert store.graded("tier") == {"vip": "年度大会员", "gold": "金卡", "silver": "银卡"}
    compiled.grade(store.con, datetime(2026, 7, 1, 0, 1, tzinfo=tz))  # the paid year ended at midnight
    tiers = store.graded("tier, tags")
    assert tiers["vip"] == ("铜卡", [])
    assert tiers["silver"] == ("银卡", ["benefit_free_shipping"] if compiled.policy.benefit_tags else [])
