"""The files beside the store, and the operations on the store file as a whole.

Next to the store file (``crmsync.duckdb``) crmsync keeps:

- ``crmsync.duckdb.lock``: the run lock (:mod:`.lock`), holding the pid of the run that writes the store;
- ``crmsync.duckdb.erasures``: the erasure list (:mod:`.erasure`), kept outside the database so that a restore or a
  rebuild cannot lose it;
- ``crmsync.duckdb.backups/``: automatic backups, one before each upgrade of the store's schema
  (``crmsync-schema2-20260101T120000Z.duckdb``), the newest ``[store] keep_backups`` kept;
- ``crmsync.duckdb.damaged-<time>`` / ``crmsync.duckdb.replaced-<time>``: the file a rebuild or a restore replaced;
- while the store is copied or rewritten, a hidden ``.crmsync.duckdb.<purpose>.<random>.tmp`` (removed when done;
  one a killed rewrite or restore left is removed by the next run).

A copy (:func:`copy_database`) goes through the database: only live rows are written, so a copy holds nothing of
what was deleted, and a damaged block fails the copy instead of being carried into it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crmsync.store.db import Connection, scalar

BACKUP_SUFFIX = ".duckdb"


@dataclass(frozen=True)
class StoreFiles:
    """The paths of the files that belong to the store at ``path``."""

    path: Path

    def _beside(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    @property
    def lock(self) -> Path:
        return self._beside(".lock")

    @property
    def erasures(self) -> Path:
        return self._beside(".erasures")

    @property
    def backups(self) -> Path:
        return self._beside(".backups")

    @property
    def wal(self) -> Path:
        return self._beside(".wal")

    def set_aside(self, why: str) -> Path:
        """Where the store file goes when a rebuild (``damaged``) or a restore (``replaced``) replaces it."""
        return self._beside(f".{why}-{stamp()}")

    @contextlib.contextmanager
    def temp(self, purpose: str, folder: Path | None = None) -> Iterator[Path]:
        """A fresh path for a file being built for ``purpose`` (``rewrite``, ``restore``, ``backup``) in ``folder``
        (default the store's); removed unless moved away, or by :meth:`clean` after a crash."""
        where = folder or self.path.parent
        where.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.{purpose}.", suffix=".tmp", dir=where)
        os.close(fd)
        tmp = Path(name)
        tmp.unlink()  # DuckDB creates the file itself
        try:
            yield tmp
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    def clean(self) -> None:
        """Remove what a killed rewrite or restore left beside the store (a copy of it, with rows already erased);
        call it holding the run lock, which those hold."""
        for purpose in WRITERS_TEMPS:
            for leftover in self.path.parent.glob(f".{glob.escape(self.path.name)}.{purpose}.*"):
                leftover.unlink(missing_ok=True)


WRITERS_TEMPS = ("rewrite", "restore")
"""The temporary files only a run holding the lock writes (a backup's belongs to a reader)."""


def stamp(at: datetime | None = None) -> str:
    """A time for file names, sortable: ``20260101T120000Z``."""
    return (at or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system can sync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(src: Path, dest: Path) -> None:
    """Move a finished file over ``dest`` in one step (readers see the old file or the new one), privately."""
    os.chmod(src, 0o600)
    fsync_file(src)
    os.replace(src, dest)
    fsync_dir(dest.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file moved into place (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        move_into_place(Path(tmp), path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_database(con: Connection, dest: Path, *, source: str | None = None,
                  finish: Callable[[Connection, str], None] | None = None) -> None:  # fmt: skip
    """Copy every table of a database (``source``, an attached name; default ``con``'s own) into a new DuckDB file
    at ``dest``, synced to disk. ``finish(con, name)`` may change the copy (attached as ``name``) before it is
    closed."""
    name = "_crmsync_copy"
    src = source or scalar(con, "SELECT current_database()")
    con.execute(f"ATTACH {_literal(dest)} AS {name} (READ_ONLY false)")  # a read-only ``con`` would attach read-only
    try:
        con.execute(f"COPY FROM DATABASE {_quote(src)} TO {name}")
        if finish is not None:
            finish(con, name)
    finally:
        con.execute(f"DETACH {name}")
    fsync_file(dest)


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def attach_read_only(con: Connection, path: Path, name: str) -> None:
    """Attach the DuckDB file at ``path`` as ``name``, read-only."""
    con.execute(f"ATTACH {_literal(path)} AS {name} (READ_ONLY)")


def backups(files: StoreFiles) -> list[Path]:
    """The automatic backups of the store, oldest first (by when they were written, then by name)."""
    if not files.backups.is_dir():
        return []
    found = [(p.stat().st_mtime_ns, p.name, p) for p in files.backups.glob(f"*{BACKUP_SUFFIX}")]
    return [p for _, _, p in sorted(found)]


def backup_path(files: StoreFiles, schema_version: int) -> Path:
    """The name of an automatic backup taken before an upgrade from ``schema_version`` (a new name, always)."""
    base = f"{files.path.stem}-schema{schema_version}-{stamp()}"
    path, n = files.backups / f"{base}{BACKUP_SUFFIX}", 1
    while path.exists():
        n += 1
        path = files.backups / f"{base}-{n}{BACKUP_SUFFIX}"
    return path


def prune_backups(files: StoreFiles, keep: int) -> None:
    """Keep the newest ``keep`` automatic backups."""
    for old in backups(files)[: max(0, len(backups(files)) - keep)]:
        old.unlink(missing_ok=True)
