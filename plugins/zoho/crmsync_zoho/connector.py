"""The Zoho CRM connector: Contacts are members, an order module gives orders, grades go back to Contacts.

Pulls page through ``GET /crm/v8/{module}`` oldest change first with ``If-Modified-Since`` from the cursor
(:mod:`crmsync_zoho.cursor`), then ask the deleted-records endpoint what disappeared. A first pull goes through
Bulk Read (no count call: an export costs three calls whatever the size), and so does a rerun that must read back
at least ``bulk_threshold`` contacts the connector wrote itself (every write moves ``Modified_Time``) or that
finds that many changed on REST. Contacts that come back only because of the connector's own write are read but
not delivered again (:mod:`crmsync_zoho.echo`). Pushes send only changed fields, 100 contacts per update call or
one Bulk Write job (updates again when Zoho refuses it), automations off unless configured.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import timedelta
from typing import Any

from crmsync import (
    Batch,
    Capability,
    CheckResult,
    Connector,
    ConnectorContext,
    FatalAPIError,
    ProfileChange,
    RecordResult,
    Rejection,
    Stream,
)
from crmsync.helpers import BadValue, Watermark, parse_time
from crmsync_zoho import fieldcheck, mapping
from crmsync_zoho.bulk import BulkReader, BulkWriter, BulkWriteRefused
from crmsync_zoho.client import ServerClock, ZohoClient
from crmsync_zoho.cursor import ZohoCursor
from crmsync_zoho.echo import Echoes
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
        own = module == self.settings.contacts_module
        written = self.written if own else 0
        echoes = self._echoes(module, active=not initial) if stream is Stream.MEMBERS else None
        batches = self._read(stream, module, fields, convert, state, initial, written, echoes)
        if not initial:
            batches = itertools.chain(batches, self._deletions(stream, module, state, echoes))
        last = cursor
        for batch in batches:
            last = batch.cursor or last
            yield batch
            if echoes is not None:
                echoes.stored()
        if initial:
            # Nothing to delete on a first pull; deletions are followed from here on.
            state.deleted.at = state.deleted.at or state.records.at
        final = state.dumps()
        if final != last and (state.records.at is not None or not initial):
            yield Batch(stream, cursor=final)
        if echoes is not None:
            echoes.save()
            echoes.report(self.context.logger, self.name)
        if own and written:
            self.written = 0  # everything written before this pull has now been read back

    def _read(
        self,
        stream: Stream,
        module: str,
        fields: list[str],
        convert: Callable[[dict[str, Any]], Any],
        state: ZohoCursor,
        initial: bool,
        written: int,
        echoes: Echoes | None,
    ) -> Iterator[Batch]:
        """The records changed since the cursor: REST pages (oldest change first), one Bulk Read export, or REST
        pages until ``bulk_threshold`` records were read and an export of the rest (a mass update, an import).

        REST pages may each move the cursor, handed over when its size is paid for by the records read since the
        last one (a window of 50,000 versions is not serialised after every page); an export is unordered, so its
        cursor is handed over only at the end.
        """
        mark = state.records
        since = mark.since(self.overlap)
        bulk = self._use_bulk_read(initial, written)
        clock = ServerClock()
        unpaid = read = 0
        if not bulk:
            for page in self.client.records(module, fields, since=since, on_response=clock.see):
                out, rejects = self._convert(page.records, convert, mark, echoes)
                mark.prune(self.overlap)
                unpaid, read = unpaid + len(page.records), read + len(page.records)
                handover = None
                if mark.checkpoint_due(unpaid):
                    handover, unpaid = state.dumps(), 0
                if out or rejects or handover:
                    yield Batch(stream, records=out, rejects=rejects, cursor=handover)
                if page.info.get("more_records") and self._use_bulk_read(initial, read):
                    self.context.logger.info("%s: %d %s changed records read, the rest by Bulk Read", self.name,
                                             read, module)  # fmt: skip
                    bulk, since = True, mark.at  # pages come oldest change first: older ones are all read
                    break
        reader = BulkReader(self.client, sleep=self.sleep)
        if bulk:
            for records in reader.pages(module, fields, since=since):
                out, rejects = self._convert(records, convert, mark, echoes)
                if out or rejects:
                    yield Batch(stream, records=out, rejects=rejects)
            if reader.started is not None:
                mark.cap(reader.started)
        mark.complete(clock.first or reader.started, self.overlap)

    def _convert(
        self,
        records: list[dict[str, Any]],
        convert: Callable[[dict[str, Any]], Any],
        mark: Watermark,
        echoes: Echoes | None,
    ) -> tuple[list[Any], list[Rejection]]:
        out, rejects = [], []
        for raw in records:
            rid = str(raw.get("id") or "")
            try:
                modified = parse_time(raw.get("Modified_Time"), "Modified_Time", self.context.timezone)
            except BadValue:
                modified = None
            if mark.delivered(rid, modified):
                continue
            item = convert(raw)
            mark.note(rid, modified)
            if isinstance(item, Rejection):
                rejects.append(item)
            elif echoes is None or not echoes.skip(rid, raw, item):
                out.append(item)
        return out, rejects

    def _deletions(self, stream: Stream, module: str, state: ZohoCursor, echoes: Echoes | None) -> Iterator[Batch]:
        mark = state.deleted
        clock = ServerClock()
        pages = self.client.records(module, None, since=mark.since(self.overlap), path="deleted", on_response=clock.see)
        for page in pages:
            ids = []
            for entry in page.records:
                rid = str(entry.get("id"))
                when = parse_time(entry.get("deleted_time"), "deleted_time", self.context.timezone)
                if not mark.delivered(rid, when):
                    ids.append(rid)
                mark.note(rid, when)
            mark.prune(self.overlap)
            if ids:
                if echoes is not None:
                    echoes.forget(ids)
                yield Batch(stream, deleted=ids, cursor=state.dumps())
        mark.complete(clock.first, self.overlap)

    def _echoes(self, module: str, *, active: bool) -> Echoes:
        key = f"zoho:{self.context.name}:fingerprints:{module}"
        return Echoes(self.context.state, key, self.client.own_user(), active=active)

    def _use_bulk_read(self, initial: bool, count: int) -> bool:
        """Bulk Read for a first pull, or for a rerun with at least ``bulk_threshold`` records to read.

        A first pull does not ask for a count: an export costs three calls (create, status, download) whatever
        the size, a count plus REST pages cost more from 600 records on. A rerun knows part of what it must read
        before it starts: the contacts written since the last pull (see :attr:`written`); a change made in Zoho
        (a mass update, an import) shows as REST pages come, and the rest of it is exported once that many were
        read.
        """
        s = self.settings
        if not s.bulk_read or s.bulk_threshold is None:
            return False
        return initial or count >= s.bulk_threshold

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
            results += [mapping.record_result(b, a) for b, a in zip(chunk, answers, strict=True)]
            done = next((a for a in answers if str(a.get("status", "")).lower() == "success"), None)
            if done is not None:
                self.client.note_user((done.get("details") or {}).get("Modified_By"))
        return results

    def push_batches(
        self, batches: Iterable[Sequence[ProfileChange]]
    ) -> Iterator[tuple[Sequence[ProfileChange], list[RecordResult]]]:
        """Bulk Write when the changes reach ``bulk_write_threshold``, else 100-record updates run concurrently
        (up to ``concurrency``); each batch's results are yielded as soon as that batch is done. When Zoho refuses
        Bulk Write (a missing scope, a refused upload, a failed job) the same changes go as updates instead."""
        pending = list(batches)
        threshold = self.settings.bulk_write_threshold
        if threshold is not None and sum(len(b) for b in pending) >= threshold:
            try:
                results = BulkWriter(self.client, sleep=self.sleep).push([c for b in pending for c in b])
            except BulkWriteRefused as exc:
                self.context.logger.warning(
                    "%s: Bulk Write refused (%s); pushing %d changes with updates of %d instead",
                    self.name, exc.message, sum(len(b) for b in pending), UPDATE_LIMIT,
                )  # fmt: skip
            else:
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
        return fieldcheck.create_missing(self.client, self.settings, self.context)

    def close(self) -> None:
        self.client.close()
