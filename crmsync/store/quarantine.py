"""The quarantine: source records that could not be stored, with where they are, the field, why, and their raw values.

An entry is keyed by connector, stream and the record's id (else its locator). A later pull that stores the record
resolves the entry (:func:`resolve_staged`); resolved entries are pruned with the run that resolved them.
"""

from __future__ import annotations

import json
from typing import Any

from crmsync.connector import Rejection, Stream
from crmsync.store.db import Connection, scalar
from crmsync.store.staging import INCOMING

ENTRY_COLUMNS = ("connector", "stream", "locator", "field", "reason", "first_run", "last_run", "resolved")


def add(con: Connection, connector: str, rej: Rejection, run_id: str) -> None:
    """Quarantine a rejection, one entry per rejected source row (several rows may share a record id, e.g.
    duplicates), keeping the run that first saw the record.

    Entries of the record from earlier runs are replaced (a new read reports the record's rows anew); those of this
    run are kept, except one at the same locator.
    """
    key = rej.record_id or rej.locator
    raw = json.dumps(dict(rej.raw), default=str, ensure_ascii=False) if rej.raw is not None else None
    where = "connector = ? AND stream = ? AND record_key = ? AND NOT resolved"
    params = [connector, str(rej.stream), key]
    first = scalar(con, f"SELECT min(first_run) FROM quarantine WHERE {where}", params) or run_id
    con.execute(
        f"DELETE FROM quarantine WHERE {where} AND (last_run IS DISTINCT FROM ? OR locator = ?)",
        [*params, run_id, rej.locator],
    )
    con.execute(
        "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, false, NULL)",
        [*params, rej.locator, rej.field, rej.reason, raw, first, run_id],
    )


def resolve_staged(con: Connection, connector: str, stream: Stream, run_id: str) -> None:
    """Resolve the entries of the records just staged (they arrived fixed)."""
    con.execute(
        "UPDATE quarantine SET resolved = true, resolved_run = ? WHERE connector = ? AND stream = ? "
        f"AND NOT resolved AND record_key IN (SELECT external_id FROM {INCOMING})",
        [run_id, connector, str(stream)],
    )


def resolve_absent(con: Connection, connector: str, stream: Stream, run_id: str) -> None:
    """Resolve the entries of ``connector``'s ``stream`` that this run did not reject again: a source read whole
    each run (a lake table) names its rejected rows anew every time, so an entry left out was fixed."""
    con.execute(
        "UPDATE quarantine SET resolved = true, resolved_run = ? WHERE connector = ? AND stream = ? "
        "AND NOT resolved AND last_run IS DISTINCT FROM ?",
        [run_id, connector, str(stream), run_id],
    )


def rejected_in_run_sql(connector: str, stream: Stream, run_id: str) -> tuple[str, list[Any]]:
    """SQL (and parameters) selecting the keys of the records a run rejected and left in quarantine."""
    sql = "SELECT record_key FROM quarantine WHERE connector = ? AND stream = ? AND last_run = ? AND NOT resolved"
    return sql, [connector, str(stream), run_id]


_BY_LINE = (
    "regexp_replace(locator, ':[0-9]+$', ''), TRY_CAST(regexp_extract(locator, ':([0-9]+)$', 1) AS BIGINT), locator"
)
"""Locators in reading order: by file, then by line number, then as text."""


def unresolved_count(con: Connection) -> int:
    """Records in quarantine, waiting for a fix in their source."""
    return int(scalar(con, "SELECT count(*) FROM quarantine WHERE NOT resolved") or 0)


def entries(con: Connection, *, include_resolved: bool = False) -> list[dict[str, Any]]:
    """The quarantine for people: one dict per entry (``ENTRY_COLUMNS``), by connector, stream and locator, a
    locator's line number read as a number (``orders.csv:9`` before ``orders.csv:10``)."""
    where = "true" if include_resolved else "NOT resolved"
    order = f"connector, stream, {_BY_LINE}"
    cur = con.execute(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM quarantine WHERE {where} ORDER BY {order}")
    return [dict(zip(ENTRY_COLUMNS, row, strict=True)) for row in cur.fetchall()]


def prune(con: Connection) -> None:
    """Forget entries resolved by a run no longer kept."""
    con.execute("DELETE FROM quarantine WHERE resolved AND resolved_run NOT IN (SELECT run_id FROM runs)")
