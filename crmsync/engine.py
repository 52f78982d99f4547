"""One sync run, in the phases the README draws: pull, grade, diff, push, report.

The engine orchestrates: connectors talk to their systems (:mod:`crmsync.connector`), the store keeps every record
and owns every statement on its tables (:mod:`crmsync.store`), the policy grades (:mod:`crmsync.policy`).

Each phase commits on its own: a pulled batch with its cursor, grading with the outbox it produces, each push
call's results. A run that dies anywhere is resumed by the next one: batches are re-pulled from the last stored
cursor (records are keyed, so nothing counts twice), grading is recomputed from stored records, and changes still
in the outbox are pushed again (pushing the same values twice is harmless).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from crmsync.connector import (
    PULL_CAPABILITY,
    Capability,
    Connector,
    ConnectorContext,
    ProfileChange,
    RecordResult,
    Stream,
)
from crmsync.errors import UNEXPECTED, ConfigError
from crmsync.grading import check_engine, engine_policy
from crmsync.models import PUSHED_FIELDS
from crmsync.plugins import PluginHost
from crmsync.report import PlanEntry, RejectedItem, RunReport, RunResult, StreamCounts
from crmsync.settings import Settings
from crmsync.store import Store, access, erasure, matching, profiles, quarantine, runs
from crmsync.store.db import Connection
from crmsync.store.matching import MemberMatch
from crmsync.store.outbox import Outbox
from crmsync.store.sealed import sealed_state

if TYPE_CHECKING:
    from crmsync.policy import CompiledPolicy, Grading

log = logging.getLogger("crmsync.engine")

__all__ = ["Engine", "PlanEntry", "Progress", "RunResult"]


class Progress:
    """Receives progress events; the command line renders them as bars on a terminal, else ignores them."""

    def start(self, task: str, total: int | None = None) -> None: ...
    def advance(self, task: str, n: int = 1) -> None: ...
    def finish(self, task: str) -> None: ...


class Engine:
    """Runs sync and plan over an open store with connectors built from settings and the plugin host."""

    def __init__(
        self,
        settings: Settings,
        host: PluginHost,
        store: Store,
        *,
        progress: Progress | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        from crmsync.policy import STORE_EXTENSION

        self.settings = settings
        self.host = host
        self.store = store
        self.progress = progress or Progress()
        self.clock = clock
        self.connectors: dict[str, Connector] = {}
        self._policy: CompiledPolicy | None = None
        store.install(STORE_EXTENSION)

    # ------------------------------------------------------------------ setup
    def connector(self, name: str) -> Connector:
        if name not in self.connectors:
            table = self.settings.connectors[name]
            spec = self.host.connector_spec(str(table["plugin"]))
            self.settings.require_secrets([name])
            if spec is None or name not in self.settings.connector_settings:
                raise ConfigError(f"connectors.{name}: plugin {table.get('plugin')!r} is not available")
            self.connectors[name] = spec.factory(self.settings.connector_settings[name], self._context(name))
        return self.connectors[name]

    def _context(self, name: str) -> ConnectorContext:
        from crmsync.policy.stages import push_values

        values = push_values(self.settings.policy)
        return ConnectorContext(
            name=name,
            base_currency=self.settings.sync.base_currency,
            timezone=ZoneInfo(self.settings.sync.timezone),
            state=self.store.state(name),
            secrets=sealed_state(self.store.state(name), self.settings.connector_settings[name], name),
            forgotten=erasure.ErasureList.load(self.store.con, self.settings.sync.members).names,
            logger=logging.getLogger(f"crmsync.connector.{name}"),
            verbose=self.settings.logging.verbose_personal_data,
            tier_names=values["tier"],
            tag_names=values["tags"],
            push_values=values,
        )

    def _require(self, name: str, capability: Capability, key: str) -> Connector:
        conn = self.connector(name)
        if capability not in type(conn).capabilities:
            raise ConfigError(f"{key}: connector {name!r} cannot {capability.value.replace('_', ' ')}")
        return conn

    @property
    def policy(self) -> CompiledPolicy:
        if self._policy is None:
            from crmsync.policy import compile_policy

            s, m = self.settings, self.host.metrics()
            self._policy = compile_policy(s.policy, m, base_currency=s.sync.base_currency, timezone=s.sync.timezone)
        return self._policy

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self.connectors.values():
            try:
                conn.close()
            except Exception as exc:  # closing must not hide the run's outcome
                log.warning("closing connector %s failed: %s", conn.name, type(exc).__name__)
        self.connectors.clear()

    # ------------------------------------------------------------------ the run
    def run(self, *, dry_run: bool = False, as_of: datetime | None = None, command: str = "sync") -> RunResult:
        result = RunResult(RunReport.start(command, self.clock(), dry_run=dry_run))
        report, t0 = result.report, time.perf_counter()
        with self.store.transaction() as con:
            runs.start(con, report)
        try:
            check_engine(self.settings, self.policy)  # a bad policy, or an engine that cannot grade it, stops here
            with self._timed(report, "pull"):
                self.pull(report)
            with self._timed(report, "grade"):
                result.plan = self.grade(report, as_of=as_of or self.clock(), dry_run=dry_run)
            if not dry_run:
                with self._timed(report, "push"):
                    self.push(report)
            report.done()
        except Exception as exc:
            report.fail(access.classify(self.store.path, exc))
            if report.error and report.error.kind == UNEXPECTED:
                log.exception("run %s failed", report.run_id)
        finally:
            self._report(report, time.perf_counter() - t0)
        return result

    @contextmanager
    def _timed(self, report: RunReport, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            report.timings[phase] = round(time.perf_counter() - t, 3)

    # ------------------------------------------------------------------ pull
    def pull(self, report: RunReport) -> None:
        """Pull every configured stream from its stored cursor; store each batch with its cursor."""
        sync = self.settings.sync
        plan = [(sync.members, Stream.MEMBERS, "sync.members")]
        plan += [(n, Stream.ORDERS, "sync.orders") for n in sync.orders]
        plan += [(n, Stream.ACTIVITIES, "sync.activities") for n in sync.activities]
        for name, stream, key in plan:
            conn = self._require(name, PULL_CAPABILITY[stream], key)
            counts = report.pulled.setdefault(name, {}).setdefault(stream.value, StreamCounts())
            task = f"pull {name} {stream.value}"
            self.progress.start(task)
            for batch in conn.pull(stream, self.store.get_cursor(name, stream)):
                rejects = self.store.write_batch(
                    name,
                    batch,
                    run_id=report.run_id,
                    base_currency=sync.base_currency,
                    rates=sync.exchange_rates,
                    match=self.member_match,
                )
                for rej in rejects:
                    report.add_rejected(RejectedItem.of(name, stream, rej))
                self.progress.advance(task, counts.add(batch, rejects))
            self.progress.finish(task)

    # ------------------------------------------------------------------ grade + diff
    @property
    def member_match(self) -> MemberMatch:
        return MemberMatch.configured(self.settings.sync)

    def resolve_members(self) -> None:
        """Point every order and activity at its member: by id, by email, or (auto) by id, else by email.

        Rows are matched when stored; only those still without a member are matched here (see
        :mod:`crmsync.store.matching`).
        """
        with self.store.transaction() as con:
            matching.resolve_unmatched(con, self.member_match)

    def grade(self, report: RunReport, *, as_of: datetime, dry_run: bool = False) -> list[PlanEntry]:
        """Grade, keep the profiles and queue what each target should receive, in one transaction; a dry run keeps
        nothing and returns the changes a push would make."""
        with engine_policy(self.settings, self.store.path, report, self.policy) as (policy, mode):
            if not dry_run:  # first the days since the last run, a week of days per transaction
                self.resolve_members()
                report.days_decided = policy.decide_in_weeks(self.store.transaction, as_of)
            with self.store.transaction(rollback=dry_run) as con:
                self.resolve_members()
                report.unmatched_orders = matching.unmatched(con, "orders")
                report.unmatched_activities = matching.unmatched(con, "activities")
                grading = policy.run(con, as_of, mode)
                report.members_recomputed = grading.recomputed
                report.days_decided += grading.days
                self._adjust_profiles(con, grading)
                report.profiles_changed = profiles.count_changed(con, grading.graded)
                profiles.save(con, grading.graded, members=grading.members if grading.incremental else None)
                report.members_graded = profiles.count(con)
                report.quarantined = quarantine.unresolved_count(con)
                report.tier_distribution = profiles.tier_distribution(con)
                return self.diff(report, grading, dry_run=dry_run)

    def _adjust_profiles(self, con: Connection, grading: Grading) -> None:
        """Let plugins add and remove tags on the profiles just graded (``crmsync_adjust_profiles``)."""
        hook = self.host.hook.crmsync_adjust_profiles
        if not hook.get_hookimpls():
            return
        graded = profiles.read(con, grading.graded, self.settings.sync.members)
        tags = {p.member_id: set(p.tags) for p in graded}
        changed: dict[str, set[str]] = {}
        for results in hook(profiles=graded):
            for adj in results or ():
                if adj.member_id in tags:
                    cur = changed.setdefault(adj.member_id, set(tags[adj.member_id]))
                    cur |= set(adj.add)
                    cur -= set(adj.remove)
        profiles.set_tags(con, grading.graded, changed)

    def diff(self, report: RunReport, grading: Grading, *, dry_run: bool = False) -> list[PlanEntry]:
        """Queue, per push target, every profile whose values differ from what it last accepted."""
        plan: list[PlanEntry] = []
        for target in self.settings.sync.push:
            outbox = self.outbox(target)
            outbox.enqueue(report.run_id, graded=grading.graded if grading.incremental else None)
            report.pending[target] = outbox.counts()[0]
            if dry_run:
                plan += [PlanEntry.of(target, change) for change in outbox.pending()]
        return plan

    def outbox(self, target: str) -> Outbox:
        conn = self._require(target, Capability.PUSH_PROFILES, "sync.push")
        return Outbox(self.store, target, conn.push_fields or PUSHED_FIELDS)

    # ------------------------------------------------------------------ push
    def push(self, report: RunReport) -> None:
        """Push each target's pending changes, refused ones again (see :mod:`crmsync.store.outbox`); record each
        call's results as it completes."""
        for target in self.settings.sync.push:
            conn, outbox = self.connector(target), self.outbox(target)
            watched = self._watched(target, conn)
            outbox.watch(watched, requeue=True)
            if retried := outbox.retrying():
                report.retried[target] = retried
            report.pushed[target] = 0
            columnar = type(conn).push_table is not Connector.push_table
            if not (columnar and self._push_table(conn, outbox, report)):
                self._push_batches(conn, outbox, report)
            outbox.watch(watched, requeue=False)
            report.pending[target], report.dead[target] = outbox.counts()

    def _watched(self, target: str, conn: Connector) -> dict[str, Callable[[], str | None]]:
        """What a target's refusals are made against, each asked at most once per run: the policy, the target's
        settings, its field metadata."""
        settings = self.settings.connector_settings[target].model_dump_json()
        return {
            "policy_changed": cache(lambda: self.policy.version),
            "settings_changed": cache(lambda: hashlib.sha256(settings.encode()).hexdigest()[:16]),
            "fields_changed": cache(conn.fields_fingerprint),
        }

    def _push_table(self, conn: Connector, outbox: Outbox, report: RunReport) -> bool:
        """Push every pending change as one Arrow table (see :meth:`Connector.push_table`); ``False`` when the
        connector declines (raises ``NotImplementedError``): push in batches then."""
        table = outbox.pending_table()
        if table.num_rows:
            try:
                results = conn.push_table(table)
            except NotImplementedError:
                return False
            self._record(outbox, results, report)
        return True

    def _push_batches(self, conn: Connector, outbox: Outbox, report: RunReport) -> None:
        total, batches = outbox.pending_batches(max(1, conn.push_batch_size))
        task = f"push {outbox.target}"
        self.progress.start(task, total)
        for sent, results in conn.push_batches(batches):
            self._record_push(outbox, sent, results, report)
            self.progress.advance(task, len(sent))
        self.progress.finish(task)

    def _record_push(
        self, outbox: Outbox, sent: Sequence[ProfileChange], results: Sequence[RecordResult], report: RunReport
    ) -> None:
        self._record(outbox, Outbox.results_table(sent, results), report)

    def _record(self, outbox: Outbox, results: pa.Table, report: RunReport) -> None:
        """Count a push's results in the report and record them in the outbox."""
        target = outbox.target
        report.pushed[target] += int(pc.sum(results["ok"].cast(pa.int64())).as_py() or 0)
        refused = results.filter(pc.invert(results["ok"]))
        columns = (refused[c].to_pylist() for c in ("member_id", "reason", "field"))
        for member_id, reason, fld in zip(*columns, strict=True):
            report.push_rejected[target] = report.push_rejected.get(target, 0) + 1
            where = f"member {member_id}"
            report.add_rejected(
                RejectedItem(connector=target, stream="push", locator=where, field=fld, reason=reason or "rejected")
            )
        outbox.record(results, run_id=report.run_id, at=self.clock(), max_attempts=self.settings.sync.max_attempts)

    # ------------------------------------------------------------------ report
    def _report(self, report: RunReport, seconds: float) -> None:
        """Close the report, record the run (keeping the newest runs), and tell the plugins."""
        report.finished_at = self.clock()
        report.duration_s = round(seconds, 3)
        for name, conn in self.connectors.items():
            if conn.context.api_calls:
                report.api_calls[name] = dict(conn.context.api_calls)
        with self.store.transaction() as con:
            runs.finish(con, report, keep=self.settings.store.keep_runs)
        try:
            self.host.hook.crmsync_run_finished(report=report)
        except Exception as exc:
            log.warning("a crmsync_run_finished hook failed: %s: %s", type(exc).__name__, exc)
