"""Erasure: forgetting a member, and keeping them forgotten.

:func:`forget_member` deletes a member's records, profile, points, pushes, outbox and quarantine entries (and their
rows in every extension's member tables) and keeps an audit entry without personal data: the member's id only as a
one-way hash (:func:`member_hash`). Later pulls of the member are dropped by that hash (:func:`drop_erased`,
:func:`not_erased`), so the member is never stored, graded or pushed again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from crmsync.connector import Rejection, Stream
from crmsync.store.db import Connection, scalar, table_exists
from crmsync.store.schema import extension_member_tables
from crmsync.store.staging import INCOMING

MEMBER_TABLES = ("profiles", "pushed", "outbox", "push_audit")
"""The store's own tables with one or more rows per member (``member_id``), besides the records."""


def member_hash(source: str, external_id: str) -> str:
    """A one-way key for an erased member: lets the store refuse the member again without keeping who it was."""
    return hashlib.sha256(f"{source}\x00{external_id}".encode()).hexdigest()


def _any_erased(con: Connection) -> bool:
    return bool(scalar(con, "SELECT count(*) > 0 FROM erasures"))


def drop_erased(con: Connection, stream: Stream) -> None:
    """Remove staged rows of erased members: erased members stay erased when their source sends them again."""
    if _any_erased(con):
        key = "external_id" if stream is Stream.MEMBERS else "member_external_id"
        con.execute(
            f"DELETE FROM {INCOMING} WHERE sha256(source || chr(0) || {key}) IN (SELECT member_hash FROM erasures)"
        )


def not_erased(con: Connection, connector: str, rejects: Sequence[Rejection]) -> list[Rejection]:
    """The rejections that name no erased member (a bad row of a forgotten person is not kept either)."""
    if not rejects or not _any_erased(con):
        return list(rejects)
    erased = {r[0] for r in con.execute("SELECT member_hash FROM erasures").fetchall()}

    def names_erased(rej: Rejection) -> bool:
        values = [rej.record_id, *(str(v) for v in (rej.raw or {}).values())]
        return any(v and member_hash(connector, v.strip()) in erased for v in values)

    return [rej for rej in rejects if not names_erased(rej)]


def _delete(con: Connection, table: str, where: str, params: list[Any]) -> int:
    n = int(scalar(con, f"SELECT count(*) FROM {table} WHERE {where}", params) or 0)
    con.execute(f"DELETE FROM {table} WHERE {where}", params)
    return n


def forget_member(con: Connection, source: str, external_id: str, *, actor: str, reason: str) -> dict[str, int]:
    """Erase a member's local data; return the number of rows deleted per table. See the module's docstring.

    Run it in one transaction (``with store.transaction() as con``): the erasure and its audit entry go together.
    """
    counts: dict[str, int] = {}
    email = scalar(con, "SELECT email FROM members WHERE source = ? AND external_id = ?", [source, external_id])
    for table in ("orders", "activities"):
        where = "member_id = ? OR (member_external_id = ? AND source = ?)"
        params: list[Any] = [external_id, external_id, source]
        if email:
            where += " OR member_email = ?"
            params.append(email)
        counts[table] = _delete(con, table, where, params)
    counts["members"] = _delete(con, "members", "source = ? AND external_id = ?", [source, external_id])
    for table in (*MEMBER_TABLES, *extension_member_tables(con)):
        if table_exists(con, table):  # an extension may create some of its tables on first use
            counts[table] = _delete(con, table, "member_id = ?", [external_id])
    counts["quarantine"] = _forget_quarantined(con, source, external_id, email)
    con.execute("INSERT INTO erasures VALUES (?, now(), ?, ?)", [member_hash(source, external_id), actor, reason])
    return counts


def _forget_quarantined(con: Connection, source: str, external_id: str, email: str | None) -> int:
    """Quarantined rows of the member, or naming the member, keep their raw values: they go too."""
    values = "list_contains(json_extract_string(raw, '$.*'), ?)"
    where = f"(stream = 'members' AND connector = ? AND record_key = ?) OR {values}"
    params = [source, external_id, external_id]
    if email:
        where += f" OR {values}"
        params.append(email)
    return _delete(con, "quarantine", where, params)
