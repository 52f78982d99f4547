"""Compile a :class:`Policy` once (parse and check every condition) and grade all members in bulk SQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import duckdb

from crmsync.errors import PolicyError
from crmsync.policy import bonus, overrides, points, rfm, stages
from crmsync.policy import metrics as M
from crmsync.policy.ddl import CACHE_META, CACHE_TABLE, LEDGER_TABLE, OVERRIDES_TABLE
from crmsync.policy.expr import NUM, STR, Compiler, ExprError, Var, names, parse
from crmsync.policy.model import Policy
from crmsync.policy.modes import GradingMode
from crmsync.specs import MetricSpec
from crmsync.store.db import Connection, scalar, table_exists

RFM_VARS = {"rfm_r": NUM, "rfm_f": NUM, "rfm_m": NUM, "rfm_fm": NUM}
STAGE_VARS = {**RFM_VARS, "rfm_segment": STR, "lifecycle": STR}
TAG_VARS = {**STAGE_VARS, "tier": STR, "tier_rank": NUM}
CACHE_FORMAT = 1
ALWAYS = ("spend_lifetime", "orders_lifetime", "days_since_last_order", "days_since_first_order")


class _Scope:
    """Names one kind of condition may use; metric names are resolved (and recorded) on first use."""

    def __init__(self, extra: dict[str, str], resolver: Any, used: dict[str, M.Metric]) -> None:
        self.extra, self.resolver, self.used = extra, resolver, used

    def get(self, name: str) -> Var | None:
        if name in self.extra:
            return Var(name, self.extra[name], f'"{name}"')
        metric = self.resolver(name)
        if metric is None:
            return None
        self.used[name] = metric
        return Var(name, metric.type, f'"{name}"')


@dataclass
class CompiledPolicy:
    """A checked policy, ready to grade. Build it with :func:`compile_policy`."""

    policy: Policy
    version: str
    tier_names: list[str]
    tier_rules: list[stages.Rule]
    segment_rules: list[stages.Rule]
    tag_rules: list[stages.Rule]
    used_metrics: dict[str, M.Metric] = field(default_factory=dict)
    base_currency: str = "EUR"
    timezone: str = "UTC"
    """``sync.timezone``: where a calendar year ends (``points.expiry = "end_of_year"``)."""

    def grade(self, con: Connection, as_of: datetime, *, incremental: bool = False) -> Grading:
        """Grade the members into ``TEMP TABLE graded`` as a sync does (:attr:`GradingMode.SYNC`, or
        :attr:`GradingMode.SYNC_FULL` without ``incremental``) and update the policy's state tables."""
        return self.run(con, as_of, GradingMode.SYNC if incremental else GradingMode.SYNC_FULL)

    def run(
        self, con: Connection, as_of: datetime, mode: GradingMode, *, aggregates: Aggregates | None = None
    ) -> Grading:
        """Grade as of ``as_of`` into the temporary table ``mode.out`` (see :class:`GradingMode`).

        ``aggregates``: fills ``_pol_agg`` (every member's order-level aggregates) in place of the order-level
        statements (:meth:`order_level_sql`), e.g. from another engine; then every member is recomputed, ``mode``
        must not ``write_ledger``, and the stored metrics of incremental gradings are dropped.

        Raises:
            PolicyError: a condition's arithmetic overflowed on the stored data (e.g. ``points * 1e18``).
        """
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        if aggregates is not None and mode.write_ledger:
            raise ValueError("aggregates computed elsewhere leave no points ledger to store: use a mode without it")
        with _out_of_range():
            con.execute(M.members_sql())
            reuse = mode.incremental and self._cache_usable(con, as_of)
            if mode.write_ledger:
                con.execute(M.fingerprint_sql(as_of))
            con.execute(_dirty_sql(as_of) if reuse else _ALL_DIRTY)
            head, tail = self._statements(as_of, mode, reuse)
            for stmt in head if aggregates is None else head[:2]:
                con.execute(stmt)
            if aggregates is not None:
                con.execute(f"DROP TABLE IF EXISTS {CACHE_META}")  # the stored metrics are no longer current
                aggregates(con, partial(self.order_level_sql, as_of, mode))
            for stmt in tail:
                con.execute(stmt)
        recomputed = scalar(con, "SELECT count(*) FROM _pol_dirty")
        return Grading(incremental=reuse, recomputed=int(recomputed), graded=mode.out, members="_pol_members")

    def order_level_sql(self, as_of: datetime, mode: GradingMode, scope: str) -> list[str]:
        """The statements whose cost grows with the orders and activities: the inputs, the points ledger and
        ``_pol_agg`` (one row per member of ``scope``); they read ``orders``, ``activities``, ``_pol_prev`` (tier
        multipliers), the stored ledger (multipliers kept) and ``mode.bonus_table``."""
        statuses = self.policy.metrics.order_statuses
        bonuses = mode.bonus_table if mode.stateful else None
        return [
            *M.inputs_sql(as_of, statuses, scope),
            *points.points_sql(self.policy, as_of, LEDGER_TABLE, scope, timezone=self.timezone, bonus_table=bonuses),
            M.aggregates_sql(self.used_metrics.values(), as_of, statuses, scope, mode.write_ledger),
        ]

    def _statements(self, as_of: datetime, mode: GradingMode, reuse: bool) -> tuple[list[str], list[str]]:
        """The grading's statements after ``_pol_members`` and ``_pol_dirty`` (the members to recompute): those up
        to ``_pol_agg`` (the held tiers, the locks, then :meth:`order_level_sql`), and those after it."""
        day = as_of.astimezone(UTC).date()
        metrics = self.used_metrics.values()
        head = [
            _prev_sql(mode.stateful, mode.state_table, mode.use_profiles),
            _overrides_sql(mode.stateful and mode.use_locks, day),
            *self.order_level_sql(as_of, mode, "_pol_dirty"),
        ]
        bonuses = mode.bonus_table if mode.stateful else None
        sql: list[str] = []
        if mode.write_ledger:
            sql += _persist_sql(reuse, self.version, as_of)
        sql.append(M.metrics_sql(metrics, as_of, CACHE_TABLE if mode.write_ledger else "_pol_agg"))
        sql.append(rfm.scores_sql(self.policy.rfm))
        sql += stages.stage_sql(self.policy, self.segment_rules)
        sql.append(stages.tiers_sql(self.policy, self.tier_rules, day))
        if bonuses is not None and bonus.any_bonus(self.policy):
            earned = [n for n, m in self.used_metrics.items() if m.measure == "points_earned"]
            sql += bonus.grant_sql(
                self.policy,
                as_of,
                bonuses,
                timezone=self.timezone,
                write=mode.write_state,
                write_ledger=mode.write_ledger,
                earned=earned,
            )
        sql.append(stages.grades_sql(self.policy, self.tag_rules))
        if reuse:
            sql.append(stages.changed_sql("_pol_dirty"))
        only = "_pol_changed" if reuse else None
        sql.append(stages.final_sql(self.policy, self.tier_rules, self.tag_rules, self.version, mode.out, only))
        if mode.write_state:
            sql += _state_sql(mode.state_table)
        if mode.expire_locks:
            sql += overrides.expire_sql(day)
        return head, sql

    def _cache_usable(self, con: Connection, as_of: datetime) -> bool:
        """Whether the stored metrics can be reused: same policy, no plugin metric (their SQL is opaque), not
        graded at a later time before."""
        if any(m.family == "plugin" for m in self.used_metrics.values()):
            return False
        if not table_exists(con, CACHE_META):
            return False
        row = con.execute(f"SELECT version, as_of FROM {CACHE_META}").fetchone()
        return row is not None and row[0] == _cache_version(self.version) and row[1] <= as_of


Aggregates = Callable[[Connection, Callable[[str], list[str]]], None]
"""Fills ``_pol_agg`` in place of the order-level statements, given :meth:`CompiledPolicy.order_level_sql` as a
function of the scope (see :meth:`CompiledPolicy.run`)."""


@dataclass(frozen=True)
class Grading:
    """How a grading went: whether it reused the stored metrics, for how many members it recomputed them, where the
    grades are (``graded``: only the members whose grade may have changed when ``incremental``) and the table of
    every member graded (``members``)."""

    incremental: bool
    recomputed: int
    graded: str = "graded"
    members: str = "_pol_members"


@contextmanager
def _out_of_range() -> Iterator[None]:
    """Turn the database's overflow of a condition's arithmetic into a :class:`PolicyError` (exit code 2)."""
    try:
        yield
    except (duckdb.OutOfRangeException, duckdb.ConversionException) as exc:
        reason = str(exc).split("\n")[0]
        raise PolicyError(
            f"policy: grading failed, a value is out of range ({reason})",
            hint="check the arithmetic in the policy's conditions (very large factors or numbers)",
        ) from None


def _cache_version(policy_version: str) -> str:
    return f"{CACHE_FORMAT}:{policy_version}"


_ALL_DIRTY = "CREATE OR REPLACE TEMP TABLE _pol_dirty AS SELECT member_id FROM _pol_members"


def _dirty_sql(as_of: datetime) -> str:
    """``_pol_dirty``: members without stored metrics, whose inputs changed, or whose metrics came due."""
    return (
        "CREATE OR REPLACE TEMP TABLE _pol_dirty AS SELECT f.member_id FROM _pol_fp f "
        f"LEFT JOIN {CACHE_TABLE} c USING (member_id) WHERE c.member_id IS NULL "
        f"OR c.fingerprint IS DISTINCT FROM f.fingerprint OR c.stale_at <= {M.ts(as_of)}"
    )


def _persist_sql(reuse: bool, version: str, as_of: datetime) -> list[str]:
    """Store the ledger entries and metrics just derived: of the recomputed and removed members, or all."""
    stmts = [
        f"CREATE OR REPLACE TABLE {CACHE_META} AS SELECT '{_cache_version(version)}' AS version, {M.ts(as_of)} AS as_of"
    ]
    if not reuse:
        return [
            *points.persist_sql(LEDGER_TABLE),
            f"CREATE OR REPLACE TABLE {CACHE_TABLE} AS SELECT * FROM _pol_agg",
            *stmts,
        ]
    return [
        "CREATE OR REPLACE TEMP TABLE _pol_redo AS SELECT member_id FROM _pol_dirty UNION ALL "
        f"SELECT member_id FROM {CACHE_TABLE} ANTI JOIN _pol_members USING (member_id)",
        *points.persist_sql(LEDGER_TABLE, "_pol_redo"),
        f"DELETE FROM {CACHE_TABLE} WHERE member_id IN (SELECT member_id FROM _pol_redo)",
        f"INSERT INTO {CACHE_TABLE} SELECT * FROM _pol_agg",
        *stmts,
    ]


def _state_sql(state_table: str) -> list[str]:
    """Store the tiers just decided: the rows that changed, and drop those of members gone."""
    cols = ("tier", "tier_since", "previous_tier", "below_since")
    differs = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in cols)
    return [
        "CREATE OR REPLACE TEMP TABLE _pol_state_new AS SELECT t.member_id, t.tier, t.tier_since, t.previous_tier, "
        f"t.below_since FROM _pol_tiers t LEFT JOIN {state_table} s USING (member_id) "
        f"WHERE s.member_id IS NULL OR {differs}",
        f"DELETE FROM {state_table} WHERE member_id IN (SELECT member_id FROM _pol_state_new) "
        f"OR member_id NOT IN (SELECT member_id FROM _pol_tiers)",
        f"INSERT INTO {state_table} (member_id, tier, tier_since, previous_tier, below_since, updated_at) "
        "SELECT member_id, tier, tier_since, previous_tier, below_since, now() FROM _pol_state_new",
    ]


def _prev_sql(stateful: bool, state_table: str, use_profiles: bool) -> str:
    if not stateful:
        return (
            "CREATE OR REPLACE TEMP TABLE _pol_prev AS SELECT member_id, NULL::VARCHAR AS tier, "
            "NULL::DATE AS tier_since, NULL::VARCHAR AS previous_tier, NULL::DATE AS below_since FROM _pol_members"
        )
    prof = "LEFT JOIN profiles p USING (member_id)" if use_profiles else ""
    pick = (
        (lambda c: f"CASE WHEN s.member_id IS NOT NULL THEN s.{c} ELSE p.{c} END")
        if use_profiles
        else (lambda c: f"s.{c}")
    )
    return (
        f"CREATE OR REPLACE TEMP TABLE _pol_prev AS SELECT mb.member_id, {pick('tier')} AS tier, "
        f"{pick('tier_since')} AS tier_since, {pick('previous_tier')} AS previous_tier, s.below_since "
        f"FROM _pol_members mb LEFT JOIN {state_table} s USING (member_id) {prof}"
    )


def _overrides_sql(active: bool, day: date) -> str:
    where = f"until IS NULL OR until >= DATE '{day.isoformat()}'" if active else "false"
    return (
        "CREATE OR REPLACE TEMP TABLE _pol_overrides AS SELECT member_id, tier, until, reason, actor "
        f"FROM {OVERRIDES_TABLE} WHERE {where}"
    )


def policy_version(policy: Policy, metrics: Sequence[MetricSpec], timezone: str = "UTC") -> str:
    payload: dict[str, Any] = {
        "policy": policy.model_dump(mode="json"),
        "metrics": sorted([m.name, m.sql, m.table, m.default] for m in metrics),
    }
    if policy.points.expiry == "end_of_year":  # where a year ends changes when points expire
        payload["timezone"] = timezone
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:12]


def compile_policy(
    policy: Policy, metrics: Sequence[MetricSpec] = (), *, base_currency: str = "EUR", timezone: str = "UTC"
) -> CompiledPolicy:
    """Parse and check every condition once. ``timezone`` is ``sync.timezone`` (an IANA name).

    Raises:
        PolicyError: with one ``policy.key.path: problem at column N`` line per bad condition or metric.
    """
    problems: list[str] = []
    plugins: dict[str, MetricSpec] = {}
    for spec in metrics:
        if M.resolve(spec.name, None, {}) is not None or spec.name in TAG_VARS:
            problems.append(f"metrics.{spec.name}: a plugin metric may not reuse a built-in name")
        elif spec.name in plugins:
            problems.append(f"metrics.{spec.name}: registered twice")
        else:
            plugins[spec.name] = spec
    windows = policy.metrics.windows
    hints = M.suggestions(windows, plugins)
    used: dict[str, M.Metric] = {n: M.resolve(n, None, {}) for n in M.FIXED}  # type: ignore[misc]

    def resolver(name: str) -> M.Metric | None:
        return M.resolve(name, windows, plugins)

    def build(key: str, name: str, text: str, extra: dict[str, str]) -> stages.Rule | None:
        scope = _Scope(extra, resolver, used)
        try:
            tree = parse(text)
            sql = Compiler(scope, sorted({*hints, *extra})).condition(tree)  # type: ignore[arg-type]
        except ExprError as exc:
            problems.append(f"policy.{key}: {exc}")
            return None
        reads = tuple(dict.fromkeys(str(t) for t in names(tree)))
        return stages.Rule(name, text.strip(), sql, reads)

    tier_rules = [
        build(f"tiers[{i}].condition", t.name, t.condition or "", STAGE_VARS) for i, t in enumerate(policy.tiers[:-1])
    ]
    seg_src = rfm.segments(policy.rfm)
    problems += rfm.problems(policy.rfm)
    used.update({m.name: m for m in rfm.needed(policy.rfm)})
    segment_rules = [
        build(f"rfm.segments[{i}].condition", n, c, {**RFM_VARS, "lifecycle": STR}) for i, (n, c) in enumerate(seg_src)
    ]
    tag_rules = [build(f"tags.{n}", n, c, TAG_VARS) for n, c in policy.tags.items()]
    if problems:
        raise PolicyError("invalid policy", problems=problems)
    return CompiledPolicy(
        policy=policy,
        version=policy_version(policy, metrics, timezone),
        tier_names=[t.name for t in policy.tiers],
        tier_rules=[r for r in tier_rules if r],
        segment_rules=[r for r in segment_rules if r],
        tag_rules=[r for r in tag_rules if r],
        used_metrics=used,
        base_currency=base_currency,
        timezone=timezone,
    )
