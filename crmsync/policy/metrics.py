"""Metric names conditions may use, and the SQL that computes them for every member at once.

Built-in metrics (``N`` is a window in days: a window holds what happened in the last ``N`` * 24 hours before
the evaluation time, excluding the instant exactly ``N`` days before it):

- ``spend_lifetime``, ``spend_Nd``: sum of successful orders in base currency;
- ``orders_lifetime``, ``orders_Nd``: number of successful orders;
- ``aov_lifetime`` (alias ``avg_order_value``), ``aov_Nd``: average order value (null without orders);
- ``refunds_lifetime``, ``refunds_Nd``: number of refunded orders (whatever counts as successful);
- ``spend_net_lifetime``, ``spend_net_Nd``: sum of successful orders net of their refunds (an order's amount less its
  ``refunded_amount``; a ``refunded`` order without one is refunded in full);
- ``refunded_amount_lifetime``, ``refunded_amount_Nd``: the amount refunded on orders placed in the window (whatever
  counts as successful);
- ``first_order_at``, ``last_order_at`` (dates); ``days_since_first_order``, ``days_since_last_order`` (whole
  days, null without orders); ``days_since_signup`` (from the member's ``created_at``);
- ``activity_KIND_Nd``, ``activity_KIND_lifetime``: number of activities of a kind (``activity_login_30d``);
- ``points`` (balance), ``points_earned_lifetime``, ``points_redeemed_lifetime``, ``points_expired_lifetime``;
- ``points_earned_Nd``, ``qualifying_points_lifetime``, ``qualifying_points_Nd``, ``points_expiring_Nd`` (the next
  ``N`` days), over the points ledger (see :mod:`crmsync.policy.balance`).

Plugins add metrics through :class:`crmsync.MetricSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crmsync.policy import balance
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
NET = re.compile(r"^(spend_net|refunded_amount)_(?:lifetime|(\d+)d)$")
"""Metrics of refunds, over the lifetime or a window (computed only when a policy uses them)."""
POINTS = re.compile(r"^(points_earned|qualifying_points|points_expiring)_(?:lifetime|(\d+)d)$")
"""Metrics of the points ledger over a window (``points_expiring``: a window ahead, never ``lifetime``)."""
ACTIVITY = re.compile(r"^activity_([a-z0-9_]+?)_(?:lifetime|(\d+)d)$")
EXAMPLE_WINDOWS = (7, 30, 90, 180, 365, 730)
_POINTS_MEASURES = ("points_earned", "qualifying_points", "points_expiring")


@dataclass(frozen=True)
class Metric:
    """One metric a policy uses: ``family`` says how it is computed."""

    name: str
    type: str
    family: str  # fixed | windowed | activity | points | plugin | period
    measure: str = ""  # windowed and period: spend | spend_net | orders | aov | refunds | refunded_amount (activity,
    # period bounds); points: its measure
    kind: str = ""  # activity kind; this | last (period metrics: this:KIND, last:KIND for activities)
    days: int | None = None  # window; None = lifetime
    spec: MetricSpec | None = None


def resolve(name: str, windows: Sequence[int] | None, plugins: dict[str, MetricSpec]) -> Metric | None:
    """The metric a name denotes, or None when it is unknown (or uses an undeclared window)."""
    if name in FIXED:
        return Metric(name, FIXED[name], "fixed")
    if name in plugins:
        return Metric(name, NUM, "plugin", spec=plugins[name])
    m = WINDOWED.match(name) or NET.match(name)
    if m:
        days = int(m.group(2)) if m.group(2) else None
        if days is not None and (days <= 0 or (windows is not None and days not in windows)):
            return None
        return Metric(name, NUM, "windowed", measure=m.group(1), days=days)
    m = POINTS.match(name)
    if m:
        days = int(m.group(2)) if m.group(2) else None
        if (days is None and m.group(1) == "points_expiring") or days == 0:
            return None
        if days is not None and windows is not None and days not in windows:
            return None
        return Metric(name, NUM, "points", measure=m.group(1), days=days)
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
    names = set(FIXED) | set(plugins) | {"spend_net_lifetime", "refunded_amount_lifetime", "qualifying_points_lifetime"}
    measures = ("spend", "orders", "aov", "refunds", "spend_net", "refunded_amount", *_POINTS_MEASURES)
    for d in days:
        names.update(f"{m}_{d}d" for m in measures)
    return sorted(names)


def ts(value: datetime) -> str:
    """A SQL TIMESTAMPTZ literal (UTC)."""
    if value.tzinfo is None:
        raise ValueError("evaluation time must be timezone-aware")
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat(sep=' ')}'"


def _cutoff(as_of: datetime, days: int) -> str:
    """The instant ``days`` * 24 hours before ``as_of`` (in UTC: a window does not follow clock changes)."""
    return ts(as_of.astimezone(UTC) - timedelta(days=days))


def members_sql(table: str = "_pol_members", columns: str = "created_at, attributes AS _attributes") -> str:
    """The statement building ``table`` (``_pol_members``): every member that is not deleted, one row each (the
    latest version of a member kept by several sources), its ``member_id`` and ``columns`` of ``members``."""
    return (
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT external_id AS member_id, {columns} "
        "FROM members WHERE NOT coalesce(deleted, false) "
        "QUALIFY row_number() OVER (PARTITION BY external_id ORDER BY updated_at DESC NULLS LAST, source) = 1"
    )


def inputs_sql(as_of: datetime, statuses: Sequence[str], scope: str = "_pol_members") -> list[str]:
    """Statements building the order and activity inputs as of ``as_of`` of the members listed in ``scope``."""
    at = ts(as_of)
    status_list = ", ".join("'" + s + "'" for s in statuses)
    refunded = "coalesce(o.refunded_amount_base, CASE WHEN o.status = 'refunded' THEN o.amount_base ELSE 0 END)"
    return [
        "CREATE OR REPLACE TEMP TABLE _pol_all_orders AS SELECT o.member_id, o.source, o.external_id, "
        f"o.amount_base AS amount, o.amount_base - {refunded} AS net, o.placed_at, o.status "
        f"FROM orders o SEMI JOIN {scope} s USING (member_id) "
        f"WHERE NOT coalesce(o.deleted, false) AND o.placed_at <= {at}",
        f"CREATE OR REPLACE TEMP VIEW _pol_orders AS SELECT * FROM _pol_all_orders WHERE status IN ({status_list})",
        "CREATE OR REPLACE TEMP TABLE _pol_activities AS SELECT a.member_id, a.source, a.external_id, a.kind, "
        f"a.occurred_at, a.points FROM activities a SEMI JOIN {scope} s USING (member_id) "
        f"WHERE NOT coalesce(a.deleted, false) AND a.occurred_at <= {at}",
    ]


def fingerprint_sql(member_hash: str | None = None) -> str:
    """The statement building ``_pol_fp``: per member, a hash of every input row a member's metrics and points
    are computed from (and of ``member_hash``, an expression over ``_pol_members`` such as an attribute the metrics
    read). It does not depend on the evaluation time: one grading computes it once, for every day it decides.

    DuckDB combines the hashes of several values linearly, so two rows changing the same way would cancel out in
    an XOR: each row's hash is hashed once more (a non-linear mix) before the XOR.
    """
    own = f", hash({member_hash})" if member_hash else ""
    return f"""
CREATE OR REPLACE TEMP TABLE _pol_fp AS
SELECT mb.member_id,
  hash(coalesce(o.h, 0), coalesce(o.n, 0), coalesce(a.h, 0), coalesce(a.n, 0){own}) AS fingerprint
FROM _pol_members mb
LEFT JOIN (SELECT member_id,
             bit_xor(hash(hash(source, external_id, amount_base, placed_at, status, refunded_amount_base))) AS h,
             count(*) AS n
           FROM orders WHERE member_id IS NOT NULL AND NOT coalesce(deleted, false) GROUP BY member_id) o
  USING (member_id)
LEFT JOIN (SELECT member_id, bit_xor(hash(hash(source, external_id, kind, occurred_at, points))) AS h,
             count(*) AS n
           FROM activities WHERE member_id IS NOT NULL AND NOT coalesce(deleted, false) GROUP BY member_id) a
  USING (member_id)
"""


def next_inputs_sql(as_of: datetime, scope: str) -> str:
    """The statement building ``_pol_next``: for each member in ``scope``, its first order or activity dated after
    ``as_of`` (it changes the member's metrics when it comes due)."""
    at = ts(as_of)
    rows = (
        "SELECT member_id, min({col}) AS t FROM {table} SEMI JOIN {scope} USING (member_id) "
        "WHERE NOT coalesce(deleted, false) AND {col} > {at} GROUP BY member_id"
    )
    return (
        "CREATE OR REPLACE TEMP TABLE _pol_next AS SELECT member_id, min(t) AS next_at FROM ("
        f"{rows.format(col='placed_at', table='orders', scope=scope, at=at)} UNION ALL "
        f"{rows.format(col='occurred_at', table='activities', scope=scope, at=at)}) GROUP BY member_id"
    )


def order_filter(statuses: Sequence[str]) -> str:
    """The SQL condition an order meets when its status counts as successful."""
    return "status IN (" + ", ".join("'" + s + "'" for s in statuses) + ")"


def order_measure_sql(measure: str, ok: str, span: str) -> str:
    """The aggregate of one order measure (``spend``, ``spend_net``, ``orders``, ``aov``, ``refunds``,
    ``refunded_amount``) over the orders of ``_pol_all_orders`` that meet ``span``; ``ok``: see :func:`order_filter`.
    Refunds count whatever counts as successful; the others only successful orders."""
    if measure == "refunds":
        return f"count(*) FILTER (WHERE status = 'refunded' AND {span})"
    if measure == "refunded_amount":
        return f"sum(amount - net) FILTER (WHERE {span})"
    expr = {"spend": "sum(amount)", "spend_net": "sum(net)", "orders": "count(*)", "aov": "avg(amount)"}[measure]
    return f"{expr} FILTER (WHERE {ok} AND {span})"


def _exit(col: str, as_of: datetime, days: int) -> str:
    """When the earliest row now inside a ``days`` window leaves it."""
    return f"min({col}) FILTER (WHERE {col} > {_cutoff(as_of, days)}) + INTERVAL {days * 86400} SECOND"


@dataclass
class _Parts:
    """What the metrics a policy uses add to the aggregation: columns over each member's orders and activities,
    joins of plugin metrics, and the output columns."""

    orders: list[str]
    activities: list[str]
    joins: list[str]
    select: list[str]
    ledger: list[str]
    """Columns over each member's points ledger (``_pol_ledger``), and when they change by time alone."""
    ledger_exits: list[str]


def _parts(used: Sequence[Metric], as_of: datetime, ok: str) -> _Parts:
    """The aggregation of the windowed, activity, points and plugin metrics in ``used``."""
    parts = _Parts([], [], [], [], [], [])
    for m in used:
        q = f'"{m.name}"'
        if m.family == "points":
            days = m.days or 0
            agg, exit_at = balance.window_sql(m.measure, m.days, _cutoff(as_of, days), ts(as_of + timedelta(days=days)))
            parts.ledger.append(f"{agg} AS {q}")
            parts.select.append(f"coalesce(pl.{q}, 0) AS {q}")
            if exit_at:
                parts.ledger.append(f'{exit_at} AS "_exit_{m.name}"')
                parts.ledger_exits.append(f'pl."_exit_{m.name}"')
        elif m.family == "windowed":
            window = f"placed_at > {_cutoff(as_of, m.days)}" if m.days else "true"
            parts.orders.append(f"{order_measure_sql(m.measure, ok, window)} AS {q}")
            parts.select.append(f"coalesce(o.{q}, {'NULL' if m.measure == 'aov' else '0'}) AS {q}")
        elif m.family == "activity":
            cond = f"kind = '{m.kind}'" + (f" AND occurred_at > {_cutoff(as_of, m.days)}" if m.days else "")
            parts.activities.append(f"count(*) FILTER (WHERE {cond}) AS {q}")
            parts.select.append(f"coalesce(a.{q}, 0) AS {q}")
        elif m.family == "plugin" and m.spec is not None:
            alias = f"p_{m.name}"
            table = "_pol_orders" if m.spec.table == "orders" else "_pol_activities"
            body = m.spec.sql.replace("{as_of}", ts(as_of))
            sub = f"SELECT member_id, ({body}) AS {q} FROM {table} GROUP BY member_id"
            parts.joins.append(f"LEFT JOIN ({sub}) {alias} USING (member_id)")
            default = "NULL" if m.spec.default is None else repr(m.spec.default)
            parts.select.append(f"coalesce({alias}.{q}, {default}) AS {q}")
    if parts.ledger:
        ledger = ", ".join(["member_id", *parts.ledger])
        parts.joins.append(f"LEFT JOIN (SELECT {ledger} FROM _pol_ledger GROUP BY member_id) pl USING (member_id)")
    return parts


Extra = tuple[list[str], list[str], list[str]]
"""Joins, output columns and ``stale_at`` terms added to the aggregation (see :func:`aggregates_sql`)."""


def aggregates_sql(
    used: Iterable[Metric], as_of: datetime, statuses: Sequence[str], scope: str, fingerprints: bool, extra: Extra
) -> str:
    """The statement building ``_pol_agg``: for each member in ``scope``, every metric that does not move with the
    evaluation time by itself, ``stale_at`` (the first instant after ``as_of`` at which one of them would change
    with no new input: a row leaving a window, a dated row coming due, points expiring, a qualification period
    ending) and ``fingerprint``.

    Needs ``_pol_all_orders``, ``_pol_activities``, ``_pol_points`` (and ``_pol_fp`` and ``_pol_next`` with
    ``fingerprints``). ``extra`` adds joins, output columns and ``stale_at`` terms (those of period metrics, see
    :func:`crmsync.policy.periods.parts`).
    """
    ok = order_filter(statuses)
    metrics = sorted({m.name: m for m in used}.values(), key=lambda m: m.name)
    parts = _parts(metrics, as_of, ok)
    parts.joins, parts.select, period_stale = parts.joins + extra[0], parts.select + extra[1], extra[2]
    order_days = sorted({m.days for m in metrics if m.family == "windowed" and m.days})
    act_days = sorted({m.days for m in metrics if m.family == "activity" and m.days})
    exits = [f"o._exit_{d}" for d in order_days] + [f"a._exit_{d}" for d in act_days]
    orders_agg = ", ".join(
        [
            "member_id",
            f"sum(amount) FILTER (WHERE {ok}) AS spend_lifetime",
            f"count(*) FILTER (WHERE {ok}) AS orders_lifetime",
            f"avg(amount) FILTER (WHERE {ok}) AS aov_lifetime",
            f"min(placed_at) FILTER (WHERE {ok}) AS first_order_at",
            f"max(placed_at) FILTER (WHERE {ok}) AS last_order_at",
            "count(*) FILTER (WHERE status = 'refunded') AS refunds_lifetime",
            *(f"{_exit('placed_at', as_of, d)} AS _exit_{d}" for d in order_days),
            *parts.orders,
        ]
    )
    act_exits = [f"{_exit('occurred_at', as_of, d)} AS _exit_{d}" for d in act_days]
    acts = ", ".join(["member_id", "count(*) AS _activities", *act_exits, *parts.activities])
    fp = "LEFT JOIN _pol_fp fp USING (member_id) LEFT JOIN _pol_next nx USING (member_id)" if fingerprints else ""
    stale = ", ".join(
        ["pt.next_expiry", *exits, *parts.ledger_exits, *period_stale, *(["nx.next_at"] if fingerprints else [])]
    )
    return f"""
CREATE OR REPLACE TEMP TABLE _pol_agg AS
SELECT s.member_id,
  coalesce(o.spend_lifetime, 0) AS spend_lifetime,
  coalesce(o.orders_lifetime, 0) AS orders_lifetime,
  o.aov_lifetime AS aov_lifetime,
  coalesce(o.refunds_lifetime, 0) AS refunds_lifetime,
  o.first_order_at, o.last_order_at,
  coalesce(pt.points, 0) AS points,
  coalesce(pt.points_earned_lifetime, 0) AS points_earned_lifetime,
  coalesce(pt.points_redeemed_lifetime, 0) AS points_redeemed_lifetime,
  coalesce(pt.points_expired_lifetime, 0) AS points_expired_lifetime
  {"".join(", " + s for s in parts.select)},
  least({stale}) AS stale_at,
  {"fp.fingerprint" if fingerprints else "NULL::UBIGINT"} AS fingerprint
FROM {scope} s
LEFT JOIN (SELECT {orders_agg} FROM _pol_all_orders GROUP BY member_id) o USING (member_id)
LEFT JOIN (SELECT {acts} FROM _pol_activities GROUP BY member_id) a USING (member_id)
LEFT JOIN _pol_points pt USING (member_id)
{fp}
{" ".join(parts.joins)}
"""


def metrics_sql(used: Iterable[Metric], as_of: datetime, aggregates: str) -> str:
    """The statement defining the view ``_pol_metrics``: one row per member, one column per metric, from the
    members' ``aggregates`` (a ``_pol_agg``-shaped table) and the evaluation time."""
    at = ts(as_of)
    names = sorted({m.name for m in used if m.family in ("windowed", "activity", "plugin", "points", "period")})
    days = "floor((epoch({at}) - epoch({col})) / 86400)::INTEGER"
    return f"""
CREATE OR REPLACE TEMP VIEW _pol_metrics AS
SELECT mb.member_id, mb._attributes, {at} AS _as_of,
  g.spend_lifetime, g.orders_lifetime, g.aov_lifetime, g.aov_lifetime AS avg_order_value, g.refunds_lifetime,
  g.first_order_at, g.last_order_at,
  {days.format(at=at, col="g.first_order_at")} AS days_since_first_order,
  {days.format(at=at, col="g.last_order_at")} AS days_since_last_order,
  {days.format(at=at, col="mb.created_at")} AS days_since_signup,
  g.points, g.points_earned_lifetime, g.points_redeemed_lifetime, g.points_expired_lifetime
  {"".join(f', g."{n}"' for n in names)}
FROM _pol_members mb JOIN {aggregates} g USING (member_id)
"""
