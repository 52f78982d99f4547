"""The Fxiaoke connector: customers (``AccountObj``) are members, sales orders give orders, grades go back to
customer custom fields.

Pulls read ``data/query`` at 100 rows a page ordered by ``_id`` within a ``last_modified_time`` window (see
:mod:`crmsync_fxiaoke.cursor`). Invalidated (作废) customers are reported as deletions. Our own write-backs bump
``last_modified_time``; an incremental member pull drops a customer whose last change was made by the operator
and whose fields crmsync reads are unchanged since it was last delivered (:mod:`crmsync_fxiaoke.echo`), so
pushes never come back as customer changes. Pushes send one ``data/update`` per changed customer (there is no
batch update), with workflows and approvals off unless configured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from crmsync import (
    Batch,
    Capability,
    CheckResult,
    Connector,
    ConnectorContext,
    ConnectorError,
    FatalAPIError,
    ProfileChange,
    RecordResult,
    Rejection,
    Stream,
)
from crmsync.helpers import BadValue, Paginator
from crmsync_fxiaoke import fieldcheck, mapping
from crmsync_fxiaoke.client import FxiaokeClient
from crmsync_fxiaoke.cursor import FxCursor
from crmsync_fxiaoke.echo import EchoFilter
from crmsync_fxiaoke.errors import ApiError
from crmsync_fxiaoke.settings import FxiaokeSettings

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
        echo = None
        if stream is Stream.MEMBERS:
            operator = self.client.tokens.operator(self.client.tokens.get())
            echo = EchoFilter(self.context, operator=operator, incremental=incremental)
        rows = 0
        pages: Paginator[str] = Paginator(f"{self.name}: query {obj}", state.after_id)
        for after in pages:
            page = self.client.query(obj, fields=fields, filters=filters, limit=self.settings.page_size,
                                     after_id=after)  # fmt: skip
            last = len(page) < self.settings.page_size
            pages.advance(None if last else str(page[-1].get("_id")), [r.get("_id") for r in page])
            rows += len(page)
            records, rejects, deleted = self._convert(page, state, convert, echo, deletions=echo is not None)
            if page:
                state.after_id = str(page[-1].get("_id"))
            state.page_read(self.overlap_ms)
            if last:
                state.finish(self.overlap_ms)
            checkpoint = last or state.checkpoint_due(rows)
            if records or rejects or deleted or checkpoint:
                # Batches are stored once the engine asks for the next one; one without a cursor keeps the last.
                yield Batch(stream, records=records, rejects=rejects, deleted=deleted,
                            cursor=state.dumps() if checkpoint else None)  # fmt: skip
                rows = 0 if checkpoint else rows
                if echo is not None:
                    echo.save(last=last)
        if echo is not None and echo.echoes:
            self.context.logger.info("%s: skipped %d customers changed only by our own write-back", self.name,
                                     echo.echoes)  # fmt: skip
        self.client.budget.report()

    def _convert(
        self,
        page: list[dict[str, Any]],
        state: FxCursor,
        convert: Callable[[dict[str, Any]], Any],
        echo: EchoFilter | None,
        *,
        deletions: bool,
    ) -> tuple[list[Any], list[Rejection], list[str]]:
        """Records, rejections and (with ``deletions``) invalidated (作废) ids of one page, minus what was delivered."""
        records: list[Any] = []
        rejects: list[Rejection] = []
        deleted: list[str] = []
        for raw in page:
            rid = str(raw.get("_id") or "")
            modified = mapping.epoch_ms(raw.get("last_modified_time"))
            if state.mark.delivered(rid, modified):
                continue
            state.mark.note(rid, modified)
            if deletions and mapping.invalidated(raw):
                deleted.append(rid)  # in the recycle bin: gone for crmsync, back as a change if recovered
                if echo is not None:
                    echo.forget(rid)
                continue
            item = convert(raw)
            if isinstance(item, Rejection):
                rejects.append(item)
            elif echo is None or not echo.is_echo(rid, item, mapping.modified_by(raw)):
                records.append(item)
        return records, rejects, deleted

    # -- push -------------------------------------------------------------------------------------------

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        """One update call per customer with changed pushed fields; a refused record is ``ok=False``.

        A refusal an administrator can fix (an option missing, a locked record, a permission) is ``retryable``;
        one for a customer that is no longer live in the CRM (invalidated or deleted: looked up with one query
        for all refusals of the batch) is not.
        """
        if not changes:
            return []
        obj = self.settings.members.object
        describe = self.describe(obj)
        results: list[RecordResult] = []
        refused: dict[str, RecordResult] = {}
        for change in changes:
            values = self._values(change, describe)
            if isinstance(values, RecordResult):
                results.append(values)
                continue
            try:
                if values:
                    self.client.update(obj, change.member_id, values)
                results.append(RecordResult(change.member_id, ok=True))
            except ApiError as exc:
                reason = f"errorCode {exc.code}: {exc.api_message or 'refused'}"
                refused[change.member_id] = RecordResult(change.member_id, False, reason,
                                                         field=_field_named(exc, values))  # fmt: skip
        if refused:
            gone = self._not_live(obj, list(refused))
            for rid, result in refused.items():
                if rid in gone:
                    result = replace(result, reason=f"customer {rid} is {gone[rid]} in Fxiaoke ({result.reason})",
                                     retryable=False)  # fmt: skip
                self.context.logger.info("%s: update of %s refused: %s", self.name, rid, result.reason)
                results.append(result)
        self.client.budget.report()
        return results

    def _values(self, change: ProfileChange, describe: dict[str, dict[str, Any]]) -> dict[str, Any] | RecordResult:
        """The field values to send for ``change``, or its failure when one cannot be written (no call made)."""
        names = self.settings.push_fields.mapping()
        values: dict[str, Any] = {}
        for canonical in sorted(change.changed & names.keys()):
            api = names[canonical]
            meta = describe.get(api)
            if meta is None:
                obj = self.settings.members.object
                return RecordResult(change.member_id, False, f"no field {api} on {obj}", field=api)
            try:
                values[api] = mapping.encode(canonical, change.values.get(canonical), meta, self.settings)
            except BadValue as exc:
                return RecordResult(change.member_id, False, exc.reason, field=exc.field)
        return values

    def _not_live(self, obj: str, ids: list[str]) -> dict[str, str]:
        """Which of ``ids`` are invalidated or deleted in the CRM (``{}`` when that cannot be told)."""
        condition = [{"field_name": "_id", "operator": "IN", "field_values": ids}]
        try:
            found = self.client.query(obj, fields=["_id", "life_status"], filters=condition, limit=len(ids))
        except ConnectorError as exc:
            self.context.logger.info("%s: could not look up refused customers: %s", self.name, exc.message)
            return {}
        status = {str(r.get("_id")): r for r in found}
        return {
            rid: "deleted" if rid not in status else "invalidated (作废)"
            for rid in ids
            if rid not in status or mapping.invalidated(status[rid])
        }

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
