"""Why a member has its grades: the metric values and the rule behind each grade."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crmsync.errors import CrmsyncError
from crmsync.policy.expr import DATE
from crmsync.policy.modes import GradingMode
from crmsync.store.db import Connection

if TYPE_CHECKING:
    from crmsync.policy.compiled import CompiledPolicy

GRADES = ("tier", "points", "rfm", "lifecycle", "tags")


@dataclass(frozen=True)
class Grade:
    """One grade: its value and the sentence saying which rule decided it."""

    value: Any
    reason: str


@dataclass(frozen=True)
class Explanation:
    member_id: str
    as_of: datetime
    policy_version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    grades: dict[str, Grade] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    decision: dict[str, Any] = field(default_factory=dict)
    """How the tier was decided: ``move`` (new, up, stay, hold, grace, down, override), ``rule`` (entry, keep,
    default, lock), ``held_tier`` (at the end of the day before), ``qualifies_for`` (the tier the entry conditions
    give), ``not_qualifying_since`` and ``grace_until`` (the day the drop is decided) during a grace period, and
    ``period_ends`` (the last day of the qualification period) with a period."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "as_of": self.as_of.isoformat(),
            "policy_version": self.policy_version,
            "metrics": {k: _jsonable(v) for k, v in self.metrics.items()},
            "grades": {k: {"value": _jsonable(g.value), "reason": g.reason} for k, g in self.grades.items()},
            "ledger": [{k: _jsonable(v) for k, v in e.items()} for e in self.ledger],
            "decision": {k: _jsonable(v) for k, v in self.decision.items()},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def utc(column: str) -> str:
    """SQL reading a TIMESTAMPTZ column as a UTC TIMESTAMP (fetching TIMESTAMPTZ would need pytz)."""
    return f'timezone(\'UTC\', "{column}") AS "{column}"'


def aware(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def _rows(con: Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [{c: aware(v) for c, v in zip(cols, r, strict=True)} for r in cur.fetchall()]


def _row(con: Connection, sql: str, params: list[Any]) -> dict[str, Any] | None:
    rows = _rows(con, sql, params)
    return rows[0] if rows else None


def explain(compiled: CompiledPolicy, con: Connection, member_id: str, as_of: datetime) -> Explanation:
    """Grade everyone without writing state, then describe ``member_id``.

    Raises:
        CrmsyncError: the member is unknown or deleted.
    """
    out = compiled.run(con, as_of, GradingMode.EXPLAIN).graded
    graded = _row(
        con, f"SELECT * EXCLUDE (computed_at), {utc('computed_at')} FROM {out} WHERE member_id = ?", [member_id]
    )
    if graded is None:
        raise CrmsyncError(f"member {member_id!r} not found (or deleted)")
    names = ["member_id", *sorted(compiled.used_metrics)]
    dates = {n for n, m in compiled.used_metrics.items() if m.type == DATE}
    cols = ", ".join(utc(n) if n in dates else f'"{n}"' for n in names)
    values = _row(con, f"SELECT {cols} FROM _pol_stage WHERE member_id = ?", [member_id]) or {}
    values.pop("member_id", None)
    reasons = json.loads(graded["reasons"]) if isinstance(graded["reasons"], str) else graded["reasons"]
    grades = {
        "tier": Grade(graded["tier"], reasons.get("tier", "")),
        "points": Grade(graded["points"], reasons.get("points", "")),
        "rfm": Grade(
            {"r": graded["rfm_r"], "f": graded["rfm_f"], "m": graded["rfm_m"], "segment": graded["rfm_segment"]},
            reasons.get("rfm", ""),
        ),
        "lifecycle": Grade(graded["lifecycle"], reasons.get("lifecycle", "")),
        "tags": Grade(list(graded["tags"] or []), reasons.get("tags", "")),
    }
    ledger = _rows(
        con,
        f"SELECT entry_ref, kind, {utc('occurred_at')}, {utc('expires_at')}, base_points, points, qualifying "
        "FROM _pol_ledger "
        "WHERE member_id = ? ORDER BY occurred_at, entry_ref",
        [member_id],
    )
    local = as_of.astimezone(compiled.tz)
    return Explanation(member_id, local, compiled.version, values, grades, ledger, _decision(con, member_id))


def _decision(con: Connection, member_id: str) -> dict[str, Any]:
    row = _row(
        con,
        "SELECT move, CASE WHEN move = 'override' THEN 'lock' WHEN move NOT IN ('new', 'up') AND q_stay > q_rank "
        "THEN 'keep' WHEN q_rank = 1 THEN 'default' ELSE 'entry' END AS rule, held_tier, q_tier AS qualifies_for, "
        "eff_below AS not_qualifying_since, CASE WHEN move = 'grace' THEN grace_until END AS grace_until, "
        "period_last_day AS period_ends FROM _pol_tiers WHERE member_id = ?",
        [member_id],
    )
    if row and row["move"] not in ("grace", "down"):
        row["not_qualifying_since"] = None
    return {k: v for k, v in (row or {}).items() if v is not None}
