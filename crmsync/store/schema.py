"""The store's schema: an ordered list of migrations, and the extensions other parts of crmsync add.

The record tables are created from their declaration (:mod:`crmsync.store.records`); a later change of a declaration
comes with a migration that brings existing stores to it (``ADD COLUMN IF NOT EXISTS``, so a new store, created with
the new declaration, passes it unchanged).

Tables have no primary-key constraints: uniqueness of (source, external_id) and similar keys is kept by the
store's delete-then-insert writes, which keeps bulk loads fast and avoids constraint checks on rows replaced
within one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from crmsync.connector import Stream
from crmsync.store.db import Connection, meta_like, set_meta
from crmsync.store.records import TABLES

MIGRATIONS: list[list[str]] = [
    # 1: initial schema
    [
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)",
        *(t.ddl for t in TABLES.values()),
        "CREATE TABLE IF NOT EXISTS cursors (connector VARCHAR, stream VARCHAR, value VARCHAR, updated_at TIMESTAMPTZ)",
        """CREATE TABLE IF NOT EXISTS connector_state (
            connector VARCHAR, key VARCHAR, value VARCHAR, updated_at TIMESTAMPTZ)""",
        """CREATE TABLE IF NOT EXISTS profiles (
            member_id VARCHAR, tier VARCHAR, tier_rank INTEGER, tier_since DATE, previous_tier VARCHAR,
            points BIGINT, rfm_r INTEGER, rfm_f INTEGER, rfm_m INTEGER, rfm_segment VARCHAR, lifecycle VARCHAR,
            tags VARCHAR[], reasons JSON, policy_version VARCHAR, computed_at TIMESTAMPTZ)""",
        """CREATE TABLE IF NOT EXISTS pushed (
            target VARCHAR, member_id VARCHAR, fields VARCHAR, run_id VARCHAR, pushed_at TIMESTAMPTZ)""",
        """CREATE TABLE IF NOT EXISTS outbox (
            target VARCHAR, member_id VARCHAR, fields VARCHAR, previous VARCHAR, attempts INTEGER, status VARCHAR,
            last_error VARCHAR, last_field VARCHAR, created_run VARCHAR, updated_at TIMESTAMPTZ)""",
        """CREATE TABLE IF NOT EXISTS push_audit (
            run_id VARCHAR, target VARCHAR, member_id VARCHAR, field VARCHAR, previous VARCHAR, new VARCHAR,
            reason VARCHAR, pushed_at TIMESTAMPTZ)""",
        """CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR, command VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, status VARCHAR,
            report JSON)""",
        """CREATE TABLE IF NOT EXISTS quarantine (
            connector VARCHAR, stream VARCHAR, record_key VARCHAR, locator VARCHAR, field VARCHAR, reason VARCHAR,
            raw JSON, first_run VARCHAR, last_run VARCHAR, resolved BOOLEAN, resolved_run VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS erasures (
            member_hash VARCHAR, erased_at TIMESTAMPTZ, actor VARCHAR, reason VARCHAR)""",
    ],
    # 2: the outbox no longer keeps the names of the changed fields (they follow from fields and previous)
    ["ALTER TABLE outbox DROP COLUMN IF EXISTS changed"],
    # 3: partial refunds of orders, in the order's currency and in the base currency
    TABLES[Stream.ORDERS].add_columns("refunded_amount", "refunded_amount_base"),
    # 4: where orders and activities came from; the run of a change's last counted attempt and why it was queued
    # again; the members' source and email of an erasure (as a one-way hash)
    [
        "ALTER TABLE orders ADD COLUMN IF NOT EXISTS locator VARCHAR",
        "ALTER TABLE activities ADD COLUMN IF NOT EXISTS locator VARCHAR",
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS attempt_run VARCHAR",
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS requeued VARCHAR",
        "ALTER TABLE erasures ADD COLUMN IF NOT EXISTS source VARCHAR",
        "ALTER TABLE erasures ADD COLUMN IF NOT EXISTS email_hash VARCHAR",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

EXTENSION_KEY = "extension:"
"""``meta`` keys ``extension:NAME`` hold each installed extension's member tables (JSON)."""


@dataclass(frozen=True)
class StoreExtension:
    """Tables another part of crmsync keeps in the store, declared to it (the store imports no such part).

    Args:
        name: who owns the tables (``policy``).
        ddl: ``CREATE TABLE IF NOT EXISTS`` statements, run whenever the extension is installed.
        member_tables: tables with a ``member_id`` column whose rows belong to one member each: erasing a member
            deletes them (a table may be created later, by its first use).
    """

    name: str
    ddl: Sequence[str] = ()
    member_tables: Sequence[str] = ()


def declared(extension: StoreExtension) -> str:
    """What the store remembers of an installed extension (its member tables, as JSON)."""
    return json.dumps(list(extension.member_tables))


def install(con: Connection, extension: StoreExtension) -> None:
    """Create the extension's tables and remember its member tables in the store (so erasure finds them even
    when the extension is not loaded)."""
    for sql in extension.ddl:
        con.execute(sql)
    set_meta(con, EXTENSION_KEY + extension.name, declared(extension))


def extension_member_tables(con: Connection) -> list[str]:
    """The member tables of every extension ever installed in this store."""
    return [t for value in meta_like(con, EXTENSION_KEY).values() for t in json.loads(value)]
