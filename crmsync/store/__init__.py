"""The local store: one DuckDB file per deployment holding records, cursors, profiles, pushes, outbox and runs.

The store package owns every table and every SQL statement on them; other parts of crmsync call its functions:

- :mod:`.db` the connection type and small helpers (a leaf: it imports nothing of crmsync)
- :mod:`.lock` the exclusive lock beside the store file; :mod:`.access` opening the file for writing (one run) or
  read-only (beside other readers), waiting for the other side, and naming a damaged file
- :mod:`.files` the files beside the store, copies of the store file, automatic backups; :mod:`.recovery` checking,
  restoring and rebuilding a damaged store
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
source and id). Opening the store for writing takes an exclusive lock (see :mod:`crmsync.store.lock`); opening it
read-only takes none (see :mod:`crmsync.store.access`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from crmsync.connector import Batch, Rejection, Stream
from crmsync.errors import StoreError
from crmsync.store import access, erasure, recovery, schema
from crmsync.store.batches import write_batch
from crmsync.store.db import Connection, get_meta, set_meta, table_exists
from crmsync.store.files import StoreFiles, backup_path, copy_database, move_into_place, prune_backups
from crmsync.store.lock import StoreLock
from crmsync.store.matching import MemberMatch
from crmsync.store.schema import MIGRATIONS, SCHEMA_VERSION, StoreExtension
from crmsync.store.staging import ExchangeRates

log = logging.getLogger("crmsync.store")


def now() -> datetime:
    return datetime.now(UTC)


KEEP_BACKUPS = 3
"""Automatic backups kept by default (``[store] keep_backups``)."""
FILE_KEY = "file_token"
"""``meta`` key naming the file a rewrite wrote (checked when the store is opened again after the rewrite)."""
REWRITE_KEY = "rewrite_pending"
"""``meta`` key set while erased rows may still be in the file's bytes: the next writable open rewrites the file."""


class Store:
    """An open store. Use :meth:`open` and :meth:`close`, or ``with Store.open(...)``.

    Opened for writing, it holds the run lock; opened read-only (``read_only=True``), it runs beside other readers
    and takes no lock (see :mod:`crmsync.store.access`).
    """

    def __init__(
        self,
        con: Connection,
        path: Path | None,
        lock: StoreLock | None,
        *,
        read_only: bool = False,
        config: dict[str, Any] | None = None,
        wait: float = 0.0,
    ) -> None:
        self.con = con
        self.path = path
        self.files = StoreFiles(path) if path is not None else None
        self.read_only = read_only
        self._lock = lock
        self._config = config or {}
        self._wait = wait
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
        read_only: bool = False,
        wait: float = 0.0,
        keep_backups: int = KEEP_BACKUPS,
    ) -> Store:
        """Open (creating and migrating if needed) the store at ``path``; ``None`` opens an in-memory store.

        ``extensions`` are installed after the migration (see :meth:`install`). ``read_only`` opens it beside other
        readers, without the run lock (a store that needs creating or upgrading first gets it, with the lock);
        ``wait`` is how long to wait for another process holding the file; ``keep_backups`` how many automatic
        backups (taken before an upgrade of the schema) are kept.

        Raises:
            StoreLockedError: another run writes the store (or, opening for writing, readers stayed on it).
            StoreDamagedError: the file is damaged.
        """
        file = Path(path) if path is not None else None
        config = _config(memory_limit, threads)
        extensions = list(extensions)
        if file is None:
            return cls(duckdb.connect(":memory:", config=config), None, None)._ready(extensions, keep_backups)
        if read_only:
            return cls._open_read_only(file, config, extensions, wait, keep_backups)
        lock = StoreLock(file)
        lock.acquire()
        try:
            con = access.connect(file, config, read_only=False, wait=wait)
        except BaseException:
            lock.release()
            raise
        return cls(con, file, lock, config=config, wait=wait)._ready(extensions, keep_backups)

    def _ready(self, extensions: Sequence[StoreExtension], keep_backups: int) -> Store:
        """Migrate, install the extensions, bring the erasure list in line; the store, or an error naming it."""
        try:
            self.con.execute("SET enable_progress_bar = false")  # DuckDB would print it into --json output
            self.migrate(keep_backups=keep_backups)
            for extension in extensions:
                self.install(extension)
            if self.files is not None:
                self.files.clean()
                with self.transaction() as con:
                    if erasure.reconcile(con, self.files.erasures):
                        set_meta(con, REWRITE_KEY, "erasures applied again")
                if self.get_meta(REWRITE_KEY):
                    self._finish_rewrite()
        except Exception as exc:
            self.close()
            if self.path is not None and access.is_damaged(exc):
                raise access.damaged_error(self.path, exc) from None
            raise
        return self

    def _finish_rewrite(self) -> None:
        """Do the rewrite an erasure asked for; when the file cannot be written now (a full disk), the store is used
        as it is and a later run tries again."""
        try:
            self.rewrite()
        except (OSError, duckdb.Error) as exc:
            if access.is_damaged(exc):
                raise
            log.warning(
                "the store %s could not be rewritten (%s); erased rows stay in its free space until a later run "
                "rewrites it", self.path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )  # fmt: skip

    @classmethod
    def _open_read_only(
        cls, file: Path, config: dict[str, Any], extensions: Sequence[StoreExtension], wait: float, keep: int
    ) -> Store:
        """A read-only store; one that must be created or brought up to date first is, with the lock."""
        if file.exists():
            store = cls(access.connect(file, config, read_only=True, wait=wait), file, None, read_only=True)
            try:
                if store._up_to_date(extensions):
                    return store
            except Exception as exc:
                store.close()
                if access.is_damaged(exc):
                    raise access.damaged_error(file, exc) from None
                raise
            store.close()
        cls.open(file, extensions=extensions, wait=wait, keep_backups=keep, **_limits(config)).close()
        store = cls(access.connect(file, config, read_only=True, wait=wait), file, None, read_only=True)
        store._installed.update(e.name for e in extensions)
        return store

    def _up_to_date(self, extensions: Sequence[StoreExtension]) -> bool:
        """Whether a read-only store can be read as it is: current schema, extensions installed as declared, erasure
        list in line with the side file, no rewrite pending."""
        self.con.execute("SET enable_progress_bar = false")
        if not table_exists(self.con, "meta") or self.schema_version != SCHEMA_VERSION or self.get_meta(REWRITE_KEY):
            return False
        if any(self.get_meta(schema.EXTENSION_KEY + e.name) != schema.declared(e) for e in extensions):
            return False
        assert self.files is not None
        if erasure.missing(self.con, self.files.erasures)[0]:
            return False
        self._installed.update(e.name for e in extensions)
        return True

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
    def migrate(self, *, keep_backups: int = KEEP_BACKUPS) -> None:
        """Bring the store's schema to this crmsync's version (refusing a store from a newer one); a store with data
        is backed up first (see :mod:`crmsync.store.files`), keeping the newest ``keep_backups`` backups."""
        current = self.schema_version if table_exists(self.con, "meta") else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {current}, newer than this crmsync "
                f"understands ({SCHEMA_VERSION}); upgrade crmsync"
            )
        if current == SCHEMA_VERSION:
            return
        if current and self.files is not None:
            self.backup(backup_path(self.files, current))
            prune_backups(self.files, keep_backups)
        with self.transaction() as con:
            con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)")
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

    # ------------------------------------------------------------------ erasure
    def forget(self, source: str, members: Sequence[str], *, actor: str, reason: str) -> dict[str, dict[str, int]]:
        """Erase members (ids in the members' ``source``) everywhere in the store, add them to the erasure list (the
        table and the side file), then rewrite the file so that their bytes leave it (see :mod:`.erasure`).
        Returns the rows deleted per member and table."""
        side_file = self.files.erasures if self.files is not None else None
        with self.transaction() as con:
            counts = {
                m: erasure.forget_member(con, source, m, actor=actor, reason=reason, side_file=side_file)
                for m in members
            }
            if self.files is not None:
                set_meta(con, REWRITE_KEY, "members erased")
        if self.files is not None:
            self.rewrite()
        return counts

    # ------------------------------------------------------------------ recovery (see :mod:`.recovery`)
    @classmethod
    def restore(cls, path: str | os.PathLike[str], backup: Path, **options: Any) -> Path | None:
        """Put a copy of ``backup`` in place of the store at ``path`` and open it once (with ``options``, as
        :meth:`open` takes them): it is upgraded if older and forgotten members are erased from it again. Returns
        where the replaced file was set aside."""
        aside = recovery.restore(Path(path), backup)
        cls.open(path, **options).close()
        return aside

    @classmethod
    def rebuild(cls, path: str | os.PathLike[str], **options: Any) -> recovery.Rebuilt:
        """Set the store's file aside and start a new store at ``path`` with what the sources cannot give again and
        the erasure list (see :mod:`.recovery`); ``options`` as :meth:`open` takes them."""
        done = recovery.set_aside_for_rebuild(Path(path))
        store = cls.open(path, **options)
        try:
            if done.set_aside is not None:
                kept = [t for t in recovery.tables(store.con) if t not in (*recovery.REBUILT, "erasures")]
                recovery.salvage(store.con, store.transaction, done.set_aside, kept, done)
            with store.transaction() as con:
                erasure.reapply(con)
            store.rewrite()
        finally:
            store.close()
        return done

    # ------------------------------------------------------------------ the file as a whole
    def backup(self, dest: Path) -> None:
        """Copy the store into a new file at ``dest`` (its live rows: nothing deleted goes along)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        assert self.files is not None, "an in-memory store has no file to back up"
        with self._mutex, self.files.temp("backup", dest.parent) as tmp:
            if not self.read_only:
                self.con.execute("CHECKPOINT")
            copy_database(self.con, tmp)
            move_into_place(tmp, dest)

    def rewrite(self) -> None:
        """Put a fresh copy of the store's live rows in place of the file, so that the bytes of deleted rows (an
        erased member's) leave it; the store stays open. Needs the store opened for writing."""
        if self.files is None or self.read_only or self._lock is None:
            raise StoreError("only a store opened for writing can be rewritten")
        path, files, token = self.files.path, self.files, secrets.token_hex(8)

        def done(con: Connection, name: str) -> None:
            con.execute(f"DELETE FROM {name}.meta WHERE key IN (?, ?)", [REWRITE_KEY, FILE_KEY])
            con.execute(f"INSERT INTO {name}.meta VALUES (?, ?)", [FILE_KEY, token])

        with self._mutex, files.temp("rewrite") as tmp:
            self.con.execute("CHECKPOINT")
            copy_database(self.con, tmp, finish=done)
            self.con.close()
            try:
                if files.wal.exists():
                    raise StoreError(f"the store {path} kept a write-ahead log after closing; it was not rewritten")
                move_into_place(tmp, path)
            finally:  # the store stays open, rewritten or not
                self.con = access.connect(path, self._config, read_only=False, wait=self._wait)
                self.con.execute("SET enable_progress_bar = false")
            if self.get_meta(FILE_KEY) != token:  # another connection of this process kept the old file open
                raise StoreError(f"the store {path} was rewritten but the old file is still open in this process")

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


def _config(memory_limit: str | None, threads: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    return config


def _limits(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :meth:`Store.open` that give ``config``."""
    return {"memory_limit": config.get("memory_limit"), "threads": config.get("threads")}


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
