"""Push checks: round trip, a whole batch written, only what changed, idempotence, per-record rejections, records
missing from a write answer, input left unchanged, ``check`` on missing fields."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from crmsync.connector import CheckResult, Connector, ProfileChange, RecordResult, Stream
from crmsync.errors import ConnectorError
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


FULL_BATCH_LIMIT = 1000
"""The whole-batch check pushes ``push_batch_size`` changes in one call, at most this many."""
CLEARED = {"tier": "Bronze", "points": 0, "tags": [], "rfm_segment": None, "lifecycle": None}
"""Grades of a member whose segment and stage are no longer known: a push clears those fields."""


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
    """Push in calls of at most ``push_batch_size``, as the engine does; check one result per change, and that
    ``push()`` left the changes it was given as they were."""
    size = connector.push_batch_size
    results: list[RecordResult] = []
    for start in range(0, len(changes), size):
        chunk = list(changes[start : start + size])
        before = copy.deepcopy(chunk)
        got = connector.push(chunk)
        if chunk != before:
            changed = [b.member_id for i, b in enumerate(before) if i >= len(chunk) or chunk[i] != b]
            raise ContractError(
                f"push() changed the changes it was given (members {changed or 'removed from the list'}): the engine "
                "keeps them to record the results and to retry; copy what you need to convert (dict(c.values), "
                "sorted(tags)) and never remove items from the list"
            )
        ids = sorted(r.member_id for r in got) if isinstance(got, list) else got
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


def _later(connector: Connector, change: ProfileChange, grades: dict[str, Any]) -> ProfileChange:
    """The next change of the same member, as the engine builds it: ``previous`` is what was pushed."""
    values = {k: v for k, v in grades.items() if k in pushed_fields(connector)}
    changed = frozenset(k for k, v in values.items() if change.values.get(k) != v)
    return ProfileChange(change.member_id, values, previous=dict(change.values), changed=changed)


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
    def test_a_full_push_batch_is_written_whole(self, double: CrmDouble, connector: Connector):
        size = min(connector.push_batch_size, FULL_BATCH_LIMIT)
        members = double.seed(Stream.MEMBERS, size)
        changes = make_changes(connector, members)
        try:
            results = push_all(connector, changes)  # one push() call of push_batch_size changes
        except ContractError:
            raise
        except Exception as exc:
            raise ContractError(
                f"a push() of {size} changes (push_batch_size) raised {type(exc).__name__}: {exc}. The engine "
                "passes up to push_batch_size changes: set it to what the API accepts in one call, or split the "
                "batch into calls the API accepts"
            ) from None
        written = {m for ids in double.push_log() for m in ids}
        if lost := [r.member_id for r in results if r.ok and r.member_id not in written]:
            raise ContractError(
                f"{len(lost)} of {size} changes pushed in one push() call were reported ok but never written "
                f"(e.g. {lost[:5]}): a batch larger than the API accepts was cut short. Send every change (split "
                "into calls the API accepts) and report only what the answer confirms"
            )
        problems = [f"member {r.member_id!r} was not pushed: {r.reason}" for r in results if not r.ok]
        if problems := problems + held_differently(double, changes):
            raise ContractError("\n".join(problems[:12]))

    @applies(lambda cls: pushes(cls) and cls.refuses_records and cls.batch_answers)
    def test_records_missing_from_a_write_answer_are_not_reported_written(
        self, double: CrmDouble, connector: Connector
    ):
        members = double.seed(Stream.MEMBERS, 4)
        double.drop_from_answer(members[1])
        try:
            results = push_all(connector, make_changes(connector, members))
        except ContractError:
            raise
        except ConnectorError:
            return  # the whole call reported failed: the engine keeps the batch and pushes it again
        except Exception as exc:
            raise ContractError(
                f"a write answer without member {members[1]!r} made push() raise {type(exc).__name__}: {exc}; "
                "report that record as RecordResult(ok=False, reason=...) (or raise a crmsync.ConnectorError when "
                "the answer cannot be read at all)"
            ) from None
        missing = next(r for r in results if r.member_id == members[1])
        if missing.ok:
            raise ContractError(
                f"the write answer said nothing of member {members[1]!r} (it was not written), but push() reported "
                "it ok=True: match the answer to the records by id and report a record the answer does not "
                "mention as RecordResult(ok=False, reason='not in the answer') so that it is pushed again"
            )

    @applies(pushes)
    def test_cleared_grades_clear_the_fields(self, double: CrmDouble, connector: Connector):
        first = make_changes(connector, double.seed(Stream.MEMBERS, 3))
        push_all(connector, first)
        cleared = [c for c in (_later(connector, change, CLEARED) for change in first) if c.changed]
        results = push_all(connector, cleared)  # segment and stage None, no tags, no points
        problems = [f"member {r.member_id!r} was not pushed: {r.reason}" for r in results if not r.ok]
        if problems := problems + held_differently(double, cleared):
            raise ContractError(
                "\n".join(problems[:12]) + "\nA None (or [] for tags) means the member no longer has that grade: "
                "write what clears the field in your system (null, an empty string, an empty multi-select), never "
                "the text 'None'"
            )

    @applies(pushes)
    def test_push_leaves_its_input_unchanged(self, double: CrmDouble, connector: Connector):
        members = double.seed(Stream.MEMBERS, 3)
        first = make_changes(connector, members)
        push_all(connector, first)  # fails if push() changes what it is given
        later = [_later(connector, first[0], GRADES[1]), _later(connector, first[1], CLEARED)]
        push_all(connector, [c for c in later if c.changed])

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
