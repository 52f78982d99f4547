"""Tier-entry bonuses: ``entry_bonus`` points credited when a member enters a tier.

A member enters a tier when the tier decided is above the tier held before (an upgrade by the rules or by a lock),
or when a member is graded for the first time into a tier (so the first sync of a programme credits the bonus of
every member's tier). Each tier's bonus is credited once per member; with ``points.entry_bonus_on_reentry = true``
again at each later entry (after the member dropped below the tier). A downgrade into a tier credits nothing.

Tiers are decided at the end of each day (:mod:`crmsync.policy.catchup`), and so are bonuses: the bonus of a tier
entered on a day is dated at that day's last instant in ``sync.timezone`` and kept in ``policy_points_bonus`` when
the day is decided (granted bonuses are never recomputed: a later change of ``entry_bonus`` does not change them),
whether the day was decided by that night's run or by a run after a pause. An evaluation during the day that
grades a member into a higher tier than the one held at the end of the day before credits the same bonus, with
the same date, to the balance it reports and pushes, without storing it; the day's decision then stores it once.
The points ledger derives a ``bonus`` entry from the stored ones at every evaluation. A bonus earns spendable
points that expire like other points; it never counts as qualifying points.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from crmsync.policy import balance
from crmsync.policy.expr import sql_string
from crmsync.policy.metrics import ts
from crmsync.policy.model import Policy
from crmsync.policy.modes import PolicyTables
from crmsync.policy.stages import rank_case


def any_bonus(policy: Policy) -> bool:
    return any(t.entry_bonus for t in policy.tiers)


def grant_sql(
    policy: Policy,
    as_of: datetime,
    tables: PolicyTables,
    *,
    timezone: str,
    write: bool,
    ledger: bool = True,
    earned: Sequence[str] = (),
) -> list[str]:
    """Statements crediting the entry bonuses of the day decided at ``as_of`` (its last instant): into the balance
    of ``_pol_stage`` and, with ``ledger``, into ``_pol_ledger``; with ``write`` into ``tables.bonus`` and the
    stored ledger ``tables.ledger`` (and the stored metrics of those members are marked due, so that the next
    grading derives them again). ``earned``: the windowed ``points_earned_*`` metrics the policy uses (a bonus
    counts in them at once). Needs ``_pol_tiers``."""
    bonus_table = tables.bonus
    at = ts(as_of)
    names = [t.name for t in policy.tiers]
    values = ", ".join(f"({sql_string(t.name)}, {t.entry_bonus})" for t in policy.tiers if t.entry_bonus)
    once = (
        ""
        if policy.points.entry_bonus_on_reentry
        else f"AND NOT EXISTS (SELECT 1 FROM {bonus_table} g WHERE g.member_id = t.member_id AND g.tier = t.tier)"
    )
    ref = f"'bonus:' || tier || ':' || {sql_string(as_of.astimezone(UTC).isoformat())}"
    expires = balance.expiry_sql(policy.points, at, timezone)
    entry = (
        f"SELECT member_id, {ref}, 'bonus', {at}, {expires}, CAST(points AS DECIMAL(18,4)), CAST(1 AS DECIMAL(9,4)), "
        "points, 0 FROM _pol_bonus_now"
    )
    earned = ["points", "points_earned_lifetime", *(f'"{n}"' for n in earned)]
    stmts = [
        "CREATE OR REPLACE TEMP TABLE _pol_bonus_now AS SELECT t.member_id, t.tier, b.points "
        f"FROM _pol_tiers t JOIN (VALUES {values}) b(tier, points) USING (tier) "
        f"WHERE t.tier_rank > coalesce({rank_case(names, 't.held_tier')}, 0) {once}",
        *([f"INSERT INTO _pol_ledger {entry}"] if ledger else []),
        "UPDATE _pol_stage s SET " + ", ".join(f"{c} = s.{c} + b.points" for c in earned) + " "
        "FROM _pol_bonus_now b WHERE s.member_id = b.member_id",
    ]
    if write:
        cols = "member_id, entry_ref, kind, occurred_at, expires_at, base_points, multiplier, points, qualifying"
        stmts += [
            f"INSERT INTO {bonus_table} SELECT member_id, tier, {ref}, {at}, points FROM _pol_bonus_now",
            f"INSERT INTO {tables.ledger} ({cols}, computed_at) SELECT *, now() FROM ({entry})",
            f"UPDATE {tables.cache} SET stale_at = {at} WHERE member_id IN (SELECT member_id FROM _pol_bonus_now)",
        ]
    return stmts
