"""Drive a connector the way the engine does, and check what comes out.

:func:`drive_pull` consumes ``pull()`` batch by batch, "stores" each batch and only then persists its cursor,
exactly like the engine, and stops a pull that never ends. :func:`record_problems` checks one pulled record
against the canonical model and, when the double knows them, against the source's values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from crmsync.connector import Batch, Connector, Record, Stream
from crmsync.models import Activity, Member, Order

RECORD_TYPE: dict[Stream, type[Record]] = {Stream.MEMBERS: Member, Stream.ORDERS: Order, Stream.ACTIVITIES: Activity}
MONEY_FIELDS = ("amount", "exchange_rate", "points")


class ContractError(AssertionError):
    """The connector broke the contract; the message says what to fix."""


@dataclass
class PullRun:
    """Everything one pull produced, in order, and the cursor the engine would have stored at the end."""

    stream: Stream
    start_cursor: str | None
    batches: list[Batch] = field(default_factory=list)
    cursor: str | None = None

    @property
    def records(self) -> list[Record]:
        return [r for b in self.batches for r in b.records]

    def live_ids(self) -> list[str]:
        return [r.external_id for r in self.records if not r.deleted]

    def deleted_ids(self) -> set[str]:
        out = {i for b in self.batches for i in b.deleted}
        return out | {r.external_id for r in self.records if r.deleted}

    @property
    def snapshot_complete(self) -> bool:
        return any(b.snapshot_complete for b in self.batches)

    def ids_after(self, index: int) -> set[str]:
        """Ids of records in the batches after batch ``index``."""
        return {r.external_id for b in self.batches[index + 1 :] for r in b.records if not r.deleted}


def drive_pull(connector: Connector, stream: Stream, cursor: str | None = None, *, max_batches: int = 60) -> PullRun:
    """Consume ``connector.pull(stream, cursor)`` like the engine: store each batch, then persist its cursor.

    Raises:
        ContractError: a batch is malformed, or the pull does not end within ``max_batches`` batches.
    """
    run = PullRun(stream=stream, start_cursor=cursor, cursor=cursor)
    where = f"{type(connector).__name__}.pull({stream.value!r}, {cursor!r})"
    for n, batch in enumerate(connector.pull(stream, cursor)):
        if n >= max_batches:
            last = [r.external_id for r in run.batches[-1].records] if run.batches else []
            raise ContractError(
                f"{where} did not end after {max_batches} batches (the last one held {last}): it keeps "
                "re-reading the same page. Advance the page number or token from the response and stop when "
                "the API says there is no next page; refuse a page token you have already seen."
            )
        if not isinstance(batch, Batch):
            raise ContractError(f"{where} yielded {type(batch).__name__}; yield crmsync.Batch objects")
        if batch.stream != stream:
            raise ContractError(f"{where} yielded a batch of stream {batch.stream!r}; set Batch.stream={stream!r}")
        if batch.cursor is not None and not isinstance(batch.cursor, str):
            raise ContractError(
                f"{where}: Batch.cursor is {type(batch.cursor).__name__}; a cursor is an opaque str "
                "(serialise it, e.g. with json.dumps or datetime.isoformat)"
            )
        run.batches.append(batch)  # "stored" ...
        if batch.cursor is not None:  # ... then its cursor persisted, as the engine does
            run.cursor = batch.cursor
    return run


def _walk(value: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _walk(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in _walk(v, f"{path}[{i}]")]
    return [(path, value)]


def record_problems(record: Any, stream: Stream, source: str, expected: Mapping[str, Any] | None) -> list[str]:
    """Everything wrong with one pulled record, one sentence each (empty when it is fine)."""
    want_type = RECORD_TYPE[stream]
    rid = getattr(record, "external_id", "?")
    label = f"{stream.value} record {rid!r}"
    if not isinstance(record, want_type):
        return [f"{label} is a {type(record).__name__}; pull({stream.value!r}) must yield crmsync.{want_type.__name__}"]
    problems = []
    flagged: set[str] = set()
    values = dict(record.__dict__)
    for path, value in _walk(values, ""):
        name = path.lstrip(".")
        if isinstance(value, datetime) and (value.tzinfo is None or value.utcoffset() is None):
            problems.append(
                f"{label}: {name} is a naive datetime ({value.isoformat()}); keep the source's offset, or read "
                "a naive value in the configured zone with crmsync.models.aware(value, self.context.timezone)"
            )
            flagged.add(name.split(".")[0])
        if isinstance(value, float) and (name in MONEY_FIELDS or name.split(".")[-1] in MONEY_FIELDS):
            problems.append(
                f"{label}: {name} is float {value!r}; money must be Decimal: parse the source text with "
                "Decimal(str_value), never through float"
            )
            flagged.add(name.split(".")[0])
    if record.source != source:
        problems.append(f"{label}: source is {record.source!r}; set source=self.context.name ({source!r})")
    try:
        want_type.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if str(err["loc"][0]) in flagged:
                continue
            problems.append(f"{label}: {loc}: {err['msg']} (build records with the model, not model_construct)")
    for key, want in (expected or {}).items():
        got = values.get(key)
        if key in flagged or _same(got, want):
            continue
        problems.append(f"{label}: {key} is {got!r}, but the source holds {want!r}")
    return problems


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, datetime):
        return isinstance(got, datetime) and got.tzinfo is not None and got == want
    if isinstance(want, Decimal):
        if isinstance(got, float):
            return False
        try:
            return got is not None and Decimal(got) == want
        except (ArithmeticError, TypeError, ValueError):
            return False
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(want, got)
    return str(got) == str(want) if want is not None else got is None
