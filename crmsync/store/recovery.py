"""The way out of a damaged store: check it, put a backup back, or rebuild it from the sources.

- :func:`check` reads every table of the store (every block's checksum is verified on the way), and says what is
  damaged, whether the erasure list beside the store is in line, and which automatic backups there are.
- :func:`restore` puts a copy of a backup (checked first) in place of the store; the store's file is set aside
  (``crmsync.duckdb.replaced-<time>``). Opening it then upgrades it if it is older, and erases again every member
  of the erasure list it does not know (forgotten after the backup was taken).
- :func:`rebuild` sets the store's file aside (``crmsync.duckdb.damaged-<time>``) and starts a new one holding
  what the sources cannot give again, salvaged table by table where it still reads: what was pushed and its audit,
  the run history, and the tables extensions declare (the policy's tier locks and their audit, held tiers and points
  ledger). Records, cursors, profiles, the outbox and the quarantine start empty: the next sync pulls every source
  again, grades, and pushes what differs from what was pushed. The erasure list (the side file, and the old
  store's list where it reads) is applied to the new store, so forgotten members stay forgotten.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from crmsync.errors import StoreDamagedError, StoreError
from crmsync.store import access, erasure
from crmsync.store.db import Connection, scalar
from crmsync.store.files import StoreFiles, attach_read_only, backups, copy_database, move_into_place
from crmsync.store.lock import StoreLock
from crmsync.store.schema import SCHEMA_VERSION

REBUILT = ("members", "orders", "activities", "cursors", "quarantine", "profiles", "outbox", "connector_state", "meta")
"""Tables a rebuild fills again from the sources (its cursors start over); ``erasures`` comes from the list."""
_OLD = "_crmsync_old"


@dataclass(frozen=True)
class Finding:
    """One line of ``crmsync store check``."""

    name: str
    ok: bool
    detail: str


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def tables(con: Connection, database: str | None = None) -> list[str]:
    """The (non-temporary) tables of a database (``con``'s own by default), by name."""
    where = "database_name = ?" if database else "database_name = current_database()"
    sql = f"SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND {where} ORDER BY 1"
    return [r[0] for r in con.execute(sql, [database] if database else []).fetchall()]


def _read_whole(con: Connection, table: str) -> int:
    """Read every value of a table (so every block is loaded and its checksum verified); its number of rows."""
    con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {table}").fetchall()
    return int(scalar(con, f"SELECT count(*) FROM {table}") or 0)


def check(path: Path, config: dict[str, Any], *, wait: float = 0.0) -> list[Finding]:
    """Check the store at ``path`` (read-only, beside other readers); see the module."""
    files = StoreFiles(path)
    if not path.exists():
        return [Finding("store file", True, f"{path} does not exist yet (the first sync creates it)"), _backups(files)]
    found = [Finding("store file", True, f"{path}, {path.stat().st_size:,} bytes")]
    try:
        con = access.connect(path, config, read_only=True, wait=wait)
    except StoreDamagedError as exc:
        return [*found, Finding("opens", False, exc.message), _side_file(files, None), _backups(files)]
    try:
        found.append(Finding("opens", True, "the database opens read-only"))
        found += _check_tables(con)
        found.append(_side_file(files, con))
    finally:
        con.close()
    return [*found, _backups(files)]


def _check_tables(con: Connection) -> list[Finding]:
    try:
        version = int(scalar(con, "SELECT value FROM meta WHERE key = 'schema_version'") or 0)
        found = [Finding("schema", 0 < version <= SCHEMA_VERSION, f"version {version}; crmsync's: {SCHEMA_VERSION}")]
        names = tables(con)
    except duckdb.Error as exc:
        return [Finding("schema", False, _first_line(exc))]
    for name in names:
        try:
            found.append(Finding(f"table {name}", True, f"{_read_whole(con, name):,} rows read"))
        except duckdb.Error as exc:
            found.append(Finding(f"table {name}", False, _first_line(exc)))
    return found


def _side_file(files: StoreFiles, con: Connection | None) -> Finding:
    listed = erasure.read_list(files.erasures)
    where = f"{files.erasures}: {len(listed)} member(s)"
    if con is None:
        return Finding("erasure list", True, f"{where}; kept for a rebuild")
    try:
        lacking, behind = erasure.missing(con, files.erasures)
    except duckdb.Error as exc:
        return Finding("erasure list", False, f"{where}; the store's list does not read: {_first_line(exc)}")
    if lacking:
        return Finding("erasure list", True, f"{where}; {len(lacking)} not yet in the store: the next run erases them")
    if behind:
        return Finding("erasure list", True, f"{where}; behind the store's: the next run writes it again")
    return Finding("erasure list", True, f"{where}, as in the store")


def _backups(files: StoreFiles) -> Finding:
    found = backups(files)
    if not found:
        return Finding("backups", True, f"none in {files.backups} (one is taken before each upgrade)")
    newest = found[-1]
    return Finding("backups", True, f"{len(found)} in {files.backups}, newest {newest.name}")


# ---------------------------------------------------------------------------------------------- restore
def _set_aside(files: StoreFiles, why: str) -> Path | None:
    """Move the store's file (and a write-ahead log left by a crash, which belongs to it) out of the way."""
    if not files.path.exists():
        files.wal.unlink(missing_ok=True)
        return None
    aside = files.set_aside(why)
    os.replace(files.path, aside)
    if files.wal.exists():
        os.replace(files.wal, aside.with_name(aside.name + ".wal"))
    return aside


def _checked_source(con: Connection, backup: Path) -> None:
    """Attach ``backup`` read-only as ``_crmsync_old`` and read it whole; refuse a damaged or too new one."""
    try:
        attach_read_only(con, backup, _OLD)
        version = int(scalar(con, f"SELECT value FROM {_OLD}.meta WHERE key = 'schema_version'") or 0)
        for name in tables(con, _OLD):
            _read_whole(con, f"{_OLD}.{name}")
    except duckdb.Error as exc:
        raise StoreDamagedError(f"the backup {backup} cannot be used: {_first_line(exc)}") from None
    if not 0 < version <= SCHEMA_VERSION:
        raise StoreError(f"the backup {backup} has schema version {version}; this crmsync reads 1 to {SCHEMA_VERSION}")


def restore(path: Path, backup: Path) -> Path | None:
    """Put a copy of ``backup`` in place of the store at ``path``; return where the store's file was set aside.

    Open the store afterwards (:meth:`crmsync.store.Store.open`): it is upgraded if older and the erasure list is
    applied to it again.
    """
    if backup.resolve() == path.resolve():
        raise StoreError(f"{backup} is the store itself; name a backup")
    files, lock = StoreFiles(path), StoreLock(path)
    lock.acquire()
    try:
        con = duckdb.connect(":memory:")
        try:
            _checked_source(con, backup)
            with files.temp("restore") as tmp:
                copy_database(con, tmp, source=_OLD)
                aside = _set_aside(files, "replaced")
                move_into_place(tmp, path)
        finally:
            con.close()
    finally:
        lock.release()
    return aside


# ---------------------------------------------------------------------------------------------- rebuild
@dataclass
class Rebuilt:
    """What a rebuild kept: where the old file went, the tables salvaged (rows) and lost, the erasure list."""

    set_aside: Path | None = None
    salvaged: dict[str, int] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)
    erasures: int = 0


def set_aside_for_rebuild(path: Path) -> Rebuilt:
    """Under the lock: keep the old store's erasure list in the side file (where it reads), and move the old file
    aside; a new store is then opened at ``path``."""
    files, lock = StoreFiles(path), StoreLock(path)
    lock.acquire()
    try:
        listed = {e.member_hash: e for e in erasure.read_list(files.erasures)}
        if path.exists():
            with contextlib.suppress(duckdb.Error):
                con = duckdb.connect(":memory:")
                try:
                    attach_read_only(con, path, _OLD)
                    con.execute(f"USE {_OLD}")
                    listed = {e.member_hash: e for e in erasure.entries(con)} | listed
                finally:
                    con.close()
            erasure.write_list(files.erasures, list(listed.values()))
        return Rebuilt(set_aside=_set_aside(files, "damaged"), erasures=len(listed))
    finally:
        lock.release()


def salvage(
    con: Connection,
    transaction: Callable[[], AbstractContextManager[Connection]],
    old: Path,
    keep: Sequence[str],
    done: Rebuilt,
) -> None:
    """Copy each table of ``keep`` from the old file into ``con``'s (each in a ``transaction()``, whole or not at
    all); note what was salvaged and lost in ``done``."""
    try:
        attach_read_only(con, old, _OLD)
    except duckdb.Error as exc:
        done.lost.update({name: _first_line(exc) for name in keep})
        return
    try:
        present = set(tables(con, _OLD))
        for name in keep:
            if name not in present:
                continue
            try:
                with transaction() as tx:
                    tx.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {_OLD}.{name}")
                    done.salvaged[name] = int(scalar(tx, f"SELECT count(*) FROM {name}") or 0)
            except duckdb.Error as exc:
                done.lost[name] = _first_line(exc)
    finally:
        con.execute(f"DETACH {_OLD}")
