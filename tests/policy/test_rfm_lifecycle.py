"""RFM scores against an independent pure-Python computation; the segment map; lifecycle stages."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from policy_support import NOW, Store, day, grade

# The standard map written as a grid (rows R = 5..1, columns FM = 1..5), independent of the SQL rules.
GRID = {
    5: ["New", "Potential Loyalist", "Loyal", "Champions", "Champions"],
    4: ["Promising", "Potential Loyalist", "Loyal", "Champions", "Champions"],
    3: ["About to Sleep", "Need Attention", "Need Attention", "Loyal", "Loyal"],
    2: ["Hibernating", "About to Sleep", "At Risk", "At Risk", "Can't Lose Them"],
    1: ["Lost", "Hibernating", "At Risk", "Can't Lose Them", "Can't Lose Them"],
}


def reference_scores(data: dict[str, list[tuple[int, Decimal]]], bins: int) -> dict[str, tuple]:
    """Score = 1 + bins * (members strictly worse) // (members with orders); pure Python."""
    stats = {}
    for m, orders in data.items():
        if orders:
            stats[m] = (min(age for age, _ in orders), len(orders), sum(a for _, a in orders))
    n = len(stats)
    out = {}
    for m, (rec, freq, mon) in stats.items():
        worse_r = sum(1 for r, _, _ in stats.values() if r > rec)
        worse_f = sum(1 for _, f, _ in stats.values() if f < freq)
        worse_m = sum(1 for _, _, x in stats.values() if x < mon)
        r, f, mm = (1 + bins * w // n for w in (worse_r, worse_f, worse_m))
        fm = -(-(f + mm) // 2)
        out[m] = (r, f, mm, GRID[r][fm - 1] if bins == 5 else None)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rfm_scores_and_segments_match_the_reference(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    data: dict[str, list[tuple[int, Decimal]]] = {}
    for i in range(40):
        mid = f"m{i:02d}"
        store.member(mid)
        orders = []
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 8])):
            age = rng.choice([1, 5, 5, 30, 90, 200, 400])  # repeated values make ties
            amount = Decimal(rng.choice(["10", "25.50", "25.50", "99", "300"]))
            store.order(mid, amount, day(age))
            orders.append((age, amount))
        data[mid] = orders
    result = grade(store, {}, columns="rfm_r, rfm_f, rfm_m, rfm_segment")
    expected = reference_scores(data, 5)
    assert {m: v for m, v in result.items() if v[0] is not None} == expected
    assert all(v == (None, None, None, None) for m, v in result.items() if m not in expected)


def test_rfm_with_other_bins_and_a_custom_map(store: Store) -> None:
    data = {}
    for i, (age, count) in enumerate([(1, 4), (10, 3), (10, 2), (50, 1), (400, 1), (2, 1)]):
        mid = f"m{i}"
        store.member(mid)
        data[mid] = [(age, Decimal("20"))] * count
        for _ in range(count):
            store.order(mid, "20", day(age))
    policy = {
        "rfm": {
            "bins": 3,
            "segments": [
                {"name": "Top", "condition": "rfm_r = 3 and rfm_f = 3"},
                {"name": "Quiet", "condition": "rfm_r = 1"},
                {"name": "Other", "condition": "true"},
            ],
        }
    }
    result = grade(store, policy, columns="rfm_r, rfm_f, rfm_m, rfm_segment")
    ref = reference_scores(data, 3)
    for mid, (r, f, m, _) in ref.items():
        seg = "Top" if (r, f) == (3, 3) else "Quiet" if r == 1 else "Other"
        assert result[mid] == (r, f, m, seg)


def test_standard_map_needs_five_bins() -> None:
    from policy_support import compiled

    from crmsync.errors import PolicyError

    with pytest.raises(PolicyError, match="standard segment map needs bins = 5"):
        compiled({"rfm": {"bins": 4}})


def test_every_grid_cell_maps_to_its_segment() -> None:
    """The SQL rules (first match wins) reproduce the documented grid for all 25 cells."""
    import duckdb

    from crmsync.policy.expr import Compiler, Var, parse
    from crmsync.policy.stages import STANDARD_SEGMENTS

    scope = {n: Var(n, "number", n) for n in ("rfm_r", "rfm_fm")}
    case = " ".join(
        f"WHEN {Compiler(scope).condition(parse(c))} THEN '{n.replace(chr(39), chr(39) * 2)}'"
        for n, c in STANDARD_SEGMENTS
    )
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT rfm_r, rfm_fm, CASE {case} END FROM range(1, 6) a(rfm_r), range(1, 6) b(rfm_fm)"
    ).fetchall()
    assert {(r, fm): s for r, fm, s in rows} == {(r, fm): GRID[r][fm - 1] for r in GRID for fm in range(1, 6)}


def test_lifecycle_stages_and_boundaries(store: Store) -> None:
    cases = {
        "potential": [],
        "new": [2],
        "returning": [3, 40],
        "mature": [1] * 10,
        "loyal": [1] * 19 + [365],
        "almost_loyal": [1] * 19 + [364],
        "dormant": [180],
        "not_dormant": [179],
        "churned": [365, 500],
    }
    for mid, ages in cases.items():
        store.member(mid)
        for age in ages:
            store.order(mid, "10", day(age))
    result = grade(store, {}, columns="lifecycle")
    assert result == {
        "potential": "potential",
        "new": "new",
        "returning": "returning",
        "mature": "mature",
        "loyal": "loyal",
        "almost_loyal": "mature",
        "dormant": "dormant",
        "not_dormant": "new",
        "churned": "churned",
    }


def test_lifecycle_thresholds_are_configurable(store: Store) -> None:
    store.member("m")
    for age in (1, 2, 3):
        store.order("m", "10", day(age))
    policy = {
        "lifecycle": {
            "mature_orders": 3,
            "loyal_orders": 3,
            "loyal_min_days": 2,
            "dormant_days": 30,
            "churned_days": 60,
        }
    }
    assert grade(store, policy, columns="lifecycle") == {"m": "loyal"}
    assert grade(store, policy, as_of=NOW + timedelta(days=31), columns="lifecycle") == {"m": "dormant"}
    assert grade(store, policy, as_of=NOW + timedelta(days=61), columns="lifecycle") == {"m": "churned"}


def test_days_are_whole_24_hour_periods(store: Store) -> None:
    store.member("m")
    store.order("m", "10", day(180) + timedelta(seconds=1))
    assert grade(store, {}, columns="lifecycle") == {"m": "new"}  # 179 days and 23:59:59


def test_push_values_name_every_value_a_grading_can_write(store: Store) -> None:
    """What a CRM picklist must allow comes from the policy: graded values never fall outside it."""
    from crmsync.policy import Policy
    from crmsync.policy.stages import LIFECYCLE_STAGES, push_values

    rng = random.Random(7)
    for i in range(300):
        mid = f"m{i:03d}"
        store.member(mid)
        for _ in range(rng.choice([0, 1, 2, 5, 12, 25])):
            store.order(mid, str(rng.randint(1, 500)), day(rng.randint(0, 800)))
    values = push_values(Policy())
    assert set(values["rfm_segment"]) == {name for row in GRID.values() for name in row}
    assert values["lifecycle"] == LIFECYCLE_STAGES
    rows = grade(store, {}, columns="rfm_segment, lifecycle")
    assert {life for _, life in rows.values()} <= set(values["lifecycle"])
    assert {seg for seg, _ in rows.values()} - {None} <= set(values["rfm_segment"])
    policy = Policy.model_validate(
        {
            "tiers": [{"name": "Gold", "condition": "orders_lifetime >= 3", "benefits": ["lounge"]}, {"name": "Basic"}],
            "rfm": {
                "bins": 3,
                "segments": [{"name": "Top", "condition": "rfm_r = 3"}, {"name": "Rest", "condition": "true"}],
            },
            "tags": {"vip": "tier = 'Gold'"},
            "benefit_tags": True,
            "benefit_tag_prefix": "b_",
        }
    )
    values = push_values(policy)
    assert values["tier"] == ("Gold", "Basic") and values["rfm_segment"] == ("Top", "Rest")
    assert values["tags"] == ("vip", "b_lounge")
