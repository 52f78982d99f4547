"""Pointing orders and activities at their member: by id, by email, or (auto) by id, else by email.

A row's ``member_id`` is resolved when the row is stored (members are pulled before orders and activities) and,
at grading, for the rows still without one. Rewriting the column of every row on each run would cost a full
table rewrite, so instead a change of a member that may move rows (a new member, a changed email, a deletion)
clears ``member_id`` on exactly the rows it may affect: those pointing at the member, naming its id, or naming
its new email. Grading then resolves them again. The store's ``meta`` remembers the matching the stored ids were
resolved with (members' source and ``match_by``); when the settings change, every row is resolved again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crmsync.store.db import Connection, get_meta, scalar, set_meta

MATCH_KEY = "member_match"
"""The ``meta`` key holding the matching the stored ``member_id`` values were resolved with."""
TABLES = ("orders", "activities")


@dataclass(frozen=True)
class MemberMatch:
    """How rows find their member: the connector whose records are the members, and ``id``/``email``/``auto``."""

    source: str
    by: str = "auto"

    @classmethod
    def configured(cls, sync: Any) -> MemberMatch:
        """The matching a ``[sync]`` table configures (its ``members`` and ``match_by``)."""
        return cls(sync.members, sync.match_by)

    @property
    def key(self) -> str:
        return f"{self.by}:{self.source}"

    def sql(self, alias: str) -> tuple[str, str]:
        """SQL ``(joins, member id)`` for the rows of ``alias`` (with ``member_external_id`` and ``member_email``)."""
        src = "'" + self.source.replace("'", "''") + "'"
        joins, picks = [], []
        if self.by in ("id", "auto"):
            joins.append(
                f"LEFT JOIN members m_id ON m_id.source = {src} AND m_id.external_id = {alias}.member_external_id "
                "AND NOT m_id.deleted"
            )
            picks.append("m_id.external_id")
        if self.by in ("email", "auto"):
            joins.append(
                "LEFT JOIN (SELECT email, min(external_id) AS external_id FROM members "
                f"WHERE source = {src} AND NOT deleted AND email IS NOT NULL GROUP BY email) m_em "
                f"ON m_em.email = {alias}.member_email"
            )
            picks.append("m_em.external_id")
        pick = picks[0] if len(picks) == 1 else f"coalesce({', '.join(picks)})"
        return " ".join(joins), pick


def ensure_matching(con: Connection, match: MemberMatch) -> None:
    """Clear every resolved ``member_id`` when the stored ones were resolved with another matching."""
    if get_meta(con, MATCH_KEY) == match.key:
        return
    for table in TABLES:
        con.execute(f"UPDATE {table} SET member_id = NULL WHERE member_id IS NOT NULL")
    set_meta(con, MATCH_KEY, match.key)


def resolve_unmatched(con: Connection, match: MemberMatch) -> None:
    """Resolve the rows without a member (new rows stored without matching, rows cleared by a member change)."""
    ensure_matching(con, match)
    for table in TABLES:
        joins, pick = match.sql("t")
        con.execute(
            f"""UPDATE {table} SET member_id = r.mid FROM (
                    SELECT t.rowid AS rid, {pick} AS mid FROM {table} t {joins} WHERE t.member_id IS NULL
                ) r
                WHERE {table}.rowid = r.rid AND r.mid IS NOT NULL"""
        )


def clear_for_members(con: Connection, changed: str) -> None:
    """Clear ``member_id`` of the rows a change of the members in table ``changed`` (external_id, email) may move."""
    if not scalar(con, f"SELECT count(*) FROM {changed}"):
        return
    for table in TABLES:
        con.execute(
            f"""UPDATE {table} SET member_id = NULL WHERE member_id IS NOT NULL AND (
                    member_id IN (SELECT external_id FROM {changed})
                    OR member_external_id IN (SELECT external_id FROM {changed})
                    OR member_email IN (SELECT email FROM {changed} WHERE email IS NOT NULL))"""
        )


def unmatched(con: Connection, table: str) -> int:
    """Rows of ``table`` (orders or activities) whose member could not be found (kept, not graded)."""
    return int(scalar(con, f"SELECT count(*) FROM {table} WHERE member_id IS NULL AND NOT deleted") or 0)


UNMATCHED_COLUMNS = ("connector", "stream", "locator", "field", "reason", "last_run")
"""What :func:`unmatched_rows` says of each row (``last_run``: the run that last stored it)."""


def _unmatched_reason(match: MemberMatch) -> str:
    """SQL of why a row found no member, naming the member id it gives but never its email."""
    src = match.source.replace("'", "''")
    by_email = match.by in ("email", "auto")
    with_email = f" or with its email in {src}" if by_email else f" in {src}"
    email_only = f"no member with its email in {src}" if by_email else "no member id (rows are matched by id)"
    return f"""CASE
        WHEN member_external_id IS NOT NULL AND member_email IS NOT NULL
            THEN 'no member with id ' || member_external_id || '{with_email}'
        WHEN member_external_id IS NOT NULL THEN 'no member with id ' || member_external_id || ' in {src}'
        WHEN member_email IS NOT NULL THEN '{email_only}'
        ELSE 'names no member' END"""


def unmatched_rows(con: Connection, match: MemberMatch, table: str) -> list[dict[str, str | None]]:
    """The rows of ``table`` (orders or activities) whose member could not be found, for people: where each is (the
    connector's locator, ``orders.csv:17``, else ``shop order O17``), the field that names the member, why it matched
    none (:data:`UNMATCHED_COLUMNS`), by connector, in the order they were stored."""
    kind = table[:-1] if table == "orders" else "activity"
    field = "CASE WHEN member_external_id IS NULL AND member_email IS NOT NULL THEN 'member_email' "
    field += "ELSE 'member_external_id' END"
    cur = con.execute(
        f"""SELECT source, ?, coalesce(locator, source || ' {kind} ' || external_id) AS loc, {field},
                   {_unmatched_reason(match)}, seen_run
            FROM {table} WHERE member_id IS NULL AND NOT deleted ORDER BY source, rowid""",
        [table],
    )
    return [dict(zip(UNMATCHED_COLUMNS, row, strict=True)) for row in cur.fetchall()]
