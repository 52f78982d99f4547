"""Spend net of refunds: partial refunds (``refunded_amount``) against a pure-Python reference, and the points a
refund takes back."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

import pytest
from policy_support import NOW, Store, compiled, day, grade

METRICS = ("spend_net_lifetime", "spend_net_30d", "refunded_amount_lifetime", "refunded_amount_30d", "spend_lifetime")


def reference(orders: list[tuple[int, Decimal, str, Decimal | None]], statuses: set[str]) -> dict[str, Decimal]:
    """The definitions in docs/policy.md, over (age in days, amount, status, refunded amount)."""
    out = dict.fromkeys(METRICS, Decimal(0))
    for age, amount, status, refunded in orders:
        taken = refunded if refunded is not None else amount if status == "refunded" else Decimal(0)
        windows = ("lifetime", "30d") if age < 30 else ("lifetime",)
        for w in windows:
            out[f"refunded_amount_{w}"] += taken
            if status in statuses:
                out[f"spend_net_{w}"] += amount - taken
        if status in statuses:
            out["spend_lifetime"] += amount
    return out


@pytest.mark.parametrize(("seed", "statuses"), [(1, ["paid"]), (2, ["paid"]), (3, ["paid", "refunded"])])
def test_net_spend_and_refunded_amounts_match_the_reference(store: Store, seed: int, statuses: list[str]) -> None:
    rng = random.Random(seed)
    data = {}
    for i in range(60):
        mid = f"m{i:02d}"
        store.member(mid)
        orders = []
        for _ in range(rng.choice([0, 1, 2, 4, 7])):
            age = rng.choice([1, 10, 29, 30, 31, 200])
            amount = Decimal(rng.choice(["10", "99.99", "250.5", "0"]))
            status = rng.choice(["paid", "paid", "paid", "refunded", "cancelled"])
            refunded = rng.choice([None, None, Decimal(0), amount, (amount / 3).quantize(Decimal("0.01"))])
            store.order(mid, amount, day(age), status=status, refunded=refunded)
            orders.append((age, amount, status, refunded))
        data[mid] = orders
    policy = {"metrics": {"order_statuses": statuses}, "tags": {"t": " + ".join(METRICS) + " >= 0"}}
    p = compiled(policy)
    p.grade(store.con, NOW)
    got = store.con.execute(f"SELECT member_id, {', '.join(METRICS)} FROM _pol_stage ORDER BY 1").fetchall()
    for mid, *values in got:
        assert dict(zip(METRICS, values, strict=True)) == reference(data[mid], set(statuses)), mid


def _points(amount: Decimal, per_unit: Decimal) -> int:
    return int((amount * per_unit).to_integral_value(ROUND_FLOOR))


@pytest.mark.parametrize("seed", range(5))
def test_a_partial_refund_takes_back_the_points_of_the_amount_refunded(store: Store, seed: int) -> None:
    """Each paid order earns on its net amount, rounded once; a refund arriving later lowers the balance by what it
    takes back, keeps the entry's multiplier, and the points of a full refund are gone."""
    rng = random.Random(seed)
    per_unit = Decimal(rng.choice(["1", "0.1", "2.5"]))
    store.member("m")
    amounts = [Decimal(rng.randint(1, 50000)) / 100 for _ in range(6)]
    ids = [store.order("m", a, day(20 - i)) for i, a in enumerate(amounts)]
    policy = {"points": {"per_currency_unit": str(per_unit)}, "tags": {"t": "spend_net_lifetime > 0"}}
    p = compiled(policy)
    p.grade(store.con, NOW)
    assert store.graded("points") == {"m": sum(_points(a, per_unit) for a in amounts)}
    refunds = [
        rng.choice([None, Decimal(0), a, (a * Decimal(rng.random())).quantize(Decimal("0.01"))]) for a in amounts
    ]
    for ext, refund in zip(ids, refunds, strict=True):
        if refund is not None:
            store.set_order(ext, refunded_amount=refund, refunded_amount_base=refund, updated_at=NOW)
    p.grade(store.con, NOW + timedelta(hours=1))
    nets = [a - (r or 0) for a, r in zip(amounts, refunds, strict=True)]
    assert store.graded("points") == {"m": sum(_points(n, per_unit) for n in nets)}
    entries = dict(store.con.execute("SELECT entry_ref, points FROM policy_points_ledger").fetchall())
    assert entries == {f"order:shop:{e}": _points(n, per_unit) for e, n in zip(ids, nets, strict=True)}


def test_refund_keeps_the_multiplier_the_order_earned_with(store: Store) -> None:
    store.member("m")
    store.order("m", "100", day(30))
    policy = {
        "tiers": [{"name": "Gold", "condition": "spend_lifetime >= 100", "points_multiplier": "2"}, {"name": "Basic"}],
        "points": {"per_currency_unit": "1"},
    }
    p = compiled(policy)
    p.grade(store.con, day(20))
    store.save_profiles()
    later = store.order("m", "50", day(10))  # earned while Gold: x2 = 100
    p.grade(store.con, day(9))
    store.save_profiles()
    assert store.graded("points") == {"m": 200}
    store.set_order(later, refunded_amount=Decimal("20"), refunded_amount_base=Decimal("20"))
    p.grade(store.con, NOW)
    assert store.graded("points") == {"m": 160}  # 100 + (50 - 20) x 2


def test_net_spend_can_decide_a_tier(store: Store) -> None:
    store.member("keeps")
    store.member("returns")
    store.order("keeps", "1200", day(5))
    store.order("returns", "1200", day(5), refunded="700")
    policy = {"tiers": [{"name": "Gold", "condition": "spend_net_365d >= 1000"}, {"name": "Basic"}]}
    assert grade(store, policy) == {"keeps": "Gold", "returns": "Basic"}
    gross = {"tiers": [{"name": "Gold", "condition": "spend_365d >= 1000"}, {"name": "Basic"}]}
    assert grade(store, gross) == {"keeps": "Gold", "returns": "Gold"}
