"""Points rules a programme sets: tier-entry bonuses (once per tier unless re-entry earns again), what spending
beyond the balance does, calendar-year expiry in the sync time zone, qualifying vs spendable points, and grades that
do not depend on how often grading runs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest
from policy_support import NOW, STORE_DDL, Store, compiled, connect, day, save_graded

from crmsync.policy import POLICY_DDL, backtest, explain, set_override
from crmsync.policy.days import day_end, local_day

TIERS = [
    {"name": "Gold", "condition": "spend_net_lifetime >= 1000", "entry_bonus": 500},
    {"name": "Silver", "condition": "spend_net_lifetime >= 300", "entry_bonus": 100},
    {"name": "Basic"},
]


def _policy(**points: Any) -> dict[str, Any]:
    return {"tiers": TIERS, "points": {"per_currency_unit": "1", **points}, "downgrade": {"grace_days": 0}}


def _bonuses(store: Store) -> list[tuple[str, str, int]]:
    return store.con.execute("SELECT member_id, tier, points FROM policy_points_bonus ORDER BY granted_at").fetchall()


@pytest.mark.parametrize("again", [False, True])
def test_an_entry_bonus_is_credited_once_per_tier_unless_re_entry_earns_it_again(store: Store, again: bool) -> None:
    store.member("m")
    first = store.order("m", "400", day(50))
    p = compiled({**_policy(entry_bonus_on_reentry=again), "tags": {"q": "qualifying_points_lifetime >= 0"}})
    p.grade(store.con, day(49))  # first grading: enters Silver
    store.save_profiles()
    assert store.graded("tier, points") == {"m": ("Silver", 500)}
    p.grade(store.con, day(48))  # still Silver: nothing more
    store.save_profiles()
    second = store.order("m", "700", day(40))
    p.grade(store.con, day(39))  # enters Gold
    store.save_profiles()
    assert store.graded("tier, points") == {"m": ("Gold", 1700)}  # 1100 earned + 100 + 500
    assert _bonuses(store) == [("m", "Silver", 100), ("m", "Gold", 500)]
    for ext in (first, second):  # both refunded: drops to Silver, then Basic
        store.set_order(ext, status="refunded")
    for n in (30, 29):
        p.grade(store.con, day(n))
        store.save_profiles()
    assert store.graded("tier, points") == {"m": ("Basic", 600)}  # the bonuses stay
    store.order("m", "1200", day(20))
    p.grade(store.con, day(19))  # enters Gold again (skipping Silver: only Gold's bonus)
    store.save_profiles()
    expected = 600 + 1200 + (500 if again else 0)
    assert store.graded("tier, points") == {"m": ("Gold", expected)}
    assert len(_bonuses(store)) == (3 if again else 2)
    qualifying = store.con.execute("SELECT qualifying_points_lifetime FROM _pol_stage").fetchone()[0]
    assert qualifying == 1200  # bonuses never qualify
    p.grade(store.con, NOW)  # derived again from the stored bonuses: the same balance
    assert store.graded("points") == {"m": expected}


@pytest.mark.parametrize("hours", [0, 5, 17, 23])
def test_a_tier_entered_during_a_pause_earns_its_bonus_once_dated_at_the_end_of_that_day(hours: int) -> None:
    """A sync after a pause decides the day of entry: one bonus, dated as daily syncs date it, the same balance."""
    tz = "Asia/Shanghai"
    p = compiled(_policy(), tz=tz)
    entered = day(20) + timedelta(hours=hours)
    runs = {"daily": [day(30) + timedelta(days=n, hours=3) for n in range(31)], "paused": [day(30), NOW, NOW]}
    seen = {}
    for label, instants in runs.items():
        con = connect()
        store = Store(con)
        store.member("m")
        store.order("m", "100", day(40))
        store.order("m", "250", entered)  # 350 spent: Silver
        for at in instants:
            save_graded(con, p.grade(con, at, incremental=True).incremental)
        seen[label] = (_bonuses(store), store.con.execute("SELECT granted_at FROM policy_points_bonus").fetchall())
        assert store.con.execute("SELECT tier, points FROM profiles").fetchall() == [("Silver", 450)], label
        con.close()
    assert seen["daily"] == seen["paused"]
    assert seen["paused"] == ([("m", "Silver", 100)], [(day_end(local_day(entered, p.tz), p.tz),)])


def test_a_lock_into_a_tier_credits_its_bonus_and_backtests_and_explain_write_none(store: Store) -> None:
    store.member("m")
    store.member("n")
    store.order("n", "350", day(10))
    p = compiled(_policy())
    ex = explain(p, store.con, "n", day(5))
    assert ex.grades["points"].value == 450 and any(e["kind"] == "bonus" for e in ex.ledger)
    periods = backtest(store.con, p, day(30), day(1), every=7)
    assert periods[-1].distribution["Silver"] == 1
    assert _bonuses(store) == []  # explain and the backtest keep their bonuses to themselves
    set_override(store.con, "m", "Gold", None, "VIP guest", "ops", tier_names=["Gold", "Silver", "Basic"])
    p.grade(store.con, day(5))
    assert store.graded("tier, points") == {"m": ("Gold", 500), "n": ("Silver", 450)}


def test_spending_beyond_the_balance_takes_what_is_there_unless_negative_is_allowed(store: Store) -> None:
    store.member("m")
    store.order("m", "100", day(30))
    redeem = store.activity("m", "redeem", day(20), points="250")
    store.order("m", "80", day(10))
    base = {"per_currency_unit": "1", "redemption_kinds": ["redeem"]}
    p = compiled({"points": base, "tags": {"r": "points_redeemed_lifetime >= 0"}})
    p.grade(store.con, NOW)
    assert store.graded("points") == {"m": 80}  # 100 taken, 150 not; the later 80 stay
    entry = store.con.execute(
        "SELECT base_points, points FROM policy_points_ledger WHERE entry_ref = ?", [f"activity:crm:{redeem}"]
    ).fetchone()
    assert entry == (-250, -100)
    assert store.con.execute("SELECT points_redeemed_lifetime FROM _pol_stage").fetchone() == (100,)
    shown = [e for e in explain(p, store.con, "m", NOW).ledger if e["kind"] == "redemption"]
    assert [(e["base_points"], e["points"], e["qualifying"]) for e in shown] == [(-250, -100, 0)]
    compiled({"points": {**base, "allow_negative": True}}).grade(store.con, NOW)
    assert store.graded("points") == {"m": -70}  # 180 - 250: the later 80 paid part of it back


def test_a_refund_after_the_points_were_spent_leaves_the_balance_at_zero(store: Store) -> None:
    store.member("m")
    order = store.order("m", "200", day(30))
    store.activity("m", "redeem", day(20), points="150")
    p = compiled({"points": {"per_currency_unit": "1", "redemption_kinds": ["redeem"]}})
    p.grade(store.con, NOW)
    assert store.graded("points") == {"m": 50}
    store.set_order(order, refunded_amount=180, refunded_amount_base=180)  # the 200 earned become 20
    p.grade(store.con, NOW)
    assert store.graded("points") == {"m": 0}


@pytest.mark.parametrize(
    ("earned", "years", "expires"),
    [
        (datetime(2024, 12, 31, 15, 59, tzinfo=UTC), 1, datetime(2025, 12, 31, 16, tzinfo=UTC)),  # 23:59 in Shanghai
        (datetime(2024, 12, 31, 16, 0, tzinfo=UTC), 1, datetime(2026, 12, 31, 16, tzinfo=UTC)),  # 00:00, 2025
        (datetime(2024, 6, 1, tzinfo=UTC), 0, datetime(2024, 12, 31, 16, tzinfo=UTC)),
    ],
)
def test_end_of_year_expiry_is_read_in_the_sync_time_zone(
    store: Store, earned: datetime, years: int, expires: datetime
) -> None:
    store.member("m")
    store.order("m", "100", earned)
    p = compiled(
        {"points": {"per_currency_unit": "1", "expiry": "end_of_year", "expiry_years": years}},
        timezone="Asia/Shanghai",
    )
    p.grade(store.con, expires - timedelta(seconds=1))
    assert store.graded("points") == {"m": 100}
    assert store.con.execute("SELECT expires_at FROM policy_points_ledger").fetchone() == (expires,)
    p.grade(store.con, expires)
    assert store.graded("points") == {"m": 0}


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ({"expiry": "rolling"}, "expiry = 'rolling' needs expiry_days"),
        ({"expiry": "end_of_year", "expiry_days": 365}, "takes expiry_years, not expiry_days"),
        ({"expiry_days": 365, "expiry_years": 2}, "expiry_years applies to expiry = 'end_of_year'"),
    ],
)
def test_expiry_settings_that_contradict_each_other_are_refused(points: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compiled({"points": points})


def test_qualifying_points_leave_out_what_the_programme_says(store: Store) -> None:
    store.member("m")
    store.order("m", "300", day(10))
    store.activity("m", "review", day(9))
    store.activity("m", "promo", day(8), points="1000")
    policy = {
        "tiers": [
            {"name": "Gold", "condition": "qualifying_points_365d >= 600", "points_multiplier": "2"},
            {"name": "Basic"},
        ],
        "points": {
            "per_currency_unit": "1",
            "activities": {"review": "20"},
            "source_points_kinds": ["promo"],
            "non_qualifying_kinds": ["promo"],
        },
    }
    p = compiled(policy)
    p.grade(store.con, NOW)
    store.save_profiles()
    assert store.graded("tier, points") == {"m": ("Basic", 1320)}  # spendable 1320, qualifying 320
    store.order("m", "300", day(1))  # earned while Basic: x1
    p.grade(store.con, NOW)
    store.save_profiles()
    assert store.graded("tier") == {"m": "Gold"}  # 620 qualifying
    # placed the day after Gold was entered (an order earns with the tier held at the end of the day before)
    store.order("m", "100", NOW + timedelta(days=1))  # earned while Gold: 200 spendable, 100 qualifying
    p.grade(store.con, NOW + timedelta(days=1, hours=1))
    assert store.con.execute("SELECT points, qualifying_points_365d FROM _pol_stage").fetchone() == (1820, 720)
    q = compiled({**policy, "points": {**policy["points"], "qualifying_multiplier": True}})
    q.grade(store.con, NOW + timedelta(days=1, hours=2))
    assert store.con.execute("SELECT qualifying_points_365d FROM _pol_stage").fetchone() == (820,)


def _schedule(policy: dict[str, Any], seed: int, every: int, spend: bool) -> list[Any]:
    """Grade the same generated history every ``every`` days for 30 days (saving profiles as a sync does); the
    profiles and bonuses on each day that is a multiple of 30."""
    rng = random.Random(seed)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for stmt in STORE_DDL + POLICY_DDL:
        con.execute(stmt)
    store = Store(con)
    members = [f"m{i}" for i in range(6)]
    for m in members:
        store.member(m)
    for _ in range(40):
        amount = rng.choice([40, 90, 150, 300])
        refunded = rng.choice([None, None, amount // 3])
        store.order(rng.choice(members), str(amount), day(rng.uniform(0, 60)), refunded=refunded)
    for _ in range(10 if spend else 0):
        store.activity(rng.choice(members), "redeem", day(rng.uniform(0, 60)), points=rng.choice(["50", "400"]))
    p = compiled(policy)
    seen = []
    for n in range(0, 31, every):
        p.grade(con, day(30 - n))
        store.save_profiles()
        if n % 30 == 0:
            cols = "member_id, tier, points, rfm_r, rfm_f, rfm_m, rfm_segment, tags"  # not when a tier was entered
            seen.append(con.execute(f"SELECT {cols} FROM profiles ORDER BY 1").fetchall())
            seen.append(sorted(r[:2] for r in _bonuses(store)))
    con.close()
    return seen


@pytest.mark.parametrize("seed", [1, 2])
def test_balance_expiry_qualifying_points_and_rfm_window_do_not_depend_on_how_often_grading_runs(seed: int) -> None:
    policy = {
        "tiers": [
            {"name": "Gold", "condition": "qualifying_points_lifetime >= 1500"},
            {"name": "Silver", "condition": "qualifying_points_lifetime >= 500"},
            {"name": "Basic"},
        ],
        "points": {"per_currency_unit": "1", "redemption_kinds": ["redeem"], "expiry_days": 20},
        "rfm": {"segments": "classic8", "method": "median", "window_days": 30},
        "tags": {"expiring": "points_expiring_10d > 0", "active": "qualifying_points_30d >= 200"},
    }
    assert _schedule(policy, seed, 3, spend=True) == _schedule(policy, seed, 30, spend=True)


def test_entry_bonuses_do_not_depend_on_how_often_grading_runs() -> None:
    """The tiers reached, the bonuses and (when nothing is spent or expires in between) the balance; a bonus is dated
    at the grading that saw the entry, so spending between the qualifying order and a later grading can differ."""
    policy = {"tiers": TIERS, "points": {"per_currency_unit": "1"}}
    assert _schedule(policy, 3, 3, spend=False) == _schedule(policy, 3, 30, spend=False)


def test_forgetting_a_member_erases_their_bonuses() -> None:
    from crmsync.policy import STORE_EXTENSION
    from crmsync.store import Store, erasure

    with Store.open(None, extensions=[STORE_EXTENSION]) as store:
        store.con.execute("INSERT INTO members (source, external_id, deleted) VALUES ('crm', 'm', false)")
        store.con.execute(
            "INSERT INTO orders (source, external_id, member_id, placed_at, amount, currency, amount_base, "
            "status, deleted) VALUES ('crm', 'o1', 'm', ?, 500, 'EUR', 500, 'paid', false)",
            [day(3)],
        )
        policy = compiled(_policy())
        policy.grade(store.con, NOW)
        policy.grade(store.con, NOW + timedelta(days=1))  # decides the day of entry: its bonus is stored
        assert store.con.execute("SELECT count(*) FROM policy_points_bonus").fetchone() == (1,)
        counts = erasure.forget_member(store.con, "crm", "m", actor="dpo", reason="art. 17")
        assert counts["policy_points_bonus"] == 1
        assert store.con.execute("SELECT count(*) FROM policy_points_bonus").fetchone() == (0,)
