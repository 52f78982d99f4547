"""RFM methods (quantile, mean, median), the analysis window, the tie rule for F, net spend, and the classic
8-segment map (重要价值客户…), against an independent pure-Python computation over generated members."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from policy_support import NOW, Store, compiled, day, grade

from crmsync.errors import PolicyError
from crmsync.policy import Policy
from crmsync.policy.stages import push_values

# The classic map written from its definition (重要 = M high; 价值 R and F high, 发展 R high only, 保持 F high only,
# 挽留 neither), independent of the SQL rules.
ZH = {"RF": "价值", "R": "发展", "F": "保持", "": "挽留"}
EN = {"RF": "Value", "R": "Development", "F": "Retention", "": "Win-back"}


def classic(r: int, f: int, m: int, names: str) -> str:
    key = ("R" if r == 2 else "") + ("F" if f == 2 else "")
    if names == "zh":
        return ("重要" if m == 2 else "一般") + ZH[key] + "客户"
    return ("Important " if m == 2 else "General ") + EN[key]


@dataclass(frozen=True)
class Ord:
    age: int
    amount: Decimal
    status: str = "paid"
    refunded: Decimal | None = None


def _high(values: list[Any], x: Any, how: str, lower_is_better: bool) -> int:
    if how == "mean":
        threshold = Fraction(sum(Fraction(v) for v in values), len(values))
    else:
        s = sorted(values)
        threshold = (Fraction(s[(len(s) - 1) // 2]) + Fraction(s[len(s) // 2])) / 2
    better = Fraction(x) < threshold if lower_is_better else Fraction(x) > threshold
    return 2 if better else 1


def _quantile(values: list[Any], x: Any, bins: int, lower_is_better: bool) -> int:
    worse = sum(1 for v in values if (v > x if lower_is_better else v < x))
    return 1 + bins * worse // len(values)


def reference(data: dict[str, list[Ord]], rfm: dict[str, Any]) -> dict[str, tuple[int, int, int] | None]:
    """Scores per member from the definitions in docs/policy.md; ``None``: not scored."""
    window, how, bins = rfm.get("window_days"), rfm.get("method", "quantile"), rfm.get("bins", 5)
    stats = {}
    for mid, orders in data.items():
        paid = [o for o in orders if o.status == "paid"]
        scored = [o for o in paid if window is None or o.age < window]
        if not scored:
            continue
        net = rfm.get("monetary") == "spend_net"
        mon = sum((o.amount - (o.refunded or 0) if net else o.amount) for o in scored)
        stats[mid] = (min(o.age for o in paid), len(scored), mon)
    recs, freqs, mons = ([s[i] for s in stats.values()] for i in range(3))
    out: dict[str, tuple[int, int, int] | None] = dict.fromkeys(data)
    for mid, (rec, freq, mon) in stats.items():
        if how == "quantile":
            out[mid] = (
                _quantile(recs, rec, bins, True),
                _quantile(freqs, freq, bins, False),
                _quantile(mons, mon, bins, False),
            )
        else:
            out[mid] = (_high(recs, rec, how, True), _high(freqs, freq, how, False), _high(mons, mon, how, False))
    if rfm.get("f_ties") == "consecutive":
        by_count: dict[int, int] = {}
        for count in sorted(set(freqs)):
            q = _quantile(freqs, count, bins, False)
            by_count[count] = min(q, by_count[max(by_count)] + 1) if by_count else q
        for mid, (_rec, freq, _) in stats.items():
            r, _, m = out[mid]  # type: ignore[misc]
            out[mid] = (r, by_count[freq], m)
    return out


def _seed(store: Store, seed: int, members: int = 80) -> dict[str, list[Ord]]:
    rng = random.Random(seed)
    data = {}
    for i in range(members):
        mid = f"m{i:03d}"
        store.member(mid)
        orders = []
        for _ in range(rng.choice([0, 1, 1, 1, 1, 2, 2, 3, 6, 12])):  # most members buy once
            amount = Decimal(rng.choice(["9.90", "25.5", "25.5", "120", "480", "2999"]))
            o = Ord(
                age=rng.choice([1, 3, 3, 20, 45, 89, 90, 91, 200, 400, 1500]),
                amount=amount,
                status=rng.choice(["paid"] * 6 + ["refunded", "cancelled"]),
                refunded=rng.choice([None, None, None, (amount / 4).quantize(Decimal("0.01"))]),
            )
            store.order(mid, o.amount, day(o.age), status=o.status, refunded=o.refunded)
            orders.append(o)
        data[mid] = orders
    return data


CASES = [
    {"segments": "classic8"},  # mean by default
    {"segments": "classic8", "method": "median", "names": "zh"},
    {"segments": "classic8", "method": "mean", "window_days": 90, "names": "zh"},
    {"segments": "classic8", "method": "median", "window_days": 365, "monetary": "spend_net"},
    {"segments": "classic8", "bins": 2},  # quantile with two bins: high = the better half
    {"f_ties": "consecutive"},
    {"f_ties": "consecutive", "window_days": 90},
    {"window_days": 365, "monetary": "spend_net"},
]


@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("rfm", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_scores_and_segments_match_the_reference(store: Store, seed: int, rfm: dict[str, Any]) -> None:
    data = _seed(store, seed)
    got = grade(store, {"rfm": rfm}, columns="rfm_r, rfm_f, rfm_m, rfm_segment")
    ref = {**rfm, "method": rfm.get("method", "mean" if rfm.get("segments") == "classic8" else "quantile")}
    expected = reference(data, ref)
    assert {m: v[:3] for m, v in got.items() if v[0] is not None} == {m: s for m, s in expected.items() if s}
    assert {m for m, v in got.items() if v[0] is None} == {m for m, s in expected.items() if s is None}
    if rfm.get("segments") == "classic8":
        names = rfm.get("names", "en")
        assert all(v[3] == classic(*v[:3], names) for v in got.values() if v[0] is not None)
        assert {v[3] for v in got.values()} - {None} <= set(
            push_values(Policy.model_validate({"rfm": rfm}))["rfm_segment"]
        )


def test_consecutive_ties_do_not_jump_when_most_members_order_once(store: Store) -> None:
    counts = [1] * 70 + [2] * 15 + [3] * 8 + [5] * 5 + [9] * 2
    for i, n in enumerate(counts):
        store.member(f"m{i:03d}")
        for _ in range(n):
            store.order(f"m{i:03d}", "10", day(5))
    by_count = {}
    for rfm, expected in (
        ({}, {1: 1, 2: 4, 3: 5, 5: 5, 9: 5}),
        ({"f_ties": "consecutive"}, {1: 1, 2: 2, 3: 3, 5: 4, 9: 5}),
    ):
        got = grade(store, {"rfm": rfm}, columns="rfm_f")
        by_count = {n: got[f"m{i:03d}"] for i, n in enumerate(counts)}
        assert by_count == expected


def test_the_window_keeps_long_gone_big_spenders_out(store: Store) -> None:
    store.member("gone")
    for age in (400, 410, 420):
        store.order("gone", "5000", day(age))
    for i in range(6):
        store.member(f"now{i}")
        store.order(f"now{i}", str(50 + i), day(10 + i))
    rfm = {"segments": "classic8", "window_days": 365, "names": "zh"}
    got = grade(store, {"rfm": rfm}, columns="rfm_segment, reasons")
    assert got["gone"][0] is None and "no successful order in the last 365 days" in got["gone"][1]
    assert (
        grade(store, {"rfm": {"segments": "classic8", "names": "zh"}}, columns="rfm_segment")["gone"] == "重要保持客户"
    )


def test_the_reason_names_the_method_and_its_threshold(store: Store) -> None:
    for mid, amounts in {"a": ["100", "300"], "b": ["50"], "c": ["20"]}.items():
        store.member(mid)
        for a in amounts:
            store.order(mid, a, day(3 if mid == "a" else 30))
    p = compiled({"rfm": {"segments": "classic8", "window_days": 90}})
    p.grade(store.con, NOW)
    reason = store.con.execute("SELECT reasons->>'rfm' FROM graded WHERE member_id = 'a'").fetchone()[0]
    assert reason == (
        "R=2 high (3 days since the last order), F=2 high (2 orders in the last 90 days), M=2 high (spend 400.0000); "
        "mean of 3 members: 21.0 days, 1.33 orders, spend 156.67 (last 90 days); segment Important Value"
    )


@pytest.mark.parametrize(
    ("rfm", "message"),
    [
        ({"method": "mean", "bins": 4, "segments": "classic8"}, "policy.rfm.bins: method = 'mean' scores 1 (low) or 2"),
        ({"method": "median", "f_ties": "consecutive", "segments": "classic8"}, "policy.rfm.f_ties:"),
        ({"segments": "classic8", "method": "quantile"}, "'classic8' needs high/low scores"),
        ({"method": "mean"}, "the standard segment map needs bins = 5 (method = 'quantile')"),
        ({"names": "zh"}, "policy.rfm.names: Chinese names are those of segments = 'classic8'"),
        ({"bins": 4}, "the standard segment map needs bins = 5"),
    ],
)
def test_settings_that_do_not_fit_together_are_refused(rfm: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as info:
        compiled({"rfm": rfm})
    assert any(message in p for p in info.value.problems), info.value.problems


def test_a_policy_read_back_from_its_dump_is_the_same_policy() -> None:
    for rfm in CASES:
        policy = Policy.model_validate({"rfm": rfm, "points": {"expiry": "end_of_year", "expiry_years": 0}})
        assert Policy.model_validate(policy.model_dump()) == policy


def test_push_values_name_the_classic_segments_in_either_language() -> None:
    zh = push_values(Policy.model_validate({"rfm": {"segments": "classic8", "names": "zh"}}))["rfm_segment"]
    en = push_values(Policy.model_validate({"rfm": {"segments": "classic8"}}))["rfm_segment"]
    assert set(zh) == {classic(r, f, m, "zh") for r in (1, 2) for f in (1, 2) for m in (1, 2)}
    assert set(en) == {classic(r, f, m, "en") for r in (1, 2) for f in (1, 2) for m in (1, 2)}
    assert len(zh) == len(en) == 8
