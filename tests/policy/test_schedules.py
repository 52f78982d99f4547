"""Grades do not depend on how often sync runs: the same history graded at different run schedules (every 30
minutes, daily, weekly, after a 34-day gap) and replayed by a backtest gives the same tiers, tier dates, previous
tiers, points balances and tier-entry bonuses (each granted once, dated at the end of the day of entry) on the same
days. Tiers are decided per day: a member drops at most ``max_levels`` a
day, and a grace period starts on the day the member stopped qualifying, not on the day a late run notices."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from policy_support import Store, compiled, connect, save_graded

from crmsync.policy.preview import backtest

GRADES = "tier, tier_since, previous_tier, points"
SPAN = 35
"""Days from the first run to the last: five weeks."""

POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    # rolling windows, keep thresholds, per-tier grace, a paid tier that ends the day it lapses, multipliers;
    # in a zone whose clocks change during the span
    "rolling": (
        "America/New_York",
        {
            "tiers": [
                {
                    "name": "VIP",
                    "condition": "activity_vip_20d >= 1",
                    "grace_days": 0,
                    "points_multiplier": "3",
                    "entry_bonus": 1000,
                },
                {
                    "name": "Gold",
                    "condition": "spend_30d >= 500",
                    "keep_condition": "spend_30d >= 300",
                    "grace_days": 6,
                    "points_multiplier": "2",
                    "entry_bonus": 200,
                },
                {"name": "Silver", "condition": "spend_30d >= 150 or orders_30d >= 3", "entry_bonus": 50},
                {"name": "Bronze"},
            ],
            "downgrade": {"grace_days": 3, "max_levels": 1},
            "points": {
                "per_currency_unit": "1",
                "activities": {"review": "10"},
                "entry_bonus_on_reentry": True,
                "redemption_kinds": ["redeem"],
            },
        },
    ),
    # calendar months: a tier held until the month ends, decided on the first day of the next one; a condition
    # reading how long the tier has been held (then every day is decided)
    "calendar_month": (
        "Asia/Shanghai",
        {
            "qualification": {"period": "calendar_month"},
            "tiers": [
                {
                    "name": "Gold",
                    "condition": "spend_this_period >= 500 or spend_last_period >= 500",
                    "keep_condition": "spend_last_period >= 300 or (held_tier = 'Gold' and days_in_tier < 20)",
                    "entry_bonus": 300,
                },
                {
                    "name": "Silver",
                    "condition": "orders_this_period >= 2 or orders_last_period >= 2",
                    "entry_bonus": 80,
                },
                {"name": "Bronze"},
            ],
            "downgrade": {"grace_days": 2, "max_levels": 1},
            "points": {"per_currency_unit": "1", "expiry": "end_of_year", "expiry_years": 0},
        },
    ),
}


def history(seed: int, start: datetime) -> Callable[[Store], None]:
    """Members with orders and activities before and during the span, some at the same instant (a mass import)."""
    rng = random.Random(seed)
    rows: list[tuple[str, ...]] = []
    members = [f"m{i}" for i in range(7)]
    burst = start + timedelta(days=rng.uniform(5, 25))
    for m in members:
        for _ in range(rng.randint(2, 6)):
            at = burst if rng.random() < 0.15 else start + timedelta(days=rng.uniform(-35, SPAN))
            amount = rng.choice(["60", "160", "320", "520"])
            rows.append(("order", m, amount, at.isoformat(), rng.choice(["paid"] * 5 + ["refunded"])))
        if rng.random() < 0.5:
            rows.append(("activity", m, "vip", (start + timedelta(days=rng.uniform(-15, SPAN))).isoformat(), ""))
        if rng.random() < 0.5:
            rows.append(("activity", m, "review", (start + timedelta(days=rng.uniform(-20, SPAN))).isoformat(), ""))
        if rng.random() < 0.4:  # spends more than some balances hold: no overdraft
            rows.append(("activity", m, "redeem", (start + timedelta(days=rng.uniform(0, SPAN))).isoformat(), "400"))

    def build(store: Store) -> None:
        for m in members:
            store.member(m, created_at=start - timedelta(days=400))
        for kind, m, value, at, status in rows:
            when = datetime.fromisoformat(at)
            if kind == "order":
                store.order(m, value, when, status=status)
            else:
                store.activity(m, value, when, **({"points": status} if status else {}))

    return build


BONUSES = "SELECT member_id, tier, entry_ref, granted_at, points FROM policy_points_bonus ORDER BY ALL"


def run(policy: Any, build: Callable[[Store], None], instants: list[datetime]) -> dict[datetime, tuple[list, list]]:
    """Grade at each instant as syncs do (incrementally, keeping the profiles); the profiles after each run and
    the bonuses granted by then."""
    con = connect()
    build(Store(con))
    out = {}
    for at in sorted(instants):
        save_graded(con, policy.grade(con, at, incremental=True).incremental)
        rows = con.execute(f"SELECT member_id, {GRADES} FROM profiles ORDER BY member_id").fetchall()
        out[at] = (rows, con.execute(BONUSES).fetchall())
    con.close()
    return out


@pytest.mark.parametrize("name", POLICIES)
def test_grades_do_not_depend_on_the_run_schedule(name: str) -> None:
    tz, data = POLICIES[name]
    policy = compiled(data, tz=tz)
    start = datetime(2026, 10, 10, 9, 15, tzinfo=ZoneInfo(tz))  # New York's clocks change on 1 November
    build = history(len(name), start)
    weekly = [start + timedelta(days=d) for d in range(0, SPAN + 1, 7)]
    schedules = {
        "daily": [start + timedelta(days=d, hours=h) for d in range(15) for h in ((0, -5) if d else (0,))],
        "every 30 minutes": [weekly[0], weekly[2]]
        + [start + timedelta(days=13, hours=16, minutes=30 * i) for i in range(12)],
        "a 34-day gap": [weekly[0], weekly[-1]],
    }
    reference = run(policy, build, weekly)
    compared = 0
    for label, instants in schedules.items():
        for at, rows in run(policy, build, instants).items():
            if at in weekly:
                assert rows == reference[at], f"{label} runs differ from weekly runs at {at}"
                compared += 1
    assert compared == 3 + 2 + 2
    bonuses = reference[weekly[-1]][1]
    assert len(bonuses) >= 3
    if not data["points"].get("entry_bonus_on_reentry"):  # once per member and tier
        assert len({(b[0], b[1]) for b in bonuses}) == len(bonuses)
    for _, _, _, granted_at, _ in bonuses:  # each dated at the last instant of a day in the zone
        assert (granted_at + timedelta(microseconds=1)).astimezone(ZoneInfo(tz)).time() == time(0)
    # a backtest reporting every 7 days shows what the syncs pushed on those days
    con = connect()
    build(Store(con))
    periods = backtest(con, policy, weekly[0], weekly[-1], every=7)
    assert [p.as_of for p in periods] == weekly
    for p in periods:
        rows = reference[p.as_of][0]
        tiers = [row[1] for row in rows]
        assert p.distribution == {t: tiers.count(t) for t in policy.tier_names}, p.as_of
        # the backtest grants the bonuses the syncs granted: the same points outstanding
        assert p.points.outstanding == sum(row[4] for row in rows), p.as_of
    # the history moves tiers up and down: the comparison is not between unchanging grades
    ranks = [[policy.tier_names.index(row[1]) for row in reference[c][0]] for c in weekly]
    pairs = [(a, b) for x, y in itertools.pairwise(ranks) for a, b in zip(x, y, strict=True)]
    assert any(a < b for a, b in pairs) and any(a > b for a, b in pairs)
