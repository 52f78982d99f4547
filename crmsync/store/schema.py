"""The store's schema, as an ordered list of migrations.

Tables have no primary-key constraints: uniqueness of (source, external_id) and similar keys is kept by the
store's delete-then-insert writes, which keeps bulk loads fast and avoids constraint checks on rows replaced
within one transaction.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: initial schema
    [
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)",
        """CREATE TABLE IF NOT EXISTS members (
            source VARCHAR, external_id VARCHAR, email VARCHAR, phone VARCHAR, first_name VARCHAR,
            last_name VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, attributes JSON, opt_in BOOLEAN,
            deleted BOOLEAN, seen_run VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS orders (
            source VARCHAR, external_id VARCHAR, member_id VARCHAR, member_external_id VARCHAR,
            member_email VARCHAR, placed_at TIMESTAMPTZ, amount DECIMAL(18,4), currency VARCHAR,
            exchange_rate DECIMAL(18,8), amount_base DECIMAL(18,4), status VARCHAR, updated_at TIMESTAMPTZ,
            deleted BOOLEAN, seen_run VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS activities (
            source VARCHAR, external_id VARCHAR, member_id VARCHAR, member_external_id VARCHAR,
            member_email VARCHAR, kind VARCHAR, occurred_at TIMESTAMPTZ, points DECIMAL(18,4), attributes JSON,
            deleted BOOLEAN, seen_run VARCHAR)""",
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
            target VARCHAR, member_id VARCHAR, fields VARCHAR, previous VARCHAR, changed VARCHAR[],
            attempts INTEGER, status VARCHAR, last_error VARCHAR, last_field VARCHAR, created_run VARCHAR,
            updated_at TIMESTAMPTZ)""",
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
]

SCHEMA_VERSION = len(MIGRATIONS)
