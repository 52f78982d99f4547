"""Tier assignment: conditions, thresholds, upgrades, grace-period downgrades, locks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from policy_support import NOW, Store, compiled, connect, day, grade

from crmsync.policy import audit_log, clear_override, list_overrides, set_override

RETAIL = {
    "tiers": [
        {"name": "Gold", "condition": "spend_365d >= 2000"},
        {"name": "Silver", "condition": "spend_365d >= 500"},
        {"name": "Bronze"},
    ]
}


def test_first_matching_tier_wins_and_threshold_is_inclusive(store: Store) -> None:
    for m in ("exact", "below", "none", "high"):
        store.member(m)
    store.order("exact", "2000", day(10))
    store.order("below", "1999.9999", day(10))
    store.order("high", "5000", day(1))
    result = grade(store, RETAIL, columns="tier, tier_rank")
    assert result == {
        "below": ("Silver", 2),
        "exact": ("Gold", 3),
        "high": ("Gold", 3),
        "none": ("Bronze", 1),
    }


def test_window_excludes_the_instant_exactly_n_days_before(store: Store) -> None:
    store.member("edge")
    store.member("inside")
    store.order("edge", "2000", day(365))
    store.order("inside", "2000", day(365) + timedelta(seconds=1))
    assert grade(store, RETAIL) == {"edge": "Bronze", "inside": "Gold"}


def test_deleted_members_refunds_and_unmatched_orders_do_not_count(store: Store) -> None:
    store.member("m")
    store.member("gone", deleted=True)
    store.order("m", "1500", day(3))
    store.order("m", "900", day(3), status="refunded")
    store.order("m", "900", day(3), deleted=True)
    store.order(None, "900", day(3))
    store.order("gone", "5000", day(3))
    assert grade(store, RETAIL) == {"m": "Silver"}


def test_counting_refunds_is_a_configuration_choice(store: Store) -> None:
    store.member("m")
    store.order("m", "1500", day(3))
    store.order("m", "900", day(3), status="refunded")
    policy = {**RETAIL, "metrics": {"order_statuses": ["paid", "refunded"]}}
    assert grade(store, policy) == {"m": "Gold"}


def test_upgrade_is_immediate_and_records_previous_tier(store: Store) -> None:
    store.member("m")
    store.order("m", "600", day(100))
    p = compiled(RETAIL)
    p.grade(store.con, day(50))
    store.save_profiles()
    assert store.graded("tier, tier_since, previous_tier") == {"m": ("Silver", day(50).date(), None)}
    store.order("m", "1500", day(10))
    p.grade(store.con, NOW)
    # the member qualified for Gold at the end of the day the order was placed: that day, not the late run's
    assert store.graded("tier, tier_since, previous_tier") == {"m": ("Gold", day(10).date(), "Silver")}


def _downgrade_setup(store: Store, grace: int, max_levels: int = 1):
    """Member qualifies for Gold until its big order leaves the 365-day window at t0."""
    store.member("m")
    placed = day(400)
    store.order("m", "3000", placed)
    policy = compiled({**RETAIL, "downgrade": {"grace_days": grace, "max_levels": max_levels}})
    t_gold = placed + timedelta(days=1)
    policy.grade(store.con, t_gold)
    store.save_profiles()
    assert store.graded() == {"m": "Gold"}
    t0 = placed + timedelta(days=365, hours=1)  # first evaluation at which the member no longer qualifies
    return policy, t0


def test_downgrade_waits_for_the_grace_period(store: Store) -> None:
    policy, t0 = _downgrade_setup(store, grace=30)
    policy.grade(store.con, t0)
    store.save_profiles()
    assert store.graded("tier") == {"m": "Gold"}
    policy.grade(store.con, t0 + timedelta(days=29))  # one day before the grace period ends
    store.save_profiles()
    assert store.graded("tier") == {"m": "Gold"}
    policy.grade(store.con, t0 + timedelta(days=30))  # the day it ends
    assert store.graded("tier, previous_tier, tier_since") == {
        "m": ("Silver", "Gold", (t0 + timedelta(days=30)).date())
    }


def test_downgrade_drops_at_most_max_levels_per_evaluation(store: Store) -> None:
    policy, t0 = _downgrade_setup(store, grace=0, max_levels=1)
    policy.grade(store.con, t0)
    store.save_profiles()
    assert store.graded() == {"m": "Silver"}  # qualifies for Bronze, drops one level
    policy.grade(store.con, t0 + timedelta(days=1))
    assert store.graded() == {"m": "Bronze"}


def test_requalifying_during_grace_resets_it(store: Store) -> None:
    policy, t0 = _downgrade_setup(store, grace=30)
    policy.grade(store.con, t0)
    store.order("m", "2500", t0 + timedelta(days=5))
    policy.grade(store.con, t0 + timedelta(days=6))
    state = store.con.execute("SELECT tier, below_since FROM policy_tier_state").fetchall()
    assert state == [("Gold", None)]


def test_override_wins_is_audited_and_expires(store: Store) -> None:
    store.member("m")
    store.order("m", "10", day(3))
    p = compiled(RETAIL)
    until = NOW.date() + timedelta(days=10)
    set_override(store.con, "m", "Gold", until, "key account", "alice", tier_names=p.tier_names)
    p.grade(store.con, NOW)
    store.save_profiles()
    tier, reasons = store.graded("tier, reasons")["m"]
    assert tier == "Gold"
    assert "locked by alice until" in reasons and "key account" in reasons
    p.grade(store.con, NOW + timedelta(days=10))  # last day of the lock
    store.save_profiles()
    assert store.graded() == {"m": "Gold"}
    assert [o.tier for o in list_overrides(store.con)] == ["Gold"]
    p.grade(store.con, NOW + timedelta(days=11))  # expired: rules resume, no grace configured
    assert store.graded() == {"m": "Silver"}  # one level per evaluation
    assert list_overrides(store.con) == []
    assert [e["action"] for e in audit_log(store.con, "m")] == ["set", "expired"]


def test_clear_override(store: Store) -> None:
    store.member("m")
    set_override(store.con, "m", "Gold", None, "test", "bob")
    assert clear_override(store.con, "m", "bob") is True
    assert clear_override(store.con, "m", "bob") is False
    assert [e["action"] for e in audit_log(store.con)] == ["set", "cleared"]
    assert grade(store, RETAIL) == {"m": "Bronze"}


def test_override_rejects_unknown_tier() -> None:
    from crmsync.errors import PolicyError

    with pytest.raises(PolicyError, match="unknown tier 'Diamond'"):
        set_override(None, "m", "Diamond", date(2030, 1, 1), "x", "y", tier_names=["Gold", "Bronze"])


THREE = {
    "tiers": [
        {"name": "Gold", "condition": "spend_30d >= 1000"},
        {"name": "Silver", "condition": "spend_30d >= 300"},
        {"name": "Bronze"},
    ]
}


def _gold_until(store: Store, left: datetime) -> None:
    """Member ``m`` qualifies for Gold (and nothing else) until its order leaves the 30-day window at ``left``."""
    store.member("m")
    store.order("m", "1500", left - timedelta(days=30))


@pytest.mark.parametrize("max_levels", [1, 2])
def test_runs_every_30_minutes_drop_at_most_max_levels_a_day(store: Store, max_levels: int) -> None:
    left = datetime(2024, 6, 10, 21, 0, tzinfo=UTC)
    _gold_until(store, left)
    policy = compiled({**THREE, "downgrade": {"grace_days": 0, "max_levels": 1}})
    policy.grade(store.con, left - timedelta(days=2))
    nights = [left + timedelta(hours=3, minutes=30 * i) for i in range(6)]  # 00:00 to 02:30 the next night
    tiers = []
    for at in [left + timedelta(minutes=30), *nights]:
        policy.grade(store.con, at)
        tiers.append(store.graded()["m"])
    # one level the day it stopped qualifying, one more the next day: never two levels in one night
    assert tiers == ["Silver"] + ["Bronze"] * 6
    policy.grade(store.con, left + timedelta(minutes=60))  # later runs the same day still show one level
    assert store.graded()["m"] == "Silver"


def test_a_late_run_starts_the_grace_period_on_the_day_qualification_was_lost(store: Store) -> None:
    left = datetime(2024, 6, 10, 21, 0, tzinfo=UTC)
    _gold_until(store, left)
    data = {**THREE, "downgrade": {"grace_days": 30, "max_levels": 1}}
    policy = compiled(data)
    policy.grade(store.con, left - timedelta(days=1))
    policy.grade(store.con, left + timedelta(days=34))  # the first run after a 34-day gap
    late = store.graded("tier, tier_since, previous_tier")["m"]
    daily = Store(connect())
    _gold_until(daily, left)
    for d in range(-1, 35):
        policy.grade(daily.con, left + timedelta(days=d))
    # grace from 10 June: Silver on 10 July, Bronze on 11 July, whether runs were daily or 34 days apart
    assert late == daily.graded("tier, tier_since, previous_tier")["m"] == ("Bronze", date(2024, 7, 11), "Silver")
    state = "SELECT tier, tier_since, below_since FROM policy_tier_state"
    assert store.con.execute(state).fetchall() == daily.con.execute(state).fetchall()


def test_grace_days_are_days_in_the_policy_time_zone(store: Store) -> None:
    # the order leaves the window at 20:00 UTC on 10 June: in Shanghai that is 11 June (04:00)
    left = datetime(2024, 6, 10, 20, 0, tzinfo=UTC)
    _gold_until(store, left)
    for tz, stopped in (("UTC", date(2024, 6, 10)), ("Asia/Shanghai", date(2024, 6, 11))):
        store.con.execute("DELETE FROM policy_tier_state; DELETE FROM policy_tier_clock")
        policy = compiled({**THREE, "downgrade": {"grace_days": 2}}, tz=tz)
        policy.grade(store.con, left - timedelta(days=1))
        policy.grade(store.con, left + timedelta(days=3))  # 13 June in UTC, 14 June in Shanghai
        rows = store.con.execute("SELECT tier, tier_since, below_since FROM policy_tier_state").fetchall()
        # kept two whole days in the zone, one level down on the third, still not qualifying
        assert rows == [("Silver", stopped + timedelta(days=2), stopped)], tz


def test_keep_condition_holds_a_tier_its_entry_condition_would_not_give(store: Store) -> None:
    data = {
        "tiers": [
            {"name": "Gold", "condition": "spend_30d >= 1000", "keep_condition": "spend_30d >= 600"},
            {"name": "Silver", "condition": "spend_30d >= 300", "keep_condition": "orders_30d >= 1"},
            {"name": "Bronze"},
        ],
    }
    for m in ("holder", "newcomer", "lapsed"):
        store.member(m)
    for m in ("holder", "lapsed"):
        store.order(m, "1000", day(40))  # Gold until it leaves the window at day(10)
    store.order("holder", "700", day(15))  # 700 left in the window: keeps Gold, would not enter it
    store.order("newcomer", "700", day(15))
    store.order("lapsed", "50", day(15))  # fails Gold's keep; lands on Silver through Silver's keep condition
    policy = compiled(data)
    policy.grade(store.con, day(39))
    policy.grade(store.con, NOW)
    tiers = store.graded("tier, reasons")
    assert {m: t for m, (t, _) in tiers.items()} == {"holder": "Gold", "newcomer": "Silver", "lapsed": "Silver"}
    assert '"keeps Gold: spend_30d >= 600 (spend_30d=700.0000)' in tiers["holder"][1]
    assert '"qualifies for Silver: spend_30d >= 300' in tiers["newcomer"][1]
    assert '"keeps Silver: orders_30d >= 1 (orders_30d=1)' in tiers["lapsed"][1]
    state = "SELECT member_id, tier, previous_tier FROM policy_tier_state ORDER BY member_id"
    assert store.con.execute(state).fetchall() == [
        ("holder", "Gold", None),
        ("lapsed", "Silver", "Gold"),
        ("newcomer", "Silver", "Bronze"),
    ]


@pytest.mark.parametrize(
    "gold",
    [
        {"condition": "spend_30d >= 1000 or (held_tier = 'Gold' and days_in_tier < 10)"},
        {"condition": "spend_30d >= 1000", "keep_condition": "held_tier = 'Gold' and days_in_tier < 10"},
    ],
    ids=["entry", "keep"],
)
def test_conditions_read_the_held_tier_and_how_long_it_is_held(store: Store, gold: dict) -> None:
    # a welcome period: a member who reached Gold keeps it for its first 10 days, whatever happens
    data = {"tiers": [{"name": "Gold", **gold}, {"name": "Bronze"}], "downgrade": {"grace_days": 0}}
    store.member("m")
    start = datetime(2024, 5, 1, 12, tzinfo=UTC)
    order = store.order("m", "1000", start)
    policy = compiled(data)
    policy.grade(store.con, start + timedelta(hours=1))
    policy.grade(store.con, start + timedelta(days=1, hours=1))  # 1 May decided: Gold since 1 May
    store.set_order(order, status="refunded")
    kept = []
    for d in range(2, 14):
        policy.grade(store.con, start + timedelta(days=d, hours=1))
        kept.append(store.graded("tier, tier_since")["m"])
    # held on 2..10 May (days_in_tier 1..9), dropped on 11 May
    assert kept == [("Gold", date(2024, 5, 1))] * 8 + [("Bronze", date(2024, 5, 11))] * 4
