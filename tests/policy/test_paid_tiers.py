"""Paid membership tiers (大会员 / 年度大会员): a tier held while a paid membership is valid ends exactly when it
lapses (its own ``grace_days = 0``), while earned tiers keep the default grace period."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from policy_support import Store, compiled

from crmsync.policy.days import TICK, day_end, zone

TZ = "Asia/Shanghai"


def _paid(condition: str) -> dict:
    return {
        "tiers": [
            # a lapsed membership drops at once (no grace) to the tier the member earned (up to two levels)
            {"name": "年度大会员", "condition": condition, "grace_days": 0, "max_levels": 2},
            {"name": "金卡", "condition": "spend_365d >= 2000"},
            {"name": "普通会员"},
        ],
        "downgrade": {"grace_days": 30},
    }


@pytest.mark.parametrize("valid_until", [date(2025, 3, 31), date(2025, 12, 31), date(2026, 2, 28)])
def test_a_membership_valid_until_a_date_ends_when_that_day_ends(store: Store, valid_until: date) -> None:
    policy = compiled(_paid("end_of_day(attr_date('vip_until')) >= today()"), tz=TZ)
    store.member("paid", attributes=json.dumps({"vip_until": valid_until.isoformat()}))
    last = day_end(valid_until, zone(TZ))  # the last instant of the last valid day in Shanghai
    store.member("earned")
    store.order("earned", "2500", last - timedelta(days=367))  # 金卡 until it leaves the 365-day window
    policy.grade(store.con, last - timedelta(days=4))
    for at, paid in ((last - timedelta(hours=5), "年度大会员"), (last, "年度大会员"), (last + TICK, "普通会员")):
        policy.grade(store.con, at)
        assert store.graded()["paid"] == paid, at
    # the earned tier, past its window, is still in its 30-day grace period
    assert store.graded()["earned"] == "金卡"


def test_a_membership_bought_as_an_activity_ends_365_days_later_to_the_instant(store: Store) -> None:
    policy = compiled(_paid("activity_vip_purchase_365d >= 1"), tz=TZ)
    store.member("m")
    bought = datetime(2025, 3, 14, 6, 30, tzinfo=UTC)
    store.activity("m", "vip_purchase", bought)
    lapse = bought + timedelta(days=365)
    policy.grade(store.con, bought + timedelta(minutes=1))
    seen = []
    for at in (lapse - timedelta(days=3), lapse - TICK, lapse, lapse + timedelta(hours=2)):
        policy.grade(store.con, at)
        seen.append(store.graded("tier, reasons")["m"])
    assert [t for t, _ in seen] == ["年度大会员", "年度大会员", "普通会员", "普通会员"]
    assert "dropped from 年度大会员 after the grace period" in seen[2][1]


def test_a_renewal_before_the_lapse_keeps_the_tier_without_a_gap(store: Store) -> None:
    policy = compiled(_paid("activity_vip_purchase_365d >= 1"), tz=TZ)
    store.member("m")
    bought = datetime(2025, 3, 14, 6, 30, tzinfo=UTC)
    store.activity("m", "vip_purchase", bought)
    store.activity("m", "vip_purchase", bought + timedelta(days=360))
    policy.grade(store.con, bought + timedelta(minutes=1))
    for days in (100, 365, 366, 500):
        policy.grade(store.con, bought + timedelta(days=days))
        assert store.graded("tier, tier_since")["m"] == ("年度大会员", date(2025, 3, 14)), days
