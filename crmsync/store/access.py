"""Opening the store file: one writer at a time, readers beside each other, a clear word when the file is damaged.

DuckDB lets one process open a database file for writing, or any number of processes open it read-only — never
both at once (a process that reads blocks a writer, a writer blocks every reader). crmsync builds on that:

- A command that writes (``sync``, ``plan``, ``check``, ``override``, ``forget``, ``retry``, ``store restore`` and
  ``store rebuild``) takes the run lock (:mod:`.lock`) and fails at once when another writer holds it. It then opens
  the file for writing, waiting up to ``wait`` seconds for read-only commands still reading it.
- A command that only reads (``runs``, ``rejects``, ``history``, ``explain``, ``preview``, ``backtest``, ``store
  check`` and ``store backup``) never takes the run lock: it opens the file read-only, beside any number of other
  readers. While a writer holds the store (or holds the run lock, about to open it) a reader waits up to ``wait``
  seconds, then stops with a message naming the writer's process; it never reads a half-written state.

A file DuckDB finds damaged (a block whose checksum fails, a file cut short) raises :class:`StoreDamagedError`
naming the file and the way out.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from crmsync.errors import StoreDamagedError, StoreError, StoreLockedError
from crmsync.store.db import Connection
from crmsync.store.files import StoreFiles

BUSY_SIGNS = ("could not set lock on file",)
"""How DuckDB says another process holds the file."""
DAMAGE_SIGNS = (
    "corrupt database file",
    "could not read enough bytes",
    "not a valid duckdb database",
    "database has been invalidated",
)
"""How DuckDB says the file is damaged."""
POLL_SECONDS = 0.2


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and any(s in str(exc).lower() for s in BUSY_SIGNS)


def is_damaged(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and any(s in str(exc).lower() for s in DAMAGE_SIGNS)


def damaged_error(path: Path, exc: BaseException) -> StoreDamagedError:
    """The error of a damaged store file: what DuckDB found, and the way out."""
    backups = StoreFiles(path).backups
    return StoreDamagedError(
        f"the store {path} is damaged ({_first_line(exc)}); no run can use it until it is restored or rebuilt",
        hint=(
            "'crmsync store check' says what is damaged; 'crmsync store restore FILE' puts a backup back "
            f"(automatic ones are in {backups}); 'crmsync store rebuild' builds a new store from the sources, "
            "keeping what was pushed where it can and the erasure list"
        ),
    )


def classify(path: Path | None, exc: BaseException) -> BaseException:
    """``exc`` as the store error it means (a damaged file), else ``exc`` itself."""
    return damaged_error(path, exc) if path is not None and is_damaged(exc) else exc


def writer_pid(path: Path) -> int | None:
    """The pid of the crmsync process that holds (or is about to take) the store for writing, if it is alive."""
    try:
        text = StoreFiles(path).lock.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) == os.getpid():
        return None
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return None  # killed without releasing: the kernel released its lock, only the pid was left
    except PermissionError:
        pass  # alive, another user's
    return int(text)


def _holder(exc: BaseException) -> str:
    found = re.search(r"\(PID (\d+)\)", str(exc))
    return f"pid {found.group(1)}" if found else "another process"


def _busy_error(path: Path, read_only: bool, wait: float, holder: str) -> StoreLockedError:
    if read_only:
        return StoreLockedError(
            f"the store {path} is being written by a crmsync run ({holder}); this command waited {wait:g} s "
            "and read nothing",
            hint="try again when that run has finished; [store] busy_timeout sets how long to wait",
        )
    return StoreLockedError(
        f"the store {path} is being read by {holder} (a read-only crmsync command or another program); this run "
        f"waited {wait:g} s and did nothing",
        hint="overlapping scheduled runs are safe to skip; [store] busy_timeout sets how long to wait",
    )


def connect(
    file: Path,
    config: dict[str, Any],
    *,
    read_only: bool,
    wait: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Connection:
    """Open the store file, waiting up to ``wait`` seconds for a process that holds it (see the module).

    Raises:
        StoreLockedError: the file stayed held.
        StoreDamagedError: the file is damaged.
        StoreError: the file cannot be opened for another reason.
    """
    deadline = time.monotonic() + wait
    while True:
        holder = writer_pid(file) if read_only else None
        if holder is None:
            try:
                return _connect(file, config, read_only)
            except duckdb.Error as exc:
                if is_damaged(exc):
                    raise damaged_error(file, exc) from None
                if not is_busy(exc):
                    raise StoreError(f"cannot open the store {file}: {_first_line(exc)}") from None
                who = _holder(exc)
        else:
            who = f"pid {holder}"
        if time.monotonic() >= deadline:
            raise _busy_error(file, read_only, wait, who) from None
        sleep(POLL_SECONDS)


def _connect(file: Path, config: dict[str, Any], read_only: bool) -> Connection:
    if read_only:
        return duckdb.connect(str(file), read_only=True, config=config)
    file.parent.mkdir(parents=True, exist_ok=True)
    existed = file.exists()
    con = duckdb.connect(str(file), config=config)
    if not existed:
        with contextlib.suppress(OSError):
            os.chmod(file, 0o600)
    return con
