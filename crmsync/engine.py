"""One sync run: pull -> store -> grade -> diff -> push -> report, through the connector contract only.

Each phase commits on its own: a pulled batch with its cursor, grading with the outbox it produces, each push
call's results. A run that dies anywhere is resumed by the next one: batches are re-pulled from the last stored
cursor (records are keyed, so nothing counts twice), grading is recomputed from stored records, and changes still
in the outbox are pushed again (pushing the same values twice is harmless).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute

from crmsync.connector import (
    PULL_CAPABILITY,
    Capability,
    Connector,
    ConnectorContext,
    ProfileChange,
    RecordResult,
    Stream,
)
from crmsync.errors import ConfigError, CrmsyncError, ExitCode, describe_unexpected
from crmsync.models import PUSHED_FIELDS, Profile
from crmsync.plugins import PluginHost
from crmsync.report import RejectedItem, RunReport, StreamCounts
from crmsync.settings import Settings
from crmsync.store import Store
from crmsync.store.matching import MemberMatch, resolve_unmatched
from crmsync.store.sealed import sealed_state

log = logging.getLogger("crmsync.engine")


class Progress:
    """Receives progress events; the command line renders them as bars on a terminal, else ignores them."""

    def start(self, task: str, total: int | None = None) -> None: ...
    def advance(self, task: str, n: int = 1) -> None: ...
    def finish(self, task: str) -> None: ...


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    it = iter(items)
    while chunk := tuple(islice(it, size)):
        yield chunk


def new_run_id(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def fields_sql(fields: Sequence[str], alias: str = "") -> str:
    """SQL building the canonical JSON of a profile's pushed fields (stable key order, sorted tags)."""
    p = f"{alias}." if alias else ""
    parts = []
    for name in fields:
        expr = f"list_sort(coalesce({p}tags, []::VARCHAR[]))" if name == "tags" else f"{p}{name}"
        parts.append(f"'{name}', {expr}")
    return f"json_object({', '.join(parts)})::VARCHAR"


@dataclass
class PlanEntry:
    target: str
    member_id: str
    changed: dict[str, tuple[Any, Any]]
    """field -> (previous, new)."""


@dataclass
class RunResult:
    report: RunReport
    plan: list[PlanEntry] = field(default_factory=list)


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
        self.settings = settings
        self.host = host
        self.store = store
        self.progress = progress or Progress()
        self.clock = clock
        self.connectors: dict[str, Connector] = {}
        self._policy: Any = None

    # ------------------------------------------------------------------ setup
    def connector(self, name: str) -> Connector:
        if name not in self.connectors:
            table = self.settings.connectors[name]
            spec = self.host.connector_spec(str(table["plugin"]))
            self.settings.require_secrets([name])
            if spec is None or name not in self.settings.connector_settings:
                raise ConfigError(f"connectors.{name}: plugin {table.get('plugin')!r} is not available")
            from crmsync.policy.stages import push_values

            values = push_values(self.settings.policy)
            context = ConnectorContext(
                name=name,
                base_currency=self.settings.sync.base_currency,
                timezone=ZoneInfo(self.settings.sync.timezone),
                state=self.store.state(name),
                secrets=sealed_state(self.store.state(name), self.settings.connector_settings[name], name),
                logger=logging.getLogger(f"crmsync.connector.{name}"),
                verbose=self.settings.logging.verbose_personal_data,
                tier_names=values["tier"],
                tag_names=values["tags"],
                push_values=values,
            )
            self.connectors[name] = spec.factory(self.settings.connector_settings[name], context)
        return self.connectors[name]

    def _require(self, name: str, capability: Capability, key: str) -> Connector:
        conn = self.connector(name)
        if capability not in type(conn).capabilities:
            raise ConfigError(f"{key}: connector {name!r} cannot {capability.value.replace('_', ' ')}")
        return conn

    @property
    def policy(self) -> Any:
        if self._policy is None:
            from crmsync.policy import compile_policy

            self._policy = compile_policy(
                self.settings.policy, self.host.metrics(), base_currency=self.settings.sync.base_currency
            )
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
        started = self.clock()
        report = RunReport(run_id=new_run_id(started), command=command, started_at=started, dry_run=dry_run)
        result = RunResult(report)
        t0 = time.perf_counter()
        self._close_interrupted_runs()
        self._record_run(report)
        try:
            _ = self.policy  # a bad policy fails before anything is pulled
            with self._timed(report, "pull"):
                self.pull(report)
            with self._timed(report, "grade"):
                result.plan = self.grade(report, as_of=as_of or self.clock(), dry_run=dry_run)
            if not dry_run:
                with self._timed(report, "push"):
                    self.push(report)
            report.status = "rejected" if report.rejected_total else "ok"
        except CrmsyncError as exc:
            report.status, report.error = "failed", str(exc)
            report.extra["exit_code"] = int(exc.exit_code)
        except Exception as exc:
            report.status = "failed"
            report.error = describe_unexpected(exc)
            report.extra["exit_code"] = int(ExitCode.FAILED)
            log.exception("run %s failed", report.run_id)
        finally:
            report.finished_at = self.clock()
            report.duration_s = round(time.perf_counter() - t0, 3)
            for name, conn in self.connectors.items():
                if conn.context.api_calls:
                    report.api_calls[name] = dict(conn.context.api_calls)
            self._record_run(report)
            self._prune()
            try:
                self.host.hook.crmsync_run_finished(report=report)
            except Exception as exc:
                log.warning("a crmsync_run_finished hook failed: %s: %s", type(exc).__name__, exc)
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
        sync = self.settings.sync
        plan = [(sync.members, Stream.MEMBERS, "sync.members")]
        plan += [(n, Stream.ORDERS, "sync.orders") for n in sync.orders]
        plan += [(n, Stream.ACTIVITIES, "sync.activities") for n in sync.activities]
        for name, stream, key in plan:
            conn = self._require(name, PULL_CAPABILITY[stream], key)
            counts = report.pulled.setdefault(name, {}).setdefault(stream.value, StreamCounts())
            cursor = self.store.get_cursor(name, stream)
            task = f"pull {name} {stream.value}"
            self.progress.start(task)
            for batch in conn.pull(stream, cursor):
                rejects = self.store.write_batch(
                    name,
                    batch,
                    run_id=report.run_id,
                    base_currency=sync.base_currency,
                    rates=sync.exchange_rates,
                    match=self.member_match,
                )
                counts.batches += 1
                rows = len(batch.records) + (batch.table.num_rows if batch.table is not None else 0)
                counts.pulled += rows - (len(rejects) - len(batch.rejects))
                counts.deleted += len(batch.deleted)
                counts.rejected += len(rejects)
                for rej in rejects:
                    report.add_rejected(
                        RejectedItem(
                            connector=name, stream=stream.value, locator=rej.locator, field=rej.field, reason=rej.reason
                        )
                    )
                self.progress.advance(task, rows)
            self.progress.finish(task)

    # ------------------------------------------------------------------ grade + diff
    @property
    def member_match(self) -> MemberMatch:
        return MemberMatch(self.settings.sync.members, self.settings.sync.match_by)

    def resolve_members(self) -> None:
        """Point every order and activity at its member: by id, by email, or (auto) by id, else by email.

        Rows are matched when stored; only those still without a member are matched here (see
        :mod:`crmsync.store.matching`).
        """
        with self.store.transaction() as con:
            resolve_unmatched(con, self.member_match)

    def grade(self, report: RunReport, *, as_of: datetime, dry_run: bool = False) -> list[PlanEntry]:
        store = self.store
        plan: list[PlanEntry] = []
        with store.transaction(rollback=dry_run) as con:
            self.resolve_members()
            report.unmatched_orders = store.count("orders", "member_id IS NULL AND NOT deleted")
            report.unmatched_activities = store.count("activities", "member_id IS NULL AND NOT deleted")
            if report.unmatched_orders:
                sample = [
                    r[0]
                    for r in con.execute(
                        "SELECT source || ':' || external_id FROM orders WHERE member_id IS NULL AND NOT deleted "
                        "ORDER BY 1 LIMIT 20"
                    ).fetchall()
                ]
                report.extra["unmatched_orders_sample"] = sample
            # a hook sees every profile, so with hooks every member is graded again
            hooks = bool(self.host.hook.crmsync_adjust_profiles.get_hookimpls())
            grading = self.policy.grade(con, as_of, incremental=not hooks)
            report.members_recomputed = grading.recomputed
            self._apply_hook_adjustments(con)
            report.profiles_changed = int(
                con.execute(
                    f"""SELECT count(*) FROM graded g LEFT JOIN profiles p USING (member_id)
                        WHERE p.member_id IS NULL
                           OR {fields_sql(PUSHED_FIELDS, "g")} IS DISTINCT FROM {fields_sql(PUSHED_FIELDS, "p")}"""
                ).fetchone()[0]
            )
            if grading.incremental:  # graded holds the members whose grade may have changed
                con.execute(
                    "DELETE FROM profiles WHERE member_id IN (SELECT member_id FROM graded) "
                    "OR member_id NOT IN (SELECT member_id FROM _pol_members)"
                )
            else:
                con.execute("DELETE FROM profiles")
            con.execute("INSERT INTO profiles BY NAME SELECT * FROM graded")
            report.members_graded = store.count("profiles")
            report.quarantined = store.count("quarantine", "NOT resolved")
            report.tier_distribution = {
                t: n
                for t, n in con.execute(
                    "SELECT tier, count(*) FROM profiles GROUP BY tier ORDER BY min(tier_rank)"
                ).fetchall()
            }
            for target in self.settings.sync.push:
                conn = self._require(target, Capability.PUSH_PROFILES, "sync.push")
                self._diff(target, conn, report.run_id, grading.incremental)
                report.pending[target] = store.count("outbox", "target = ? AND status = 'pending'", [target])
                if dry_run:
                    plan.extend(self._plan_entries(target))
        return plan

    def _apply_hook_adjustments(self, con: Any) -> None:
        hook = self.host.hook.crmsync_adjust_profiles
        if not hook.get_hookimpls():
            return
        cols = [d[0] for d in con.execute("SELECT * FROM graded LIMIT 0").description]
        profiles = []
        for row in con.execute("SELECT * FROM graded").fetchall():
            data = dict(zip(cols, row, strict=True))
            data["tags"] = tuple(data.get("tags") or ())
            data["reasons"] = json.loads(data["reasons"]) if isinstance(data.get("reasons"), str) else {}
            data["member_source"] = self.settings.sync.members
            profiles.append(Profile.model_validate({k: v for k, v in data.items() if k in Profile.model_fields}))
        tags = {p.member_id: set(p.tags) for p in profiles}
        changed: dict[str, set[str]] = {}
        for results in hook(profiles=profiles):
            for adj in results or ():
                if adj.member_id not in tags:
                    continue
                cur = changed.setdefault(adj.member_id, set(tags[adj.member_id]))
                cur |= set(adj.add)
                cur -= set(adj.remove)
        for member_id, new in changed.items():
            con.execute("UPDATE graded SET tags = ? WHERE member_id = ?", [sorted(new), member_id])

    def _diff(self, target: str, conn: Connector, run_id: str, incremental: bool) -> None:
        """Queue in the outbox every profile whose pushed fields differ from what ``target`` last accepted.

        After an incremental grading, and when ``target`` takes the same fields as at the last diff, only the
        profiles just graded (and those already queued) can differ: the others are not looked at.
        """
        fields = conn.push_fields or PUSHED_FIELDS
        con = self.store.con
        shape = fields_sql(fields)
        key = f"diff:{target}"
        where, params = "", []
        if incremental and self.store.scalar("SELECT value FROM meta WHERE key = ?", [key]) == shape:
            where = (
                "WHERE member_id IN (SELECT member_id FROM graded) "
                "OR member_id IN (SELECT member_id FROM outbox WHERE target = ?)"
            )
            params = [target]
        else:
            self.store._set_meta(key, shape)
        sql = f"CREATE OR REPLACE TEMP TABLE _desired AS SELECT member_id, {shape} AS fields FROM profiles {where}"
        con.execute(sql, params)
        # Pending or dead changes whose values are no longer wanted go; new values get a fresh set of attempts.
        con.execute(
            "DELETE FROM outbox WHERE target = ? AND NOT EXISTS "
            "(SELECT 1 FROM _desired d WHERE d.member_id = outbox.member_id AND d.fields = outbox.fields)",
            [target],
        )
        con.execute(
            """INSERT INTO outbox
               SELECT ?, d.member_id, d.fields, p.fields, NULL, 0, 'pending', NULL, NULL, ?, now()
               FROM _desired d LEFT JOIN (SELECT * FROM pushed WHERE target = ?) p USING (member_id)
               WHERE p.fields IS DISTINCT FROM d.fields
                 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.target = ? AND o.member_id = d.member_id)""",
            [target, run_id, target, target],
        )
        con.execute("DROP TABLE _desired")

    def _plan_entries(self, target: str) -> list[PlanEntry]:
        rows = self.store.con.execute(
            "SELECT member_id, fields, previous FROM outbox WHERE target = ? AND status = 'pending' ORDER BY member_id",
            [target],
        ).fetchall()
        out = []
        for member_id, fields, previous in rows:
            new, old = json.loads(fields), json.loads(previous) if previous else {}
            out.append(PlanEntry(target, member_id, {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}))
        return out

    # ------------------------------------------------------------------ push
    def push(self, report: RunReport) -> None:
        max_attempts = self.settings.sync.max_attempts
        for target in self.settings.sync.push:
            conn = self._require(target, Capability.PUSH_PROFILES, "sync.push")
            if type(conn).push_table is not Connector.push_table and self._push_table(
                target, conn, report, max_attempts
            ):
                continue
            rows = self.store.con.execute(
                "SELECT member_id, fields, previous FROM outbox WHERE target = ? AND status = 'pending' "
                "ORDER BY member_id",
                [target],
            ).fetchall()
            report.pushed[target] = 0
            task = f"push {target}"
            self.progress.start(task, len(rows))

            def changes(chunk: Sequence[tuple[str, str, str | None]]) -> list[ProfileChange]:
                out = []
                for member_id, fields, previous in chunk:
                    new, old = json.loads(fields), json.loads(previous) if previous else {}
                    changed = frozenset(k for k, v in new.items() if old.get(k) != v)
                    out.append(ProfileChange(member_id=member_id, values=new, previous=old, changed=changed))
                return out

            batches = (changes(chunk) for chunk in batched(rows, max(1, conn.push_batch_size)))
            for sent, results in conn.push_batches(batches):
                self._record_push(target, sent, results, report, max_attempts)
                self.progress.advance(task, len(sent))
            self.progress.finish(task)
            report.pending[target] = self.store.count("outbox", "target = ? AND status = 'pending'", [target])
            report.dead[target] = self.store.count("outbox", "target = ? AND status = 'dead'", [target])

    def _record_push(
        self,
        target: str,
        changes: Sequence[ProfileChange],
        results: Sequence[RecordResult],
        report: RunReport,
        max_attempts: int,
    ) -> None:
        by_id = {r.member_id: r for r in results}
        at = self.clock()
        rows = []
        for change in changes:
            res = by_id.get(change.member_id) or RecordResult(
                change.member_id, ok=False, reason="the connector returned no result for this record"
            )
            rows.append((change.member_id, res.ok, res.reason, res.field, res.retryable))
            if not res.ok:
                report.push_rejected[target] = report.push_rejected.get(target, 0) + 1
                report.add_rejected(
                    RejectedItem(
                        connector=target,
                        stream="push",
                        locator=f"member {change.member_id}",
                        field=res.field,
                        reason=res.reason or "rejected",
                    )
                )
        ok_count = sum(1 for r in rows if r[1])
        report.pushed[target] = report.pushed.get(target, 0) + ok_count
        table = pa.table(
            list(zip(*rows, strict=True)) if rows else [[], [], [], [], []],
            schema=pa.schema(
                [
                    ("member_id", pa.string()),
                    ("ok", pa.bool_()),
                    ("reason", pa.string()),
                    ("field", pa.string()),
                    ("retryable", pa.bool_()),
                ]
            ),
        )
        self._record_results(target, table, report, max_attempts, at)

    def _push_table(self, target: str, conn: Connector, report: RunReport, max_attempts: int) -> bool:
        """Push every pending change of ``target`` as one Arrow table (see :meth:`Connector.push_table`).

        Returns ``False`` when the connector declines (raises ``NotImplementedError``): push in batches then.
        """
        fields = conn.push_fields or PUSHED_FIELDS
        types = {"points": "BIGINT", "tags": "VARCHAR[]"}
        cols = ", ".join(
            f"CAST(json_extract(fields, '$.{f}') AS {types[f]}) AS {f}"
            if f in types
            else f"json_extract_string(fields, '$.{f}') AS {f}"
            for f in fields
        )
        table = self.store.con.sql(
            f"SELECT member_id, {cols} FROM outbox WHERE target = ? AND status = 'pending' ORDER BY member_id",
            params=[target],
        ).to_arrow_table()
        report.pushed[target] = 0
        if table.num_rows:
            try:
                results = conn.push_table(table)
            except NotImplementedError:
                return False
            report.pushed[target] = int(pa.compute.sum(results["ok"].cast(pa.int64())).as_py() or 0)
            for member_id, reason, fld in zip(
                *(
                    results.filter(pa.compute.invert(results["ok"])).column(c).to_pylist()
                    for c in ("member_id", "reason", "field")
                ),
                strict=True,
            ):
                report.push_rejected[target] = report.push_rejected.get(target, 0) + 1
                report.add_rejected(
                    RejectedItem(
                        connector=target,
                        stream="push",
                        locator=f"member {member_id}",
                        field=fld,
                        reason=reason or "rejected",
                    )
                )
            self._record_results(target, results, report, max_attempts, self.clock())
        report.pending[target] = self.store.count("outbox", "target = ? AND status = 'pending'", [target])
        report.dead[target] = self.store.count("outbox", "target = ? AND status = 'dead'", [target])
        return True

    def _record_results(self, target: str, table: pa.Table, report: RunReport, max_attempts: int, at: datetime) -> None:
        """Record push results (member_id, ok, reason, field, retryable): pushed, audit, outbox, in one transaction."""
        names = "[" + ", ".join(f"'{f}'" for f in PUSHED_FIELDS) + "]"
        paths = "[" + ", ".join(f"'$.{f}'" for f in PUSHED_FIELDS) + "]"
        nulls = "[" + ", ".join("NULL" for _ in PUSHED_FIELDS) + "]::VARCHAR[]"
        params = {"target": target, "run": report.run_id, "at": at}
        with self.store.transaction() as con:
            con.register("_results", table)
            try:
                # Audit: one row per pushed field whose value changed, with the grade's reason when known. Each
                # JSON document is parsed once (a list of paths), then unnested to one row per field.
                con.execute(
                    f"""INSERT INTO push_audit
                        SELECT $run, $target, member_id, name, prev, new,
                               coalesce(nullif(reason, ''), CASE WHEN first THEN 'first push' ELSE 'grade changed' END),
                               $at
                        FROM (SELECT o.member_id, o.previous IS NULL AS first, unnest({names}) AS name,
                                     unnest(json_extract(o.fields, {paths})::VARCHAR[]) AS new,
                                     unnest(coalesce(json_extract(o.previous, {paths})::VARCHAR[], {nulls})) AS prev,
                                     unnest(coalesce(json_extract_string(p.reasons, {paths}), {nulls})) AS reason
                              FROM outbox o
                              JOIN _results r ON r.ok AND r.member_id = o.member_id
                              LEFT JOIN profiles p ON p.member_id = o.member_id
                              WHERE o.target = $target)
                        WHERE new IS NOT NULL AND prev IS DISTINCT FROM new""",
                    params,
                )
                con.execute(
                    "DELETE FROM pushed WHERE target = $target AND member_id IN "
                    "(SELECT member_id FROM _results WHERE ok)",
                    {"target": target},
                )
                con.execute(
                    """INSERT INTO pushed SELECT $target, o.member_id, o.fields, $run, $at
                       FROM outbox o JOIN _results r ON r.ok AND r.member_id = o.member_id
                       WHERE o.target = $target""",
                    params,
                )
                con.execute(
                    "DELETE FROM outbox WHERE target = $target AND member_id IN "
                    "(SELECT member_id FROM _results WHERE ok)",
                    {"target": target},
                )
                con.execute(
                    """UPDATE outbox SET attempts = outbox.attempts + 1, last_error = r.reason,
                           last_field = r.field, updated_at = $at,
                           status = CASE WHEN outbox.attempts + 1 >= $max OR NOT r.retryable
                                         THEN 'dead' ELSE 'pending' END
                       FROM _results r
                       WHERE NOT r.ok AND outbox.target = $target AND outbox.member_id = r.member_id""",
                    {"target": target, "at": at, "max": max_attempts},
                )
            finally:
                con.unregister("_results")

    # ------------------------------------------------------------------ bookkeeping
    def _record_run(self, report: RunReport) -> None:
        with self.store.transaction() as con:
            con.execute("DELETE FROM runs WHERE run_id = ?", [report.run_id])
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                [
                    report.run_id,
                    report.command,
                    report.started_at,
                    report.finished_at,
                    report.status,
                    report.model_dump_json(),
                ],
            )

    def _close_interrupted_runs(self) -> None:
        """Runs still marked running were killed: this run holds the store's lock, so none is in progress."""
        with self.store.transaction() as con:
            con.execute(
                """UPDATE runs SET status = 'interrupted',
                       report = json_merge_patch(report, '{"status": "interrupted",
                           "error": "the run was interrupted; a later run resumed its work"}')
                   WHERE status = 'running'"""
            )

    def _prune(self) -> None:
        """Keep the newest ``store.keep_runs`` runs, and quarantine entries resolved by a run still kept."""
        with self.store.transaction() as con:
            con.execute(
                "DELETE FROM runs WHERE run_id NOT IN (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT ?)",
                [self.settings.store.keep_runs],
            )
            con.execute("DELETE FROM quarantine WHERE resolved AND resolved_run NOT IN (SELECT run_id FROM runs)")
