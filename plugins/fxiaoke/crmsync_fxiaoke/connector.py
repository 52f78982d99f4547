"""The Fxiaoke connector: customers (``AccountObj``) are members, sales orders give orders, grades go back to
customer custom fields.

Pulls read ``data/query`` at 100 rows a page ordered by ``_id`` within a ``last_modified_time`` window (see
:mod:`crmsync_fxiaoke.cursor`). Our own write-backs bump ``last_modified_time``; an incremental member pull drops
a customer whose last change was made by the operator and whose fields crmsync reads are unchanged since it was
last delivered (a fingerprint kept in the connector state), so pushes never come back as customer changes.
Pushes send one ``data/update`` per changed customer (there is no batch update), with workflows and approvals
off unless configured.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from crmsync.connector import (
    Batch,
    Capability,
    CheckResult,
    Connector,
    ConnectorContext,
    ProfileChange,
    RecordResult,
    Rejection,
    Stream,
)
from crmsync.errors import FatalAPIError
from crmsync_fxiaoke import fieldcheck, mapping
from crmsync_fxiaoke.client import FxiaokeClient
from crmsync_fxiaoke.cursor import FxCursor
from crmsync_fxiaoke.errors import ApiError
from crmsync_fxiaoke.settings import FxiaokeSettings

SAVE_FINGERPRINTS_EVERY = 20
"""Batches between saves of the member fingerprints (a large map: not rewritten after every page)."""
PUSH_BATCH = 20
"""Changes per push() call: each is its own API call, so a crash repeats at most this many."""


class FxiaokeConnector(Connector):
    capabilities = frozenset(
        {Capability.PULL_MEMBERS, Capability.PULL_ORDERS, Capability.PUSH_PROFILES, Capability.INCREMENTAL}
    )
    push_batch_size = PUSH_BATCH
    settings: FxiaokeSettings

    def __init__(self, settings: FxiaokeSettings, context: ConnectorContext, **http_options: Any) -> None:
        super().__init__(settings, context)
        self.client = FxiaokeClient(settings, context, **http_options)
        self.push_fields = tuple(settings.push_fields.mapping())
        self.overlap_ms = settings.overlap_seconds * 1000
        self._describe: dict[str, dict[str, dict[str, Any]]] = {}
        self._fp_key = f"fxiaoke:{context.name}:fingerprints"

    def describe(self, obj: str) -> dict[str, dict[str, Any]]:
        if obj not in self._describe:
            self._describe[obj] = self.client.describe(obj)
        return self._describe[obj]

    # -- pull -------------------------------------------------------------------------------------------

    def _stream_spec(self, stream: Stream) -> tuple[str, list[str], Callable[[dict[str, Any]], Any]]:
        s, ctx = self.settings, self.context
        if stream is Stream.MEMBERS:
            return (
                s.members.object,
                mapping.member_fields(s.members),
                lambda r: mapping.to_member(r, context=ctx, fields=s.members),
            )
        if stream is Stream.ORDERS:
            return (
                s.orders.object,
                mapping.order_fields(s.orders),
                lambda r: mapping.to_order(r, context=ctx, fields=s.orders),
            )
        raise FatalAPIError(f"{self.name}: the Fxiaoke connector does not pull {stream.value}")

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        obj, fields, convert = self._stream_spec(stream)
        state = FxCursor.loads(cursor)
        incremental = state.watermark is not None
        state.start(self.overlap_ms)
        filters = []
        if state.since is not None:
            filters.append({"field_name": "last_modified_time", "operator": "GTE", "field_values": [str(state.since)]})
        prints = self._fingerprints() if stream is Stream.MEMBERS else None
        operator = self.client.tokens.operator(self.client.tokens.get())
        echoes = batches = 0
        while True:
            page = self.client.query(obj, fields=fields, filters=filters, limit=self.settings.page_size,
                                     after_id=state.after_id)  # fmt: skip
            records: list[Any] = []
            rejects: list[Rejection] = []
            for raw in page:
                rid = str(raw.get("_id") or "")
                modified = mapping.epoch_ms(raw.get("last_modified_time"))
                if state.delivered(rid, modified):
                    continue
                item = convert(raw)
                state.note(rid, modified, self.overlap_ms)
                if prints is not None and not isinstance(item, Rejection):
                    fp = mapping.fingerprint(item)
                    if incremental and prints.get(rid) == fp and operator in mapping.modified_by(raw):
                        echoes += 1  # our own write-back: nothing crmsync reads has changed
                        continue
                    prints[rid] = fp
                (rejects if isinstance(item, Rejection) else records).append(item)
            last = len(page) < self.settings.page_size
            if page:
                state.after_id = str(page[-1].get("_id"))
            if last:
                state.finish(self.overlap_ms)
            if records or rejects or last:
                yield Batch(stream, records=records, rejects=rejects, cursor=state.dumps())
                batches += 1
                # Batches are stored once the engine asks for the next one; saving less often only means an
                # echo may be delivered once more after a crash.
                if prints is not None and (last or batches % SAVE_FINGERPRINTS_EVERY == 0):
                    self.context.state.set(self._fp_key, json.dumps(prints, separators=(",", ":")))
            if last:
                break
        if echoes:
            self.context.logger.info("%s: skipped %d customers changed only by our own write-back", self.name, echoes)
        self.client.budget.report()

    def _fingerprints(self) -> dict[str, str]:
        raw = self.context.state.get(self._fp_key)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}

    # -- push -------------------------------------------------------------------------------------------

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        """One update call per customer with changed pushed fields; a refused record is ``ok=False``."""
        if not changes:
            return []
        obj = self.settings.members.object
        names = self.settings.push_fields.mapping()
        describe = self.describe(obj)
        results = []
        for change in changes:
            values: dict[str, Any] = {}
            failure = None
            for canonical in sorted(change.changed & names.keys()):
                api = names[canonical]
                meta = describe.get(api)
                if meta is None:
                    failure = RecordResult(change.member_id, False, f"no field {api} on {obj}", field=api)
                    break
                try:
                    values[api] = mapping.encode(canonical, change.values.get(canonical), meta, self.settings)
                except mapping.BadValue as exc:
                    failure = RecordResult(change.member_id, False, exc.reason, field=exc.field)
                    break
            if failure is not None:
                results.append(failure)
                continue
            if not values:
                results.append(RecordResult(change.member_id, ok=True))
                continue
            try:
                self.client.update(obj, change.member_id, values)
                results.append(RecordResult(change.member_id, ok=True))
            except ApiError as exc:
                reason = f"errorCode {exc.code}: {exc.api_message or 'refused'}"
                results.append(RecordResult(change.member_id, False, reason, field=_field_named(exc, values)))
        self.client.budget.report()
        return results

    # -- check ------------------------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        results = fieldcheck.check(self)
        self.client.budget.report()
        return results

    def close(self) -> None:
        self.client.close()


def _field_named(exc: ApiError, values: dict[str, Any]) -> str | None:
    """The pushed field the error message names, if any (messages are not to be branched on otherwise)."""
    return next((api for api in values if api in exc.api_message), None)
