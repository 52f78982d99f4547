"""The local store: one DuckDB file per deployment holding records, cursors, profiles, pushes, outbox and runs.

Every state change goes through a transaction: a pulled batch is stored together with its cursor, grading
replaces profiles and the outbox at once, a push's results are recorded at once. A crash therefore loses at most
the work since the last commit, and a rerun redoes it without counting anything twice (records are keyed by
source and id). Opening the store takes an exclusive lock (see :mod:`crmsync.store.lock`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from crmsync.connector import Batch, Rejection, Stream
from crmsync.errors import StoreError
from crmsync.store.lock import StoreLock
from crmsync.store.matching import MemberMatch, clear_for_members, ensure_matching
from crmsync.store.records import SCHEMAS, to_arrow
from crmsync.store.schema import MIGRATIONS, SCHEMA_VERSION

_TABLE = {Stream.MEMBERS: "members", Stream.ORDERS: "orders", Stream.ACTIVITIES: "activities"}


def _policy_ddl() -> list[str]:
    from crmsync import policy

    return list(getattr(policy, "POLICY_DDL", []))


def now() -> datetime:
    return datetime.now(UTC)


class Store:
    """An open store. Use :meth:`open` (takes the lock) and :meth:`close`, or ``with Store.open(...)``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None, lock: StoreLock | None) -> None:
        self.con = con
        self.path = path
        self._lock = lock
        self._mutex = threading.RLock()
        self._in_tx = False

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None, *, memory_limit: str | None = None, threads: int | None = None
    ) -> Store:
        """Open (creating and migrating if needed) the store at ``path``; ``None`` opens an in-memory store."""
        lock = None
        file = Path(path) if path is not None else None
        if file is not None:
            lock = StoreLock(file)
            lock.acquire()
        try:
            config: dict[str, Any] = {}
            if memory_limit:
                config["memory_limit"] = memory_limit
            if threads:
                config["threads"] = threads
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                existed = file.exists()
                con = duckdb.connect(str(file), config=config)
                if not existed:
                    os.chmod(file, 0o600)
            else:
                con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as exc:
            if lock:
                lock.release()
            raise StoreError(f"cannot open the store {file}: {exc}") from None
        con.execute("SET enable_progress_bar = false")  # DuckDB would print it into --json output
        store = cls(con, file, lock)
        try:
            store.migrate()
        except Exception:
            store.close()
            raise
        return store

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.close()
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> None:
        with self.transaction():
            self.con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)")
            row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the store {self.path} has schema version {current}, newer than this crmsync "
                    f"understands ({SCHEMA_VERSION}); upgrade crmsync"
                )
            for statements in MIGRATIONS[current:]:
                for sql in statements:
                    self.con.execute(sql)
            for sql in _policy_ddl():
                self.con.execute(sql)
            self._set_meta("schema_version", str(SCHEMA_VERSION))

    def _set_meta(self, key: str, value: str) -> None:
        self.con.execute("DELETE FROM meta WHERE key = ?", [key])
        self.con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])

    @property
    def schema_version(self) -> int:
        row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run the block in one transaction (nested use joins the outer one); ``rollback`` discards it."""
        with self._mutex:
            if self._in_tx:
                yield self.con
                return
            self.con.execute("BEGIN TRANSACTION")
            self._in_tx = True
            try:
                yield self.con
            except BaseException:
                self._in_tx = False
                with contextlib.suppress(duckdb.Error):
                    self.con.execute("ROLLBACK")
                raise
            self._in_tx = False
            self.con.execute("ROLLBACK" if rollback else "COMMIT")

    # ------------------------------------------------------------------ cursors and state
    def get_cursor(self, connector: str, stream: Stream | str) -> str | None:
        row = self.con.execute(
            "SELECT value FROM cursors WHERE connector = ? AND stream = ?", [connector, str(stream)]
        ).fetchone()
        return row[0] if row else None

    def set_cursor(self, connector: str, stream: Stream | str, value: str | None) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM cursors WHERE connector = ? AND stream = ?", [connector, str(stream)])
            if value is not None:
                con.execute("INSERT INTO cursors VALUES (?, ?, ?, ?)", [connector, str(stream), value, now()])

    def state(self, connector: str) -> StoreState:
        return StoreState(self, connector)

    # ------------------------------------------------------------------ writing batches
    def write_batch(
        self,
        connector: str,
        batch: Batch,
        *,
        run_id: str,
        base_currency: str,
        rates: Mapping[str, Decimal],
        match: MemberMatch | None = None,
    ) -> list[Rejection]:
        """Store a batch's records, deletions, rejections and cursor in one transaction.

        With ``match``, orders and activities are stored pointing at their member (see :mod:`.matching`); rows
        a change of members may move are cleared, to be resolved again at grading.

        Returns every rejection of the batch (the connector's and those found while storing).
        """
        stream = Stream(batch.stream)
        table_name = _TABLE[stream]
        table, store_rejects = to_arrow(stream, connector, batch.records, base_currency=base_currency, rates=rates)
        rejects = [*batch.rejects, *store_rejects]
        members = stream is Stream.MEMBERS
        with self.transaction() as con:
            if members:
                con.execute("CREATE OR REPLACE TEMP TABLE _member_changes (external_id VARCHAR, email VARCHAR)")
            elif match is not None:
                ensure_matching(con, match)
            if batch.table is not None and batch.table.num_rows:
                rejects += self._load_table(connector, stream, batch.table, base_currency, rates)
                if table.num_rows:  # records given as well: they come after the table's rows
                    con.register("_batch", table)
                    con.execute("INSERT INTO _incoming BY NAME SELECT * FROM _batch")
                    con.unregister("_batch")
                    con.execute(
                        "DELETE FROM _incoming i WHERE rowid < (SELECT max(rowid) FROM _incoming j "
                        "WHERE j.external_id = i.external_id)"
                    )
                has_rows = bool(self.scalar("SELECT count(*) > 0 FROM _incoming"))
            else:
                has_rows = table.num_rows > 0
                if has_rows:
                    con.register("_batch", table)
                    con.execute("CREATE OR REPLACE TEMP TABLE _incoming AS SELECT * FROM _batch")
                    con.unregister("_batch")
            if has_rows:
                try:
                    cols = ", ".join(SCHEMAS[stream].names)
                    if self.count("erasures"):  # erased members stay erased when the source sends them again
                        key = "external_id" if stream is Stream.MEMBERS else "member_external_id"
                        con.execute(
                            f"DELETE FROM _incoming WHERE sha256(source || chr(0) || {key}) IN "
                            "(SELECT member_hash FROM erasures)"
                        )
                    if members:  # new members, changed emails and deletions may move orders and activities
                        con.execute(
                            "INSERT INTO _member_changes SELECT i.external_id, i.email FROM _incoming i "
                            "LEFT JOIN members m ON m.source = ? AND m.external_id = i.external_id "
                            "WHERE m.external_id IS NULL OR m.deleted IS DISTINCT FROM i.deleted "
                            "OR m.email IS DISTINCT FROM i.email",
                            [connector],
                        )
                    if self.scalar(f"SELECT count(*) > 0 FROM {table_name} WHERE source = ?", [connector]):
                        con.execute(
                            f"DELETE FROM {table_name} WHERE source = ? AND external_id IN "
                            f"(SELECT external_id FROM _incoming)",
                            [connector],
                        )
                    if match is not None and not members:
                        joins, pick = match.sql("i")
                        icols = ", ".join(f"i.{c}" for c in SCHEMAS[stream].names)
                        con.execute(
                            f"INSERT INTO {table_name} ({cols}, seen_run, member_id) "
                            f"SELECT {icols}, ?, {pick} FROM _incoming i {joins}",
                            [run_id],
                        )
                    else:
                        con.execute(
                            f"INSERT INTO {table_name} ({cols}, seen_run) SELECT {cols}, ? FROM _incoming", [run_id]
                        )
                    con.execute(
                        "UPDATE quarantine SET resolved = true, resolved_run = ? WHERE connector = ? AND stream = ? "
                        "AND NOT resolved AND record_key IN (SELECT external_id FROM _incoming)",
                        [run_id, connector, str(stream)],
                    )
                finally:
                    con.execute("DROP TABLE IF EXISTS _incoming")
            if batch.deleted:
                if members:
                    con.execute(
                        "INSERT INTO _member_changes SELECT external_id, email FROM members WHERE source = ? "
                        "AND NOT deleted AND external_id IN (SELECT unnest(?::VARCHAR[]))",
                        [connector, list(batch.deleted)],
                    )
                con.execute(
                    f"UPDATE {table_name} SET deleted = true, seen_run = ? "
                    f"WHERE source = ? AND external_id IN (SELECT unnest(?::VARCHAR[]))",
                    [run_id, connector, list(batch.deleted)],
                )
            for rej in self._not_erased(connector, rejects):
                self._quarantine(connector, rej, run_id)
            if batch.snapshot_complete:
                # Rows absent from the snapshot are gone; rows rejected by this pull are kept as they were
                # (a fixed record replaces them later), never deleted because one field went bad.
                gone = (
                    "source = ? AND NOT deleted AND seen_run IS DISTINCT FROM ? AND external_id NOT IN ("
                    "SELECT record_key FROM quarantine WHERE connector = ? AND stream = ? AND last_run = ? "
                    "AND NOT resolved)"
                )
                params = [connector, run_id, connector, str(stream), run_id]
                if members:
                    con.execute(
                        f"INSERT INTO _member_changes SELECT external_id, email FROM members WHERE {gone}", params
                    )
                con.execute(f"UPDATE {table_name} SET deleted = true WHERE {gone}", params)
            if members:
                clear_for_members(con, "_member_changes")
                con.execute("DROP TABLE _member_changes")
            if batch.cursor is not None:
                self.set_cursor(connector, stream, batch.cursor)
        return rejects

    def _load_table(
        self, connector: str, stream: Stream, table: pa.Table, base_currency: str, rates: Mapping[str, Decimal]
    ) -> list[Rejection]:
        """Fill ``_incoming`` from a connector's Arrow table (see ``Batch.table``); return the rows it rejects."""
        con = self.con
        names = set(table.schema.names)
        n = table.num_rows
        table = table.append_column("_n", pa.array(range(n), pa.int64()))
        if "_locator" not in names:
            table = table.append_column("_locator", pa.nulls(n, pa.string()))
        exprs = []
        for f in SCHEMAS[stream]:
            if f.name == "source":
                exprs.append("$source AS source")
            elif f.name == "amount_base":
                exprs.append(
                    f"CAST(round_even(amount * {_rate_sql(base_currency, rates)}, 4) AS {_sql_type(f.type)}) "
                    "AS amount_base"
                )
            elif f.name == "deleted" and f.name not in names:
                exprs.append("false AS deleted")
            elif f.name in names:
                exprs.append(f"CAST({f.name} AS {_sql_type(f.type)}) AS {f.name}")
            else:
                exprs.append(f"CAST(NULL AS {_sql_type(f.type)}) AS {f.name}")
        con.register("_batch", table)
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _rows AS SELECT {', '.join(exprs)}, _locator, _n FROM _batch",
                {"source": connector},
            )
        finally:
            with contextlib.suppress(duckdb.Error):
                con.unregister("_batch")
        bad_sql = "external_id IS NULL" + (" OR amount_base IS NULL" if stream is Stream.ORDERS else "")
        rejects = []
        for ext, locator, currency in con.execute(
            f"SELECT external_id, _locator, {'currency' if stream is Stream.ORDERS else 'NULL'} FROM _rows "
            f"WHERE {bad_sql} ORDER BY _n"
        ).fetchall():
            where = locator or f"{connector} {stream.value[:-1]} {ext}"
            if ext is None:
                rejects.append(Rejection(stream, where, "external_id", "missing id"))
            else:
                rejects.append(
                    Rejection(
                        stream,
                        where,
                        "currency",
                        f"no exchange rate from {currency} to {base_currency} (add sync.exchange_rates.{currency})",
                        record_id=ext,
                    )
                )
        cols = ", ".join(SCHEMAS[stream].names)
        dup = self.scalar(f"SELECT count(*) <> count(DISTINCT external_id) FROM _rows WHERE NOT ({bad_sql})")
        last = " AND _n IN (SELECT max(_n) FROM _rows GROUP BY external_id)" if dup else ""  # the last one wins
        con.execute(f"CREATE OR REPLACE TEMP TABLE _incoming AS SELECT {cols} FROM _rows WHERE NOT ({bad_sql}){last}")
        con.execute("DROP TABLE _rows")
        return rejects

    def _not_erased(self, connector: str, rejects: Sequence[Rejection]) -> list[Rejection]:
        """Rejections that name no erased member (a bad row of a forgotten person is not kept either)."""
        if not rejects or not self.count("erasures"):
            return list(rejects)
        erased = {r[0] for r in self.con.execute("SELECT member_hash FROM erasures").fetchall()}

        def names_erased(rej: Rejection) -> bool:
            values = [rej.record_id, *(str(v) for v in (rej.raw or {}).values())]
            return any(v and member_hash(connector, v.strip()) in erased for v in values)

        return [rej for rej in rejects if not names_erased(rej)]

    def _quarantine(self, connector: str, rej: Rejection, run_id: str) -> None:
        """Keep ``rej``: one entry per rejected source row (several rows may share a record id, e.g. duplicates).

        Entries of the record from earlier runs are replaced (a new read reports the record's rows anew); those
        of this run are kept, except one at the same locator.
        """
        key = rej.record_id or rej.locator
        raw = json.dumps(dict(rej.raw), default=str, ensure_ascii=False) if rej.raw is not None else None
        where = "connector = ? AND stream = ? AND record_key = ? AND NOT resolved"
        params = [connector, str(rej.stream), key]
        first = self.scalar(f"SELECT min(first_run) FROM quarantine WHERE {where}", params) or run_id
        self.con.execute(
            f"DELETE FROM quarantine WHERE {where} AND (last_run IS DISTINCT FROM ? OR locator = ?)",
            [*params, run_id, rej.locator],
        )
        self.con.execute(
            "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, false, NULL)",
            [*params, rej.locator, rej.field, rej.reason, raw, first, run_id],
        )

    # ------------------------------------------------------------------ queries
    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.con.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def count(self, table: str, where: str = "true", params: Sequence[Any] = ()) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table} WHERE {where}", params) or 0)

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path and self.path.exists() else 0


class StoreState:
    """A connector's persistent key/value state (e.g. an OAuth token cache), kept in the store."""

    def __init__(self, store: Store, connector: str) -> None:
        self._store = store
        self._connector = connector

    def get(self, key: str) -> str | None:
        with self._store._mutex:
            row = self._store.con.execute(
                "SELECT value FROM connector_state WHERE connector = ? AND key = ?", [self._connector, key]
            ).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str | None) -> None:
        with self._store.transaction() as con:
            con.execute("DELETE FROM connector_state WHERE connector = ? AND key = ?", [self._connector, key])
            if value is not None:
                con.execute("INSERT INTO connector_state VALUES (?, ?, ?, ?)", [self._connector, key, value, now()])

    def __repr__(self) -> str:
        return f"<StoreState {self._connector!r}>"


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    return {pa.string(): "VARCHAR", pa.bool_(): "BOOLEAN"}[t]


def _rate_sql(base_currency: str, rates: Mapping[str, Decimal]) -> str:
    """SQL for an order's exchange rate: its own, else 1 in the base currency, else the configured one."""
    whens = "".join(
        f" WHEN '{c}' THEN CAST('{r}' AS DECIMAL(18, 8))"
        for c, r in rates.items()
        if c.isalpha() and c != base_currency
    )
    return f"coalesce(exchange_rate, CASE currency WHEN '{base_currency}' THEN CAST(1 AS DECIMAL(18, 8)){whens} END)"


def member_hash(source: str, external_id: str) -> str:
    """A one-way key for an erased member: lets the store refuse the member again without keeping who it was."""
    import hashlib

    return hashlib.sha256(f"{source}\x00{external_id}".encode()).hexdigest()


_POLICY_MEMBER_TABLES = (
    "policy_points_ledger",
    "policy_tier_overrides",
    "policy_override_audit",
    "policy_tier_state",
    "policy_member_metrics",
)


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the store holds a (non-temporary) table ``name``; the policy creates some of its tables lazily."""
    sql = "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary"
    return bool(con.execute(sql, [name]).fetchone()[0])


def forget_member(store: Store, source: str, external_id: str, *, actor: str, reason: str) -> dict[str, int]:
    """Erase a member's records, profile, points, tiers, pushes, outbox and quarantine entries; keep an audit entry
    without personal data.

    The member's id is remembered only as a hash, so later pulls of the same member are dropped and the member is
    never graded or pushed again.
    """
    counts: dict[str, int] = {}
    with store.transaction() as con:
        email = store.scalar("SELECT email FROM members WHERE source = ? AND external_id = ?", [source, external_id])
        for table in ("orders", "activities"):
            where = "member_id = ? OR (member_external_id = ? AND source = ?)"
            params: list[Any] = [external_id, external_id, source]
            if email:
                where += " OR member_email = ?"
                params.append(email)
            counts[table] = store.count(table, where, params)
            con.execute(f"DELETE FROM {table} WHERE {where}", params)
        counts["members"] = store.count("members", "source = ? AND external_id = ?", [source, external_id])
        con.execute("DELETE FROM members WHERE source = ? AND external_id = ?", [source, external_id])
        tables = ["profiles", "pushed", "outbox", "push_audit"]
        # the policy's points ledger, tier locks and their audit, and held tiers (when the policy created them)
        tables += [t for t in _POLICY_MEMBER_TABLES if table_exists(con, t)]
        for table in tables:
            counts[table] = store.count(table, "member_id = ?", [external_id])
            con.execute(f"DELETE FROM {table} WHERE member_id = ?", [external_id])
        # quarantined rows of the member, or naming the member, keep their raw values: they go too
        values = "list_contains(json_extract_string(raw, '$.*'), ?)"
        where = f"(stream = 'members' AND connector = ? AND record_key = ?) OR {values}"
        params = [source, external_id, external_id]
        if email:
            where += f" OR {values}"
            params.append(email)
        counts["quarantine"] = store.count("quarantine", where, params)
        con.execute(f"DELETE FROM quarantine WHERE {where}", params)
        con.execute(
            "INSERT INTO erasures VALUES (?, ?, ?, ?)", [member_hash(source, external_id), now(), actor, reason]
        )
    return counts
