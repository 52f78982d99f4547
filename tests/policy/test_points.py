"""The points ledger: rounding, multipliers, activities, redemptions, FIFO expiry, refunds, re-pulls."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from policy_support import NOW, Store, compiled, connect, day, grade


def _balance(store: Store) -> dict[str, int]:
    return store.graded("points")


@pytest.mark.parametrize(
    ("mode", "amounts", "expected"),
    [
        ("floor", ["10.99", "0.5"], 10),
        ("ceil", ["10.01", "0.5"], 12),
        ("half_up", ["10.5", "2.4999"], 13),
        ("half_even", ["10.5", "11.5"], 22),
    ],
)
def test_each_order_is_rounded(store: Store, mode: str, amounts: list[str], expected: int) -> None:
    store.member("m")
    for a in amounts:
        store.order("m", a, day(1))
    policy = {"points": {"per_currency_unit": "1", "rounding": mode}}
    assert grade(store, policy, columns="points") == {"m": expected}


def test_only_paid_orders_earn(store: Store) -> None:
    store.member("m")
    store.order("m", "100", day(1))
    for status in ("refunded", "cancelled", "pending"):
        store.order("m", "1000", day(1), status=status)
    policy = {"points": {"per_currency_unit": "0.1"}}
    assert grade(store, policy, columns="points") == {"m": 10}


def test_refund_after_points_were_earned_and_repull_never_double_counts(store: Store) -> None:
    store.member("m")
    keep = store.order("m", "40", day(5))
    refund = store.order("m", "60", day(4))
    p = compiled({"points": {"per_currency_unit": "1"}})
    p.grade(store.con, NOW)
    assert _balance(store) == {"m": 100}
    p.grade(store.con, NOW)  # evaluated again: nothing added
    assert _balance(store) == {"m": 100}
    store.set_order(keep, updated_at=NOW)  # re-pulled, unchanged
    store.set_order(refund, status="refunded")
    p.grade(store.con, NOW + timedelta(hours=1))
    assert _balance(store) == {"m": 40}
    ledger = store.con.execute("SELECT entry_ref, points FROM policy_points_ledger").fetchall()
    assert ledger == [(f"order:shop:{keep}", 40)]


def test_multiplier_of_the_tier_held_when_earned_is_kept(store: Store) -> None:
    store.member("m")
    store.order("m", "100", day(30))
    policy = {
        "tiers": [
            {"name": "Gold", "condition": "spend_lifetime >= 100", "points_multiplier": "2"},
            {"name": "Basic", "points_multiplier": "1"},
        ],
        "points": {"per_currency_unit": "1"},
    }
    p = compiled(policy)
    p.grade(store.con, day(20))  # no tier held yet: multiplier 1
    store.save_profiles()
    assert store.graded("tier, points") == {"m": ("Gold", 100)}
    store.order("m", "10", day(10))  # earned while Gold: x2
    p.grade(store.con, day(9))
    store.save_profiles()
    assert _balance(store) == {"m": 120}
    p.grade(store.con, NOW)  # re-evaluation keeps each entry's multiplier
    assert _balance(store) == {"m": 120}


def test_activity_points_source_points_and_redemptions(store: Store) -> None:
    store.member("m")
    store.activity("m", "login", day(5))
    store.activity("m", "login", day(4))
    store.activity("m", "review", day(3))
    store.activity("m", "bonus", day(3), points="7")
    store.activity("m", "redeem", day(2), points="12")
    store.activity("m", "pageview", day(1))
    policy = {
        "points": {
            "activities": {"login": "1", "review": "20"},
            "source_points_kinds": ["bonus"],
            "redemption_kinds": ["redeem"],
        },
        "tags": {"spender": "points_redeemed_lifetime = 12 and points_earned_lifetime = 29"},
    }
    assert grade(store, policy, columns="points, tags") == {"m": (17, ["spender"])}


def test_points_expire_on_their_expiry_instant(store: Store) -> None:
    store.member("m")
    earned = day(400)
    store.order("m", "100", earned)
    p = compiled({"points": {"per_currency_unit": "1", "expiry_days": 365}})
    expiry = earned + timedelta(days=365)
    p.grade(store.con, expiry - timedelta(seconds=1))
    assert _balance(store) == {"m": 100}
    p.grade(store.con, expiry)
    assert _balance(store) == {"m": 0}
    rows = store.con.execute("SELECT kind, points FROM policy_points_ledger ORDER BY occurred_at").fetchall()
    assert rows == [("order", 100), ("expiry", -100)]


def test_expiry_is_first_in_first_out_after_redemptions(store: Store) -> None:
    store.member("m")
    t0 = day(700)
    store.order("m", "100", t0)  # lot 1, expires t0 + 365
    store.order("m", "50", t0 + timedelta(days=200))  # lot 2, expires t0 + 565
    store.activity("m", "redeem", t0 + timedelta(days=300), points="60")  # taken from lot 1
    p = compiled({"points": {"per_currency_unit": "1", "expiry_days": 365, "redemption_kinds": ["redeem"]}})
    p.grade(store.con, t0 + timedelta(days=364))
    assert store.graded("points, reasons")["m"][0] == 90
    p.grade(store.con, t0 + timedelta(days=366))  # lot 1's remaining 40 expired
    assert _balance(store) == {"m": 50}
    p.grade(store.con, t0 + timedelta(days=566))  # lot 2 untouched, all 50 expire
    assert _balance(store) == {"m": 0}
    expired = store.con.execute(
        "SELECT entry_ref, points FROM policy_points_ledger WHERE kind = 'expiry' ORDER BY occurred_at"
    ).fetchall()
    assert [pts for _, pts in expired] == [-40, -50]


def test_redemption_after_expiry_instant_does_not_save_points(store: Store) -> None:
    store.member("m")
    t0 = day(500)
    store.order("m", "100", t0)
    store.order("m", "30", t0 + timedelta(days=300))
    store.activity("m", "redeem", t0 + timedelta(days=365), points="20")  # at lot 1's expiry: too late for it
    p = compiled({"points": {"per_currency_unit": "1", "expiry_days": 365, "redemption_kinds": ["redeem"]}})
    p.grade(store.con, t0 + timedelta(days=400))
    assert _balance(store) == {"m": 10}  # lot 1 expired whole; the redemption used lot 2


DAYS = 24


def _import(store: Store, rng: random.Random, start: datetime) -> None:
    """Three weeks of orders, imported at once before the first sync."""
    for m in ("a", "b", "c"):
        store.member(m)
        for _ in range(rng.randint(3, 7)):
            store.order(m, str(rng.choice([40, 120, 300])), start + timedelta(days=rng.uniform(0, DAYS - 3)))


MULTIPLIED = {
    "tiers": [
        {"name": "Gold", "condition": "spend_14d >= 400", "points_multiplier": "3"},
        {"name": "Silver", "condition": "spend_14d >= 150", "points_multiplier": "2"},
        {"name": "Bronze"},
    ],
    "downgrade": {"grace_days": 3},
}


@pytest.mark.parametrize("seed", [1, 2])
def test_imported_orders_earn_with_the_tier_held_when_they_were_placed(seed: int) -> None:
    start = datetime(2024, 3, 1, 10, tzinfo=UTC)
    first_sync = start + timedelta(days=DAYS)
    balances = {}
    for label, imported in (("base", "base"), ("replay", "tier_at_order"), ("daily", "base")):
        con = connect()
        store = Store(con)
        _import(store, random.Random(seed), start)
        policy = compiled({**MULTIPLIED, "points": {"per_currency_unit": "1", "imported_orders": imported}})
        runs = [start + timedelta(days=d, hours=-9) for d in range(DAYS + 1)] if label == "daily" else [first_sync]
        for at in runs:  # "daily": crmsync ran every day while the orders came in
            policy.grade(con, at)
            store.save_profiles()
        balances[label] = (store.graded("points, tier, tier_since"), sum(store.graded("points").values()))
        if label == "base":
            paid = con.execute("SELECT sum(floor(amount)) FROM orders WHERE status = 'paid'").fetchone()[0]
            assert balances["base"][1] == paid  # every imported order earned 1 point per unit: no multiplier
            assert con.execute("SELECT DISTINCT multiplier FROM policy_points_ledger").fetchall() == [(1,)]
    # replaying the history at the first sync gives what syncing all along would have given: points and tiers
    assert balances["replay"] == balances["daily"]
    assert balances["replay"][1] > balances["base"][1]


def test_a_backtest_replays_imported_orders_like_the_first_sync(store: Store) -> None:
    start = datetime(2024, 3, 1, 10, tzinfo=UTC)
    _import(store, random.Random(7), start)
    policy = compiled({**MULTIPLIED, "points": {"per_currency_unit": "1", "imported_orders": "tier_at_order"}})
    from crmsync.policy.preview import backtest

    periods = backtest(store.con, policy, start + timedelta(days=10), start + timedelta(days=DAYS), every=DAYS - 10)
    policy.grade(store.con, start + timedelta(days=DAYS))
    tiers = list(store.graded().values())
    assert periods[-1].distribution == {t: tiers.count(t) for t in policy.tier_names}
