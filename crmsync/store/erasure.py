"""Erasure: forgetting a member, keeping them forgotten, and the erasure list that survives the store itself.

:func:`forget_member` deletes a member's records, orders and activities (by member, by id and by email), profile,
pushes, outbox, push audit, quarantined rows naming them, the rows of every extension's member tables, and the
rejections naming them in the stored run reports. It keeps an entry without personal data: the member's id and
email only as one-way hashes (:func:`member_hash`, :func:`email_hash`) with the members' source, when, who and why.

The entries form the erasure list. Later pulls naming an erased member (by id or by email) are dropped before they
are stored (:func:`drop_erased`, :func:`not_erased`), and connectors see the list too
(:attr:`crmsync.ConnectorContext.forgotten`), so an erased member is never stored, graded, pushed or written to a
connector's own files again.

The list is kept twice: in the ``erasures`` table and in a side file next to the store (``crmsync.duckdb.erasures``,
JSON lines, written atomically before the erasure commits). A store restored from a backup or rebuilt from the
sources gets every entry of the side file again, and the erased members' rows it holds are erased again
(:func:`reconcile`). The bytes of erased rows leave the store file when the store rewrites it (see
:meth:`crmsync.store.Store.rewrite`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmsync.connector import Rejection, Stream
from crmsync.models import Member
from crmsync.store.db import Connection, scalar, table_exists
from crmsync.store.files import write_atomic
from crmsync.store.schema import extension_member_tables
from crmsync.store.staging import INCOMING

MEMBER_TABLES = ("profiles", "pushed", "outbox", "push_audit")
"""The store's own tables with one or more rows per member (``member_id``), besides the records."""
ENTRY_COLUMNS = ("member_hash", "email_hash", "source", "erased_at", "actor", "reason")


def member_hash(source: str, external_id: str) -> str:
    """A one-way key for an erased member: lets the store refuse the member again without keeping who it was."""
    return hashlib.sha256(f"{source}\x00{external_id}".encode()).hexdigest()


def email_hash(email: str) -> str:
    """A one-way key for an erased member's email (trimmed, lower case): rows naming the email are refused too."""
    return hashlib.sha256(f"email\x00{email.strip().lower()}".encode()).hexdigest()


def _id_hash_sql(source: str, expr: str) -> str:
    """SQL of :func:`member_hash` (the same text, hashed by the database)."""
    return f"sha256('{_lit(source)}' || chr(0) || {expr})"


def _email_hash_sql(expr: str) -> str:
    """SQL of :func:`email_hash`."""
    return f"sha256('email' || chr(0) || lower(trim({expr})))"


def _lit(text: str) -> str:
    return text.replace("'", "''")


@dataclass(frozen=True)
class Entry:
    """One entry of the erasure list (no personal data: hashes, the members' source, when, who, why)."""

    member_hash: str
    email_hash: str | None
    source: str | None
    erased_at: str
    actor: str
    reason: str


class ErasureList:
    """The erased members, to recognise them in values (ids and emails) without knowing who they were."""

    def __init__(self, source: str, entries: Iterable[Entry]) -> None:
        self.source = source
        self.ids = {e.member_hash for e in entries}
        self.emails = {e.email_hash for e in entries if e.email_hash}

    @classmethod
    def load(cls, con: Connection, source: str) -> ErasureList:
        return cls(source, entries(con))

    def __bool__(self) -> bool:
        return bool(self.ids)

    def names(self, values: Iterable[object]) -> bool:
        """Whether any of ``values`` is the id (in the members' source) or the email of an erased member."""
        for value in values:
            text = str(value).strip() if value is not None else ""
            if text and (member_hash(self.source, text) in self.ids or email_hash(text) in self.emails):
                return True
        return False


def entries(con: Connection) -> list[Entry]:
    """The erasure list as the store holds it (a store of an earlier version lacks the email hash and source)."""
    cur = con.execute("SELECT * FROM erasures ORDER BY erased_at, member_hash")
    names = [d[0] for d in cur.description or ()]
    out = []
    for row in cur.fetchall():
        data = dict(zip(names, row, strict=True))
        at = data.get("erased_at")
        data["erased_at"] = at.isoformat() if isinstance(at, datetime) else str(at or "")
        out.append(Entry(**{k: data.get(k) for k in ENTRY_COLUMNS}))  # type: ignore[arg-type]
    return out


# ---------------------------------------------------------------------------------------------- incoming rows
def drop_erased(con: Connection, stream: Stream, source: str) -> None:
    """Remove staged rows of erased members (by id in the members' ``source``, and by email): erased members stay
    erased when a source sends them again."""
    if not scalar(con, "SELECT count(*) > 0 FROM erasures"):
        return
    who = _Hashed(source, "erasures")
    if stream is Stream.MEMBERS:
        where = f"{who.id('external_id')} OR {who.email('email')}"
    else:
        where = f"{who.id('member_external_id')} OR {who.email('member_email')}"
    con.execute(f"DELETE FROM {INCOMING} WHERE {where}")


def not_erased(con: Connection, source: str, rejects: Sequence[Rejection]) -> list[Rejection]:
    """The rejections that name no erased member (a bad row of a forgotten person is not kept or reported)."""
    if not rejects:
        return []
    erased = ErasureList.load(con, source)
    if not erased:
        return list(rejects)
    return [rej for rej in rejects if not erased.names([rej.record_id, *(rej.raw or {}).values()])]


# ---------------------------------------------------------------------------------------------- who is erased
class _Clear:
    """SQL conditions selecting one member's rows by their id and email (while the store still knows them)."""

    def __init__(self, external_id: str, email: str | None) -> None:
        self._id, self._email = _lit(external_id), _lit(email.strip().lower()) if email else None

    def id(self, expr: str) -> str:
        return f"({expr} = '{self._id}')"

    def email(self, expr: str) -> str:
        return f"(lower(trim({expr})) = '{self._email}')" if self._email else "false"


class _Hashed:
    """SQL conditions selecting the rows of the members whose hashes are in ``table`` (the erasure list)."""

    def __init__(self, source: str, table: str) -> None:
        self._source, self._table = source, table

    def id(self, expr: str) -> str:
        return f"({_id_hash_sql(self._source, expr)} IN (SELECT member_hash FROM {self._table}))"

    def email(self, expr: str) -> str:
        sql = f"SELECT email_hash FROM {self._table} WHERE email_hash IS NOT NULL"
        return f"({_email_hash_sql(expr)} IN ({sql}))"


def _delete(con: Connection, table: str, where: str) -> int:
    n = int(scalar(con, f"SELECT count(*) FROM {table} WHERE {where}") or 0)
    if n:
        con.execute(f"DELETE FROM {table} WHERE {where}")
    return n


def _erase_rows(con: Connection, source: str, who: _Clear | _Hashed) -> dict[str, int]:
    """Delete the rows of the member(s) ``who`` selects from every table; the number deleted per table."""
    counts: dict[str, int] = {}
    for table in ("orders", "activities"):
        where = f"{who.id('member_id')} OR {who.id('member_external_id')} OR {who.email('member_email')}"
        counts[table] = _delete(con, table, where)
    counts["members"] = _delete(con, "members", f"source = '{_lit(source)}' AND {who.id('external_id')}")
    for table in (*MEMBER_TABLES, *extension_member_tables(con)):
        if table_exists(con, table):  # an extension may create some of its tables on first use
            counts[table] = _delete(con, table, who.id("member_id"))
    raw_values = "SELECT q.rowid FROM quarantine q, unnest(json_extract_string(q.raw, '$.*')) AS v(x)"
    named = f"{raw_values} WHERE {who.id('trim(v.x)')} OR {who.email('v.x')}"
    own = f"stream = 'members' AND connector = '{_lit(source)}' AND {who.id('record_key')}"
    counts["quarantine"] = _delete(con, "quarantine", f"({own}) OR rowid IN ({named})")
    return counts


def _scrub_reports(con: Connection, names: Callable[[str], bool]) -> int:
    """Remove, from the stored run reports, the rejections that name an erased member; the number removed."""
    removed = 0
    for run_id, text in con.execute("SELECT run_id, report FROM runs").fetchall():
        report = json.loads(text)
        items = report.get("rejected") or []
        kept = [i for i in items if not any(names(t) for t in _tokens(i.get("locator"), i.get("reason")))]
        if len(kept) < len(items):
            removed += len(items) - len(kept)
            report["rejected"] = kept
            con.execute("UPDATE runs SET report = ? WHERE run_id = ?", [json.dumps(report), run_id])
    return removed


def _tokens(*texts: str | None) -> list[str]:
    return [t for text in texts if text for t in re.split(r"[\s'\"(),;<>]+", text) if t]


# ---------------------------------------------------------------------------------------------- forgetting
def member_email(con: Connection, source: str, external_id: str) -> str | None:
    return scalar(con, "SELECT email FROM members WHERE source = ? AND external_id = ?", [source, external_id])


def stored_member(con: Connection, source: str, external_id: str) -> Member:
    """The member as the store holds it (id, email, phone, names), for connectors to find them in their own files;
    only the id when the store holds no more (an erased member)."""
    row = con.execute(
        "SELECT email, phone, first_name, last_name FROM members WHERE source = ? AND external_id = ?",
        [source, external_id],
    ).fetchone()
    values = dict(zip(("email", "phone", "first_name", "last_name"), row, strict=True)) if row else {}
    return Member(source=source, external_id=external_id, **values)


def forget_member(
    con: Connection, source: str, external_id: str, *, actor: str, reason: str, side_file: Path | None = None
) -> dict[str, int]:
    """Erase a member's local data; return the number of rows deleted per table. See the module's docstring.

    Run it in one transaction (``with store.transaction() as con``): the erasure and its entry go together. With
    ``side_file``, the erasure list is written there before the transaction commits.
    """
    email = member_email(con, source, external_id)
    counts = _erase_rows(con, source, _Clear(external_id, email))
    erased = {external_id.strip(), *([email.strip().lower()] if email else [])}
    counts["run reports"] = _scrub_reports(con, lambda token: token in erased or token.lower() in erased)
    if not is_erased(con, source, external_id):
        entry = Entry(
            member_hash(source, external_id),
            email_hash(email) if email else None,
            source,
            datetime.now(UTC).isoformat(),
            actor,
            reason,
        )
        _insert(con, "erasures", [entry])
    if side_file is not None:
        write_list(side_file, entries(con))
    return counts


def _insert(con: Connection, table: str, items: Sequence[Entry]) -> None:
    sql = f"INSERT INTO {table} ({', '.join(ENTRY_COLUMNS)}) VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)})"
    con.executemany(sql, [[getattr(e, c) for c in ENTRY_COLUMNS] for e in items])


def known(con: Connection, source: str, external_id: str) -> bool:
    """Whether the store holds anything of the member: their record (deleted too), or only a quarantined row of it
    (a member whose every row was refused is forgotten like any other)."""
    sql = """SELECT (SELECT count(*) FROM members WHERE source = ? AND external_id = ?)
                  + (SELECT count(*) FROM quarantine WHERE connector = ? AND stream = 'members' AND record_key = ?)"""
    return bool(scalar(con, sql, [source, external_id, source, external_id]))


def is_erased(con: Connection, source: str, external_id: str) -> bool:
    """Whether the member is on the erasure list."""
    return bool(scalar(con, "SELECT count(*) FROM erasures WHERE member_hash = ?", [member_hash(source, external_id)]))


# ---------------------------------------------------------------------------------------------- the side file
def read_list(path: Path) -> list[Entry]:
    """The erasure list kept beside the store (empty when there is none)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            data: dict[str, Any] = json.loads(line)
            out.append(Entry(**{k: data.get(k) for k in ENTRY_COLUMNS}))  # type: ignore[arg-type]
    return out


def write_list(path: Path, items: Sequence[Entry]) -> None:
    """Write the erasure list beside the store, atomically (a crash leaves the old list or the new one)."""
    text = "".join(json.dumps(asdict(e), sort_keys=True) + "\n" for e in items)
    write_atomic(path, text.encode("utf-8"))


def missing(con: Connection, side_file: Path) -> tuple[list[Entry], bool]:
    """The side file's entries the store lacks, and whether the side file lacks entries of the store."""
    kept = {e.member_hash for e in entries(con)}
    listed = read_list(side_file)
    lacking = [e for e in listed if e.member_hash not in kept]
    return lacking, bool(kept - {e.member_hash for e in listed})


def reconcile(con: Connection, side_file: Path) -> int:
    """Make the store and the side file hold the same erasure list; erase again, in the store, every member of an
    entry the store lacked (a restored or rebuilt store). Returns the number of entries the store lacked.

    Run it in one transaction.
    """
    lacking, side_behind = missing(con, side_file)
    if lacking:
        _apply(con, lacking)
        _insert(con, "erasures", lacking)
    if side_behind:
        write_list(side_file, entries(con))
    return len(lacking)


def reapply(con: Connection) -> None:
    """Erase again, in every table, every member of the store's erasure list (after rows were copied in)."""
    _apply(con, entries(con))


def _apply(con: Connection, items: Sequence[Entry]) -> None:
    """Erase the members of ``items`` from every table, by their hashes (see :func:`forget_member`)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _erased AS SELECT * FROM erasures WHERE false")
    _insert(con, "_erased", items)
    for source in sorted({e.source for e in items if e.source}):
        _erase_rows(con, source, _Hashed(source, "_erased"))
        erased = ErasureList(source, items)
        _scrub_reports(con, lambda token, erased=erased: erased.names([token]))  # type: ignore[misc]
    con.execute("DROP TABLE _erased")
