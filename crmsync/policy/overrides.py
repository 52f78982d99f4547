"""Manual tier locks: a member keeps a chosen tier until a date, whatever the rules say; every change is audited.

A lock applies while the evaluation day is on or before ``until`` (no ``until``: until cleared). When a lock
has expired, the next evaluation removes it and audits ``expired``; the normal rules then resume from the
locked tier (a downgrade waits for the grace period).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from crmsync.errors import PolicyError
from crmsync.policy.ddl import AUDIT_TABLE, OVERRIDES_TABLE
from crmsync.store.db import Connection


@dataclass(frozen=True)
class Override:
    member_id: str
    tier: str
    until: date | None
    reason: str | None
    actor: str | None
    created_at: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


def _audit(
    con: Connection,
    member_id: str,
    action: str,
    tier: str | None,
    until: date | None,
    reason: str | None,
    actor: str | None,
    at: datetime | None = None,
) -> None:
    con.execute(
        f"INSERT INTO {AUDIT_TABLE} (logged_at, member_id, action, tier, until, reason, actor) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [at or _now(), member_id, action, tier, until, reason, actor],
    )


def set_override(
    con: Connection,
    member_id: str,
    tier: str,
    until: date | None,
    reason: str,
    actor: str,
    *,
    tier_names: list[str] | None = None,
) -> Override:
    """Lock ``member_id`` at ``tier`` until ``until`` (inclusive); replaces an existing lock.

    Raises:
        PolicyError: ``tier`` is not one of ``tier_names`` (when given) or ``reason``/``actor`` is empty.
    """
    problems = []
    if tier_names is not None and tier not in tier_names:
        problems.append(f"override.tier: unknown tier {tier!r} (tiers: {', '.join(tier_names)})")
    if not (reason or "").strip():
        problems.append("override.reason: required (why is this member locked?)")
    if not (actor or "").strip():
        problems.append("override.actor: required (who sets the lock?)")
    if problems:
        raise PolicyError("invalid override", problems=problems)
    now = _now()
    con.execute(f"DELETE FROM {OVERRIDES_TABLE} WHERE member_id = ?", [member_id])
    con.execute(
        f"INSERT INTO {OVERRIDES_TABLE} (member_id, tier, until, reason, actor, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [member_id, tier, until, reason, actor, now],
    )
    _audit(con, member_id, "set", tier, until, reason, actor, now)
    return Override(member_id, tier, until, reason, actor, now)


def clear_override(con: Connection, member_id: str, actor: str, reason: str | None = None) -> bool:
    """Remove a member's lock; returns whether there was one. Audited as ``cleared``."""
    row = con.execute(f"SELECT tier, until FROM {OVERRIDES_TABLE} WHERE member_id = ?", [member_id]).fetchone()
    if row is None:
        return False
    con.execute(f"DELETE FROM {OVERRIDES_TABLE} WHERE member_id = ?", [member_id])
    _audit(con, member_id, "cleared", row[0], row[1], reason, actor)
    return True


def list_overrides(con: Connection, *, include_expired: bool = True, on: date | None = None) -> list[Override]:
    """Locks ordered by member; with ``include_expired=False`` only those in force on ``on`` (default today)."""
    sql = f"SELECT member_id, tier, until, reason, actor, timezone('UTC', created_at) FROM {OVERRIDES_TABLE}"
    params: list[Any] = []
    if not include_expired:
        sql += " WHERE until IS NULL OR until >= ?"
        params.append(on or _now().date())
    rows = con.execute(sql + " ORDER BY member_id", params).fetchall()
    return [Override(*r[:5], r[5].replace(tzinfo=UTC) if r[5] else None) for r in rows]


def audit_log(con: Connection, member_id: str | None = None) -> list[dict[str, Any]]:
    """The audit trail of locks, oldest first (optionally of one member)."""
    sql = (
        f"SELECT timezone('UTC', logged_at) AS logged_at, member_id, action, tier, until, reason, actor "
        f"FROM {AUDIT_TABLE}"
    )
    params: list[Any] = []
    if member_id is not None:
        sql += " WHERE member_id = ?"
        params.append(member_id)
    cur = con.execute(sql + " ORDER BY logged_at, member_id", params)
    cols = [d[0] for d in cur.description]
    out = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    for row in out:
        row["logged_at"] = row["logged_at"].replace(tzinfo=UTC)
    return out


def expire_sql(as_of_day: date) -> list[str]:
    """Statements that audit and remove locks that ended before ``as_of_day``."""
    day = f"DATE '{as_of_day.isoformat()}'"
    return [
        f"INSERT INTO {AUDIT_TABLE} (logged_at, member_id, action, tier, until, reason, actor) "
        f"SELECT now(), member_id, 'expired', tier, until, reason, actor FROM {OVERRIDES_TABLE} WHERE until < {day}",
        f"DELETE FROM {OVERRIDES_TABLE} WHERE until < {day}",
    ]
