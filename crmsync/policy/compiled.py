"""Compile a :class:`Policy` once (parse and check every condition) and grade all members in bulk SQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from crmsync.errors import PolicyError
from crmsync.policy import bonus, catchup, days, overrides, periods, points, rfm, stages, tiers
from crmsync.policy import metrics as M
from crmsync.policy.ddl import OVERRIDES_TABLE
from crmsync.policy.expr import NUM, STR, Compiler, ExprError, Var, calls, names, parse
from crmsync.policy.model import Policy
from crmsync.policy.modes import GradingMode, PolicyTables
from crmsync.specs import MetricSpec
from crmsync.store.db import Connection, scalar

RFM_VARS = {"rfm_r": NUM, "rfm_f": NUM, "rfm_m": NUM, "rfm_fm": NUM}
STAGE_VARS = {**RFM_VARS, "rfm_segment": STR, "lifecycle": STR}
TAG_VARS = {**STAGE_VARS, "tier": STR, "tier_rank": NUM}
CACHE_FORMAT = 1
ALWAYS = ("spend_lifetime", "orders_lifetime", "days_since_last_order", "days_since_first_order")


class _Scope:
    """Names one kind of condition may use; metric names are resolved (and recorded) on first use."""

    def __init__(self, extra: dict[str, str], resolver: Any, used: dict[str, M.Metric], refusal: Any = None) -> None:
        self.extra, self.resolver, self.used = extra, resolver, used
        self.refusal = refusal or (lambda name: None)

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
    keep_rules: list[stages.Rule | None] = field(default_factory=list)
    """Each tier's keep condition (``None`` without one), aligned with :attr:`tier_rules`."""
    base_currency: str = "EUR"
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    """``sync.timezone``: the zone whose calendar days tier decisions, grace periods and qualification periods
    count, and where a calendar year ends for ``points.expiry = "end_of_year"``."""
    aggregates: Aggregates | None = None
    """Another engine's order-level work (see :meth:`order_level_sql`): fills ``_pol_agg`` at each evaluation in
    place of those statements; every member is then recomputed each time (the stored metrics are not reused)."""

    @property
    def time_dependent(self) -> bool:
        """Whether a tier condition reads a value that moves with the time alone (then every day is decided)."""
        rules = [*self.tier_rules, *(r for r in self.keep_rules if r)]
        plugin = any(m.family == "plugin" for m in self.used_metrics.values())
        return plugin or any(set(r.reads) & tiers.TIME_NAMES or set(r.calls) & tiers.TIME_FUNCTIONS for r in rules)

    @property
    def tiers_read_stages(self) -> bool:
        """Whether a tier condition reads RFM scores, the segment or the lifecycle stage."""
        rules = [*self.tier_rules, *(r for r in self.keep_rules if r)]
        return any(set(r.reads) & set(STAGE_VARS) for r in rules)

    def grade(self, con: Connection, as_of: datetime, *, incremental: bool = False) -> Grading:
        """Grade the members into ``TEMP TABLE graded`` as a sync does (:attr:`GradingMode.SYNC`, or
        :attr:`GradingMode.SYNC_FULL` without ``incremental``) and update the policy's state tables."""
        return self.run(con, as_of, GradingMode.SYNC if incremental else GradingMode.SYNC_FULL)

    def run(self, con: Connection, as_of: datetime, mode: GradingMode) -> Grading:
        """Grade as of ``as_of`` into the temporary table ``mode.out`` (see :class:`GradingMode`); a mode that
        writes state first decides the days not decided yet (:mod:`crmsync.policy.catchup`).

        Raises:
            PolicyError: a condition's arithmetic overflowed on the stored data (e.g. ``points * 1e18``).
        """
        as_of = _utc(as_of)
        with _out_of_range(), days.session_zone(con, self.tz):
            day_mode, mode = self._begin(con, as_of, mode)
            decided = catchup.advance(self, con, as_of, day_mode or mode) if (day_mode or mode).write_state else 0
            today = days.local_day(as_of, self.tz)
            clock = catchup.decided_through(con, mode.tables) if mode.stateful else None
            reuse = self._evaluate(con, as_of, today, mode, final=True, decided=clock is not None and clock >= today)
        recomputed = scalar(con, "SELECT count(DISTINCT member_id) FROM _pol_recomputed")
        return Grading(
            incremental=reuse, recomputed=int(recomputed), graded=mode.out, members="_pol_members", days=decided
        )

    def decide(self, con: Connection, as_of: datetime, mode: GradingMode = GradingMode.SYNC, *, limit: int) -> int:
        """Decide at most ``limit`` of the days not decided yet before the day of ``as_of`` (a sync decides them
        in several transactions, so that a long pause does not hold every day's work in one); returns how many
        were evaluated, 0 when none is left."""
        as_of = _utc(as_of)
        with _out_of_range(), days.session_zone(con, self.tz):
            if not catchup.may_be_pending(self, con, as_of, mode.tables):
                return 0
            self._begin(con, as_of, mode)
            return catchup.advance(self, con, as_of, mode, limit)

    def decide_in_weeks(
        self, transaction: Callable[[], AbstractContextManager[Connection]], as_of: datetime, per_transaction: int = 7
    ) -> int:
        """Decide the days not decided yet before the day of ``as_of``, ``per_transaction`` days in each
        ``transaction()`` (a run after a long pause keeps one week's work in memory at a time, and a crash keeps the
        weeks done); returns how many days were evaluated. The grading that follows decides what is left
        (nothing)."""
        decided = 0
        while True:
            with transaction() as con:
                n = self.decide(con, as_of, limit=per_transaction)
            decided += n
            if n < per_transaction:
                return decided

    def _begin(self, con: Connection, as_of: datetime, mode: GradingMode) -> tuple[GradingMode | None, GradingMode]:
        """The members and their input hashes; the modes that decide days and grade (see
        :func:`crmsync.policy.catchup.explain_modes`)."""
        con.execute(M.members_sql())
        con.execute("CREATE OR REPLACE TEMP TABLE _pol_recomputed (member_id VARCHAR)")
        day_mode, mode = catchup.explain_modes(self, con, as_of, mode)
        if (day_mode or mode).write_ledger:
            con.execute(M.fingerprint_sql(periods.member_hash(self.policy.qualification)))
        return day_mode, mode

    def decide_day(self, con: Connection, day: date, mode: GradingMode) -> None:
        """Decide ``day`` at its last instant and store the tiers held at its end in ``mode.tables.state``."""
        self._evaluate(con, days.day_end(day, self.tz), day, mode, final=False)

    def _evaluate(
        self, con: Connection, at: datetime, day: date, mode: GradingMode, *, final: bool, decided: bool = False
    ) -> bool:
        """Grade at ``at``: the members whose metrics are stored and still good are reused when ``mode`` is
        incremental; returns whether they were."""
        reuse = mode.incremental and self.aggregates is None and self._cache_usable(con, at, mode.tables)
        con.execute(_dirty_sql(at, mode.tables.cache) if reuse else _ALL_DIRTY)
        con.execute("INSERT INTO _pol_recomputed SELECT member_id FROM _pol_dirty")
        changed = f"SELECT (SELECT count(*) FROM _pol_dirty) + (SELECT count(*) FROM {mode.tables.cache} ANTI JOIN "
        recompute = not reuse or bool(scalar(con, changed + "_pol_members USING (member_id))"))
        # profiles stand in for held tiers only in a store whose days were never decided (graded by an earlier version)
        legacy = mode.use_profiles and catchup.decided_through(con, mode.tables) is None
        statements = self._statements(at, day, mode, reuse, final=final, decided=decided, recompute=recompute)
        for stmt in [_prev_sql(mode.stateful, mode.tables.state, legacy), *statements]:
            if stmt is AGGREGATES and self.aggregates is not None:
                self.aggregates(con, mode, partial(self.order_level_sql, at, mode))
            else:
                con.execute(stmt)
        return reuse

    def _statements(
        self,
        as_of: datetime,
        day: date,
        mode: GradingMode,
        reuse: bool,
        *,
        final: bool,
        decided: bool,
        recompute: bool = True,
    ) -> list[str]:
        """The grading's statements after ``_pol_members``, ``_pol_dirty`` (the members to recompute; none to
        recompute without ``recompute``) and ``_pol_prev``: through the tier decision (stored, for a decided day),
        then (``final``) grades, reasons and lock expiry."""
        tables = mode.tables
        sql = [_overrides_sql(mode.stateful and mode.use_locks, day)]
        if recompute:
            sql += self._metrics_statements(as_of, mode, reuse)
        metrics = list(self.used_metrics.values())
        sql.append(M.metrics_sql(metrics, as_of, tables.cache if mode.write_ledger else "_pol_agg"))
        if final or self.tiers_read_stages:
            sql.append(rfm.scores_sql(self.policy.rfm))
            sql += stages.stage_sql(self.policy, self.segment_rules)
        else:
            sql.append("CREATE OR REPLACE TEMP TABLE _pol_stage AS SELECT * FROM _pol_metrics")
        sql.append(tiers.tiers_sql(self.policy, self.tier_rules, self.keep_rules, day, decided=decided))
        if mode.stateful and bonus.any_bonus(self.policy):
            sql += self._bonus_statements(day, mode, write=not final, ledger=recompute)
        if not final:
            return [*sql, *_state_sql(tables.state)]
        sql.append(stages.grades_sql(self.policy, self.tag_rules))
        if reuse and mode.changed_only:
            sql.append(stages.changed_sql("_pol_dirty"))
        only = "_pol_changed" if reuse and mode.changed_only else None
        reason = (tiers.tier_reason_sql(self.policy, self.tier_rules, self.keep_rules), tiers.REASON_COLUMNS)
        sql.append(stages.final_sql(self.policy, reason, self.tag_rules, self.version, mode.out, only))
        if mode.expire_locks:
            sql += overrides.expire_sql(day)
        return sql

    def _metrics_statements(self, as_of: datetime, mode: GradingMode, reuse: bool) -> list[str]:
        """Statements computing the points and metrics of the members in ``_pol_dirty`` (and storing them); with
        :attr:`aggregates`, :data:`AGGREGATES` stands for the order-level ones."""
        sql = [AGGREGATES] if self.aggregates is not None else self.order_level_sql(as_of, mode, "_pol_dirty")
        if mode.write_ledger:
            sql += _persist_sql(reuse, self.version, as_of, mode.tables)
        return sql

    def order_level_sql(self, as_of: datetime, mode: GradingMode, scope: str) -> list[str]:
        """The statements whose cost grows with the orders and activities, for the members in ``scope``: the next
        dated inputs, the inputs, the points ledger, the qualification periods' bounds and ``_pol_agg`` (one row per
        member). They read ``orders``, ``activities``, ``_pol_prev`` and the stored ledger (tier multipliers), the
        bonuses granted, and with ``mode.write_ledger`` ``_pol_fp``."""
        statuses = self.policy.metrics.order_statuses
        metrics = list(self.used_metrics.values())
        tables = mode.tables
        sql: list[str] = [M.next_inputs_sql(as_of, scope)] if mode.write_ledger else []
        sql += M.inputs_sql(as_of, statuses, scope)
        bonuses = tables.bonus if mode.stateful else None
        sql += points.points_sql(self.policy, as_of, tables.ledger, scope, timezone=self.tz.key, bonus_table=bonuses)
        if self.policy.qualification.period != "rolling":
            sql.append(periods.bounds_sql(self.policy.qualification, as_of, self.tz, statuses, scope))
        extra = periods.parts(metrics, M.order_filter(statuses))
        sql.append(M.aggregates_sql(metrics, as_of, statuses, scope, mode.write_ledger, extra))
        return sql

    def _bonus_statements(self, day: date, mode: GradingMode, *, write: bool, ledger: bool) -> list[str]:
        """The tier-entry bonuses of the members who enter a tier on ``day``, dated at its end: stored when the day
        is decided (``write``), else only credited to the balance graded (see :mod:`crmsync.policy.bonus`)."""
        earned = [n for n, m in self.used_metrics.items() if m.measure == "points_earned"]
        at = days.day_end(day, self.tz)
        zone = self.tz.key
        return bonus.grant_sql(self.policy, at, mode.tables, timezone=zone, write=write, ledger=ledger, earned=earned)

    def _cache_usable(self, con: Connection, as_of: datetime, tables: PolicyTables) -> bool:
        """Whether the stored metrics can be reused: same policy, no plugin metric (their SQL is opaque), not
        graded at a later time before."""
        if any(m.family == "plugin" for m in self.used_metrics.values()):
            return False
        if not catchup.exists(con, tables.cache_meta, tables.temporary):
            return False
        row = con.execute(f"SELECT version, as_of FROM {tables.cache_meta}").fetchone()
        return row is not None and row[0] == _cache_version(self.version) and row[1] <= as_of


Aggregates = Callable[[Connection, GradingMode, Callable[[str], list[str]]], None]
"""Fills ``_pol_agg`` in place of the order-level statements, given the mode and :meth:`CompiledPolicy.order_level_sql`
(at the evaluation time, in that mode) as a function of the scope."""
AGGREGATES = "-- the order-level statements, run by another engine"
"""Stands for :meth:`CompiledPolicy.order_level_sql` in a grading's statements when :attr:`CompiledPolicy.aggregates`
fills ``_pol_agg``."""


@dataclass(frozen=True)
class Grading:
    """How a grading went: whether it reused the stored metrics, for how many members it recomputed them, where the
    grades are (``graded``: only the members whose grade may have changed when ``incremental``), the table of every
    member graded (``members``) and how many past days it decided first."""

    incremental: bool
    recomputed: int
    """How many members' metrics were computed again (on any day decided, or at the evaluation time)."""
    graded: str = "graded"
    members: str = "_pol_members"
    days: int = 0
    """How many past days were decided before grading (days on which no tier could change are not counted)."""


def _utc(as_of: datetime) -> datetime:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return as_of.astimezone(UTC)


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


def _dirty_sql(as_of: datetime, cache: str) -> str:
    """``_pol_dirty``: members without stored metrics, whose inputs changed, or whose metrics came due."""
    return (
        "CREATE OR REPLACE TEMP TABLE _pol_dirty AS SELECT f.member_id FROM _pol_fp f "
        f"LEFT JOIN {cache} c USING (member_id) WHERE c.member_id IS NULL "
        f"OR c.fingerprint IS DISTINCT FROM f.fingerprint OR c.stale_at <= {M.ts(as_of)}"
    )


def _persist_sql(reuse: bool, version: str, as_of: datetime, tables: PolicyTables) -> list[str]:
    """Store the ledger entries and metrics just derived: of the recomputed and removed members, or all."""
    create = "CREATE OR REPLACE TEMP TABLE" if tables.temporary else "CREATE OR REPLACE TABLE"
    cache = tables.cache
    stmts = [f"{create} {tables.cache_meta} AS SELECT '{_cache_version(version)}' AS version, {M.ts(as_of)} AS as_of"]
    if not reuse:
        return [*points.persist_sql(tables.ledger), f"{create} {cache} AS SELECT * FROM _pol_agg", *stmts]
    return [
        "CREATE OR REPLACE TEMP TABLE _pol_redo AS SELECT member_id FROM _pol_dirty UNION ALL "
        f"SELECT member_id FROM {cache} ANTI JOIN _pol_members USING (member_id)",
        *points.persist_sql(tables.ledger, "_pol_redo"),
        f"DELETE FROM {cache} WHERE member_id IN (SELECT member_id FROM _pol_redo)",
        f"INSERT INTO {cache} SELECT * FROM _pol_agg",
        *stmts,
    ]


def _state_sql(state_table: str) -> list[str]:
    """Store the tiers just decided for a day's end: the rows that changed, and drop those of members gone."""
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


def policy_version(policy: Policy, metrics: Sequence[MetricSpec], tz: str = "UTC") -> str:
    payload: dict[str, Any] = {
        "policy": policy.model_dump(mode="json"),
        "metrics": sorted([m.name, m.sql, m.table, m.default] for m in metrics),
    }
    if tz != "UTC":  # days, periods and calendar-year expiry are counted in this zone
        payload["timezone"] = tz
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:12]


def _plugin_metrics(metrics: Sequence[MetricSpec], problems: list[str]) -> dict[str, MetricSpec]:
    plugins: dict[str, MetricSpec] = {}
    for spec in metrics:
        builtin = M.resolve(spec.name, None, {}) is not None or periods.is_period_name(spec.name)
        if builtin or spec.name in TAG_VARS or spec.name in tiers.HELD_VARS:
            problems.append(f"metrics.{spec.name}: a plugin metric may not reuse a built-in name")
        elif spec.name in plugins:
            problems.append(f"metrics.{spec.name}: registered twice")
        else:
            plugins[spec.name] = spec
    return plugins


def _tier_rules(policy: Policy, build: Any) -> tuple[list[stages.Rule | None], list[stages.Rule | None]]:
    """Each tier's entry and keep condition (``None`` without one), compiled by ``build``."""
    names = {**STAGE_VARS, **tiers.HELD_VARS}
    entry = [build(f"tiers[{i}].condition", t.name, t.condition or "", names) for i, t in enumerate(policy.tiers[:-1])]
    keep = [
        build(f"tiers[{i}].keep_condition", t.name, t.keep_condition, names) if t.keep_condition is not None else None
        for i, t in enumerate(policy.tiers[:-1])
    ]
    return entry, keep


def compile_policy(
    policy: Policy, metrics: Sequence[MetricSpec] = (), *, base_currency: str = "EUR", timezone: str = "UTC"
) -> CompiledPolicy:
    """Parse and check every condition once; days (tier decisions, grace, periods) are counted in ``timezone``.

    Raises:
        PolicyError: with one ``policy.key.path: problem at column N`` line per bad condition or metric.
    """
    problems: list[str] = []
    plugins = _plugin_metrics(metrics, problems)
    windows, qualification = policy.metrics.windows, policy.qualification
    hints = M.suggestions(windows, plugins)
    used: dict[str, M.Metric] = {n: M.resolve(n, None, {}) for n in M.FIXED}  # type: ignore[misc]
    for name in periods.BOUNDS:  # a period's bounds decide when a tier may drop
        if (bound := periods.resolve(name, qualification)) is not None:
            used[name] = bound

    def resolver(name: str) -> M.Metric | None:
        return M.resolve(name, windows, plugins) or periods.resolve(name, qualification)

    def build(key: str, name: str, text: str, extra: dict[str, str]) -> stages.Rule | None:
        scope = _Scope(extra, resolver, used, lambda n: periods.refusal(n, qualification))
        try:
            tree = parse(text)
            sql = Compiler(scope, sorted({*hints, *extra})).condition(tree)  # type: ignore[arg-type]
        except ExprError as exc:
            problems.append(f"policy.{key}: {exc}")
            return None
        reads = tuple(dict.fromkeys(str(t) for t in names(tree)))
        return stages.Rule(name, text.strip(), sql, reads, tuple(sorted(calls(tree))))

    tier_rules, keep_rules = _tier_rules(policy, build)
    seg_src = rfm.segments(policy.rfm)
    problems += rfm.problems(policy.rfm)
    used.update({m.name: m for m in rfm.needed(policy.rfm)})
    segment_rules = [
        build(f"rfm.segments[{i}].condition", n, c, {**RFM_VARS, "lifecycle": STR}) for i, (n, c) in enumerate(seg_src)
    ]
    tag_rules = [build(f"tags.{n}", n, c, TAG_VARS) for n, c in policy.tags.items()]
    if problems:
        raise PolicyError("invalid policy", problems=problems)
    zone = days.zone(timezone)
    return CompiledPolicy(
        policy=policy,
        version=policy_version(policy, metrics, zone.key),
        tier_names=[t.name for t in policy.tiers],
        tier_rules=[r for r in tier_rules if r],
        segment_rules=[r for r in segment_rules if r],
        tag_rules=[r for r in tag_rules if r],
        used_metrics=used,
        keep_rules=keep_rules,
        tz=zone,
        base_currency=base_currency,
    )
