"""Points balance at scale: grading time of a policy with redemptions, yearly expiry and qualifying points, with
spending that never overdraws (the default) against ``allow_negative = true``.

Generated in the store directly (no CSV): ``--members`` members with about ``--entries`` orders each over two years,
a redemption for one order in five, and clusters of entries on the same instants (mass imports); the share of
members whose redemptions exceed what they earned is ``--overdrawn`` (they are replayed entry by entry). Prints the
grading time of both settings (each run twice, alternating; the faster counts), how many members were replayed,
and the longest replay (entries of one member).

    python bench/points_balance.py --members 100000 --entries 10 --overdrawn 0.05
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import emit, machine

from crmsync.policy import STORE_EXTENSION, Policy, compile_policy
from crmsync.store import Store

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = {
    "tiers": [{"name": "Gold", "condition": "qualifying_points_365d >= 2000"}, {"name": "Member"}],
    "points": {
        "per_currency_unit": "1",
        "redemption_kinds": ["redeem"],
        "expiry": "end_of_year",
        "expiry_years": 1,
    },
    "tags": {"expiring": "points_expiring_30d > 0"},
}


def _fill(store: Store, members: int, entries: int, overdrawn: float) -> None:
    """Members, orders (amounts 5..300 on 2,000 instants) and redemptions; ``overdrawn`` of the members redeem
    3 times what they earned."""
    con = store.con
    con.execute(
        f"INSERT INTO members (source, external_id, deleted) SELECT 'crm', 'm' || i, false FROM range({members}) t(i)"
    )
    instant = f"TIMESTAMPTZ '{AS_OF.isoformat()}' - to_seconds(((hash(i) % 2000) * 31536) :: BIGINT)"
    con.execute(
        "INSERT INTO orders (source, external_id, member_id, placed_at, amount, currency, amount_base, status, "
        f"deleted) SELECT 'shop', 'o' || i, 'm' || (i % {members}), {instant}, 5 + hash(i * 7) % 296, 'EUR', "
        f"5 + hash(i * 7) % 296, 'paid', false FROM range({members * entries}) t(i)"
    )
    share = int(overdrawn * 1000)
    con.execute(
        "INSERT INTO activities (source, external_id, member_id, kind, occurred_at, points, deleted) "
        f"SELECT 'crm', 'r' || i, 'm' || (i % {members}), 'redeem', {instant}, "
        f"CASE WHEN hash(i % {members}) % 1000 < {share} THEN 3 * 300 * {entries} ELSE 20 + hash(i) % 100 END, false "
        f"FROM range({members * entries // 5}) t(i)"
    )


def run(members: int, entries: int, overdrawn: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"members": members, "orders": members * entries, "redemptions": members * entries // 5}
    for allow in (True, False, True, False):  # each twice, alternating; the faster run counts
        data = {**POLICY, "points": {**POLICY["points"], "allow_negative": allow}}
        compiled = compile_policy(Policy.model_validate(data))
        with Store.open(None, extensions=[STORE_EXTENSION]) as store:
            _fill(store, members, entries, overdrawn)
            started = time.perf_counter()
            compiled.grade(store.con, AS_OF)
            took = round(time.perf_counter() - started, 3)
            key = f"grade_s_allow_negative_{str(allow).lower()}"
            figures[key] = min(took, figures.get(key, took))
            negative = store.con.execute("SELECT count(*) FROM graded WHERE points < 0").fetchone()[0]
            figures[f"negative_balances_allow_negative_{str(allow).lower()}"] = negative
            if not allow:
                sql = "SELECT count(DISTINCT member_id), coalesce(max(seq), 0) FROM _pol_events"
                replayed, longest = store.con.execute(sql).fetchone()
                figures |= {"replayed_members": replayed, "longest_replay": longest}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=10, help="orders per member")
    parser.add_argument("--overdrawn", type=float, default=0.05, help="share of members who redeem too much")
    args = parser.parse_args(argv)
    figures = run(args.members, args.entries, args.overdrawn)
    figures["machine"] = machine()
    emit(
        "points_balance",
        figures,
        [
            ("members", figures["members"], ""),
            ("orders / redemptions", f"{figures['orders']} / {figures['redemptions']}", ""),
            ("grade s, no overdraft", figures["grade_s_allow_negative_false"], ""),
            ("grade s, allow_negative", figures["grade_s_allow_negative_true"], ""),
            ("members replayed", figures["replayed_members"], ""),
            ("longest replay (entries)", figures["longest_replay"], ""),
            ("negative balances", figures["negative_balances_allow_negative_false"], "0"),
        ],
    )
    return 0 if figures["negative_balances_allow_negative_false"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
