"""Tier assignment: conditions, thresholds, upgrades, grace-period downgrades, locks."""

from __future__ import annotations

from datetime import date, timedelta

from policy_support import NOW, Store, compiled, day, grade

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
    import pytest

    from crmsync.errors import PolicyError

    with pytest.raises(PolicyError, match="unknown tier 'Diamond'"):
        set_override(None, "m", "Diamond", date(2030, 1, 1), "x", "y", tier_names=["Gold", "Bronze"])
