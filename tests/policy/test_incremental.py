"""Incremental grading: recomputing only the members whose inputs changed or came due gives the same grades,
points ledger, tier state and decided days as grading everyone again, over random changes while time moves on
(rolling windows, calendar and anniversary periods, keep conditions, per-tier grace, days in tier)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pytest
from policy_support import NOW, Store, compiled, connect, save_graded

from crmsync.policy.stages import GRADE_COLUMNS

POLICY: dict[str, Any] = {
    "metrics": {"windows": [30, 365]},
    "tiers": [
        {"name": "Gold", "condition": "spend_365d >= 300 and orders_30d >= 1", "points_multiplier": "2"},
        {"name": "Silver", "condition": "spend_365d >= 100 or activity_review_30d >= 2"},
        {"name": "Bronze"},
    ],
    "downgrade": {"grace_days": 10, "max_levels": 1},
    "points": {
        "per_currency_unit": "1",
        "expiry_days": 60,
        "activities": {"review": "15"},
        "redemption_kinds": ["redeem"],
    },
    "lifecycle": {"dormant_days": 40, "churned_days": 90},
    "tags": {"lapsing_vip": "tier = 'Gold' and days_since_last_order > 20", "refunder": "refunds_30d >= 1"},
}
PERIODS: dict[str, Any] = {
    **POLICY,
    "qualification": {"period": "calendar_month"},
    "tiers": [
        {
            "name": "Gold",
            "condition": "spend_this_period >= 300 or spend_last_period >= 300",
            "keep_condition": "spend_last_period >= 150 or (held_tier = 'Gold' and orders_30d >= 1)",
            "points_multiplier": "2",
        },
        {"name": "Silver", "condition": "orders_this_period >= 2 or activity_review_last_period >= 1"},
        {"name": "Bronze"},
    ],
}
ANNIVERSARY: dict[str, Any] = {
    **POLICY,
    "qualification": {"period": "anniversary"},
    "tiers": [
        # a paid-like tier that ends the day it lapses, without grace and straight down
        {"name": "VIP", "condition": "activity_review_30d >= 3", "grace_days": 0, "max_levels": 2},
        {"name": "Gold", "condition": "spend_this_period >= 300", "keep_condition": "days_in_tier < 20"},
        {"name": "Bronze"},
    ],
}
POLICIES = {"rolling": POLICY, "periods": PERIODS, "anniversary": ANNIVERSARY}
LOYALTY: dict[str, Any] = {
    "metrics": {"windows": [30, 90, 365]},
    "tiers": [
        {"name": "金卡", "condition": "qualifying_points_365d >= 600", "entry_bonus": 300, "points_multiplier": "1.5"},
        {"name": "银卡", "condition": "spend_net_365d >= 150", "entry_bonus": 50},
        {"name": "铜卡"},
    ],
    "downgrade": {"grace_days": 10},
    "points": {
        "per_currency_unit": "1",
        "expiry": "end_of_year",
        "expiry_years": 0,
        "activities": {"review": "15"},
        "non_qualifying_kinds": ["review"],
        "redemption_kinds": ["redeem"],
        "entry_bonus_on_reentry": True,
    },
    "rfm": {"segments": "classic8", "names": "zh", "method": "median", "window_days": 90, "monetary": "spend_net"},
    "tags": {
        "积分将过期": "points_expiring_30d > 0",
        "活跃": "points_earned_30d >= 100 or refunded_amount_30d > 0",
    },
}
"""The rules of a Chinese retail programme: qualifying points, entry bonuses, calendar-year expiry, no overdraft,
net spend, the classic 8-segment RFM over a window."""
COMBINED: dict[str, Any] = {
    **LOYALTY,
    "qualification": {"period": "calendar_month"},
    "tiers": [
        {
            "name": "金卡",
            "condition": "qualifying_points_365d >= 600 or spend_net_this_period >= 400",
            "keep_condition": "spend_net_last_period >= 150 or (held_tier = '金卡' and days_in_tier < 40)",
            "entry_bonus": 300,
            "points_multiplier": "1.5",
        },
        {
            "name": "银卡",
            "condition": "spend_net_365d >= 150 or refunded_amount_this_period > 50",
            "keep_condition": "orders_last_period >= 1",
            "entry_bonus": 50,
            "grace_days": 3,
        },
        {"name": "铜卡"},
    ],
}
"""Both kinds of rules at once: a calendar-month qualification period with keep conditions, the held tier and days in
tier, per-tier grace, entry bonuses granted on the days decided, qualifying points, net spend and refunds."""
MEMBERS = [f"m{i}" for i in range(12)]
GRADES = ", ".join(GRADE_COLUMNS)


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


class Twins:
    """The same data in two stores: one graded incrementally, one graded whole each time."""

    def __init__(self, policy: dict[str, Any] = POLICY, tz: str = "UTC") -> None:
        self.inc, self.full = Store(connect()), Store(connect())
        self.policy = compiled(policy, tz=tz)

    def both(self, change: Callable[[Store], Any]) -> None:
        change(self.inc)
        change(self.full)

    def grade(self, as_of: datetime) -> int:
        got = self.policy.grade(self.inc.con, as_of, incremental=True)
        save_graded(self.inc.con, got.incremental)
        inc_graded = {r[0]: r[1:] for r in _rows(self.inc.con, f"SELECT member_id, {GRADES}, reasons FROM graded")}
        self.policy.grade(self.full.con, as_of)
        save_graded(self.full.con, False)
        # every grade, ledger entry and held tier is what grading everyone gives
        for table, cols in (
            ("profiles", f"member_id, {GRADES}"),
            ("policy_points_ledger", "member_id, entry_ref, kind, occurred_at, expires_at, points, multiplier"),
            ("policy_tier_state", "member_id, tier, tier_since, previous_tier, below_since"),
            ("policy_tier_clock", "decided_through"),
            ("policy_points_bonus", "member_id, tier, entry_ref, granted_at, points"),
        ):
            sql = f"SELECT {cols} FROM {table} ORDER BY ALL"
            assert _rows(self.inc.con, sql) == _rows(self.full.con, sql), f"{table} differs as of {as_of}"
        # the members graded again carry the same reasons as when grading everyone
        full = {r[0]: r[1:] for r in _rows(self.full.con, f"SELECT member_id, {GRADES}, reasons FROM profiles")}
        for member_id, row in inc_graded.items():
            assert row == full[member_id], member_id
        return got.recomputed


def _scenario(rng: random.Random, twins: Twins, steps: int, start: datetime = NOW) -> list[int]:
    counter = iter(range(10**6))
    as_of = start
    live: list[str] = []
    for m in MEMBERS[:8]:
        twins.both(lambda s, m=m: s.member(m, created_at=NOW - timedelta(days=400)))
    recomputed = [twins.grade(as_of)]
    for _ in range(steps):
        for _ in range(rng.randint(0, 4)):
            kinds = ["order", "order", "future", "flip2", "move", "delete", "activity", "redeem", "member", "refund"]
            kind = rng.choice(kinds)
            m = rng.choice(MEMBERS[:8])
            when = as_of - timedelta(days=rng.uniform(0, 120))
            if kind in ("order", "future"):
                ext = f"o{next(counter)}"
                at = as_of + timedelta(days=rng.uniform(0.5, 15)) if kind == "future" else when
                amount = str(rng.choice([20, 60, 150, 320]))
                status = rng.choice(["paid", "paid", "refunded", "cancelled"])
                twins.both(lambda s, m=m, a=amount, t=at, e=ext, st=status: s.order(m, a, t, status=st, external_id=e))
                live.append(ext)
            elif kind == "flip2" and len(live) >= 2:
                # two orders of one member change the same way at once
                a, b = rng.sample(live, 2)
                for ext in (a, b):
                    twins.both(lambda s, e=ext: s.set_order(e, member_id="m0", status="paid"))
                twins.both(lambda s: s.con.execute("UPDATE orders SET status = 'refunded' WHERE member_id = 'm0'"))
            elif kind == "move" and live:
                twins.both(lambda s, e=rng.choice(live), m=m: s.set_order(e, member_id=m))
            elif kind == "refund" and live:  # a partial refund of an order placed earlier
                refund = Decimal(rng.choice(["5", "19.99"]))
                twins.both(
                    lambda s, e=rng.choice(live), r=refund: s.set_order(e, refunded_amount=r, refunded_amount_base=r)
                )
            elif kind == "delete" and live:
                twins.both(lambda s, e=rng.choice(live): s.set_order(e, deleted=True))
            elif kind == "activity":
                twins.both(lambda s, m=m, t=when: s.activity(m, "review", t))
            elif kind == "redeem":
                twins.both(lambda s, m=m, t=when: s.activity(m, "redeem", t, points="40"))
            elif kind == "member":
                new = rng.choice(MEMBERS[8:])
                gone = rng.random() < 0.3
                twins.both(
                    lambda s, n=new, g=gone: (
                        s.con.execute("UPDATE members SET deleted = ? WHERE external_id = ?", [g, n]).fetchall()
                        if s.con.execute("SELECT count(*) FROM members WHERE external_id = ?", [n]).fetchone()[0]
                        else s.member(n, created_at=NOW - timedelta(days=50), deleted=g)
                    )
                )
        as_of += timedelta(days=rng.choice([0, 0, 1, 3, 11, 29]), hours=rng.randint(0, 23))
        recomputed.append(twins.grade(as_of))
    return recomputed


YEAR_END = datetime(2024, 12, 20, tzinfo=UTC)
"""The loyalty scenarios start here: their points expire at the end of 2024 in Shanghai, a few steps later."""
LOYALTY_SCENARIOS = {"loyalty": LOYALTY, "combined": COMBINED}


@pytest.mark.parametrize(
    ("policy", "seed"),
    [("rolling", 0), ("rolling", 1), ("rolling", 2), ("rolling", 3), ("periods", 4), ("anniversary", 5)]
    + [("loyalty", s) for s in range(6, 9)]
    + [("combined", s) for s in range(9, 13)],
)
def test_incremental_grading_equals_grading_everyone(policy: str, seed: int) -> None:
    if policy in LOYALTY_SCENARIOS:
        twins, start = Twins(LOYALTY_SCENARIOS[policy], tz="Asia/Shanghai"), YEAR_END
    else:
        twins, start = Twins(POLICIES[policy]), NOW
    recomputed = _scenario(random.Random(seed), twins, steps=14, start=start)
    if policy in LOYALTY_SCENARIOS:  # the equality covered granted bonuses, not an empty table
        assert twins.inc.con.execute("SELECT count(*) FROM policy_points_bonus").fetchone()[0] > 0
    assert recomputed[0] == 8  # the first grading computes everyone
    assert min(recomputed[1:]) < 8  # later ones skip members whose inputs did not change


def test_nothing_changed_recomputes_nobody_and_grades_nobody() -> None:
    twins = Twins()
    twins.both(lambda s: s.member("m1"))
    twins.both(lambda s: s.order("m1", "320", NOW - timedelta(days=3)))
    assert twins.grade(NOW) == 1
    assert twins.grade(NOW) == 0
    assert _rows(twins.inc.con, "SELECT count(*) FROM graded") == [(0,)]


def test_time_alone_recomputes_the_members_whose_metrics_come_due() -> None:
    twins = Twins()
    for m in ("m1", "m2", "m3"):
        twins.both(lambda s, m=m: s.member(m))
    twins.both(lambda s: s.order("m1", "320", NOW - timedelta(days=25)))  # leaves the 30-day window in 5 days
    twins.both(lambda s: s.order("m2", "20", NOW + timedelta(days=2)))  # dated after the evaluation time
    twins.both(lambda s: s.order("m3", "20", NOW - timedelta(days=200)))  # nothing due for 165 days
    assert twins.grade(NOW) == 3
    assert twins.grade(NOW + timedelta(days=1)) == 0
    assert twins.grade(NOW + timedelta(days=3)) == 1  # m2's order came due
    assert twins.grade(NOW + timedelta(days=6)) == 1  # m1's order left the 30-day window


def test_a_changed_policy_or_an_earlier_time_grades_everyone() -> None:
    twins = Twins()
    for m in ("m1", "m2"):
        twins.both(lambda s, m=m: s.member(m))
        twins.both(lambda s, m=m: s.order(m, "320", NOW - timedelta(days=3)))
    assert twins.grade(NOW) == 2
    assert twins.grade(NOW - timedelta(days=1)) == 2  # back in time: nothing stored can be trusted
    twins.policy = compiled({**POLICY, "tags": {}})
    assert twins.grade(NOW) == 2
    assert twins.grade(NOW) == 0


def test_two_orders_changing_the_same_way_are_noticed() -> None:
    twins = Twins()
    twins.both(lambda s: s.member("m1"))
    for ext in ("a", "b"):
        twins.both(lambda s, e=ext: s.order("m1", "320", NOW - timedelta(days=3), external_id=e))
    assert twins.grade(NOW) == 1
    twins.both(lambda s: s.con.execute("UPDATE orders SET status = 'refunded'"))
    assert twins.grade(NOW) == 1
    assert _rows(twins.inc.con, "SELECT points, rfm_r FROM profiles") == [(0, None)]


def test_points_coming_due_at_a_year_end_and_entering_the_expiring_window_are_recomputed() -> None:
    twins = Twins(LOYALTY, tz="Asia/Shanghai")
    for m in ("m1", "m2"):
        twins.both(lambda s, m=m: s.member(m))
    # 100 points earned 2024-06-01: they expire at the end of 2024 in Shanghai (2024-12-31 16:00 UTC)
    twins.both(lambda s: s.order("m1", "100", datetime(2024, 6, 1, tzinfo=UTC)))
    twins.both(lambda s: s.order("m2", "20", datetime(2024, 6, 1, tzinfo=UTC) - timedelta(days=300)))
    end = datetime(2024, 12, 31, 16, tzinfo=UTC)
    assert twins.grade(end - timedelta(days=40)) == 2
    assert twins.grade(end - timedelta(days=35)) == 0
    assert twins.grade(end - timedelta(days=29)) == 1  # m1's points entered the 30-day window
    assert _rows(twins.inc.con, "SELECT tags FROM profiles WHERE member_id = 'm1'") == [(["积分将过期"],)]
    assert twins.grade(end) == 1  # and expired
    assert _rows(twins.inc.con, "SELECT points FROM profiles WHERE member_id = 'm1'") == [(0,)]
