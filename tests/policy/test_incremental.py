"""Incremental grading: recomputing only the members whose inputs changed or came due gives the same grades,
points ledger, tier state and decided days as grading everyone again, over random changes while time moves on
(rolling windows, calendar and anniversary periods, keep conditions, per-tier grace, days in tier)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
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
MEMBERS = [f"m{i}" for i in range(12)]
GRADES = ", ".join(GRADE_COLUMNS)


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


class Twins:
    """The same data in two stores: one graded incrementally, one graded whole each time."""

    def __init__(self, policy: dict[str, Any] = POLICY) -> None:
        self.inc, self.full = Store(connect()), Store(connect())
        self.policy = compiled(policy)

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
        ):
            sql = f"SELECT {cols} FROM {table} ORDER BY ALL"
            assert _rows(self.inc.con, sql) == _rows(self.full.con, sql), f"{table} differs as of {as_of}"
        # the members graded again carry the same reasons as when grading everyone
        full = {r[0]: r[1:] for r in _rows(self.full.con, f"SELECT member_id, {GRADES}, reasons FROM profiles")}
        for member_id, row in inc_graded.items():
            assert row == full[member_id], member_id
        return got.recomputed


def _scenario(rng: random.Random, twins: Twins, steps: int) -> list[int]:
    counter = iter(range(10**6))
    as_of = NOW
    live: list[str] = []
    for m in MEMBERS[:8]:
        twins.both(lambda s, m=m: s.member(m, created_at=NOW - timedelta(days=400)))
    recomputed = [twins.grade(as_of)]
    for _ in range(steps):
        for _ in range(rng.randint(0, 4)):
            kind = rng.choice(["order", "order", "future", "flip2", "move", "delete", "activity", "redeem", "member"])
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


@pytest.mark.parametrize(
    ("policy", "seed"),
    [("rolling", 0), ("rolling", 1), ("rolling", 2), ("rolling", 3), ("periods", 4), ("anniversary", 5)],
)
def test_incremental_grading_equals_grading_everyone(policy: str, seed: int) -> None:
    recomputed = _scenario(random.Random(seed), Twins(POLICIES[policy]), steps=14)
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
