"""Tables the policy owns, declared to the store as :data:`STORE_EXTENSION` (the store imports no policy).

- ``policy_points_ledger``: every points entry (order, activity, bonus, redemption, expiry) with the qualifying
  points it counts for, recomputed each run (the ``qualifying`` column is added to a ledger made before it).
- ``policy_points_bonus``: the tier-entry bonuses granted (the source of the ledger's ``bonus`` entries).
- ``policy_tier_overrides``: the active manual tier locks, one per member.
- ``policy_override_audit``: every change to a lock (set, cleared, expired), never deleted.
- ``policy_tier_state``: the tier each member holds at the end of the last decided day, since when, the tier
  before it, and since when the member has not qualified for the held tier (the start of a downgrade grace period).
- ``policy_tier_clock``: the last day whose tier decisions ``policy_tier_state`` holds (one row).
- ``policy_member_metrics``: each member's metrics as last computed (:data:`CACHE_TABLE`); a sync recomputes
  only the members whose inputs changed or whose metrics came due.
"""

from __future__ import annotations

from crmsync.store.schema import StoreExtension

LEDGER_TABLE = "policy_points_ledger"
OVERRIDES_TABLE = "policy_tier_overrides"
AUDIT_TABLE = "policy_override_audit"
STATE_TABLE = "policy_tier_state"
CLOCK_TABLE = "policy_tier_clock"
"""One row: ``decided_through``, the last day (in ``sync.timezone``) whose end-of-day tier decisions are stored."""
BONUS_TABLE = "policy_points_bonus"
"""Every tier-entry bonus granted: the member, the tier entered, when, how many points (never recomputed)."""
CACHE_TABLE = "policy_member_metrics"
"""Each member's metrics and points as last computed, with the hash of the inputs they came from (``fingerprint``)
and when they next change by the passage of time alone (``stale_at``). Created by the first grading, with one
column per metric the policy uses; dropped and rebuilt when the policy changes."""

POLICY_DDL: list[str] = [
    f"""CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
        member_id VARCHAR NOT NULL,
        entry_ref VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        occurred_at TIMESTAMPTZ,
        expires_at TIMESTAMPTZ,
        base_points DECIMAL(18,4),
        multiplier DECIMAL(9,4),
        points BIGINT NOT NULL,
        computed_at TIMESTAMPTZ
    )""",
    f"ALTER TABLE {LEDGER_TABLE} ADD COLUMN IF NOT EXISTS qualifying BIGINT",
    f"""CREATE TABLE IF NOT EXISTS {BONUS_TABLE} (
        member_id VARCHAR NOT NULL,
        tier VARCHAR NOT NULL,
        entry_ref VARCHAR NOT NULL,
        granted_at TIMESTAMPTZ NOT NULL,
        points BIGINT NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {OVERRIDES_TABLE} (
        member_id VARCHAR NOT NULL,
        tier VARCHAR NOT NULL,
        until DATE,
        reason VARCHAR,
        actor VARCHAR,
        created_at TIMESTAMPTZ
    )""",
    f"""CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
        logged_at TIMESTAMPTZ NOT NULL,
        member_id VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        tier VARCHAR,
        until DATE,
        reason VARCHAR,
        actor VARCHAR
    )""",
    f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
        member_id VARCHAR NOT NULL,
        tier VARCHAR NOT NULL,
        tier_since DATE,
        previous_tier VARCHAR,
        below_since DATE,
        updated_at TIMESTAMPTZ
    )""",
    f"CREATE TABLE IF NOT EXISTS {CLOCK_TABLE} (decided_through DATE NOT NULL, updated_at TIMESTAMPTZ)",
]
"""``CREATE TABLE IF NOT EXISTS`` statements; uniqueness per member is kept by the code that writes them."""

CACHE_META = "policy_member_metrics_version"
"""One row: the policy version and evaluation time :data:`CACHE_TABLE` was last computed for."""

STORE_EXTENSION = StoreExtension(
    name="policy",
    ddl=POLICY_DDL,
    member_tables=(LEDGER_TABLE, OVERRIDES_TABLE, AUDIT_TABLE, STATE_TABLE, CACHE_TABLE, BONUS_TABLE),
)
"""The policy's tables in the store: created when the store is opened for grading, a member's rows erased with the
member (the points ledger and bonuses, tier locks and their audit, held tiers, stored metrics)."""
