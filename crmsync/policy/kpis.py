"""Programme KPIs of one period of a backtest (``crmsync report``), from the grading as of the period's end.

Definitions (orders are the successful ones, ``metrics.order_statuses``; amounts in the base currency; a member's
tier is the one they hold at the period's end):

- ``buyers``: members with at least one order placed in the period; ``repeat_buyers``: with two or more;
  ``repurchase_rate`` = repeat_buyers / buyers (复购率).
- ``returning_buyers``: buyers who had ordered before the period; ``returning_rate`` = returning_buyers / buyers.
- ``aov`` (average order value) = spend / orders of the period.
- per tier: ``members``, ``active`` (members with an order in the period), ``active_share`` = active / members,
  ``orders``, ``spend``, ``aov``.
- ``upgrade_rate`` / ``downgrade_rate``: members whose tier at the period's end is higher / lower than at the
  previous period's end, over the members who held a tier then (``held``).

A rate without members to divide by is ``None``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from crmsync.policy.compiled import CompiledPolicy
from crmsync.policy.metrics import ts
from crmsync.policy.trial import CENT, Kpis, TierKpis, moved
from crmsync.store.db import Connection


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _aov(spend: Decimal, orders: int) -> Decimal | None:
    return (spend / orders).quantize(CENT) if orders else None


def kpis(
    con: Connection, compiled: CompiledPolicy, graded: str, since: datetime, matrix: dict[str, dict[str, int]]
) -> Kpis:
    """The KPIs of the period after ``since`` up to the evaluation whose grades are in ``graded`` (with the orders
    of ``_pol_orders``); ``matrix``: the period's tier transitions."""
    rows = con.execute(
        f"""WITH o AS (
              SELECT member_id, count(*) FILTER (WHERE placed_at > {ts(since)}) AS n,
                     sum(amount) FILTER (WHERE placed_at > {ts(since)}) AS spend,
                     count(*) FILTER (WHERE placed_at <= {ts(since)}) AS before
              FROM _pol_orders GROUP BY member_id)
            SELECT g.tier, count(*), count(*) FILTER (WHERE o.n > 0), count(*) FILTER (WHERE o.n > 1),
                   count(*) FILTER (WHERE o.n > 0 AND o.before > 0), coalesce(sum(o.n), 0),
                   coalesce(sum(o.spend), 0)
            FROM {graded} g LEFT JOIN o USING (member_id) GROUP BY g.tier"""
    ).fetchall()
    got = {r[0]: r[1:] for r in rows}
    by_tier = {}
    for name in compiled.tier_names:
        members, active, _, _, orders, spend = got.get(name, (0, 0, 0, 0, 0, Decimal(0)))
        by_tier[name] = TierKpis(
            members, active, rate(active, members), orders, Decimal(spend), _aov(Decimal(spend), orders)
        )
    total = [sum(r[i] for r in got.values()) for i in range(6)]
    held, up, down = moved(compiled, matrix)
    spend = Decimal(total[5])
    return Kpis(
        members=total[0],
        buyers=total[1],
        repeat_buyers=total[2],
        repurchase_rate=rate(total[2], total[1]),
        returning_buyers=total[3],
        returning_rate=rate(total[3], total[1]),
        orders=total[4],
        spend=spend,
        aov=_aov(spend, total[4]),
        held=held,
        upgraded=up,
        downgraded=down,
        upgrade_rate=rate(up, held),
        downgrade_rate=rate(down, held),
        by_tier=by_tier,
    )
