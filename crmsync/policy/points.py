"""The points ledger: derived from the current orders and activities, in SQL (for every member, or for the members
whose inputs changed since the last evaluation).

Entries (one row each in ``policy_points_ledger``):

- ``order``: a *paid* order earns ``net * per_currency_unit * multiplier`` points, rounded per order, where ``net``
  is its amount in the base currency less what was refunded on it (``refunded_amount``): a partial refund takes
  back the points of the amount refunded (the entry is that of the net amount, rounded once).
  The multiplier is that of the tier the member held when the entry first appeared; it is kept in the ledger
  so a re-evaluation never changes it. A refunded, cancelled or deleted order has no entry, so its points
  disappear from the balance: an order re-pulled or refunded is never counted twice.
- ``activity``: an activity of a kind listed in ``points.activities`` earns that many points; kinds listed in
  ``points.source_points_kinds`` earn the points the source reported (negative ones are spent).
- ``bonus``: a tier-entry bonus granted (:mod:`crmsync.policy.bonus`).
- ``redemption``: an activity of a kind listed in ``points.redemption_kinds`` spends the points it reports.
- ``expiry``: with ``points.expiry_days`` (or ``expiry = "end_of_year"``), earned points expire, first in first
  out: spending consumes the oldest points first, and what is left of an entry on its expiry instant expires.
A member's entries are always recomputed whole from the sources, so it is idempotent. Each entry also carries the
qualifying points it counts for; spending takes at most the balance unless ``allow_negative`` (see
:mod:`crmsync.policy.balance`).

FIFO expiry in closed form: with earned entries ordered by time, ``C_k`` their running total and ``R_k`` the
points spent strictly before entry ``k`` expires, the points expired up to entry ``k`` are
``max(0, max_{j<=k} (C_j - R_j))`` over expired entries ``j`` — a running maximum, one window function.
"""

from __future__ import annotations

from datetime import datetime

from crmsync.policy import balance
from crmsync.policy.balance import EARN_KINDS
from crmsync.policy.expr import sql_string
from crmsync.policy.metrics import ts
from crmsync.policy.model import Policy

_ROUND = {
    "floor": "floor({x})",
    "ceil": "ceil({x})",
    "half_up": "round({x})",
    "half_even": "round_even({x}, 0)",
}


def _rounded(expr: str, mode: str) -> str:
    mag = _ROUND[mode].format(x=f"abs({expr})")
    return f"CAST(sign({expr}) * {mag} AS BIGINT)"


def _in_list(values: list[str]) -> str:
    return "(" + ", ".join(sql_string(v) for v in values) + ")" if values else "(NULL)"


def multiplier_case(policy: Policy, column: str) -> str:
    whens = " ".join(f"WHEN {sql_string(t.name)} THEN {t.points_multiplier}" for t in policy.tiers)
    return f"CAST(CASE {column} {whens} ELSE 1 END AS DECIMAL(9,4))"


def _qualifies(policy: Policy, alias: str, activity: bool) -> str:
    """SQL: whether an order (an activity) of ``alias`` earns qualifying points (see :mod:`crmsync.policy.balance`)."""
    cfg = policy.points
    cond = f"{alias}.source NOT IN {_in_list(cfg.non_qualifying_sources)}" if cfg.non_qualifying_sources else "true"
    if activity and cfg.non_qualifying_kinds:
        cond += f" AND {alias}.kind NOT IN {_in_list(cfg.non_qualifying_kinds)}"
    return f"({cond}) AS qual"


def _order_part(policy: Policy, ledger_table: str, scope: str) -> str | None:
    """The ledger's order entries (none when orders earn nothing)."""
    cfg = policy.points
    if cfg.per_currency_unit <= 0:
        return None
    ref = "'order:' || o.source || ':' || o.external_id"
    base = (
        f"SELECT o.member_id, {ref} AS entry_ref, 'order' AS kind, o.placed_at AS occurred_at, "
        f"CAST(o.net * {cfg.per_currency_unit} AS DECIMAL(18,4)) AS base_points, {_qualifies(policy, 'o', False)}, "
    )
    if all(t.points_multiplier == 1 for t in policy.tiers):  # no tier multiplies: nothing to look up
        return base + "CAST(1 AS DECIMAL(9,4)) AS multiplier FROM _pol_all_orders o WHERE o.status = 'paid'"
    return (
        base + f"coalesce(l.multiplier, {multiplier_case(policy, 'prev.tier')}) AS multiplier "
        f"FROM _pol_all_orders o LEFT JOIN _pol_prev prev USING (member_id) "
        f"LEFT JOIN (SELECT entry_ref, multiplier FROM {ledger_table} SEMI JOIN {scope} USING (member_id)) l "
        f"ON l.entry_ref = {ref} WHERE o.status = 'paid'"
    )


def _activity_part(policy: Policy) -> str | None:
    """The ledger's activity entries: earning activities and redemptions (none when no kind is configured)."""
    cfg = policy.points
    kinds = sorted(cfg.activities)
    if not (kinds or cfg.source_points_kinds or cfg.redemption_kinds):
        return None
    values = " ".join(f"WHEN {sql_string(k)} THEN {cfg.activities[k]}" for k in kinds)
    configured = f"CASE a.kind {values} END" if kinds else "NULL"
    redeem, source = _in_list(cfg.redemption_kinds), _in_list(cfg.source_points_kinds)
    return (
        "SELECT a.member_id, 'activity:' || a.source || ':' || a.external_id AS entry_ref, "
        f"CASE WHEN a.kind IN {redeem} THEN 'redemption' ELSE 'activity' END AS kind, a.occurred_at, "
        f"CAST(CASE WHEN a.kind IN {redeem} THEN -abs(coalesce(a.points, 0)) "
        f"WHEN a.kind IN {source} THEN coalesce(a.points, 0) ELSE {configured} END AS DECIMAL(18,4)) "
        f"AS base_points, {_qualifies(policy, 'a', True)}, CAST(1 AS DECIMAL(9,4)) AS multiplier "
        f"FROM _pol_activities a WHERE a.kind IN {redeem} OR a.kind IN {source} OR ({configured}) IS NOT NULL"
    )


_NO_ENTRIES = (
    "SELECT NULL::VARCHAR AS member_id, NULL::VARCHAR AS entry_ref, NULL::VARCHAR AS kind, "
    "NULL::TIMESTAMPTZ AS occurred_at, NULL::DECIMAL(18,4) AS base_points, NULL::BOOLEAN AS qual, "
    "NULL::DECIMAL(9,4) AS multiplier WHERE false"
)


def points_sql(
    policy: Policy,
    as_of: datetime,
    ledger_table: str,
    scope: str = "_pol_members",
    *,
    timezone: str = "UTC",
    bonus_table: str | None = None,
) -> list[str]:
    """Statements building ``_pol_ledger`` and ``_pol_points`` for the members in ``scope`` (the inputs hold just
    theirs); needs ``_pol_prev`` (held tier per member). ``bonus_table`` holds the tier-entry bonuses granted so far
    (none: no bonus is read)."""
    cfg = policy.points
    rounding = cfg.rounding
    at = ts(as_of)
    bonuses = None if bonus_table is None else balance.bonus_entries_sql(bonus_table, scope, at)
    parts = [p for p in (_order_part(policy, ledger_table, scope), _activity_part(policy), bonuses) if p]
    earning = f"kind IN {_in_list(list(EARN_KINDS))}"
    qualifying = "base_points * multiplier" if cfg.qualifying_multiplier else "base_points"
    stmts = [
        "CREATE OR REPLACE TEMP TABLE _pol_ledger AS "
        f"SELECT member_id, entry_ref, kind, occurred_at, "
        f"CASE WHEN {earning} AND base_points > 0 THEN {balance.expiry_sql(cfg, 'occurred_at', timezone)} END "
        f"AS expires_at, base_points, multiplier, {_rounded('base_points * multiplier', rounding)} AS points, "
        f"CASE WHEN qual AND {earning} THEN {_rounded(qualifying, rounding)} ELSE 0 END AS qualifying "
        f"FROM ({' UNION ALL '.join(parts or [_NO_ENTRIES])}) src"
    ]
    if cfg.expiry_days or cfg.expiry:
        stmts.append(_expiry_sql(at))
    spends = cfg.redemption_kinds or cfg.source_points_kinds or any(v < 0 for v in cfg.activities.values())
    if spends and not cfg.allow_negative:  # only spending can overdraw
        stmts += balance.no_overdraft_sql(at)
    stmts.append(
        "CREATE OR REPLACE TEMP TABLE _pol_points AS SELECT member_id, sum(points) AS points, "
        f"coalesce(sum(points) FILTER (WHERE {earning}), 0) AS points_earned_lifetime, "
        "coalesce(-sum(points) FILTER (WHERE kind = 'redemption'), 0) AS points_redeemed_lifetime, "
        "coalesce(-sum(points) FILTER (WHERE kind = 'expiry'), 0) AS points_expired_lifetime, "
        f"min(expires_at) FILTER (WHERE expires_at > {at}) AS next_expiry "
        "FROM _pol_ledger GROUP BY member_id"
    )
    return stmts


def _expiry_sql(at: str) -> str:
    order = "PARTITION BY member_id ORDER BY occurred_at, entry_ref ROWS UNBOUNDED PRECEDING"
    return f"""
INSERT INTO _pol_ledger
WITH lots AS (
  SELECT member_id, entry_ref, occurred_at, expires_at, sum(points) OVER ({order}) AS cum
  FROM _pol_ledger WHERE expires_at IS NOT NULL AND points > 0
), red_at AS (
  SELECT member_id, occurred_at, sum(-points) AS spent FROM _pol_ledger WHERE points < 0
  GROUP BY member_id, occurred_at
), red AS (
  SELECT member_id, occurred_at,
    sum(spent) OVER (PARTITION BY member_id ORDER BY occurred_at ROWS UNBOUNDED PRECEDING) AS cum_r
  FROM red_at
), x AS (
  SELECT l.*, coalesce(r.cum_r, 0) AS red_before
  FROM lots l ASOF LEFT JOIN red r ON l.member_id = r.member_id AND l.expires_at > r.occurred_at
  WHERE l.expires_at <= {at}
), p AS (
  SELECT *, greatest(0, max(cum - red_before) OVER ({order})) AS pk FROM x
), d AS (
  SELECT *, pk - coalesce(lag(pk) OVER (PARTITION BY member_id ORDER BY occurred_at, entry_ref), 0) AS gone FROM p
)
SELECT member_id, 'expiry:' || entry_ref, 'expiry', expires_at, NULL, CAST(-gone AS DECIMAL(18,4)),
  CAST(1 AS DECIMAL(9,4)), CAST(-gone AS BIGINT), 0
FROM d WHERE gone > 0
"""


LEDGER_COLUMNS = ("entry_ref", "kind", "occurred_at", "expires_at", "base_points", "multiplier", "points", "qualifying")


def persist_sql(ledger_table: str, redo: str | None = None) -> list[str]:
    """Statements replacing the stored ledger with the one just derived: all of it, or (with ``redo``, a table of
    member ids) the entries of those members, writing only the entries that changed."""
    cols = "member_id, " + ", ".join(LEDGER_COLUMNS)
    if not redo:
        return [
            f"DELETE FROM {ledger_table}",
            f"INSERT INTO {ledger_table} ({cols}, computed_at) SELECT {cols}, now() FROM _pol_ledger",
        ]
    same = " AND ".join(f"n.{c} IS NOT DISTINCT FROM o.{c}" for c in LEDGER_COLUMNS)
    return [
        f"CREATE OR REPLACE TEMP TABLE _pol_ledger_old AS SELECT rowid AS _rid, * FROM {ledger_table} "
        f"WHERE member_id IN (SELECT member_id FROM {redo})",
        "CREATE OR REPLACE TEMP TABLE _pol_ledger_new AS SELECT * FROM _pol_ledger n WHERE NOT EXISTS "
        f"(SELECT 1 FROM _pol_ledger_old o WHERE o.member_id = n.member_id AND {same})",
        f"DELETE FROM {ledger_table} WHERE rowid IN (SELECT _rid FROM _pol_ledger_old o WHERE NOT EXISTS "
        f"(SELECT 1 FROM _pol_ledger n WHERE n.member_id = o.member_id AND {same}))",
        f"INSERT INTO {ledger_table} ({cols}, computed_at) SELECT {cols}, now() FROM _pol_ledger_new",
    ]
