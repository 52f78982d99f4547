"""Recognising our own write-backs in an incremental member pull.

Writing a grade bumps the customer's ``last_modified_time``, so the next incremental pull reads it again. It is
dropped when *both* hold: its ``last_modified_by`` is the operator, and every field crmsync reads from it is
unchanged since it was last delivered (a fingerprint per customer, kept in the connector state).

The fingerprint map holds every customer, so it is written whole only when the customers changed since it was
last written make up half of it (and at the end of a pull): a first pull of many customers writes it at
doubling sizes, O(customers) in all. Writing less often only means an echo may be delivered once more after a
crash.
"""

from __future__ import annotations

import json

from crmsync import ConnectorContext, Member
from crmsync_fxiaoke import mapping


class EchoFilter:
    """Fingerprints of delivered customers, loaded from and saved to ``context.state``."""

    def __init__(self, context: ConnectorContext, *, operator: str, incremental: bool) -> None:
        self.context = context
        self.operator = operator
        self.incremental = incremental
        self._key = f"fxiaoke:{context.name}:fingerprints"
        self.prints = self._load()
        self._dirty = 0
        self.echoes = 0

    def _load(self) -> dict[str, str]:
        raw = self.context.state.get(self._key)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    def is_echo(self, record_id: str, member: Member, modified_by: set[str]) -> bool:
        """True for our own write-back of an unchanged customer; otherwise remember its fingerprint."""
        fp = mapping.fingerprint(member)
        if self.incremental and self.prints.get(record_id) == fp and self.operator in modified_by:
            self.echoes += 1
            return True
        if self.prints.get(record_id) != fp:
            self.prints[record_id] = fp
            self._dirty += 1
        return False

    def forget(self, record_id: str) -> None:
        if self.prints.pop(record_id, None) is not None:
            self._dirty += 1

    def save(self, *, last: bool) -> None:
        """Write the map when enough changed since it was last written, or at the end of a pull if anything did."""
        if self._dirty and (last or 2 * self._dirty >= len(self.prints)):
            self.context.state.set(self._key, json.dumps(self.prints, separators=(",", ":")))
            self._dirty = 0
