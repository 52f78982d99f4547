"""The points balance beyond earning: when points expire, a balance that never goes negative, qualifying points,
and tier-entry bonuses. SQL over ``_pol_ledger`` (see :mod:`crmsync.policy.points`).

Expiry (``points.expiry``): ``rolling`` (``expiry_days`` after an entry was earned) or ``end_of_year`` (at the end of
the calendar year in ``sync.timezone`` that is ``expiry_years`` after the year earned: 0 = the same year, 1 = the
next). Either way first in, first out.

Order of a member's entries at one instant: earnings, then expiries, then spending (redemptions and negative
entries), then tier-entry bonuses.

No overdraft (``allow_negative = false``, the default): spending takes at most the balance at its instant; what is
beyond it is not taken (the entry keeps the reported points in ``base_points`` and what was taken in ``points``), so
the balance never goes below 0 and later earnings are not used to pay it back. A refund that takes back points
already spent works the same way: the order's entry shrinks, and the spending that used its points takes what is
left. With ``allow_negative = true`` the balance may go negative; later earnings first make up the difference.

Members whose balance stays at or above 0 with every spending taken in full (nearly all) are computed in closed form
(:func:`crmsync.policy.points.points_sql`); the others are replayed entry by entry with a recursive query, as the
account of ``E`` (earned so far) and ``Q`` (consumed so far, spent or expired; the balance is ``E - Q``):

- an earning of ``a``: ``E += a``;
- spending of ``d``: it takes ``min(d, E - Q)``; ``Q`` grows by that;
- the expiry of the ``k``-th lot (in the order lots were earned) at its instant: ``Q = max(Q, C_k)``, ``C_k`` being
  the points of lots 1..k; what ``Q`` grew by expires.

Points expiring within ``N`` days (``points_expiring_Nd``), if nothing more is spent: ``max(0, C_h - Q)`` with ``C_h``
the points of the lots expiring by then.

Qualifying points (``qualifying_points_*``): each earning entry also counts as qualifying points (for tier
conditions), before the tier's ``points_multiplier`` unless ``qualifying_multiplier``, except orders and activities of
``non_qualifying_sources`` and activities of ``non_qualifying_kinds``; bonuses never qualify. Spending and expiry take
nothing from them: they are a sum over a window.
"""

from __future__ import annotations

from crmsync.policy.model import PointsSettings

EARN_KINDS = ("order", "activity", "bonus")
"""Ledger entries that earn points (spendable and, but for bonuses, qualifying)."""
_EARNING = "kind IN ('order', 'activity', 'bonus')"
_LOT = f"{_EARNING} AND points > 0"
ORDER = "CASE WHEN kind = 'expiry' THEN 1 WHEN kind = 'bonus' THEN 3 WHEN points < 0 THEN 2 ELSE 0 END"
"""Rank of an entry among those of the same instant: earnings, expiries, spending, bonuses."""


def expiry_sql(cfg: PointsSettings, column: str, timezone: str) -> str:
    """SQL of the instant points earned at ``column`` expire (null: never)."""
    if cfg.expiry == "end_of_year":
        local = f"timezone('{timezone}', {column})"
        return f"timezone('{timezone}', date_trunc('year', {local}) + INTERVAL {1 + cfg.expiry_years} YEAR)"
    if cfg.expiry_days:
        return f"{column} + INTERVAL {cfg.expiry_days * 86400} SECOND"
    return "NULL::TIMESTAMPTZ"


def bonus_entries_sql(bonus_table: str, scope: str, at: str) -> str:
    """A part of the ledger: the tier-entry bonuses granted to the members in ``scope`` up to ``at``."""
    return (
        "SELECT b.member_id, b.entry_ref, 'bonus' AS kind, b.granted_at AS occurred_at, "
        "CAST(b.points AS DECIMAL(18,4)) AS base_points, false AS qual, CAST(1 AS DECIMAL(9,4)) AS multiplier "
        f"FROM {bonus_table} b SEMI JOIN {scope} USING (member_id) WHERE b.granted_at <= {at}"
    )


def no_overdraft_sql(at: str) -> list[str]:
    """Statements replaying, entry by entry, the members of ``_pol_ledger`` whose balance would go below 0, so that
    spending takes at most the balance (and expiry what is left)."""
    spending = "points < 0 AND kind <> 'expiry'"
    lot_order = "PARTITION BY member_id ORDER BY occurred_at, entry_ref ROWS UNBOUNDED PRECEDING"
    return [
        f"""CREATE OR REPLACE TEMP TABLE _pol_overdrawn AS
SELECT DISTINCT member_id FROM (
  SELECT member_id, sum(points) OVER (PARTITION BY member_id ORDER BY occurred_at, {ORDER}, entry_ref
    ROWS UNBOUNDED PRECEDING) AS running
  FROM _pol_ledger WHERE member_id IN (SELECT member_id FROM _pol_ledger WHERE {spending})
) WHERE running < 0""",
        f"""CREATE OR REPLACE TEMP TABLE _pol_events AS
SELECT *, row_number() OVER (PARTITION BY member_id ORDER BY t, step, lot_at, entry_ref) AS seq FROM (
  SELECT member_id, entry_ref, occurred_at AS t, {ORDER} AS step, occurred_at AS lot_at,
    abs(points) AS amount, NULL::BIGINT AS upto
  FROM _pol_ledger SEMI JOIN _pol_overdrawn USING (member_id) WHERE kind <> 'expiry'
  UNION ALL
  SELECT member_id, entry_ref, expires_at, 1, occurred_at, NULL, upto FROM (
    SELECT *, sum(points) OVER ({lot_order}) AS upto FROM _pol_ledger SEMI JOIN _pol_overdrawn USING (member_id)
    WHERE points > 0 AND kind <> 'expiry'
  ) WHERE expires_at <= {at}
)""",
        """CREATE OR REPLACE TEMP TABLE _pol_replay AS
WITH RECURSIVE r(member_id, seq, e, q, moved) AS (
  SELECT DISTINCT member_id, CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT)
  FROM _pol_events
  UNION ALL
  SELECT r.member_id, v.seq,
    r.e + CASE WHEN v.step IN (0, 3) THEN v.amount ELSE 0 END,
    CASE v.step WHEN 1 THEN greatest(r.q, v.upto) WHEN 2 THEN r.q + least(v.amount, r.e - r.q) ELSE r.q END,
    CASE v.step WHEN 1 THEN greatest(r.q, v.upto) - r.q WHEN 2 THEN least(v.amount, r.e - r.q) ELSE 0 END
  FROM r JOIN _pol_events v ON v.member_id = r.member_id AND v.seq = r.seq + 1
)
SELECT v.member_id, v.entry_ref, v.step, v.t, r.moved FROM r JOIN _pol_events v USING (member_id, seq)
WHERE v.step IN (1, 2)""",
        "UPDATE _pol_ledger l SET points = -x.moved FROM _pol_replay x "
        "WHERE x.step = 2 AND l.member_id = x.member_id AND l.entry_ref = x.entry_ref",
        "DELETE FROM _pol_ledger WHERE kind = 'expiry' AND member_id IN (SELECT member_id FROM _pol_overdrawn)",
        "INSERT INTO _pol_ledger SELECT member_id, 'expiry:' || entry_ref, 'expiry', t, NULL, "
        "CAST(-moved AS DECIMAL(18,4)), CAST(1 AS DECIMAL(9,4)), -moved, 0 "
        "FROM _pol_replay WHERE step = 1 AND moved > 0",
    ]


def window_sql(measure: str, days: int | None, cut: str, horizon: str) -> tuple[str, str | None]:
    """The aggregate over a member's ``_pol_ledger`` entries of a points metric (``points_earned``,
    ``qualifying_points`` or ``points_expiring`` over ``days``, cutting at ``cut``, looking ahead to ``horizon``),
    and when it next changes by time alone (null: only with new entries)."""
    if measure == "points_expiring":
        consumed = f"sum(points) FILTER (WHERE {_LOT}) - sum(points)"
        due = f"sum(points) FILTER (WHERE {_LOT} AND expires_at <= {horizon})"
        entering = (
            f"min(expires_at) FILTER (WHERE {_LOT} AND expires_at > {horizon}) - INTERVAL {(days or 0) * 86400} SECOND"
        )
        return f"greatest(0, coalesce({due}, 0) - coalesce({consumed}, 0))", entering
    which = _EARNING if measure == "points_earned" else "qualifying <> 0"
    column = "points" if measure == "points_earned" else "qualifying"
    if days is None:
        return f"sum({column}) FILTER (WHERE {which})", None
    leaving = f"min(occurred_at) FILTER (WHERE {which} AND occurred_at > {cut}) + INTERVAL {days * 86400} SECOND"
    return f"sum({column}) FILTER (WHERE {which} AND occurred_at > {cut})", leaving
