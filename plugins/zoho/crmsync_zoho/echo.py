"""Recognising the connector's own writes when they come back in a pull ("echoes"), by value.

Every write moves a contact's ``Modified_Time``, so the next pull reads back each contact crmsync wrote. Such a
contact has to be read (a person may have edited it between crmsync's read and its write, and the write hides
that edit behind a newer ``Modified_Time``), but it need not be delivered again: when its last modifier is the
connector's own CRM user and every field crmsync reads equals what was last delivered (a fingerprint kept in the
connector state), nothing crmsync grades on has changed. A person's edit either changes a field crmsync reads
(the fingerprint differs) or makes that person the last modifier; either way the contact is delivered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from crmsync import KeyValueState, Member
from crmsync_zoho.mapping import lookup_id

_NUMBER = re.compile(r"-?\d+(\.\d+)?")
SAVE_EVERY = 20
"""Batches between saves of the fingerprints (a large map: not rewritten after every page)."""


def _plain(value: Any) -> Any:
    """One form for a value whether it came from REST JSON or a Bulk Read CSV cell."""
    if isinstance(value, Mapping):
        return lookup_id(value)
    if isinstance(value, list | tuple) or (isinstance(value, str) and ";" in value):
        items = value.split(";") if isinstance(value, str) else value
        return ";".join(sorted(str(_plain(v)) for v in items)) or None  # a multi-select: array or "a;b" cell
    if isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false")):
        return str(value).lower()
    if isinstance(value, int | float | Decimal) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        return format(Decimal(str(value)).normalize(), "f")  # 12.50 in JSON, "12.5" or "12.50" in a CSV cell
    return None if value in (None, "") else str(value)


def fingerprint(member: Member) -> str:
    """A short hash of what crmsync keeps of a contact, not of when it changed: equal means nothing read changed."""
    values = [(k, v) for k, v in member.__dict__.items() if k not in ("updated_at", "attributes")]
    values.append(("attributes", sorted((k, _plain(v)) for k, v in member.attributes.items())))
    return hashlib.sha1(repr(values).encode()).hexdigest()[:16]


class Echoes:
    """Fingerprints of the contacts last delivered, kept in the connector state under ``key``.

    ``user`` is the connector's own CRM user id (learnt from write answers); without it nothing is an echo.
    """

    def __init__(self, state: KeyValueState, key: str, user: str | None, *, active: bool) -> None:
        self.state = state
        self.key = key
        self.user = user
        self.active = active
        self.skipped = 0
        self._batches = 0
        self._dirty = False
        raw = state.get(key)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        self.prints: dict[str, str] = data if isinstance(data, dict) else {}

    def skip(self, record_id: str, raw: Mapping[str, Any], member: Member) -> bool:
        """True when ``raw`` is only the connector's own write coming back; else remember what is delivered."""
        print_ = fingerprint(member)
        same = self.prints.get(record_id) == print_
        if same and self.active and self.user and lookup_id(raw.get("Modified_By")) == self.user:
            self.skipped += 1
            return True
        if self.prints.get(record_id) != print_:
            self.prints[record_id] = print_
            self._dirty = True
        return False

    def forget(self, record_ids: Iterable[str]) -> None:
        for rid in record_ids:
            if self.prints.pop(rid, None) is not None:
                self._dirty = True

    def stored(self) -> None:
        """The batch just handed over is stored: save now and then (saving late only costs an echo delivered)."""
        self._batches += 1
        if self._batches % SAVE_EVERY == 0:
            self.save()

    def save(self) -> None:
        if self._dirty:
            self.state.set(self.key, json.dumps(self.prints, separators=(",", ":")))
            self._dirty = False

    def report(self, logger: logging.Logger, name: str) -> None:
        if self.skipped:
            logger.info("%s: %d contacts changed only by crmsync's own write were not delivered again", name,
                        self.skipped)  # fmt: skip
