"""An exclusive, non-blocking lock beside the store file, so that a second run fails fast.

The lock is an OS advisory lock (``fcntl.flock``) on ``<store>.lock``: the kernel releases it when the holding
process dies, even by SIGKILL, so a crashed run never leaves a stale lock behind. The holder writes its pid into the
file (and empties it on release): read-only commands, which never take the lock, read it to wait for the writer
(see :mod:`crmsync.store.access`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from crmsync.errors import StoreLockedError
from crmsync.store.files import StoreFiles


class StoreLock:
    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.path = StoreFiles(store_path).lock
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(
                f"the store {self.store_path} is in use by another crmsync run (pid {holder}); this run did nothing",
                hint="wait for the other run to finish; overlapping scheduled runs are safe to skip",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
