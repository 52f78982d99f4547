"""Qualification periods: calendar years, calendar months and anniversary years in the policy's time zone; metrics
over the current and the previous period (against an independent computation); a tier held until its period ends
and decided on the first day of the next one; period ends make stored metrics come due."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from policy_support import Store, compiled, connect

from crmsync.errors import PolicyError
from crmsync.policy.explain import explain

TZ = ZoneInfo("Asia/Shanghai")
NAMES = ("spend", "spend_net", "orders", "refunds", "refunded_amount", "activity_review")


def _years(a: date, n: int) -> date:
    try:
        return a.replace(year=a.year + n)
    except ValueError:  # 29 February in another year
        return a.replace(year=a.year + n, day=28)


def reference_bounds(period: str, anchor: date | None, today: date) -> tuple[date, date, date] | None:
    """(previous start, start, next start) of the period holding ``today``, written independently of the SQL."""
    if period == "calendar_year":
        return date(today.year - 1, 1, 1), date(today.year, 1, 1), date(today.year + 1, 1, 1)
    if period == "calendar_month":
        months = [date(today.year + (today.month + k - 1) // 12, (today.month + k - 1) % 12 + 1, 1) for k in (-1, 0, 1)]
        return months[0], months[1], months[2]
    if anchor is None:
        return None
    k = next(k for k in range(today.year - anchor.year + 1, -200, -1) if _years(anchor, k) <= today)
    return _years(anchor, k - 1), _years(anchor, k), _years(anchor, k + 1)


def _start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=TZ)


def reference(rows: list[tuple], period: str, anchor: date | None, as_of: datetime) -> dict[str, object]:
    """Period metrics of one member from its rows ``(kind, at, amount, status, refunded amount)``."""
    bounds = reference_bounds(period, anchor, as_of.astimezone(TZ).date())
    if bounds is None:
        return {"period_start": None, **{f"{n}_{w}_period": 0 for n in NAMES for w in ("this", "last")}}
    prev, start, _nxt = (_start(d) for d in bounds)
    out: dict[str, object] = {"period_start": start, "period_end": _start(bounds[2])}
    for which, lo, hi in (("this", start, as_of + timedelta(microseconds=1)), ("last", prev, start)):
        inside = [r for r in rows if lo <= r[1] < hi]
        paid = [r for r in inside if r[0] == "order" and r[3] == "paid"]
        out[f"spend_{which}_period"] = sum((Decimal(r[2]) for r in paid), Decimal(0))
        # net of partial refunds; what was refunded on any order (a refunded order without an amount: all of it)
        out[f"spend_net_{which}_period"] = sum((Decimal(r[2]) - Decimal(r[4] or 0) for r in paid), Decimal(0))
        refunded = [
            Decimal(r[4]) if r[4] else Decimal(r[2] if r[3] == "refunded" else 0) for r in inside if r[0] == "order"
        ]
        out[f"refunded_amount_{which}_period"] = sum(refunded, Decimal(0))
        out[f"orders_{which}_period"] = len(paid)
        out[f"refunds_{which}_period"] = sum(1 for r in inside if r[0] == "order" and r[3] == "refunded")
        out[f"activity_review_{which}_period"] = sum(1 for r in inside if r[0] == "review")
    return out


def _random_rows(rng: random.Random, base: datetime) -> list[tuple]:
    rows = []
    for _ in range(rng.randint(0, 9)):
        # near local midnights and the turn of the year and of months, where a zone mistake would show
        at = base + timedelta(days=rng.randint(-800, 0), hours=rng.choice([0, 15, 16, 23]), minutes=rng.choice([0, 59]))
        if rng.random() < 0.8:
            amount = rng.choice([10, 99, 250])
            refund = rng.choice([None, None, None, str(Decimal(amount) / 4)])
            rows.append(("order", at, str(amount), rng.choice(["paid"] * 4 + ["refunded"]), refund))
        else:
            rows.append(("review", at, "", "", None))
    return rows


@pytest.mark.parametrize("period", ["calendar_year", "calendar_month", "anniversary", "anniversary_attribute"])
def test_period_metrics_equal_an_independent_computation(store: Store, period: str) -> None:
    rng = random.Random(period)
    base = datetime(2026, 1, 1, 0, 0, tzinfo=TZ)
    qualification = {"period": period.removesuffix("_attribute")}
    if period.endswith("attribute"):
        qualification["anniversary_attribute"] = "joined"
    names = [f"{n}_{w}_period" for n in NAMES for w in ("this", "last")]
    policy = compiled(
        {
            "qualification": qualification,
            "tiers": [{"name": "A", "condition": " or ".join(f"{n} > 0" for n in names)}, {"name": "B"}],
        },
        tz="Asia/Shanghai",
    )
    members = {}
    for i in range(25):
        m, rows = f"m{i}", _random_rows(rng, base)
        joined = date(2024, 2, 29) if i == 0 else base.date() - timedelta(days=rng.randint(0, 900))
        store.member(m, attributes=json.dumps({"joined": joined.isoformat()}))
        for kind, at, amount, status, refund in rows:
            if kind == "order":
                store.order(m, amount, at, status=status, refunded=refund)
            else:
                store.activity(m, "review", at)
        members[m] = (rows, joined)
    for as_of in (
        base - timedelta(microseconds=1),
        base,
        base + timedelta(days=59, hours=16),
        base - timedelta(days=300),
    ):
        policy.grade(store.con, as_of)
        cols = ", ".join(["member_id", "period_start", "period_end", *names])
        got = {
            r[0]: dict(zip(cols.split(", ")[1:], r[1:], strict=True))
            for r in store.con.execute(f"SELECT {cols} FROM _pol_metrics").fetchall()
        }
        for m, (rows, joined) in members.items():
            paid = sorted(r[1] for r in rows if r[0] == "order" and r[3] == "paid" and r[1] <= as_of)
            anchor = joined if period.endswith("attribute") else (paid[0].astimezone(TZ).date() if paid else None)
            want = reference(rows, qualification["period"], anchor, as_of)
            have = {k: v for k, v in got[m].items() if k in want}
            if want["period_start"] is None:
                have = {k: (None if k == "period_start" else v) for k, v in have.items()}
            assert have == want, (m, as_of)


def test_a_tier_is_held_until_the_period_ends_and_decided_on_the_first_day_of_the_next(store: Store) -> None:
    data = {
        "qualification": {"period": "calendar_year"},
        "tiers": [
            {"name": "Gold", "condition": "spend_90d >= 1000"},  # a rolling window inside yearly periods
            {"name": "Silver", "condition": "spend_this_period >= 300 or spend_last_period >= 300"},
            {"name": "Bronze"},
        ],
        "downgrade": {"grace_days": 0, "max_levels": 1},
    }
    store.member("m")
    store.order("m", "1200", datetime(2025, 3, 10, 12, tzinfo=TZ))
    policy = compiled(data, tz="Asia/Shanghai")
    seen = {}
    for at in (
        datetime(2025, 3, 10, 13, tzinfo=TZ),
        datetime(2025, 7, 1, 9, tzinfo=TZ),  # out of the 90-day window since June: held until the year ends
        datetime(2025, 12, 31, 23, 59, tzinfo=TZ),
        datetime(2026, 1, 1, 0, 1, tzinfo=TZ),  # the first day of the next period: one level down
        datetime(2026, 6, 1, 9, tzinfo=TZ),  # Silver through 2026 on 2025's spend
        datetime(2027, 1, 1, 9, tzinfo=TZ),  # 2026 without spend: Bronze
    ):
        policy.grade(store.con, at)
        seen[at.date()] = store.graded("tier, tier_since, reasons")["m"]
    assert [(d, t, s) for d, (t, s, _) in seen.items()] == [
        (date(2025, 3, 10), "Gold", date(2025, 3, 10)),
        (date(2025, 7, 1), "Gold", date(2025, 3, 10)),
        (date(2025, 12, 31), "Gold", date(2025, 3, 10)),
        (date(2026, 1, 1), "Silver", date(2026, 1, 1)),
        (date(2026, 6, 1), "Silver", date(2026, 1, 1)),
        (date(2027, 1, 1), "Bronze", date(2027, 1, 1)),
    ]
    assert "kept Gold until the qualification period ends on 2025-12-31" in seen[date(2025, 7, 1)][2]
    assert "held at least until the qualification period ends on 2026-12-31" in seen[date(2026, 6, 1)][2]
    assert "(at most 1 level(s) per qualification period)" in seen[date(2026, 1, 1)][2]


def test_explain_names_the_period_end_and_the_rule(store: Store) -> None:
    data = {
        "qualification": {"period": "calendar_month"},
        "tiers": [
            {"name": "Gold", "condition": "spend_this_period >= 500", "keep_condition": "spend_last_period >= 300"},
            {"name": "Bronze"},
        ],
    }
    store.member("m")
    store.order("m", "600", datetime(2026, 3, 5, 10, tzinfo=TZ))
    policy = compiled(data, tz="Asia/Shanghai")
    policy.grade(store.con, datetime(2026, 3, 5, 11, tzinfo=TZ))
    policy.grade(store.con, datetime(2026, 3, 20, 11, tzinfo=TZ))
    ex = explain(policy, store.con, "m", datetime(2026, 4, 10, 11, tzinfo=TZ))  # April: kept on March's spend
    assert ex.grades["tier"].value == "Gold"
    assert ex.grades["tier"].reason.startswith("keeps Gold: spend_last_period >= 300 (spend_last_period=600.0000)")
    assert ex.decision == {
        "move": "stay",
        "rule": "keep",
        "held_tier": "Gold",
        "qualifies_for": "Bronze",
        "period_ends": date(2026, 4, 30),
    }
    assert ex.as_of.utcoffset() == timedelta(hours=8)
    ex = explain(policy, store.con, "m", datetime(2026, 5, 1, 11, tzinfo=TZ))  # May: April had no spend
    assert ex.grades["tier"].value == "Bronze"
    assert ex.decision == {
        "move": "down",
        "rule": "default",
        "held_tier": "Gold",
        "qualifies_for": "Bronze",
        "not_qualifying_since": date(2026, 5, 1),
        "period_ends": date(2026, 5, 31),
    }
    assert ex.grades["tier"].reason.startswith("dropped from Gold after the grace period")


def test_a_period_ending_makes_the_stored_metrics_come_due() -> None:
    con = connect()
    store = Store(con)
    for m in ("a", "b"):
        store.member(m)
        store.order(m, "100", datetime(2026, 3, 5, 10, tzinfo=TZ))
    policy = compiled(
        {
            "qualification": {"period": "calendar_month"},
            "tiers": [{"name": "A", "condition": "spend_this_period > 0"}, {"name": "B"}],
        },
        tz="Asia/Shanghai",
    )
    assert policy.grade(con, datetime(2026, 3, 10, tzinfo=TZ), incremental=True).recomputed == 2
    assert policy.grade(con, datetime(2026, 3, 31, 23, tzinfo=TZ), incremental=True).recomputed == 0
    got = policy.grade(con, datetime(2026, 4, 1, 1, tzinfo=TZ), incremental=True)  # April began in Shanghai
    assert got.recomputed == 2
    assert con.execute("SELECT DISTINCT spend_this_period FROM _pol_metrics").fetchall() == [(Decimal(0),)]


def test_anniversary_attribute_change_is_noticed() -> None:
    con = connect()
    store = Store(con)
    store.member("m", attributes=json.dumps({"joined": "2025-06-15"}))
    store.order("m", "100", datetime(2026, 6, 10, tzinfo=UTC))
    policy = compiled(
        {
            "qualification": {"period": "anniversary", "anniversary_attribute": "joined"},
            "tiers": [{"name": "A", "condition": "spend_this_period > 0"}, {"name": "B"}],
        }
    )
    policy.grade(con, datetime(2026, 6, 12, tzinfo=UTC), incremental=True)
    assert con.execute("SELECT spend_this_period FROM _pol_metrics").fetchall() == [(Decimal(100),)]
    con.execute('UPDATE members SET attributes = \'{"joined": "2025-06-01"}\'')  # the year now began on 1 June
    assert policy.grade(con, datetime(2026, 6, 12, tzinfo=UTC), incremental=True).recomputed == 1
    assert con.execute("SELECT spend_this_period, period_start FROM _pol_metrics").fetchall() == [
        (Decimal(100), datetime(2026, 6, 1, tzinfo=UTC))
    ]


def test_period_metrics_need_a_period() -> None:
    with pytest.raises(PolicyError) as info:
        compiled({"tiers": [{"name": "A", "condition": "spend_this_period > 0"}, {"name": "B"}]})
    assert info.value.problems == [
        "policy.tiers[0].condition: 'spend_this_period' needs a qualification period "
        "([policy.qualification] period = 'calendar_year', ...) at column 1"
    ]
    with pytest.raises(ValueError, match="anniversary_attribute needs period = 'anniversary'"):
        compiled({"qualification": {"period": "calendar_year", "anniversary_attribute": "joined"}})
