"""Writing one pulled batch: its records, deletions, rejections and cursor, in one transaction.

The steps, in order: stage the rows (:mod:`.staging`), drop those of erased members (:mod:`.erasure`), note the
member changes that may move orders and activities (:mod:`.matching`), replace the stored versions of the records,
resolve their quarantine entries, mark deletions, quarantine the rejections, and mark what a complete snapshot no
longer holds as deleted. The store adds the batch's cursor in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from crmsync.connector import Batch, Rejection, Stream
from crmsync.store import quarantine
from crmsync.store.db import Connection, scalar
from crmsync.store.erasure import drop_erased, not_erased
from crmsync.store.matching import MemberMatch, clear_for_members, ensure_matching
from crmsync.store.records import LOCATOR, TABLES
from crmsync.store.staging import INCOMING, ExchangeRates, stage

MEMBER_CHANGES = "_member_changes"
"""Members new, deleted or with another email in this batch (``external_id``, ``email``): rows they may move."""


def write_batch(
    con: Connection, connector: str, batch: Batch, *, run_id: str, rates: ExchangeRates, match: MemberMatch | None
) -> list[Rejection]:
    """Store a batch's records, deletions and rejections (see :meth:`crmsync.store.Store.write_batch`, which adds
    the cursor in the same transaction); return every rejection of the batch that names no erased member."""
    stream = Stream(batch.stream)
    members = stream is Stream.MEMBERS
    if members:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {MEMBER_CHANGES} (external_id VARCHAR, email VARCHAR)")
    elif match is not None:
        ensure_matching(con, match)
    members_source = match.source if match is not None else connector
    try:
        staged, refused = stage(con, connector, batch, rates)
        if staged:
            _store_staged(con, connector, stream, run_id, match, members_source)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {INCOMING}")
    rejects = not_erased(con, members_source, [*batch.rejects, *refused])
    if batch.deleted:
        _mark_deleted(con, connector, stream, batch.deleted, run_id)
    for rej in rejects:
        quarantine.add(con, connector, rej, run_id)
    if batch.snapshot_complete:
        _mark_absent_deleted(con, connector, stream, run_id)
    if members:
        clear_for_members(con, MEMBER_CHANGES)
        con.execute(f"DROP TABLE {MEMBER_CHANGES}")
    return rejects


def _store_staged(
    con: Connection, connector: str, stream: Stream, run_id: str, match: MemberMatch | None, members_source: str
) -> None:
    """Replace the stored versions of the staged records (pointing orders and activities at their member when
    ``match`` is given), leaving out erased members, and resolve their quarantine entries."""
    table = TABLES[stream]
    drop_erased(con, stream, members_source)
    if stream is Stream.MEMBERS:  # new members, changed emails and deletions may move orders and activities
        con.execute(
            f"INSERT INTO {MEMBER_CHANGES} SELECT i.external_id, i.email FROM {INCOMING} i "
            "LEFT JOIN members m ON m.source = ? AND m.external_id = i.external_id "
            "WHERE m.external_id IS NULL OR m.deleted IS DISTINCT FROM i.deleted OR m.email IS DISTINCT FROM i.email",
            [connector],
        )
    if scalar(con, f"SELECT count(*) > 0 FROM {table.name} WHERE source = ?", [connector]):
        con.execute(
            f"DELETE FROM {table.name} WHERE source = ? AND external_id IN (SELECT external_id FROM {INCOMING})",
            [connector],
        )
    cols = ", ".join((*table.names, "seen_run", *([LOCATOR] if table.located else [])))
    values = ", ".join((*(f"i.{c}" for c in table.names), "$run", *(["i._locator"] if table.located else [])))
    if match is not None and stream is not Stream.MEMBERS:
        joins, pick = match.sql("i")
        sql = f"INSERT INTO {table.name} ({cols}, member_id) SELECT {values}, {pick} FROM {INCOMING} i {joins}"
    else:
        sql = f"INSERT INTO {table.name} ({cols}) SELECT {values} FROM {INCOMING} i"
    con.execute(sql, {"run": run_id})
    quarantine.resolve_staged(con, connector, stream, run_id)


def _mark_deleted(con: Connection, connector: str, stream: Stream, ids: Sequence[str], run_id: str) -> None:
    table = TABLES[stream].name
    if stream is Stream.MEMBERS:
        con.execute(
            f"INSERT INTO {MEMBER_CHANGES} SELECT external_id, email FROM members WHERE source = ? "
            "AND NOT deleted AND external_id IN (SELECT unnest(?::VARCHAR[]))",
            [connector, list(ids)],
        )
    con.execute(
        f"UPDATE {table} SET deleted = true, seen_run = ? "
        "WHERE source = ? AND external_id IN (SELECT unnest(?::VARCHAR[]))",
        [run_id, connector, list(ids)],
    )


def _mark_absent_deleted(con: Connection, connector: str, stream: Stream, run_id: str) -> None:
    """After a complete snapshot: rows it did not hold are gone. Rows this pull rejected are kept as they were (a
    fixed record replaces them later), never deleted because one field went bad."""
    table = TABLES[stream].name
    rejected, params = quarantine.rejected_in_run_sql(connector, stream, run_id)
    gone = f"source = ? AND NOT deleted AND seen_run IS DISTINCT FROM ? AND external_id NOT IN ({rejected})"
    params = [connector, run_id, *params]
    if stream is Stream.MEMBERS:
        con.execute(f"INSERT INTO {MEMBER_CHANGES} SELECT external_id, email FROM members WHERE {gone}", params)
    con.execute(f"UPDATE {table} SET deleted = true WHERE {gone}", params)
