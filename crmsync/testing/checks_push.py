"""Push checks: round trip, only what changed, idempotence, per-record rejections, ``check`` on missing fields."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from crmsync.connector import CheckResult, Connector, ProfileChange, RecordResult, Stream
from crmsync.models import PUSHED_FIELDS
from crmsync.testing.base import ContractBase, applies, pushes
from crmsync.testing.double import CrmDouble
from crmsync.testing.driver import ContractError

GRADES = (
    {"tier": "Gold", "points": 1200, "tags": ["at_risk_vip", "newsletter"], "rfm_segment": "Champions",
     "lifecycle": "loyal"},
    {"tier": "Silver", "points": 40, "tags": [], "rfm_segment": "At Risk", "lifecycle": "dormant"},
    {"tier": "Bronze", "points": 0, "tags": ["new"], "rfm_segment": "New", "lifecycle": "new"},
)  # fmt: skip


def pushed_fields(connector: Connector) -> tuple[str, ...]:
    return tuple(connector.push_fields or PUSHED_FIELDS)


def make_changes(connector: Connector, member_ids: Sequence[str], grade: int = 0) -> list[ProfileChange]:
    """One change per member with every pushed field set (never pushed before)."""
    fields = pushed_fields(connector)
    out = []
    for i, member_id in enumerate(member_ids):
        values = {k: v for k, v in GRADES[(i + grade) % len(GRADES)].items() if k in fields}
        out.append(ProfileChange(member_id, values, previous={}, changed=frozenset(values)))
    return out


def normalise(field: str, value: Any) -> Any:
    """Compare pushed values loosely: tags as a sorted list whatever the separator, points as int."""
    if field == "tags":
        items = re.split(r"[,;|]", value) if isinstance(value, str) else list(value or [])
        return sorted(str(t).strip() for t in items if str(t).strip())
    if field == "points" and value not in (None, ""):
        return int(value)
    return None if value in (None, "") else str(value)


def push_all(connector: Connector, changes: Sequence[ProfileChange]) -> list[RecordResult]:
    """Push in calls of at most ``push_batch_size``, as the engine does; check one result per change."""
    size = connector.push_batch_size
    results: list[RecordResult] = []
    for start in range(0, len(changes), size):
        chunk = changes[start : start + size]
        got = connector.push(chunk)
        ids = sorted(r.member_id for r in got)
        if not isinstance(got, list) or ids != sorted(c.member_id for c in chunk):
            raise ContractError(
                f"push() of {len(chunk)} changes returned results for {ids}; return exactly one RecordResult "
                "per change, with its member_id"
            )
        results += got
    return results


def held_differently(double: CrmDouble, changes: Sequence[ProfileChange]) -> list[str]:
    held = double.pushed()
    problems = []
    for change in changes:
        for field, want in change.values.items():
            got = held.get(change.member_id, {}).get(field)
            if normalise(field, got) != normalise(field, want):
                problems.append(f"member {change.member_id!r}: {field} holds {got!r} after the push, not {want!r}")
    return problems


class PushChecks(ContractBase):
    @applies(pushes)
    def test_push_round_trip(self, double: CrmDouble, connector: Connector):
        changes = make_changes(connector, double.seed(Stream.MEMBERS, 4))
        results = push_all(connector, changes)
        problems = [f"member {r.member_id!r} was not pushed: {r.reason}" for r in results if not r.ok]
        problems += held_differently(double, changes)
        if problems:
            raise ContractError("\n".join(problems))

    @applies(pushes)
    def test_push_of_no_changes_makes_no_call(self, double: CrmDouble, connector: Connector):
        double.seed(Stream.MEMBERS, 2)
        before = double.calls
        try:
            results = connector.push([])
        except Exception as exc:
            results = [f"{type(exc).__name__}: {exc}"]  # type: ignore[list-item]
        if results or double.calls != before:
            raise ContractError(
                f"push([]) made {double.calls - before} call(s) and gave {results!r}: with no changes, "
                "return [] without calling the system"
            )

    @applies(pushes)
    def test_rerun_pushes_only_what_changed(self, double: CrmDouble, connector: Connector):
        members = double.seed(Stream.MEMBERS, 4)
        push_all(connector, make_changes(connector, members))  # first run: everybody is new
        calls = len(double.push_log())
        # second run: the engine's diff finds one member whose grade changed
        change = make_changes(connector, members[1:2], grade=2)  # Bronze, was Silver
        push_all(connector, change)
        written = [m for ids in double.push_log()[calls:] for m in ids]
        if sorted(set(written)) != [members[1]] or len(written) != 1:
            raise ContractError(
                f"the second push was given one change (member {members[1]!r}) but wrote {written}: push only "
                "the changes you are given, once each; keep no buffer of earlier changes between calls"
            )

    @applies(pushes)
    def test_pushing_the_same_values_twice_is_harmless(self, double: CrmDouble, connector: Connector):
        changes = make_changes(connector, double.seed(Stream.MEMBERS, 3))
        push_all(connector, changes)
        again = push_all(connector, changes)  # the engine retries a batch whose results were lost
        problems = [f"second push of member {r.member_id!r} failed: {r.reason}" for r in again if not r.ok]
        problems += held_differently(double, changes)
        if problems:
            raise ContractError("\n".join(problems))

    @applies(lambda cls: pushes(cls) and cls.refuses_records)
    def test_per_record_rejections_are_reported_without_failing_the_batch(
        self, double: CrmDouble, connector: Connector
    ):
        members = double.seed(Stream.MEMBERS, 4)
        field = pushed_fields(connector)[0]
        reason = "value not allowed in picklist"
        double.reject_push(members[2], field, reason)
        changes = make_changes(connector, members)
        try:
            results = push_all(connector, changes)
        except ContractError:
            raise
        except Exception as exc:
            raise ContractError(
                f"one refused record made push() raise {type(exc).__name__}: {exc}. A per-record error is a "
                "RecordResult(ok=False, reason=...), and the other records of the call still count"
            ) from None
        by_id = {r.member_id: r for r in results}
        bad = by_id[members[2]]
        problems = []
        if bad.ok:
            problems.append(
                f"the system refused member {members[2]!r} ({reason}) but push() reported ok=True: read each "
                "record's status in the response and return RecordResult(ok=False, reason=<the message>)"
            )
        elif not bad.reason or reason not in bad.reason:
            problems.append(f"RecordResult.reason {bad.reason!r} should carry the system's message {reason!r}")
        problems += [f"member {m!r} was refused along with the bad one" for m in members if m != members[2]
                     and not by_id[m].ok]  # fmt: skip
        problems += held_differently(double, [c for c in changes if c.member_id != members[2]])
        if problems:
            raise ContractError("\n".join(problems))

    @applies(lambda cls: pushes(cls) and cls.custom_fields)
    def test_check_reports_missing_fields(self, double: CrmDouble, connector: Connector):
        field = pushed_fields(connector)[0]
        name = double.drop_field(field)
        results = connector.check()
        failed = [r for r in results if isinstance(r, CheckResult) and not r.ok]
        if not any(name in f"{r.name} {r.detail}" or field in f"{r.name} {r.detail}" for r in failed):
            raise ContractError(
                f"the custom field {name!r} (for {field}) is missing in the system, but check() reported "
                f"{[str(r) for r in results]}: return CheckResult(name, ok=False, detail=...) naming each "
                "missing field, so 'crmsync check' tells the user what to create"
            )
