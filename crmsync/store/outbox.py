"""The outbox of a push target: the profile values it should receive and has not accepted yet, and their history.

The life of a change:

1. :meth:`Outbox.enqueue` (after grading) queues as ``pending`` every profile whose pushed fields differ from what
   the target last accepted (table ``pushed``). A queued change whose values are no longer wanted goes; new values
   get a fresh set of attempts.
2. :meth:`Outbox.pending` / :meth:`Outbox.pending_table` hand the pending changes to the push.
3. :meth:`Outbox.record` stores the push's results in one transaction: an accepted change moves to ``pushed`` and
   to the push audit (one row per field whose value changed, with the grade's reason); a refused one stays pending,
   to be pushed again by the next run, and counts an attempt — at most one per run, however often a run pushes
   it — until it is given up (``dead``) after ``max_attempts``, or at once when retrying cannot help (the record was
   deleted in the target).
4. A given-up change gets a fresh set of attempts (:meth:`Outbox.requeue`) by hand (``crmsync retry``), or when what
   it was refused against changed (:meth:`Outbox.watch`): the policy, the target's settings, or the target's field
   metadata (:meth:`crmsync.Connector.fields_fingerprint`). The next push reports why each change is retried
   (:meth:`Outbox.retrying`).

A change's values are the canonical JSON of the target's fields (:func:`fields_sql`): equal values, equal text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from crmsync.connector import ProfileChange, RecordResult
from crmsync.models import PUSHED_FIELDS
from crmsync.store.db import Connection, get_meta, scalar, set_meta

if TYPE_CHECKING:
    from crmsync.store import Store

PENDING, DEAD = "pending", "dead"
REFUSED_BEFORE, BY_HAND = "refused_before", "by_hand"
"""Why a change is pushed again: it was refused by an earlier run, or ``crmsync retry`` requeued it."""
WATCH_KEY = "retry:"
"""``meta`` keys ``retry:TARGET:WHY`` hold what the target's refusals were last made against (:meth:`Outbox.watch`)."""
RESULT_SCHEMA = pa.schema(
    [("member_id", pa.string()), ("ok", pa.bool_()), ("reason", pa.string()), ("field", pa.string()),
     ("retryable", pa.bool_())]
)  # fmt: skip
"""Push results, one row per member (see :meth:`crmsync.Connector.push_table`)."""
_TABLE_TYPES = {"points": "BIGINT", "tags": "VARCHAR[]"}
"""Types of the fields in :meth:`Outbox.pending_table` that are not strings."""


def fields_sql(fields: Sequence[str], alias: str = "") -> str:
    """SQL building the canonical JSON of a profile's pushed fields (stable key order, sorted tags)."""
    p = f"{alias}." if alias else ""
    parts = []
    for name in fields:
        expr = f"list_sort(coalesce({p}tags, []::VARCHAR[]))" if name == "tags" else f"{p}{name}"
        parts.append(f"'{name}', {expr}")
    return f"json_object({', '.join(parts)})::VARCHAR"


def _change(member_id: str, fields: str, previous: str | None) -> ProfileChange:
    new, old = json.loads(fields), json.loads(previous) if previous else {}
    changed = frozenset(k for k, v in new.items() if old.get(k) != v)
    return ProfileChange(member_id=member_id, values=new, previous=old, changed=changed)


@dataclass(frozen=True)
class Outbox:
    """The outbox of one push target, which takes ``fields`` (canonical names)."""

    store: Store
    target: str
    fields: Sequence[str] = PUSHED_FIELDS

    def enqueue(self, run_id: str, *, graded: str | None = None) -> None:
        """Queue every profile whose values for this target differ from what it last accepted.

        ``graded`` names a table of the members just graded, when only they (and the changes already queued) can
        differ: the other profiles are then not looked at, unless the target takes other fields than at the last
        enqueue.
        """
        with self.store.transaction() as con:
            self._desire(con, graded)
            self._queue(con, run_id)

    def _desire(self, con: Connection, graded: str | None) -> None:
        """``_desired``: the values this target should hold, of every profile or of those that may differ."""
        shape, key = fields_sql(self.fields), f"diff:{self.target}"
        where, params = "", []
        if graded and get_meta(con, key) == shape:
            where = (
                f"WHERE member_id IN (SELECT member_id FROM {graded}) "
                "OR member_id IN (SELECT member_id FROM outbox WHERE target = ?)"
            )
            params = [self.target]
        else:
            set_meta(con, key, shape)
        sql = f"CREATE OR REPLACE TEMP TABLE _desired AS SELECT member_id, {shape} AS fields FROM profiles {where}"
        con.execute(sql, params)

    def _queue(self, con: Connection, run_id: str) -> None:
        """Drop the queued changes no longer wanted; queue the desired values the target does not hold."""
        target = self.target
        con.execute(
            "DELETE FROM outbox WHERE target = ? AND NOT EXISTS "
            "(SELECT 1 FROM _desired d WHERE d.member_id = outbox.member_id AND d.fields = outbox.fields)",
            [target],
        )
        con.execute(
            """INSERT INTO outbox (target, member_id, fields, previous, attempts, status, created_run, updated_at)
               SELECT ?, d.member_id, d.fields, p.fields, 0, ?, ?, now()
               FROM _desired d LEFT JOIN (SELECT * FROM pushed WHERE target = ?) p USING (member_id)
               WHERE p.fields IS DISTINCT FROM d.fields
                 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.target = ? AND o.member_id = d.member_id)""",
            [target, PENDING, run_id, target, target],
        )
        con.execute("DROP TABLE _desired")

    def pending(self) -> list[ProfileChange]:
        """The pending changes, by member id."""
        return [_change(*row) for row in self._pending_rows()]

    def pending_batches(self, size: int) -> tuple[int, Iterator[list[ProfileChange]]]:
        """How many changes are pending, and the changes in batches of at most ``size`` (built as consumed)."""
        rows = self._pending_rows()

        def batches() -> Iterator[list[ProfileChange]]:
            it = iter(rows)
            while chunk := [_change(*r) for r in islice(it, size)]:
                yield chunk

        return len(rows), batches()

    def _pending_rows(self) -> list[tuple[str, str, str | None]]:
        return self.store.con.execute(
            "SELECT member_id, fields, previous FROM outbox WHERE target = ? AND status = ? ORDER BY member_id",
            [self.target, PENDING],
        ).fetchall()

    def pending_table(self) -> pa.Table:
        """The pending changes as one Arrow table: ``member_id`` and one column per field (see
        :meth:`crmsync.Connector.push_table`)."""
        cols = ", ".join(
            f"CAST(json_extract(fields, '$.{f}') AS {_TABLE_TYPES[f]}) AS {f}"
            if f in _TABLE_TYPES
            else f"json_extract_string(fields, '$.{f}') AS {f}"
            for f in self.fields
        )
        sql = f"SELECT member_id, {cols} FROM outbox WHERE target = ? AND status = ? ORDER BY member_id"
        return self.store.con.sql(sql, params=[self.target, PENDING]).to_arrow_table()

    def requeue(self, why: str = BY_HAND, *, member_id: str | None = None) -> list[str]:
        """Give the given-up changes (of ``member_id``) a fresh set of attempts; the next push reports them as
        retried because of ``why``. Returns the members requeued."""
        where, params = self._given_up_where(member_id)
        with self.store.transaction() as con:
            members = [
                r[0] for r in con.execute(f"SELECT member_id FROM outbox WHERE {where} ORDER BY 1", params).fetchall()
            ]
            con.execute(
                f"UPDATE outbox SET status = ?, attempts = 0, attempt_run = NULL, requeued = ?, updated_at = now() "
                f"WHERE {where}",
                [PENDING, why, *params],
            )
        return members

    def watch(self, fingerprints: Mapping[str, Callable[[], str | None]], *, requeue: bool) -> dict[str, int]:
        """Remember what this target's refusals are made against, and (``requeue``) requeue the given-up changes when
        it changed since: ``fingerprints`` maps why (``policy_changed``…) to a function giving its fingerprint now
        (``None``: unknown). Looked at only while the target has changes refused before; returns the changes
        requeued, by why."""
        if not self._refused_before():
            return {}
        now = {why: value for why, fingerprint in fingerprints.items() if (value := fingerprint()) is not None}
        requeued: dict[str, int] = {}
        for why, value in now.items():
            key = f"{WATCH_KEY}{self.target}:{why}"
            old = self.store.get_meta(key)
            if old == value:
                continue
            self.store.set_meta(key, value)
            if requeue and old is not None and (members := self.requeue(why)):
                requeued[why] = len(members)
        return requeued

    def _refused_before(self) -> bool:
        sql = "SELECT count(*) > 0 FROM outbox WHERE target = ? AND (status = ? OR attempts > 0)"
        return bool(scalar(self.store.con, sql, [self.target, DEAD]))

    def retrying(self) -> dict[str, int]:
        """The pending changes that are pushed again, by why: refused by an earlier run, or requeued (see
        :meth:`requeue`)."""
        rows = self.store.con.execute(
            "SELECT coalesce(requeued, ?), count(*) FROM outbox WHERE target = ? AND status = ? "
            "AND (attempts > 0 OR requeued IS NOT NULL) GROUP BY 1 ORDER BY 1",
            [REFUSED_BEFORE, self.target, PENDING],
        ).fetchall()
        return {why: int(n) for why, n in rows}

    def given_up(self, member_id: str | None = None) -> list[dict[str, Any]]:
        """The given-up changes (of ``member_id``): member, attempts, the last refusal's reason and field, when."""
        where, params = self._given_up_where(member_id)
        cur = self.store.con.execute(
            f"SELECT member_id, attempts, last_error, last_field, updated_at FROM outbox WHERE {where} ORDER BY 1",
            params,
        )
        keys = ("member_id", "attempts", "reason", "field", "given_up_at")
        return [{"target": self.target, **dict(zip(keys, row, strict=True))} for row in cur.fetchall()]

    def _given_up_where(self, member_id: str | None) -> tuple[str, list[Any]]:
        if member_id is None:
            return "target = ? AND status = ?", [self.target, DEAD]
        return "target = ? AND status = ? AND member_id = ?", [self.target, DEAD, member_id]

    def counts(self) -> tuple[int, int]:
        """Changes pending and given up."""
        row = self.store.con.execute(
            "SELECT count(*) FILTER (WHERE status = ?), count(*) FILTER (WHERE status = ?) FROM outbox "
            "WHERE target = ?",
            [PENDING, DEAD, self.target],
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    @staticmethod
    def results_table(changes: Sequence[ProfileChange], results: Sequence[RecordResult]) -> pa.Table:
        """The results of a pushed batch as a table (a change without a result was not accepted)."""
        by_id = {r.member_id: r for r in results}
        missing = "the connector returned no result for this record"
        rows = [by_id.get(c.member_id) or RecordResult(c.member_id, ok=False, reason=missing) for c in changes]
        columns = {
            "member_id": [r.member_id for r in rows],
            "ok": [r.ok for r in rows],
            "reason": [r.reason for r in rows],
            "field": [r.field for r in rows],
            "retryable": [r.retryable for r in rows],
        }
        return pa.table(columns, schema=RESULT_SCHEMA)

    def record(self, results: pa.Table, *, run_id: str, at: datetime, max_attempts: int) -> None:
        """Record push results (:data:`RESULT_SCHEMA`): pushed, audit and outbox, in one transaction."""
        params: dict[str, Any] = {"target": self.target, "run": run_id, "at": at}
        target = {"target": self.target}
        accepted = "member_id IN (SELECT member_id FROM _results WHERE ok)"
        with self.store.transaction() as con:
            con.register("_results", results)
            try:
                con.execute(_AUDIT_SQL, params)
                con.execute(f"DELETE FROM pushed WHERE target = $target AND {accepted}", target)
                con.execute(
                    """INSERT INTO pushed SELECT $target, o.member_id, o.fields, $run, $at FROM outbox o
                       JOIN _results r ON r.ok AND r.member_id = o.member_id WHERE o.target = $target""",
                    params,
                )
                con.execute(f"DELETE FROM outbox WHERE target = $target AND {accepted}", target)
                con.execute(_REFUSED_SQL, {**target, "at": at, "max": max_attempts, "run": run_id})
            finally:
                con.unregister("_results")


def _audit_sql() -> str:
    """Audit: one row per pushed field whose value changed, with the grade's reason when known. Each JSON document
    is parsed once (a list of paths), then unnested to one row per field."""
    names = "[" + ", ".join(f"'{f}'" for f in PUSHED_FIELDS) + "]"
    paths = "[" + ", ".join(f"'$.{f}'" for f in PUSHED_FIELDS) + "]"
    nulls = "[" + ", ".join("NULL" for _ in PUSHED_FIELDS) + "]::VARCHAR[]"
    return f"""INSERT INTO push_audit
        SELECT $run, $target, member_id, name, prev, new,
               coalesce(nullif(reason, ''), CASE WHEN first THEN 'first push' ELSE 'grade changed' END), $at
        FROM (SELECT o.member_id, o.previous IS NULL AS first, unnest({names}) AS name,
                     unnest(json_extract(o.fields, {paths})::VARCHAR[]) AS new,
                     unnest(coalesce(json_extract(o.previous, {paths})::VARCHAR[], {nulls})) AS prev,
                     unnest(coalesce(json_extract_string(p.reasons, {paths}), {nulls})) AS reason
              FROM outbox o
              JOIN _results r ON r.ok AND r.member_id = o.member_id
              LEFT JOIN profiles p ON p.member_id = o.member_id
              WHERE o.target = $target)
        WHERE new IS NOT NULL AND prev IS DISTINCT FROM new"""


_AUDIT_SQL = _audit_sql()
_COUNTED = "outbox.attempts + CASE WHEN outbox.attempt_run IS DISTINCT FROM $run THEN 1 ELSE 0 END"
_REFUSED_SQL = f"""UPDATE outbox SET attempts = {_COUNTED}, attempt_run = $run, requeued = NULL,
        last_error = r.reason, last_field = r.field, updated_at = $at,
        status = CASE WHEN {_COUNTED} >= $max OR NOT r.retryable THEN '{DEAD}' ELSE '{PENDING}' END
    FROM _results r
    WHERE NOT r.ok AND outbox.target = $target AND outbox.member_id = r.member_id"""
"""A refused change counts an attempt (one per run at most); it is given up after ``max`` attempts or when retrying
cannot help."""


def push_history(con: Connection, member_id: str) -> list[dict[str, Any]]:
    """Every value pushed for a member, oldest first: run, target, field, previous and new value, reason, when."""
    rows = con.execute(
        "SELECT run_id, target, field, previous, new, reason, pushed_at FROM push_audit "
        "WHERE member_id = ? ORDER BY pushed_at, target, field",
        [member_id],
    ).fetchall()
    return [
        {
            "run_id": r[0],
            "target": r[1],
            "field": r[2],
            "previous": json.loads(r[3]) if r[3] else None,
            "new": json.loads(r[4]) if r[4] else None,
            "reason": r[5],
            "pushed_at": r[6],
        }
        for r in rows
    ]
