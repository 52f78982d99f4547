"""The Zoho CRM connector: Contacts are members, an order module gives orders, grades go back to Contacts.

Pulls page through ``GET /crm/v8/{module}`` oldest change first with ``If-Modified-Since`` from the cursor,
then ask the deleted-records endpoint what disappeared. A first pull goes through Bulk Read (no count call: an
export costs three calls whatever the size), and so does a rerun that must read back at least ``bulk_threshold``
contacts the connector wrote itself (every write moves ``Modified_Time``). Pushes send only changed fields,
100 contacts per update call or one Bulk Write job, automations off unless configured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import timedelta
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
from crmsync_zoho import fieldcheck, mapping
from crmsync_zoho.bulk import BulkReader, BulkWriter
from crmsync_zoho.client import ZohoClient
from crmsync_zoho.cursor import ZohoCursor
from crmsync_zoho.settings import ZohoSettings

UPDATE_LIMIT = 100


class ZohoConnector(Connector):
    capabilities = frozenset(
        {
            Capability.PULL_MEMBERS,
            Capability.PULL_ORDERS,
            Capability.PULL_ACTIVITIES,
            Capability.PUSH_PROFILES,
            Capability.INCREMENTAL,
            Capability.DELETIONS,
            Capability.BULK,
            Capability.CREATE_FIELDS,
        }
    )
    push_batch_size = UPDATE_LIMIT
    settings: ZohoSettings

    def __init__(self, settings: ZohoSettings, context: ConnectorContext, **http_options: Any) -> None:
        # The policy's tiers and tags are what check() and create_fields() expect in the picklists, unless
        # the connector settings name them explicitly.
        defaults = {"tier_names": list(context.tier_names), "tag_names": list(context.tag_names)}
        settings = settings.model_copy(update={k: v for k, v in defaults.items() if v and not getattr(settings, k)})
        super().__init__(settings, context)
        self.client = ZohoClient(settings, context, **http_options)
        self.overlap = timedelta(seconds=settings.overlap_seconds)
        self.sleep = http_options.get("sleep")

    # -- pull -------------------------------------------------------------------------------------------

    def _stream_spec(self, stream: Stream) -> tuple[str, list[str], Callable[[dict[str, Any]], Any]]:
        s, ctx = self.settings, self.context
        if stream is Stream.MEMBERS:
            fields = [*mapping.MEMBER_FIELDS, *s.member_attributes]
            return (
                s.contacts_module,
                fields,
                lambda r: mapping.to_member(r, context=ctx, module=s.contacts_module, attributes=s.member_attributes),
            )
        if stream is Stream.ORDERS:
            return (
                s.orders.module,
                mapping.order_fields(s.orders),
                lambda r: mapping.to_order(r, context=ctx, fields=s.orders),
            )
        if s.activities is None:
            raise FatalAPIError(f"{self.name}: no activities module configured ([connectors.{self.name}.activities])")
        acts = s.activities
        return acts.module, mapping.activity_fields(acts), lambda r: mapping.to_activity(r, context=ctx, fields=acts)

    def pull(self, stream: Stream, cursor: str | None) -> Iterator[Batch]:
        module, fields, convert = self._stream_spec(stream)
        state = ZohoCursor.loads(cursor)
        initial = state.records.at is None
        since = state.records.since(self.overlap)
        own = module == self.settings.contacts_module
        written = self.written if own else 0
        bulk = self._use_bulk_read(initial, written)
        reader = BulkReader(self.client, sleep=self.sleep)
        if bulk:
            pages = reader.pages(module, fields, since=since)
        else:
            pages = (p.records for p in self.client.records(module, fields, since=since))
        for records in pages:
            # REST pages come oldest change first, so each may move the cursor; a bulk export is unordered,
            # so its cursor is only handed over at the end.
            batch = self._batch(stream, records, convert, state, hold_cursor=bulk)
            if batch.records or batch.rejects:
                yield batch
        if reader.started is not None:
            state.records.cap(reader.started)
        if initial:
            # Nothing to delete on a first pull; deletions are followed from here on.
            state.deleted.at = state.deleted.at or state.records.at
        if (bulk or initial) and state.records.at is not None:
            yield Batch(stream, cursor=state.dumps())
        if not initial:
            yield from self._deletions(stream, module, state)
        if own and written:
            self.written = 0  # everything written before this pull has now been read back

    def _batch(
        self,
        stream: Stream,
        records: list[dict[str, Any]],
        convert: Callable[[dict[str, Any]], Any],
        state: ZohoCursor,
        hold_cursor: bool = False,
    ) -> Batch:
        mark = state.records
        out, rejects = [], []
        for raw in records:
            rid = str(raw.get("id") or "")
            try:
                modified = mapping.parse_time(raw.get("Modified_Time"), self.context, "Modified_Time")
            except mapping.BadValue:
                modified = None
            if not mark.admit(rid, modified):
                continue
            item = convert(raw)
            (rejects if isinstance(item, Rejection) else out).append(item)
            mark.advance(rid, modified, self.overlap)
        return Batch(stream, records=out, rejects=rejects, cursor=None if hold_cursor else state.dumps())

    def _deletions(self, stream: Stream, module: str, state: ZohoCursor) -> Iterator[Batch]:
        since = state.deleted.since(self.overlap)
        for page in self.client.records(module, None, since=since, path="deleted"):
            ids = []
            for entry in page.records:
                rid = str(entry.get("id"))
                when = mapping.parse_time(entry.get("deleted_time"), self.context, "deleted_time")
                if state.deleted.admit(rid, when):
                    ids.append(rid)
                state.deleted.advance(rid, when, self.overlap)
            if ids:
                yield Batch(stream, deleted=ids, cursor=state.dumps())

    def _use_bulk_read(self, initial: bool, written: int) -> bool:
        """Bulk Read for a first pull, or for a rerun that reads back at least ``bulk_threshold`` of our writes.

        A first pull does not ask for a count: an export costs three calls (create, status, download) whatever
        the size, a count plus REST pages cost more from 600 records on. A rerun knows what it must read back: the
        number of contacts written since the last pull (see :attr:`written`).
        """
        s = self.settings
        if not s.bulk_read or s.bulk_threshold is None:
            return False
        return initial or written >= s.bulk_threshold

    @property
    def written(self) -> int:
        """Contacts this connector wrote since its last pull of them, kept in the connector state.

        Each write moves the record's ``Modified_Time``, so the next pull reads those records again: an update
        gives no way to tell whether a person changed the record between our read and our write, so they are read
        back rather than skipped. Knowing how many there are lets that pull choose Bulk Read.
        """
        return int(self.context.state.get(self._written_key) or 0)

    @written.setter
    def written(self, value: int) -> None:
        self.context.state.set(self._written_key, str(value) if value else None)

    @property
    def _written_key(self) -> str:
        return f"zoho:{self.context.name}:written:{self.settings.contacts_module}"

    # -- push -------------------------------------------------------------------------------------------

    def push(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        """Update up to 100 contacts in one call; only changed fields are sent, no call for no change."""
        results: list[RecordResult] = []
        payload: list[dict[str, Any]] = []
        for change in changes:
            body = mapping.change_payload(change, self.settings.push_fields)
            if body is None:
                results.append(RecordResult(change.member_id, ok=True))
            else:
                payload.append(body)
        for start in range(0, len(payload), UPDATE_LIMIT):
            chunk = payload[start : start + UPDATE_LIMIT]
            answers = self.client.update(self.settings.contacts_module, chunk, self.settings.trigger)
            if len(answers) != len(chunk):
                raise FatalAPIError(f"{self.name}: update answered {len(answers)} results for {len(chunk)} records")
            results += [mapping.record_result(b["id"], a) for b, a in zip(chunk, answers, strict=True)]
        return results

    def push_batches(
        self, batches: Iterable[Sequence[ProfileChange]]
    ) -> Iterator[tuple[Sequence[ProfileChange], list[RecordResult]]]:
        """Bulk Write when the changes reach ``bulk_write_threshold``, else 100-record updates run concurrently
        (up to ``concurrency``); each batch's results are yielded as soon as that batch is done."""
        pending = list(batches)
        threshold = self.settings.bulk_write_threshold
        if threshold is not None and sum(len(b) for b in pending) >= threshold:
            results = BulkWriter(self.client, sleep=self.sleep).push([c for b in pending for c in b])
            self.written += self._wrote(pending, results)
            by_id = {r.member_id: r for r in results}
            for batch in pending:
                yield batch, [by_id[c.member_id] for c in batch if c.member_id in by_id]
            return
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            futures = {pool.submit(self.push, batch): batch for batch in pending}
            for future in as_completed(futures):
                results = future.result()
                self.written += self._wrote([futures[future]], results)
                yield futures[future], results

    def _wrote(self, batches: Iterable[Sequence[ProfileChange]], results: Iterable[RecordResult]) -> int:
        """How many of ``results`` are records actually written (a change of no pushed field sends nothing)."""
        ok = {r.member_id for r in results if r.ok}
        fields = self.settings.push_fields
        return sum(1 for b in batches for c in b if c.member_id in ok and mapping.change_payload(c, fields) is not None)

    def push_many(self, changes: Sequence[ProfileChange]) -> list[RecordResult]:
        """Push any number of changes (see :meth:`push_batches`) and return every result."""
        batches = [changes[i : i + UPDATE_LIMIT] for i in range(0, len(changes), UPDATE_LIMIT)]
        return [r for _, results in self.push_batches(batches) for r in results]

    # -- check ------------------------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        return fieldcheck.check(self.client, self.settings, self.context)

    def create_fields(self) -> list[CheckResult]:
        return fieldcheck.create_missing(self.client, self.settings)

    def close(self) -> None:
        self.client.close()
