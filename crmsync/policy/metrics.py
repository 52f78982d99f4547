"""Metric names conditions may use, and the SQL that computes them for every member at once.

Built-in metrics (``N`` is a window in days: a window holds what happened in the last ``N`` * 24 hours before
the evaluation time, excluding the instant exactly ``N`` days before it):

- ``spend_lifetime``, ``spend_Nd``: sum of successful orders in base currency;
- ``orders_lifetime``, ``orders_Nd``: number of successful orders;
- ``aov_lifetime`` (alias ``avg_order_value``), ``aov_Nd``: average order value (null without orders);
- ``refunds_lifetime``, ``refunds_Nd``: number of refunded orders (whatever counts as successful);
- ``first_order_at``, ``last_order_at`` (dates); ``days_since_first_order``, ``days_since_last_order`` (whole
  days, null without orders); ``days_since_signup`` (from the member's ``created_at``);
- ``activity_KIND_Nd``, ``activity_KIND_lifetime``: number of activities of a kind (``activity_login_30d``);
- ``points`` (balance), ``points_earned_lifetime``, ``points_redeemed_lifetime``, ``points_expired_lifetime``.

Plugins add metrics through :class:`crmsync.MetricSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crmsync.policy.expr import DATE, NUM
from crmsync.specs import MetricSpec

FIXED: dict[str, str] = {
    "spend_lifetime": NUM,
    "orders_lifetime": NUM,
    "aov_lifetime": NUM,
    "avg_order_value": NUM,
    "refunds_lifetime": NUM,
    "first_order_at": DATE,
    "last_order_at": DATE,
    "days_since_first_order": NUM,
    "days_since_last_order": NUM,
    "days_since_signup": NUM,
    "points": NUM,
    "points_earned_lifetime": NUM,
    "points_redeemed_lifetime": NUM,
    "points_expired_lifetime": NUM,
}
WINDOWED = re.compile(r"^(spend|orders|aov|refunds)_(\d+)d$")
ACTIVITY = re.compile(r"^activity_([a-z0-9_]+?)_(?:lifetime|(\d+)d)$")
EXAMPLE_WINDOWS = (7, 30, 90, 180, 365, 730)


@dataclass(frozen=True)
class Metric:
    """One metric a policy uses: ``family`` says how it is computed."""

    name: str
    type: str
    family: str  # fixed | windowed | activity | plugin
    measure: str = ""  # spend | orders | aov | refunds for windowed metrics
    kind: str = ""  # activity kind
    days: int | None = None  # window; None = lifetime
    spec: MetricSpec | None = None


def resolve(name: str, windows: Sequence[int] | None, plugins: dict[str, MetricSpec]) -> Metric | None:
    """The metric a name denotes, or None when it is unknown (or uses an undeclared window)."""
    if name in FIXED:
        return Metric(name, FIXED[name], "fixed")
    if name in plugins:
        return Metric(name, NUM, "plugin", spec=plugins[name])
    m = WINDOWED.match(name)
    if m:
        days = int(m.group(2))
        if days <= 0 or (windows is not None and days not in windows):
            return None
        return Metric(name, NUM, "windowed", measure=m.group(1), days=days)
    m = ACTIVITY.match(name)
    if m:
        days = int(m.group(2)) if m.group(2) else None
        if days is not None and (days <= 0 or (windows is not None and days not in windows)):
            return None
        return Metric(name, NUM, "activity", kind=m.group(1), days=days)
    return None


def suggestions(windows: Sequence[int] | None, plugins: Iterable[str]) -> list[str]:
    """Names offered in 'did you mean' hints."""
    days = list(windows) if windows is not None else list(EXAMPLE_WINDOWS)
    names = set(FIXED) | set(plugins)
    for d in days:
        names.update(f"{m}_{d}d" for m in ("spend", "orders", "aov", "refunds"))
    return sorted(names)


def ts(value: datetime) -> str:
    """A SQL TIMESTAMPTZ literal (UTC)."""
    if value.tzinfo is None:
        raise ValueError("evaluation time must be timezone-aware")
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat(sep=' ')}'"


def _cutoff(as_of: datetime, days: int) -> str:
    return ts(as_of - timedelta(days=days))


def source_views(con_sql: list[str], as_of: datetime, statuses: Sequence[str]) -> None:
    """Append the statements that build the member, order and activity inputs as of ``as_of``."""
    at = ts(as_of)
    status_list = ", ".join("'" + s + "'" for s in statuses)
    con_sql += [
        "CREATE OR REPLACE TEMP TABLE _pol_members AS SELECT external_id AS member_id, created_at, "
        "attributes AS _attributes FROM members WHERE NOT coalesce(deleted, false) "
        "QUALIFY row_number() OVER (PARTITION BY external_id ORDER BY updated_at DESC NULLS LAST, source) = 1",
        "CREATE OR REPLACE TEMP TABLE _pol_all_orders AS SELECT o.member_id, o.source, o.external_id, "
        "o.amount_base AS amount, o.placed_at, o.status FROM orders o JOIN _pol_members USING (member_id) "
        f"WHERE NOT coalesce(o.deleted, false) AND o.placed_at <= {at}",
        f"CREATE OR REPLACE TEMP VIEW _pol_orders AS SELECT * FROM _pol_all_orders WHERE status IN ({status_list})",
        "CREATE OR REPLACE TEMP TABLE _pol_activities AS SELECT a.member_id, a.source, a.external_id, a.kind, "
        "a.occurred_at, a.points FROM activities a JOIN _pol_members USING (member_id) "
        f"WHERE NOT coalesce(a.deleted, false) AND a.occurred_at <= {at}",
    ]


def metrics_sql(used: Iterable[Metric], as_of: datetime) -> str:
    """The statement that builds ``_pol_metrics``: one row per member, one column per metric."""
    at = ts(as_of)
    used = sorted({m.name: m for m in used}.values(), key=lambda m: m.name)
    order_cols, act_cols, plugin_joins, select = [], [], [], []
    for m in used:
        q = f'"{m.name}"'
        if m.family == "windowed":
            if m.measure == "refunds":
                continue  # computed with the refunded orders below
            cut = _cutoff(as_of, m.days or 0)
            expr = {"spend": "sum(amount)", "orders": "count(*)", "aov": "avg(amount)"}[m.measure]
            order_cols.append(f"{expr} FILTER (WHERE placed_at > {cut}) AS {q}")
            default = "NULL" if m.measure == "aov" else "0"
            select.append(f"coalesce(o.{q}, {default}) AS {q}")
        elif m.family == "activity":
            cond = f"kind = '{m.kind}'" + (f" AND occurred_at > {_cutoff(as_of, m.days)}" if m.days else "")
            act_cols.append(f"count(*) FILTER (WHERE {cond}) AS {q}")
            select.append(f"coalesce(a.{q}, 0) AS {q}")
        elif m.family == "plugin" and m.spec is not None:
            alias = f"p_{m.name}"
            table = "_pol_orders" if m.spec.table == "orders" else "_pol_activities"
            body = m.spec.sql.replace("{as_of}", at)
            sub = f"SELECT member_id, ({body}) AS {q} FROM {table} GROUP BY member_id"
            plugin_joins.append(f"LEFT JOIN ({sub}) {alias} USING (member_id)")
            default = "NULL" if m.spec.default is None else repr(m.spec.default)
            select.append(f"coalesce({alias}.{q}, {default}) AS {q}")
    refund_cols = ["count(*) AS refunds_lifetime"]
    for m in used:
        if m.family == "windowed" and m.measure == "refunds":
            refund_cols.append(f'count(*) FILTER (WHERE placed_at > {_cutoff(as_of, m.days or 0)}) AS "{m.name}"')
            select.append(f'coalesce(r."{m.name}", 0) AS "{m.name}"')
    orders_agg = ", ".join(
        [
            "member_id",
            "sum(amount) AS spend_lifetime",
            "count(*) AS orders_lifetime",
            "avg(amount) AS aov_lifetime",
            "min(placed_at) AS first_order_at",
            "max(placed_at) AS last_order_at",
            *order_cols,
        ]
    )
    acts = ", ".join(["member_id", "count(*) AS _activities", *act_cols])
    days = "floor((epoch({at}) - epoch({col})) / 86400)::INTEGER"
    return f"""
CREATE OR REPLACE TEMP TABLE _pol_metrics AS
SELECT mb.member_id, mb._attributes, {at} AS _as_of,
  coalesce(o.spend_lifetime, 0) AS spend_lifetime,
  coalesce(o.orders_lifetime, 0) AS orders_lifetime,
  o.aov_lifetime AS aov_lifetime, o.aov_lifetime AS avg_order_value,
  coalesce(r.refunds_lifetime, 0) AS refunds_lifetime,
  o.first_order_at, o.last_order_at,
  {days.format(at=at, col="o.first_order_at")} AS days_since_first_order,
  {days.format(at=at, col="o.last_order_at")} AS days_since_last_order,
  {days.format(at=at, col="mb.created_at")} AS days_since_signup,
  coalesce(pt.points, 0) AS points,
  coalesce(pt.points_earned_lifetime, 0) AS points_earned_lifetime,
  coalesce(pt.points_redeemed_lifetime, 0) AS points_redeemed_lifetime,
  coalesce(pt.points_expired_lifetime, 0) AS points_expired_lifetime
  {"".join(", " + s for s in select)}
FROM _pol_members mb
LEFT JOIN (SELECT {orders_agg} FROM _pol_orders GROUP BY member_id) o USING (member_id)
LEFT JOIN (SELECT {", ".join(["member_id", *refund_cols])} FROM _pol_all_orders WHERE status = 'refunded'
           GROUP BY member_id) r USING (member_id)
LEFT JOIN (SELECT {acts} FROM _pol_activities GROUP BY member_id) a USING (member_id)
LEFT JOIN _pol_points pt USING (member_id)
{" ".join(plugin_joins)}
"""
