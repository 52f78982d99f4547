"""The local store: one DuckDB file per deployment holding records, cursors, profiles, pushes, outbox and runs.

The store package owns every table and every SQL statement on them; other parts of crmsync call its functions:

- :mod:`.db` the connection type and small helpers (a leaf: it imports nothing of crmsync)
- :mod:`.lock` the exclusive lock beside the store file
- :mod:`.schema` migrations, and the extensions other parts declare (the policy's tables)
- :mod:`.records` the record tables, declared once (DDL, Arrow schema, conversion of records)
- :mod:`.staging` the rules an incoming row must pass (id, exchange rate, last one wins)
- :mod:`.batches` writing a pulled batch; :mod:`.matching` pointing orders and activities at their member
- :mod:`.quarantine` records that could not be stored; :mod:`.erasure` forgetting a member
- :mod:`.profiles` graded profiles; :mod:`.outbox` changes to push, their results and the push audit
- :mod:`.runs` run records and their history

Every state change goes through a transaction: a pulled batch is stored together with its cursor, grading
replaces profiles and the outbox at once, a push's results are recorded at once. A crash therefore loses at most
the work since the last commit, and a rerun redoes it without counting anything twice (records are keyed by
source and id). Opening the store takes an exclusive lock (see :mod:`crmsync.store.lock`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from crmsync.connector import Batch, Rejection, Stream
from crmsync.errors import StoreError
from crmsync.store import schema
from crmsync.store.batches import write_batch
from crmsync.store.db import Connection, get_meta, set_meta
from crmsync.store.lock import StoreLock
from crmsync.store.matching import MemberMatch
from crmsync.store.schema import MIGRATIONS, SCHEMA_VERSION, StoreExtension
from crmsync.store.staging import ExchangeRates


def now() -> datetime:
    return datetime.now(UTC)


class Store:
    """An open store. Use :meth:`open` (takes the lock) and :meth:`close`, or ``with Store.open(...)``."""

    def __init__(self, con: Connection, path: Path | None, lock: StoreLock | None) -> None:
        self.con = con
        self.path = path
        self._lock = lock
        self._mutex = threading.RLock()
        self._in_tx = False
        self._installed: set[str] = set()

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        extensions: Iterable[StoreExtension] = (),
    ) -> Store:
        """Open (creating and migrating if needed) the store at ``path``; ``None`` opens an in-memory store.

        ``extensions`` are installed after the migration (see :meth:`install`).
        """
        file = Path(path) if path is not None else None
        lock = StoreLock(file) if file is not None else None
        if lock:
            lock.acquire()
        try:
            con = _connect(file, memory_limit, threads)
        except duckdb.Error as exc:
            if lock:
                lock.release()
            raise StoreError(f"cannot open the store {file}: {exc}") from None
        con.execute("SET enable_progress_bar = false")  # DuckDB would print it into --json output
        store = cls(con, file, lock)
        try:
            store.migrate()
            for extension in extensions:
                store.install(extension)
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

    # ------------------------------------------------------------------ schema
    def migrate(self) -> None:
        """Bring the store's schema to this crmsync's version (refusing a store from a newer one)."""
        with self.transaction() as con:
            con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)")
            current = self.schema_version
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the store {self.path} has schema version {current}, newer than this crmsync "
                    f"understands ({SCHEMA_VERSION}); upgrade crmsync"
                )
            for statements in MIGRATIONS[current:]:
                for sql in statements:
                    con.execute(sql)
            set_meta(con, "schema_version", str(SCHEMA_VERSION))

    def install(self, extension: StoreExtension) -> None:
        """Create an extension's tables (once per open store) and remember its member tables for erasure."""
        if extension.name not in self._installed:
            with self.transaction() as con:
                schema.install(con, extension)
            self._installed.add(extension.name)

    @property
    def schema_version(self) -> int:
        value = get_meta(self.con, "schema_version")
        return int(value) if value else 0

    def get_meta(self, key: str) -> str | None:
        """A value the store keeps about its data (e.g. the settings stored values were derived with)."""
        return get_meta(self.con, key)

    def set_meta(self, key: str, value: str | None) -> None:
        with self.transaction() as con:
            set_meta(con, key, value)

    @contextlib.contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator[Connection]:
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
        exchange = ExchangeRates(base_currency, rates)
        with self.transaction() as con:
            rejects = write_batch(con, connector, batch, run_id=run_id, rates=exchange, match=match)
            if batch.cursor is not None:
                self.set_cursor(connector, batch.stream, batch.cursor)
        return rejects

    # ------------------------------------------------------------------ queries
    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.con.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def count(self, table: str, where: str = "true", params: Sequence[Any] = ()) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table} WHERE {where}", params) or 0)

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path and self.path.exists() else 0


def _connect(file: Path | None, memory_limit: str | None, threads: int | None) -> Connection:
    config: dict[str, Any] = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    if file is None:
        return duckdb.connect(":memory:", config=config)
    file.parent.mkdir(parents=True, exist_ok=True)
    existed = file.exists()
    con = duckdb.connect(str(file), config=config)
    if not existed:
        os.chmod(file, 0o600)
    return con


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


__all__ = ["Store", "StoreExtension", "StoreState"]
