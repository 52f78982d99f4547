"""The tier decision: which tier a member holds on a day, and the sentence saying why.

Tiers are listed highest first; ranks count from the default (last) tier, rank 1, up to the highest. For each
member and day (in ``sync.timezone``) the decision reads:

- the member's *entry* rank: the first (highest) tier whose ``condition`` holds, else the default tier;
- the member's *stay* rank: the highest tier at or below the held one whose ``condition`` or ``keep_condition``
  holds (a member who holds a tier is graded against the easier keep thresholds of it and the tiers below);
- what the member held at the end of the previous day (``_pol_prev``), a lock (``_pol_overrides``) and, with a
  qualification period, whether the day is the first of a new period.

Then, in this order: a lock wins; without a held tier the member takes its entry rank (``new``); an entry rank above
the held one is taken at once (``up``); a stay rank at or above it keeps it (``stay``). Otherwise the member no longer
qualifies: with a qualification period, the tier is held until the period ends (``hold``), unless it has its own
``grace_days`` (a paid tier); on a day a downgrade may happen (every day with rolling windows or for a tier with its
own grace days, the first day of a period otherwise) the grace period starts, counted in
days from the first day the member did not qualify (``grace``); once the held tier's ``grace_days`` have passed the
member drops by at most the held tier's ``max_levels``, never below its stay rank (``down``). With rolling windows a
member still above its stay rank drops again the next day; with a period, at the next period's start.

A decision is taken at the end of each day and stored; an evaluation during a day applies the same rule to the tiers
held at the end of the day before, so that every evaluation of a day says what that day's end will decide if nothing
else changes, and runs every 30 minutes or once a month give the same tiers on the same days.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from crmsync.policy.days import sql_day
from crmsync.policy.expr import sql_string
from crmsync.policy.model import Policy
from crmsync.policy.stages import Rule, name_case, rank_case, values_sql

HELD_VARS = {"held_tier": "text", "days_in_tier": "number"}
"""Names tier conditions may read besides metrics: the tier held at the end of the previous day and the whole days
it has been held."""
TIME_FUNCTIONS = frozenset({"today", "days_since", "days_until"})
"""Functions whose value moves with the evaluation time."""
TIME_NAMES = frozenset(
    {
        "days_since_first_order",
        "days_since_last_order",
        "days_since_signup",
        "days_in_tier",
        "rfm_r",
        "rfm_f",
        "rfm_m",
        "rfm_fm",
        "rfm_segment",
        "lifecycle",
    }
)
"""Names whose value moves with the evaluation time (or with other members)."""
REASON_COLUMNS = (
    "move",
    "q_rank",
    "q_stay",
    "held_tier",
    "held_rank",
    "days_in_tier",
    "eff_below",
    "grace_until",
    "period_last_day",
    "o_actor",
    "o_until",
    "o_reason",
)
"""The columns of ``_pol_tiers`` the tier's reason reads."""


def grace_days(policy: Policy) -> list[int]:
    """Each tier's grace days, highest tier first: its own ``grace_days``, else ``[policy.downgrade] grace_days``."""
    default = policy.downgrade.grace_days
    return [default if t.grace_days is None else t.grace_days for t in policy.tiers]


def max_levels(policy: Policy) -> list[int]:
    """Each tier's most levels dropped at once, highest tier first (its own, else the default's)."""
    default = policy.downgrade.max_levels
    return [default if t.max_levels is None else t.max_levels for t in policy.tiers]


def _by_rank(policy: Policy, values: Sequence[str], column: str) -> str:
    n = len(policy.tiers)
    whens = " ".join(f"WHEN {n - i} THEN {v}" for i, v in enumerate(values))
    return f"CASE {column} {whens} END"


def qualify_sql(entry: Sequence[Rule], keep: Sequence[Rule | None], n: int) -> tuple[list[str], str, str]:
    """The columns testing each tier's conditions (``_eR``, ``_kR`` for rank R) and the entry and stay ranks."""
    cols, e_whens, k_whens = [], [], []
    for i, rule in enumerate(entry):
        rank = n - i
        cols.append(f"{rule.sql} AS _e{rank}")
        e_whens.append(f"WHEN _e{rank} THEN {rank}")
        stay = f"_e{rank}"
        if keep[i] is not None:
            cols.append(f"{keep[i].sql} AS _k{rank}")  # type: ignore[union-attr]
            stay = f"(_e{rank} OR _k{rank})"
        k_whens.append(f"WHEN held_rank >= {rank} AND {stay} THEN {rank}")
    q_entry = f"CASE {' '.join(e_whens)} ELSE 1 END" if e_whens else "1"
    q_stay = f"CASE WHEN held_rank IS NULL THEN q_rank {' '.join(k_whens)} ELSE 1 END"
    return cols, q_entry, q_stay


def _period_sql(policy: Policy, d: str) -> tuple[str, str, str]:
    """Whether a member's downgrades are decided daily, whether the day ``d`` may bring one, and the last day of
    the member's qualification period (over a row of ``_pol_stage`` with the held rank)."""
    if policy.qualification.period == "rolling":
        return "true", "true", "NULL::DATE"
    # a tier with its own grace days (a paid tier) is not held until the period ends
    own = _by_rank(policy, ["true" if t.grace_days is not None else "false" for t in policy.tiers], "held_rank")
    daily = f"(period_start IS NULL OR coalesce({own}, false))"
    return daily, f"({daily} OR CAST(period_start AS DATE) = {d})", "CAST(period_end AS DATE) - 1"


def tiers_sql(
    policy: Policy, entry: Sequence[Rule], keep: Sequence[Rule | None], day: date, *, decided: bool = False
) -> str:
    """Statement building ``_pol_tiers``, the decision for ``day`` (:func:`tier_reason_sql` words it); needs
    ``_pol_stage``, ``_pol_prev`` and ``_pol_overrides``. With ``decided``, ``_pol_prev`` already holds the end of
    ``day`` (an evaluation earlier than the last decided day): only upgrades and locks apply."""
    names = [t.name for t in policy.tiers]
    d = sql_day(day)
    cols, q_entry, q_stay = qualify_sql(entry, keep, len(names))
    daily, opp, last_day = _period_sql(policy, d)
    eff = "below_since" if decided else f"CASE WHEN q_stay < held_rank THEN coalesce(below_since, {d}) END"
    kept = "WHEN true THEN CASE WHEN below_since IS NULL THEN 'stay' ELSE 'grace' END" if decided else ""
    grace = _by_rank(policy, [str(g) for g in grace_days(policy)], "held_rank")
    drop = _by_rank(policy, [str(m) for m in max_levels(policy)], "held_rank")
    return f"""
CREATE OR REPLACE TEMP TABLE _pol_tiers AS
WITH h AS (
  SELECT s.*, pv.tier AS held_tier, {rank_case(names, "pv.tier")} AS held_rank, pv.tier_since AS held_since,
    pv.previous_tier AS held_previous, pv.below_since, date_diff('day', pv.tier_since, {d}) AS days_in_tier
  FROM _pol_stage s JOIN _pol_prev pv USING (member_id)
), b AS (
  SELECT member_id, held_tier, held_rank, held_since, held_previous, below_since, days_in_tier,
    {daily} AS daily, {opp} AS opp, {last_day} AS period_last_day{"".join(", " + c for c in cols)}
  FROM h
), q AS (
  SELECT *, CAST({q_entry} AS INTEGER) AS q_rank FROM b
), j AS (
  SELECT q.*, CAST({q_stay} AS INTEGER) AS q_stay, {grace} AS grace_days, o.tier AS o_tier,
    {rank_case(names, "o.tier")} AS o_rank, o.until AS o_until, o.reason AS o_reason, o.actor AS o_actor
  FROM q LEFT JOIN _pol_overrides o USING (member_id)
), e AS (
  SELECT *, {eff} AS eff_below FROM j
), f AS (
  SELECT *, CASE
      WHEN o_rank IS NOT NULL THEN 'override'
      WHEN held_rank IS NULL THEN 'new'
      WHEN q_rank > held_rank THEN 'up'
      {kept}
      WHEN q_stay >= held_rank THEN 'stay'
      WHEN below_since IS NULL AND NOT opp THEN 'hold'
      WHEN date_diff('day', eff_below, {d}) >= grace_days THEN 'down'
      ELSE 'grace' END AS move
  FROM e
), g AS (
  SELECT *, CAST(CASE move WHEN 'override' THEN o_rank WHEN 'new' THEN q_rank WHEN 'up' THEN q_rank
      WHEN 'down' THEN greatest(q_stay, held_rank - {drop}) ELSE held_rank END AS INTEGER)
      AS tier_rank
  FROM f
)
SELECT member_id, tier_rank, {name_case(names, "tier_rank")} AS tier,
  CASE WHEN held_rank = tier_rank THEN coalesce(held_since, {d}) ELSE {d} END AS tier_since,
  CASE WHEN held_tier IS NOT NULL AND (held_rank IS NULL OR held_rank <> tier_rank) THEN held_tier
       ELSE held_previous END AS previous_tier,
  CASE WHEN move = 'grace' THEN eff_below WHEN move = 'down' AND daily AND tier_rank > q_stay THEN eff_below END
    AS below_since,
  move, q_rank, q_stay, {name_case(names, "q_rank")} AS q_tier, held_tier, held_rank, days_in_tier, eff_below,
  CAST(eff_below + grace_days AS DATE) AS grace_until, period_last_day, o_actor, o_until, o_reason
FROM g
"""


def _rule_text(kind: str, name: str, rule: Rule) -> str:
    verb = "qualifies for" if kind == "entry" else "keeps"
    return f"{sql_string(f'{verb} {name}: {rule.text}')} || ' (' || {values_sql(rule.reads)} || ')'"


def tier_reason_sql(policy: Policy, entry: Sequence[Rule], keep: Sequence[Rule | None]) -> str:
    """The tier's reason, over a row of ``_pol_tiers`` (its :data:`REASON_COLUMNS`) joined with ``_pol_stage``:
    the rule that decided (entry or keep condition, lock), the grace period and its end, the period's end."""
    names = [t.name for t in policy.tiers]
    n = len(names)
    default = sql_string(f"default tier {names[-1]}: no higher tier's condition holds")
    by_entry = " ".join(f"WHEN {n - i} THEN {_rule_text('entry', r.name, r)}" for i, r in enumerate(entry))
    by_keep = " ".join(f"WHEN {n - i} THEN {_rule_text('keep', r.name, r)}" for i, r in enumerate(keep) if r)
    entry_rule = f"CASE q_rank {by_entry} ELSE {default} END" if entry else default
    rule = (
        f"CASE WHEN move NOT IN ('new', 'up') AND q_stay > q_rank THEN CASE q_stay {by_keep} END ELSE {entry_rule} END"
    )
    if not by_keep:
        rule = entry_rule
    per = "qualification period" if policy.qualification.period != "rolling" else "day"
    drop = _by_rank(policy, [str(m) for m in max_levels(policy)], "held_rank")
    held_until = (
        "CASE WHEN period_last_day IS NOT NULL AND move IN ('new', 'up', 'stay') AND tier_rank > 1 "
        "THEN '; held at least until the qualification period ends on ' || period_last_day ELSE '' END"
    )
    return f"""CASE move
    WHEN 'override' THEN 'locked by ' || coalesce(o_actor, 'unknown') || coalesce(' until ' || o_until, '')
      || ': ' || coalesce(o_reason, '')
    WHEN 'grace' THEN 'kept ' || held_tier || ' in the grace period until ' || CAST(grace_until AS VARCHAR)
      || ' (not qualifying since ' || CAST(eff_below AS VARCHAR) || '); ' || {rule}
    WHEN 'hold' THEN 'kept ' || held_tier || ' until the qualification period ends on '
      || CAST(period_last_day AS VARCHAR) || '; ' || {rule}
    WHEN 'down' THEN 'dropped from ' || held_tier || ' after the grace period (at most ' || {drop}
      || ' level(s) per {per}); ' || {rule}
    ELSE {rule} || {held_until} END"""
