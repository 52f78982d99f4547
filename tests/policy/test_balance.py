"""The points balance against an account kept entry by entry in pure Python: first-in-first-out expiry (rolling or
at the end of a calendar year in the sync time zone), spending that never overdraws unless the policy allows it,
points expiring soon, points earned in a window, and qualifying points."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from policy_support import NOW, Store, compiled, day

TZ = "Asia/Shanghai"
METRICS = (
    "points",
    "points_redeemed_lifetime",
    "points_expired_lifetime",
    "points_earned_lifetime",
    "points_expiring_30d",
    "points_earned_90d",
    "qualifying_points_365d",
    "qualifying_points_lifetime",
)


@dataclass
class Entry:
    at: datetime
    ref: str
    points: int  # earned (> 0) or spent (< 0) as reported
    qualifying: int
    redemption: bool = False


@dataclass
class Account:
    """One member's entries, replayed in time order like a ledger book."""

    entries: list[Entry] = field(default_factory=list)

    def replay(self, as_of: datetime, expiry: dict[str, Any], allow_negative: bool) -> dict[str, int]:
        seen = [e for e in self.entries if e.at <= as_of]
        events: list[tuple[Any, ...]] = []
        for e in seen:
            if e.points > 0:
                events.append((e.at, 0, e.at, e.ref, e))
                ends = expires(e.at, expiry)
                if ends is not None and ends <= as_of:
                    events.append((ends, 1, e.at, e.ref, e))
            else:
                events.append((e.at, 2, e.at, e.ref, e))
        lots: deque[list[Any]] = deque()  # [remaining, entry] oldest first
        lot_of: dict[str, list[Any]] = {}
        debt = expired = redeemed = 0
        taken: dict[str, int] = {}
        for _, step, _, _, e in sorted(events, key=lambda v: v[:4]):
            if step == 0:
                pay = min(debt, e.points)
                debt -= pay
                lots.append(lot_of.setdefault(e.ref, [e.points - pay, e]))
            elif step == 1:  # what is left of the lot expires
                expired += lot_of[e.ref][0]
                lot_of[e.ref][0] = 0
            else:
                want, got = -e.points, 0
                while lots and got < want:
                    use = min(lots[0][0], want - got)
                    lots[0][0] -= use
                    got += use
                    if lots[0][0] == 0:
                        lots.popleft()
                if allow_negative:
                    debt += want - got
                    got = want
                taken[e.ref] = got
                redeemed += got if e.redemption else 0
        horizon = as_of + timedelta(days=30)
        earned = [e.points if e.points > 0 else -taken[e.ref] for e in seen if not e.redemption]
        recent = [
            e.points if e.points > 0 else -taken[e.ref]
            for e in seen
            if not e.redemption and e.at > as_of - timedelta(days=90)
        ]
        ends = [(lot[0], expires(lot[1].at, expiry)) for lot in lots]
        return {
            "points": sum(lot[0] for lot in lots) - debt,
            "points_redeemed_lifetime": redeemed,
            "points_expired_lifetime": expired,
            "points_earned_lifetime": sum(earned),
            "points_expiring_30d": sum(left for left, end in ends if end is not None and end <= horizon),
            "points_earned_90d": sum(recent),
            "qualifying_points_365d": sum(e.qualifying for e in seen if e.at > as_of - timedelta(days=365)),
            "qualifying_points_lifetime": sum(e.qualifying for e in seen),
        }


def expires(at: datetime, expiry: dict[str, Any]) -> datetime | None:
    if expiry.get("expiry") == "end_of_year":
        year = at.astimezone(ZoneInfo(TZ)).year + 1 + expiry.get("expiry_years", 1)
        return datetime(year, 1, 1, tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    if "expiry_days" in expiry:
        return at + timedelta(days=expiry["expiry_days"])
    return None


def _seed(store: Store, rng: random.Random, members: int, non_qualifying_crm: bool) -> dict[str, Account]:
    accounts = {}
    moments = [day(rng.randint(0, 900)) + timedelta(seconds=rng.choice([0, 0, 1, 3600 * 13])) for _ in range(40)]
    moments += [datetime(2023, 12, 31, 16, tzinfo=UTC), datetime(2023, 12, 31, 15, 59, tzinfo=UTC)]  # year ends
    for i in range(members):
        mid = f"m{i:02d}"
        store.member(mid)
        account = accounts[mid] = Account()
        for n in range(rng.randint(0, 14)):
            at = rng.choice(moments)  # shared instants make ties of earning, expiry and spending
            what = rng.choice(["order", "order", "refunded", "review", "adjust", "redeem", "redeem"])
            if what in ("order", "refunded"):
                amount = rng.randint(1, 400)
                refunded = rng.randint(0, amount) if what == "refunded" else None
                ext = store.order(mid, str(amount), at, external_id=f"o{mid}{n}", refunded=refunded)
                net = amount - (refunded or 0)
                if net:
                    account.entries.append(Entry(at, f"order:shop:{ext}", net, net))
            elif what == "review":
                ext = store.activity(mid, "review", at)
                account.entries.append(Entry(at, f"activity:crm:{ext}", 15, 0 if non_qualifying_crm else 15))
            elif what == "adjust":  # points the source reports, either way, that never qualify
                pts = rng.choice([25, 60, -30, -90])
                ext = store.activity(mid, "adjust", at, points=str(pts))
                account.entries.append(Entry(at, f"activity:crm:{ext}", pts, 0))
            else:
                pts = rng.choice([20, 50, 150, 400])
                ext = store.activity(mid, "redeem", at, points=str(pts))
                account.entries.append(Entry(at, f"activity:crm:{ext}", -pts, 0, redemption=True))
    return accounts


EXPIRY = [{}, {"expiry_days": 90}, {"expiry": "end_of_year", "expiry_years": 0}, {"expiry": "end_of_year"}]


@pytest.mark.parametrize("allow_negative", [False, True])
@pytest.mark.parametrize("expiry", EXPIRY, ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()) or "never")
@pytest.mark.parametrize("seed", [1, 2])
def test_balance_matches_an_account_replayed_entry_by_entry(
    store: Store, seed: int, expiry: dict[str, Any], allow_negative: bool
) -> None:
    rng = random.Random(seed)
    non_qualifying_crm = seed == 2
    accounts = _seed(store, rng, 30, non_qualifying_crm)
    points = {
        "per_currency_unit": "1",
        "activities": {"review": "15"},
        "source_points_kinds": ["adjust"],
        "redemption_kinds": ["redeem"],
        "non_qualifying_kinds": ["adjust"],
        "non_qualifying_sources": ["crm"] if non_qualifying_crm else [],
        "allow_negative": allow_negative,
        **expiry,
    }
    tags = {"all": " + ".join(METRICS) + " > -1000000"}
    p = compiled({"points": points, "tags": tags}, timezone=TZ)
    for as_of in (day(400), day(200), NOW, NOW + timedelta(days=300)):  # the same store, graded as time goes on
        p.grade(store.con, as_of)
        got = store.con.execute(f"SELECT member_id, {', '.join(METRICS)} FROM _pol_stage ORDER BY 1").fetchall()
        for mid, *values in got:
            expected = accounts[mid].replay(as_of, expiry, allow_negative)
            assert dict(zip(METRICS, values, strict=True)) == expected, (mid, as_of)
            if not allow_negative:
                assert values[0] >= 0
        graded = dict(store.con.execute("SELECT member_id, points FROM graded").fetchall())
        assert graded == {m: accounts[m].replay(as_of, expiry, allow_negative)["points"] for m in accounts}


@pytest.mark.slow
def test_clustered_spending_at_scale_matches_the_account() -> None:
    """A member with 5,000 entries on 40 instants (mass imports) and 3,000 members each spending at the very instant
    they earn: exact, and no work that grows with the square of a member's entries."""
    import time

    import duckdb
    import pyarrow as pa
    from policy_support import STORE_DDL

    from crmsync.policy import POLICY_DDL

    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for stmt in STORE_DDL + POLICY_DDL:
        con.execute(stmt)
    rng = random.Random(5)
    instants = sorted(day(rng.randint(0, 400)) for _ in range(40))
    accounts: dict[str, Account] = {"heavy": Account()}
    orders: list[tuple[str, str, datetime, int]] = []
    spends: list[tuple[str, str, datetime, int]] = []
    for n in range(4000):
        at, amount = rng.choice(instants), rng.randint(1, 50)
        orders.append(("heavy", f"h{n:05d}", at, amount))
        accounts["heavy"].entries.append(Entry(at, f"order:shop:h{n:05d}", amount, amount))
    for n in range(1000):
        at, pts = rng.choice(instants), rng.randint(20, 200)
        spends.append(("heavy", f"r{n:05d}", at, pts))
        accounts["heavy"].entries.append(Entry(at, f"activity:crm:r{n:05d}", -pts, 0, redemption=True))
    for i in range(3000):
        mid, at = f"m{i:04d}", rng.choice(instants)
        accounts[mid] = Account(
            [Entry(at, f"order:shop:x{i}", 100, 100), Entry(at, f"activity:crm:y{i}", -150, 0, True)]
        )
        orders.append((mid, f"x{i}", at, 100))
        spends.append((mid, f"y{i}", at, 150))
    members = pa.table({"external_id": list(accounts)})
    o = pa.table({k: [r[j] for r in orders] for j, k in enumerate(("member_id", "external_id", "placed_at", "amount"))})
    a = pa.table(
        {k: [r[j] for r in spends] for j, k in enumerate(("member_id", "external_id", "occurred_at", "points"))}
    )
    con.register("m_new", members)
    con.register("o_new", o)
    con.register("a_new", a)
    con.execute("INSERT INTO members (source, external_id, deleted) SELECT 'crm', external_id, false FROM m_new")
    con.execute(
        "INSERT INTO orders (source, external_id, member_id, placed_at, amount, currency, amount_base, status, "
        "deleted) SELECT 'shop', external_id, member_id, placed_at, amount, 'EUR', amount, 'paid', false FROM o_new"
    )
    con.execute(
        "INSERT INTO activities (source, external_id, member_id, kind, occurred_at, points, deleted) "
        "SELECT 'crm', external_id, member_id, 'redeem', occurred_at, points, false FROM a_new"
    )
    expiry = {"expiry_days": 30}
    points = {"per_currency_unit": "1", "redemption_kinds": ["redeem"], **expiry}
    p = compiled({"points": points, "tags": {"all": " + ".join(METRICS) + " > -1000000"}})
    started = time.perf_counter()
    p.grade(con, NOW)
    took = time.perf_counter() - started
    got = con.execute(f"SELECT member_id, {', '.join(METRICS)} FROM _pol_stage").fetchall()
    assert len(got) == 3001
    for mid, *values in got:
        assert dict(zip(METRICS, values, strict=True)) == accounts[mid].replay(NOW, expiry, False), mid
    overdrawn = con.execute("SELECT count(*) FROM _pol_overdrawn").fetchone()[0]
    print(f"graded 3,001 members, 11,000 entries, {overdrawn} replayed, in {took:.2f} s")
    assert overdrawn >= 3000  # every light member spends more than they have
