"""SQL of the grading stages after the metrics: RFM segments (scores: :mod:`crmsync.policy.rfm`), lifecycle, tiers,
final rows.

The tier decision itself is in :mod:`crmsync.policy.tiers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crmsync.policy import rfm
from crmsync.policy.expr import sql_string
from crmsync.policy.model import Policy
from crmsync.policy.rfm import STANDARD_SEGMENTS

__all__ = ["STANDARD_SEGMENTS"]  # kept here for code that imported it from this module


@dataclass(frozen=True)
class Rule:
    """A compiled condition: its name (tier, tag, segment), source text, SQL, the metrics it reads and the
    functions it calls."""

    name: str
    text: str
    sql: str
    reads: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()


def values_sql(reads: Sequence[str]) -> str:
    """SQL text listing ``name=value`` for the columns a rule reads."""
    if not reads:
        return "''"
    parts = ", ".join(f"'{n}=' || coalesce(CAST(\"{n}\" AS VARCHAR), 'null')" for n in reads)
    return f"concat_ws(', ', {parts})"


LIFECYCLE_STAGES: tuple[str, ...] = ("potential", "new", "returning", "mature", "loyal", "dormant", "churned")
"""Every lifecycle stage, in the order a member usually goes through them."""


def push_values(policy: Policy) -> dict[str, tuple[str, ...]]:
    """Every value a push of ``policy``'s grades can write, per canonical field: what a CRM picklist must allow.

    ``tier`` highest first, ``rfm_segment`` in map order, ``lifecycle`` (:data:`LIFECYCLE_STAGES`), ``tags``: the
    policy's tags, then benefit tags when ``benefit_tags`` is on. Tags a ``crmsync_adjust_profiles`` hook adds at
    run time are not known here.
    """
    segments = [name for name, _ in rfm.segments(policy.rfm)]
    tags = list(policy.tags)
    if policy.benefit_tags:
        tags += [f"{policy.benefit_tag_prefix}{b}" for t in policy.tiers for b in t.benefits]
    return {
        "tier": tuple(t.name for t in policy.tiers),
        "rfm_segment": tuple(dict.fromkeys(segments)),
        "lifecycle": LIFECYCLE_STAGES,
        "tags": tuple(dict.fromkeys(tags)),
    }


def lifecycle_case(policy: Policy) -> str:
    lc = policy.lifecycle
    return f"""CASE
  WHEN orders_lifetime = 0 THEN 'potential'
  WHEN days_since_last_order >= {lc.churned_days} THEN 'churned'
  WHEN days_since_last_order >= {lc.dormant_days} THEN 'dormant'
  WHEN orders_lifetime >= {lc.loyal_orders} AND days_since_first_order >= {lc.loyal_min_days} THEN 'loyal'
  WHEN orders_lifetime >= {lc.mature_orders} THEN 'mature'
  WHEN orders_lifetime >= {lc.returning_orders} THEN 'returning'
  ELSE 'new' END"""


def stage_sql(policy: Policy, segments: Sequence[Rule]) -> list[str]:
    seg = " ".join(f"WHEN {r.sql} THEN {sql_string(r.name)}" for r in segments)
    seg_case = f"CASE WHEN rfm_r IS NULL THEN NULL {seg} END" if segments else "NULL"
    return [
        f"CREATE OR REPLACE TEMP TABLE _pol_stage AS SELECT *, CAST({seg_case} AS VARCHAR) AS rfm_segment "
        "FROM (SELECT m.*, r.* EXCLUDE (member_id), "
        f"(r.rfm_f + r.rfm_m + 1) // 2 AS rfm_fm, {lifecycle_case(policy)} AS lifecycle "
        "FROM _pol_metrics m LEFT JOIN _pol_rfm r USING (member_id))"
    ]


def rank_case(names: Sequence[str], column: str) -> str:
    n = len(names)
    whens = " ".join(f"WHEN {sql_string(t)} THEN {n - i}" for i, t in enumerate(names))
    return f"CAST(CASE {column} {whens} END AS INTEGER)"


def name_case(names: Sequence[str], column: str) -> str:
    n = len(names)
    whens = " ".join(f"WHEN {n - i} THEN {sql_string(t)}" for i, t in enumerate(names))
    return f"CASE {column} {whens} END"


GRADE_COLUMNS = (
    "tier",
    "tier_rank",
    "tier_since",
    "previous_tier",
    "points",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_segment",
    "lifecycle",
    "tags",
)
"""The columns of a grade (``profiles`` and ``_pol_grades``), without its reasons and bookkeeping."""


def grades_sql(policy: Policy, tags: Sequence[Rule]) -> str:
    """Statement building ``_pol_grades``: every member's grade, without reasons; needs ``_pol_stage`` and
    ``_pol_tiers``."""
    empty = "CAST([] AS VARCHAR[])"
    tag_list = empty
    for r in tags:  # no lambdas: their syntax differs between DuckDB releases
        tag_list = f"list_concat({tag_list}, CASE WHEN {r.sql} THEN [{sql_string(r.name)}] ELSE {empty} END)"
    if policy.benefit_tags:
        whens = " ".join(
            f"WHEN {sql_string(t.name)} THEN "
            f"CAST([{', '.join(sql_string(policy.benefit_tag_prefix + b) for b in t.benefits)}] AS VARCHAR[])"
            for t in policy.tiers
        )
        tag_list = f"list_concat({tag_list}, CASE t.tier {whens} END)"
    return f"""
CREATE OR REPLACE TEMP TABLE _pol_grades AS
WITH t AS (
  SELECT s.*, t.tier, t.tier_rank, t.tier_since, t.previous_tier
  FROM _pol_stage s JOIN _pol_tiers t USING (member_id)
)
SELECT member_id, CAST(tier AS VARCHAR) AS tier, CAST(tier_rank AS INTEGER) AS tier_rank,
  CAST(tier_since AS DATE) AS tier_since, CAST(previous_tier AS VARCHAR) AS previous_tier,
  CAST(points AS BIGINT) AS points, rfm_r, rfm_f, rfm_m, rfm_segment, CAST(lifecycle AS VARCHAR) AS lifecycle,
  CAST(list_sort(list_distinct({tag_list})) AS VARCHAR[]) AS tags
FROM t
"""


def final_sql(
    policy: Policy,
    tier_reason: tuple[str, Sequence[str]],
    tags: Sequence[Rule],
    version: str,
    out: str,
    only: str | None = None,
) -> str:
    """Statement building ``out``: the grades of every member (or of the members listed in ``only``) with their
    reasons; needs ``_pol_grades``, ``_pol_stage`` and ``_pol_tiers``. ``tier_reason`` is the SQL of the tier's
    reason and the columns of ``_pol_tiers`` it reads."""
    tag_reasons = (
        " || ".join(
            f"CASE WHEN {r.sql} THEN {sql_string(r.name + ': ' + r.text + ' (')} || {values_sql(r.reads)} || '); ' "
            "ELSE '' END"
            for r in tags
        )
        or "''"
    )
    rfm_reason = rfm.reason_sql(policy.rfm)
    life_reason = (
        "lifecycle || ': ' || orders_lifetime || ' orders' || coalesce(', last ' || days_since_last_order || "
        "' days ago', '') || coalesce(', first ' || days_since_first_order || ' days ago', '')"
    )
    points_reason = (
        "'balance ' || points || ': earned ' || points_earned_lifetime || ', redeemed ' || points_redeemed_lifetime "
        "|| ', expired ' || points_expired_lifetime"
    )
    grade = ", ".join(GRADE_COLUMNS)
    semi = f"SEMI JOIN {only} USING (member_id)" if only else ""
    return f"""
CREATE OR REPLACE TEMP TABLE {out} AS
WITH x AS (
  SELECT g.*, s.* EXCLUDE (member_id, points, rfm_r, rfm_f, rfm_m, rfm_segment, lifecycle),
    {", ".join("t." + c for c in tier_reason[1])}
  FROM _pol_grades g {semi} JOIN _pol_stage s USING (member_id) JOIN _pol_tiers t USING (member_id)
)
SELECT member_id, {grade},
  json_object('tier', {tier_reason[0]}, 'points', {points_reason}, 'rfm', {rfm_reason},
    'lifecycle', {life_reason}, 'tags', rtrim({tag_reasons}, '; ')) AS reasons,
  {sql_string(version)} AS policy_version, CAST(now() AS TIMESTAMPTZ) AS computed_at
FROM x
"""


def changed_sql(dirty: str) -> str:
    """Statement building ``_pol_changed``: the members in ``dirty`` and those whose grade differs from (or is
    missing in) ``profiles``."""
    differs = " OR ".join(f"g.{c} IS DISTINCT FROM p.{c}" for c in GRADE_COLUMNS)
    return f"""
CREATE OR REPLACE TEMP TABLE _pol_changed AS
SELECT member_id FROM {dirty}
UNION
SELECT g.member_id FROM _pol_grades g LEFT JOIN profiles p USING (member_id)
WHERE p.member_id IS NULL OR {differs}
"""
