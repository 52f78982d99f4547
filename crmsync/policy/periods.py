"""Qualification periods: calendar years, calendar months or anniversary years, in ``sync.timezone``.

With ``[policy.qualification] period`` set, every member has a current period (from its first day to the first day
of the next one) and a previous one, and conditions may read metrics over each:

- ``spend_this_period``, ``spend_net_this_period``, ``orders_this_period``, ``aov_this_period``,
  ``refunds_this_period``, ``refunded_amount_this_period``, ``activity_KIND_this_period``: what happened from the
  start of the current period up to the evaluation time (the order measures mean what their ``_Nd`` windows mean,
  see :mod:`crmsync.policy.metrics`);
- the same names with ``_last_period``: what happened in the whole previous period;
- ``period_start``, ``period_end``: the first instant of the current period and of the next one.

Anniversary periods start on the day of the member's first successful order (or of a date attribute) and every
year after; an anniversary on 29 February falls on 28 February in other years. A member without that date has no
period: its period metrics are empty and its downgrades are decided every day, as with rolling windows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from crmsync.policy.days import calendar_period, day_start, local_day
from crmsync.policy.expr import DATE, NUM, json_pointer, sql_string
from crmsync.policy.metrics import Metric, order_filter, order_measure_sql, ts
from crmsync.policy.model import QualificationSettings

PERIODIC = re.compile(r"^(spend|spend_net|orders|aov|refunds|refunded_amount)_(this|last)_period$")
ACTIVITY_PERIODIC = re.compile(r"^activity_([a-z0-9_]+?)_(this|last)_period$")
BOUNDS = {"period_start": "_period_start", "period_end": "_period_end"}
"""The period bounds conditions may read, and their columns in the period table."""
TABLE = "_pol_period"


def is_period_name(name: str) -> bool:
    return name in BOUNDS or bool(PERIODIC.match(name) or ACTIVITY_PERIODIC.match(name))


def resolve(name: str, settings: QualificationSettings) -> Metric | None:
    """The period metric ``name`` denotes (``None``: not one, or the policy has no qualification period)."""
    if settings.period == "rolling":
        return None
    if name in BOUNDS:
        return Metric(name, DATE, "period", measure=name)
    m = PERIODIC.match(name)
    if m:
        return Metric(name, NUM, "period", measure=m.group(1), kind=m.group(2))
    m = ACTIVITY_PERIODIC.match(name)
    if m:
        return Metric(name, NUM, "period", measure="activity", kind=f"{m.group(2)}:{m.group(1)}")
    return None


def refusal(name: str, settings: QualificationSettings) -> str | None:
    """Why a period metric cannot be used (the policy has rolling windows only), else ``None``."""
    if settings.period == "rolling" and is_period_name(name):
        return f"'{name}' needs a qualification period ([policy.qualification] period = 'calendar_year', ...)"
    return None


def bounds_sql(
    settings: QualificationSettings, as_of: datetime, tz: ZoneInfo, statuses: Sequence[str], scope: str
) -> str:
    """The statement building ``_pol_period``: for each member in ``scope``, the first instants of its previous,
    current and next period as of ``as_of`` (null without an anniversary date). Needs ``_pol_all_orders`` and
    ``_pol_members``; reads dates in ``tz`` (the grading's session time zone)."""
    today = local_day(as_of, tz)
    if settings.period in ("calendar_year", "calendar_month"):
        start, nxt, prev = (ts(day_start(d, tz)) for d in calendar_period(today, settings.period))
        return (
            f"CREATE OR REPLACE TEMP TABLE {TABLE} AS SELECT member_id, {prev} AS _period_prev, "
            f"{start} AS _period_start, {nxt} AS _period_end FROM {scope}"
        )
    ok = order_filter(statuses)
    if settings.anniversary_attribute is None:
        anchor = (
            f"(SELECT member_id, CAST(min(placed_at) FILTER (WHERE {ok}) AS DATE) AS a FROM _pol_all_orders "
            "GROUP BY member_id)"
        )
    else:
        anchor = (
            f"(SELECT member_id, CAST(TRY_CAST({member_hash(settings)} AS TIMESTAMPTZ) AS DATE) AS a FROM _pol_members)"
        )
    t = f"DATE '{today.isoformat()}'"
    years = f"(year({t}) - year(a) - CASE WHEN CAST(a + to_years(year({t}) - year(a)) AS DATE) > {t} THEN 1 ELSE 0 END)"
    at = "CAST(CAST(a + to_years(CAST({k} AS INTEGER)) AS DATE) AS TIMESTAMPTZ)"
    return f"""
CREATE OR REPLACE TEMP TABLE {TABLE} AS
SELECT s.member_id, {at.format(k="k - 1")} AS _period_prev, {at.format(k="k")} AS _period_start,
  {at.format(k="k + 1")} AS _period_end
FROM {scope} s LEFT JOIN (SELECT member_id, a, {years} AS k FROM {anchor} WHERE a IS NOT NULL) an USING (member_id)
"""


def member_hash(settings: QualificationSettings) -> str | None:
    """The member attribute anniversary periods start from, as SQL over ``_pol_members`` (its change makes the
    member's period metrics be computed again); ``None`` when they start from the first order or not at all."""
    if settings.period != "anniversary" or settings.anniversary_attribute is None:
        return None
    return f"json_extract_string(_attributes, {json_pointer(settings.anniversary_attribute)})"


def parts(used: Sequence[Metric], ok: str) -> tuple[list[str], list[str], list[str]]:
    """What period metrics add to the aggregation of ``_pol_agg``: joins, output columns and ``stale_at`` terms
    (a period's metrics change when the next period starts)."""
    metrics = [m for m in used if m.family == "period"]
    if not metrics:
        return [], [], []
    orders, activities, select = [], [], []
    for m in metrics:
        q = f'"{m.name}"'
        if m.name in BOUNDS:
            select.append(f"pb.{BOUNDS[m.name]} AS {q}")
            continue
        which, _, kind = m.kind.partition(":")
        col = "occurred_at" if m.measure == "activity" else "placed_at"
        span = (
            f"{col} >= pb._period_start"
            if which == "this"
            else f"{col} >= pb._period_prev AND {col} < pb._period_start"
        )
        if m.measure == "activity":
            activities.append(f"count(*) FILTER (WHERE kind = {sql_string(kind)} AND {span}) AS {q}")
            select.append(f"coalesce(pa.{q}, 0) AS {q}")
            continue
        orders.append(f"{order_measure_sql(m.measure, ok, span)} AS {q}")
        select.append(f"coalesce(po.{q}, {'NULL' if m.measure == 'aov' else '0'}) AS {q}")
    joins = [f"LEFT JOIN {TABLE} pb USING (member_id)"]
    for alias, table, cols in (("po", "_pol_all_orders", orders), ("pa", "_pol_activities", activities)):
        if cols:
            joins.append(
                f"LEFT JOIN (SELECT x.member_id, {', '.join(cols)} FROM {table} x JOIN {TABLE} pb "
                f"USING (member_id) GROUP BY x.member_id) {alias} USING (member_id)"
            )
    return joins, select, ["pb._period_end"]
