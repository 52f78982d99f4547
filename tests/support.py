"""An in-memory connector plugin for engine tests: seeded records, versioned cursors, recorded pushes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

import crmsync
from crmsync import Batch, Capability, Connector, ConnectorSpec, ProfileChange, RecordResult, Stream
from crmsync.engine import Engine, RunResult
from crmsync.models import Activity, Member, Order
from crmsync.plugins import PluginHost
from crmsync.settings import load_settings
from crmsync.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class World:
    """The 'remote system': records per stream with a change sequence number, and what was pushed."""

    records: dict[Stream, dict[str, tuple[int, Any]]] = field(default_factory=lambda: {s: {} for s in Stream})
    deleted: dict[Stream, dict[str, int]] = field(default_factory=lambda: {s: {} for s in Stream})
    seq: int = 0
    pushed: dict[str, dict[str, Any]] = field(default_factory=dict)
    push_calls: list[list[str]] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)
    """member id -> reason: pushes of these members are rejected."""
    gone: set[str] = field(default_factory=set)
    """Member ids deleted in the system: pushes of these are refused as not retryable."""
    fields: str | None = None
    """The fingerprint of the system's field metadata (``None``: the connector cannot tell)."""
    fields_asked: int = 0
    fail_after_batches: int | None = None
    """Raise after this many batches were yielded (to simulate a crash mid-pull)."""
    on_push: Callable[[], None] | None = None

    def put(self, stream: Stream, rec: Any) -> None:
        self.seq += 1
        self.records[stream][rec.external_id] = (self.seq, rec)
        self.deleted[stream].pop(rec.external_id, None)

    def delete(self, stream: Stream, external_id: str) -> None:
        self.seq += 1
        self.records[stream].pop(external_id, None)
        self.deleted[stream][external_id] = self.seq


class MemorySettings(BaseModel):
    batch_size: int = 2
    push_batch_size: int = 3


WORLDS: dict[str, World] = {}


class MemoryConnector(Connector):
    capabilities = frozenset(
        {
            Capability.PULL_MEMBERS,
            Capability.PULL_ORDERS,
            Capability.PULL_ACTIVITIES,
            Capability.PUSH_PROFILES,
            Capability.INCREMENTAL,
            Capability.DELETIONS,
        }
    )

    def __init__(self, settings: MemorySettings, context: crmsync.ConnectorContext) -> None:
        super().__init__(settings, context)
        self.world = WORLDS.setdefault(context.name, World())
        self.batches_yielded = 0

    @property
    def push_batch_size(self) -> int:  # type: ignore[override]
        return self.settings.push_batch_size  # type: ignore[attr-defined]

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        since = int(cursor or 0)
        changed = sorted((s, r) for s, r in self.world.records[stream].values() if s > since)
        gone = sorted((s, i) for i, s in self.world.deleted[stream].items() if s > since)
        size = self.settings.batch_size  # type: ignore[attr-defined]
        for i in range(0, len(changed), size):
            chunk = changed[i : i + size]
            if self.world.fail_after_batches is not None and self.batches_yielded >= self.world.fail_after_batches:
                raise RuntimeError("simulated crash during pull")
            self.batches_yielded += 1
            yield Batch(stream, records=[r for _, r in chunk], cursor=str(chunk[-1][0]))
        if gone:
            yield Batch(stream, deleted=[i for _, i in gone], cursor=str(gone[-1][0]))

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        self.world.push_calls.append([c.member_id for c in changes])
        if self.world.on_push:
            self.world.on_push()
        out = []
        for c in changes:
            if c.member_id in self.world.gone:
                out.append(RecordResult(c.member_id, ok=False, reason="record not found", retryable=False))
            elif c.member_id in self.world.reject:
                out.append(RecordResult(c.member_id, ok=False, reason=self.world.reject[c.member_id], field="tier"))
            else:
                self.world.pushed[c.member_id] = json.loads(json.dumps(dict(c.values)))
                out.append(RecordResult(c.member_id, ok=True))
        return out

    def fields_fingerprint(self) -> str | None:
        self.world.fields_asked += 1
        return self.world.fields


class MemoryPlugin:
    @crmsync.hookimpl
    def crmsync_connectors(self) -> Iterator[ConnectorSpec]:
        yield ConnectorSpec(
            name="memory",
            settings_model=MemorySettings,
            factory=MemoryConnector,
            capabilities=MemoryConnector.capabilities,
        )


def member(i: int, **kw: Any) -> Member:
    return Member(source="crm", external_id=f"m{i}", email=f"user{i}@example.com", **kw)


def order(oid: str, member_id: str, amount: str, days_ago: int, *, status: str = "paid", now: datetime = T0) -> Order:
    return Order(
        source="crm",
        external_id=oid,
        member_external_id=member_id,
        placed_at=now - timedelta(days=days_ago),
        amount=Decimal(amount),
        currency="EUR",
        status=status,
    )


def activity(aid: str, member_id: str, kind: str, days_ago: int, now: datetime = T0) -> Activity:
    return Activity(
        source="crm",
        external_id=aid,
        member_external_id=member_id,
        kind=kind,
        occurred_at=now - timedelta(days=days_ago),
    )


def run_sync(config: Any, host: PluginHost, as_of: datetime = T0, *, dry_run: bool = False) -> RunResult:
    """Load ``config``, open its store and run the engine once with the clock fixed at ``as_of``."""
    settings = load_settings(config, host=host)
    with Store.open(settings.store.path) as store, Engine(settings, host, store, clock=lambda: as_of) as engine:
        return engine.run(dry_run=dry_run, as_of=as_of)
