"""The store's DuckDB connection type and the few helpers every module of the store shares.

A leaf: it imports nothing of crmsync, so any part of crmsync (the policy too) may use it without a loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import duckdb

Connection: TypeAlias = duckdb.DuckDBPyConnection
"""An open DuckDB connection: the store's (:attr:`crmsync.store.Store.con`) or one built for a test."""


def scalar(con: Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of ``sql`` (``None`` without rows)."""
    row = con.execute(sql, list(params)).fetchone()
    return row[0] if row else None


def table_exists(con: Connection, name: str) -> bool:
    """Whether the store holds a (non-temporary) table ``name``; some tables are created by their first use."""
    sql = "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary"
    return bool(scalar(con, sql, [name]))


def get_meta(con: Connection, key: str) -> str | None:
    """A value of the store's ``meta`` table (schema version, settings the stored data was derived with)."""
    return scalar(con, "SELECT value FROM meta WHERE key = ?", [key])


def set_meta(con: Connection, key: str, value: str | None) -> None:
    """Set (``None``: remove) a value of the ``meta`` table."""
    con.execute("DELETE FROM meta WHERE key = ?", [key])
    if value is not None:
        con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])


def meta_like(con: Connection, prefix: str) -> dict[str, str]:
    """Every ``meta`` value whose key starts with ``prefix``, by key."""
    rows = con.execute("SELECT key, value FROM meta WHERE starts_with(key, ?) ORDER BY key", [prefix]).fetchall()
    return dict(rows)
