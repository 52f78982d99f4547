"""Trial runs: a backtest equals the syncs it replays (distributions, from→to transitions, segments, lifecycle), its
points liability and KPIs equal independent computations, preview grades as a sync would (grace, locks), and costs
carry their unit and period. Random worlds, several seeds."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from policy_support import NOW, START, Store, World, compiled

from crmsync.policy import GradingMode, set_override
from crmsync.policy.preview import backtest, period_ends, preview
from crmsync.policy.trial import NEW, cost_periods, shift

POLICY: dict[str, Any] = {
    "tiers": [
        {"name": "Gold", "condition": "spend_90d >= 400", "cost": "12.5"},
        {"name": "Silver", "condition": "spend_90d >= 150 or orders_lifetime >= 4", "cost": "3"},
        {"name": "Bronze"},
    ],
    "downgrade": {"grace_days": 20, "max_levels": 1},
    "points": {
        "per_currency_unit": "1", "expiry_days": 60, "activities": {"review": "15"}, "redemption_kinds": ["redeem"]
    },
    "lifecycle": {"dormant_days": 40, "churned_days": 90},
    "costs": {"period": "month", "point_value": "0.01"},
}  # fmt: skip


def _syncs(store: Store, policy: Any, ends: list[datetime]) -> list[dict[str, Any]]:
    """What a sync at each period end gives, in order (grades, and each member's tier before)."""
    out = []
    for at in ends:
        before = dict(store.con.execute("SELECT member_id, tier FROM profiles").fetchall())
        policy.grade(store.con, at)
        rows = store.con.execute("SELECT member_id, tier, rfm_segment, lifecycle, points FROM graded").fetchall()
        store.save_profiles()
        out.append({"before": before, "rows": rows})
    return out


@pytest.mark.parametrize("seed", range(3))
def test_a_backtest_equals_the_syncs_it_replays(seed: int) -> None:
    world, policy = World(seed), compiled(POLICY)
    every, end = [(9, 90), ("week", 70), ("month", 150)][seed % 3]
    ends = period_ends(START, START + timedelta(days=end), every)
    periods = backtest(world.stores[0].con, policy, START, START + timedelta(days=end), every)
    for period, sync in zip(periods, _syncs(world.stores[1], policy, ends), strict=True):
        rows = sync["rows"]
        assert period.distribution == {t: sum(r[1] == t for r in rows) for t in policy.tier_names}
        pairs = Counter((sync["before"].get(r[0], NEW), r[1]) for r in rows)
        assert {(f, t): n for f, row in period.transitions.items() for t, n in row.items() if n} == dict(pairs)
        assert {k: v for k, v in period.segments.items() if v} == Counter(r[2] or "(none)" for r in rows)
        assert {k: v for k, v in period.lifecycle.items() if v} == Counter(r[3] for r in rows)
        assert period.points.outstanding == sum(r[4] for r in rows)
        assert period.points.value == (Decimal("0.01") * period.points.outstanding).quantize(Decimal("0.01"))
        held = sum(n for (f, _), n in pairs.items() if f != NEW)
        assert period.kpis is not None and period.kpis.held == held
        rank = {t: -i for i, t in enumerate(policy.tier_names)}
        ups = sum(n for (f, t), n in pairs.items() if f != NEW and rank[t] > rank[f])
        assert (period.up, period.kpis.upgraded) == (ups, ups)


@pytest.mark.parametrize("seed", range(3))
def test_points_issued_redeemed_and_expired_add_up_across_periods(seed: int) -> None:
    """Flows per period (from the ledger's dates) equal the change of the lifetime totals between evaluations."""
    world, policy = World(seed), compiled(POLICY)
    periods = backtest(world.stores[0].con, policy, START, START + timedelta(days=120), "month")
    totals = []
    for at in [periods[0].since, *(p.as_of for p in periods)]:
        policy.run(world.stores[1].con, at, GradingMode.EXPLAIN)
        totals.append(
            world.stores[1]
            .con.execute(
                "SELECT sum(points_earned_lifetime), sum(points_redeemed_lifetime), sum(points_expired_lifetime), "
                "sum(points) FROM _pol_metrics"
            )
            .fetchone()
        )
    for i, p in enumerate(periods):
        before, after = totals[i], totals[i + 1]
        assert (p.points.issued, p.points.redeemed, p.points.expired) == tuple(
            int(after[k] or 0) - int(before[k] or 0) for k in range(3)
        )
        assert p.points.outstanding == int(after[3] or 0)
        assert p.points.outstanding == p.points.issued - p.points.redeemed - p.points.expired + int(before[3] or 0)


@pytest.mark.parametrize("seed", range(3))
def test_kpis_equal_a_count_of_the_orders_of_each_period(seed: int) -> None:
    world, policy = World(seed), compiled(POLICY)
    periods = backtest(world.stores[0].con, policy, START, START + timedelta(days=120), "month")
    syncs = _syncs(world.stores[1], policy, [p.as_of for p in periods])
    for p, sync in zip(periods, syncs, strict=True):
        tier = {r[0]: r[1] for r in sync["rows"]}
        paid = [(m, a, t) for m, a, t, st in world.orders if st == "paid" and t <= p.as_of]
        inside = [(m, a) for m, a, t in paid if t > p.since]
        per_member = Counter(m for m, _ in inside)
        earlier = {m for m, _, t in paid if t <= p.since}
        k = p.kpis
        assert k is not None
        assert (k.members, k.buyers, k.orders) == (len(tier), len(per_member), len(inside))
        assert k.repeat_buyers == sum(n >= 2 for n in per_member.values())
        assert k.returning_buyers == len(set(per_member) & earlier)
        assert k.spend == sum((a for _, a in inside), Decimal(0))
        assert k.aov == ((k.spend / len(inside)).quantize(Decimal("0.01")) if inside else None)
        assert k.repurchase_rate == (round(k.repeat_buyers / k.buyers, 6) if k.buyers else None)
        for name, t in k.by_tier.items():
            members = [m for m, x in tier.items() if x == name]
            assert (t.members, t.active) == (len(members), sum(per_member[m] > 0 for m in members))
            assert t.active_share == (round(t.active / t.members, 6) if t.members else None)


def test_the_first_period_counts_one_step_before_it() -> None:
    world, policy = World(1), compiled(POLICY)
    first = backtest(world.stores[0].con, policy, START, START, "month")[0]
    assert first.since == datetime(2023, 12, 31, 12, tzinfo=UTC)
    assert first.up == first.down == 0 and first.kpis is not None and first.kpis.upgrade_rate is None
    assert set(first.transitions[NEW].values()) != {0}


@pytest.mark.parametrize("seed", range(3))
def test_preview_grades_as_a_sync_would_with_grace_and_locks(seed: int) -> None:
    """Preview at an instant gives the tiers a sync at that instant gives: held tiers, grace and locks apply."""
    world, policy = World(seed), compiled(POLICY)
    rng = random.Random(seed)
    for s in world.stores:
        policy.grade(s.con, START + timedelta(days=60))
        s.save_profiles()
        set_override(s.con, "m01", "Gold", None, "partner", "ops")
    at = START + timedelta(days=60 + rng.randint(1, 40))
    result = preview(world.stores[0].con, policy, at)
    policy.grade(world.stores[1].con, at)
    rows = world.stores[1].con.execute("SELECT tier, count(*) FROM graded GROUP BY tier").fetchall()
    assert result.distribution == {t: dict(rows).get(t, 0) for t in policy.tier_names}
    assert result.cost_by_tier == {t: n * Decimal({"Gold": "12.5", "Silver": "3", "Bronze": "0"}[t])
                                   for t, n in result.distribution.items()}  # fmt: skip
    assert (result.cost_unit.currency, result.cost_unit.per) == ("EUR", "month")


def test_preview_keeps_a_tier_in_its_grace_period_and_a_locked_tier(store: Store) -> None:
    policy = compiled(POLICY)
    for m in ("a", "b"):
        store.member(m)
    store.order("a", "500", NOW - timedelta(days=85))
    store.order("b", "500", NOW - timedelta(days=85))
    policy.grade(store.con, NOW)
    store.save_profiles()
    set_override(store.con, "b", "Gold", None, "key account", "ops")
    later = preview(store.con, policy, NOW + timedelta(days=10))  # the order left the 90-day window 5 days ago
    assert later.distribution == {"Gold": 2, "Silver": 0, "Bronze": 0}
    assert later.transitions["Gold"]["Gold"] == 2
    at = NOW + timedelta(days=60)  # a's grace may be over (as a sync at that instant decides); b stays locked
    gone = preview(store.con, policy, at)
    store.con.execute("BEGIN TRANSACTION")
    policy.grade(store.con, at)
    synced = dict(store.con.execute("SELECT member_id, tier FROM graded").fetchall())
    store.con.execute("ROLLBACK")
    assert synced["b"] == "Gold" and gone.distribution == {t: list(synced.values()).count(t) for t in policy.tier_names}


@pytest.mark.parametrize("day", [1, 15, 28, 29, 30, 31])
def test_month_steps_keep_the_day_and_month_ends_stay_month_ends(day: int) -> None:
    for month in range(1, 13):
        try:
            start = datetime(2023, month, day, 9, tzinfo=UTC)
        except ValueError:
            continue
        ends = [shift(start, "month", i) for i in range(-13, 14)]
        month_end = (start + timedelta(days=1)).day == 1
        for t in ends:
            last = (t.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            assert t.day == (last.day if month_end else min(day, last.day)), (start, t)
        assert [(t.year * 12 + t.month) for t in ends] == list(
            range(ends[0].year * 12 + ends[0].month, ends[-1].year * 12 + ends[-1].month + 1)
        )


@pytest.mark.parametrize(
    ("every", "per", "expected"),
    [("month", "month", 1), ("month", "quarter", Decimal(1) / 3), ("month", "year", Decimal(1) / 12),
     ("week", "day", 7), ("week", "week", 1), (30, "month", Decimal(30) * 12 / 365), ("day", "year", Decimal(1) / 365)],
)  # fmt: skip
def test_cost_periods_count_the_interval_in_the_cost_unit(every: Any, per: str, expected: Decimal) -> None:
    for start in (START, datetime(2024, 2, 29, tzinfo=UTC), datetime(2023, 12, 31, tzinfo=UTC)):
        for n in (1, 5):
            assert abs(cost_periods(start, shift(start, every, n), every, per) - expected * n) < Decimal("1e-20")


def test_period_cost_is_the_run_rate_over_the_time_to_the_next_period() -> None:
    world = World(3)
    for per, factor in (("month", Decimal(1)), ("year", Decimal(1) / 12), ("day", None)):
        policy = compiled({**POLICY, "costs": {"period": per}})
        for p in backtest(world.stores[0].con, policy, START, START + timedelta(days=90), "month"):
            days = Decimal((shift(p.as_of, "month", 1) - p.as_of).days) if factor is None else None
            assert p.cost == sum(p.cost_by_tier.values(), Decimal(0))
            assert p.cost_by_tier["Gold"] == p.distribution["Gold"] * Decimal("12.5")
            assert p.period_cost == (p.cost * (factor if factor is not None else days)).quantize(Decimal("0.01"))
            assert p.cost_unit.per == per
