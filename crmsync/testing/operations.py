"""The calls a check makes against a connector — a pull, a push, ``check()`` — each ready to run again.

A check that injects an HTTP error into the double does not care which call meets it: it asks :func:`prepare` for
one operation (seeding what it needs), runs it once to be sure it works, queues the error, and runs it again.
"""

from __future__ import annotations

from collections.abc import Callable

from crmsync.connector import CheckResult, Connector, Stream
from crmsync.testing.base import OPERATIONS, ContractBase, available
from crmsync.testing.checks_push import make_changes, push_all
from crmsync.testing.double import CrmDouble
from crmsync.testing.driver import drive_pull

Run = Callable[[], str | None]
"""Runs the operation; returns what is wrong with its result (``None``: fine). Errors propagate."""

__all__ = ["OPERATIONS", "Run", "available", "describe", "prepare"]


def prepare(cls: type[ContractBase], double: CrmDouble, connector: Connector, operation: str) -> Run:
    """Seed the double for ``operation`` and return a call that performs it and judges its result."""
    if operation == "pull":
        stream = cls.pull_streams()[0]
        seeded = set(double.seed(stream, cls.seed_count))

        def pull() -> str | None:
            got = set(drive_pull(connector, stream).live_ids())
            return None if got == seeded else f"the pull returned {len(got & seeded)} of {len(seeded)} {stream.value}"

        return pull
    if operation == "push":
        changes = make_changes(connector, double.seed(Stream.MEMBERS, 3))

        def push() -> str | None:
            failed = [r.member_id for r in push_all(connector, changes) if not r.ok]
            return f"the push failed for {failed}" if failed else None

        return push

    def check() -> str | None:
        failed = [r.name for r in connector.check() if not (isinstance(r, CheckResult) and r.ok)]
        return f"check() reported {failed} as failed" if failed else None

    return check


def describe(operation: str, cls: type[ContractBase]) -> str:
    """``"pull('members')"``, ``"push()"`` or ``"check()"``: what the operation calls, for messages."""
    if operation == "pull":
        return f"pull({cls.pull_streams()[0].value!r})"
    return f"{operation}()"
