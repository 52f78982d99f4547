"""Pull checks: completeness, canonical records (under two time zones), values the source leaves out, malformed
records rejected, clusters of one timestamp across pages, cursors that never run ahead, incremental pulls,
deletions. Late commits and the cost of cursors: :mod:`crmsync.testing.checks_cursors`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from crmsync.connector import Capability, Connector, Stream
from crmsync.testing.base import SOURCE, ContractBase, applies, has, pulls
from crmsync.testing.data import OPTIONAL_FIELDS
from crmsync.testing.double import CrmDouble
from crmsync.testing.driver import ContractError, PullRun, drive_pull, record_problems

Make = Callable[..., Connector]


def _fail(problems: list[str], limit: int = 12) -> None:
    if problems:
        more = [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
        raise ContractError("\n".join(problems[:limit] + more))


def _twice(run: PullRun) -> list[str]:
    return sorted(i for i, n in Counter(run.live_ids()).items() if n > 1)


def _first_cursor(run: PullRun, where: str) -> str:
    if run.cursor is None:
        raise ContractError(
            f"{where}: the pull handed no cursor although INCREMENTAL is declared; set Batch.cursor "
            "(at the latest on the last batch) to where the next run should resume"
        )
    return run.cursor


def _once(run: PullRun, ids: list[str], what: str) -> list[str]:
    got = run.live_ids()
    problems = []
    if missing := sorted(set(ids) - set(got)):
        problems.append(
            f"{what} never pulled {len(missing)} of {len(ids)} records changed at one instant: {missing[:8]}"
        )
    if twice := _twice(run):
        problems.append(f"{what} pulled {len(twice)} records more than once: {twice[:8]}")
    return problems


def _resumes(run: PullRun, make_connector: Make, stream: Stream) -> list[str]:
    """A crash after any batch that handed a cursor: resuming from it returns what later batches held."""
    for k, batch in enumerate(run.batches):
        later = run.ids_after(k)
        if batch.cursor is None or not later:
            continue
        if lost := sorted(later - set(drive_pull(make_connector(), stream, batch.cursor).live_ids())):
            return [
                f"batch {k + 1} of {len(run.batches)} handed cursor {batch.cursor!r}, but resuming from it never "
                f"returns {lost[:8]}, which came in later batches: the cursor runs ahead of its records"
            ]
    return []


def _rejected(run: PullRun, stream: Stream, bad: dict[str, str], seeded: list[str]) -> list[str]:
    """What is wrong with how the pull handled the ``bad`` records (id -> how the source serves it)."""
    rejects = [r for b in run.batches for r in b.rejects]
    pulled = set(run.live_ids())
    problems = []
    for rid, how in bad.items():
        named = [r for r in rejects if r.record_id == rid or rid in (r.locator or "")]
        if rid in pulled:
            problems.append(
                f"{stream.value} {rid!r} is served {how}, but was pulled as a valid record (a value invented for a "
                "missing one, or a field the connector does not read?): reject it"
            )
        elif not named:
            problems.append(
                f"{stream.value} {rid!r} is served {how}, and the pull neither returned nor rejected it "
                f"(rejections: {[str(r) for r in rejects][:3]}): it was dropped silently. Yield "
                "crmsync.Rejection(stream, locator, field, reason, record_id=..., raw=row) in Batch.rejects, so that "
                "it is quarantined, reported and picked up once fixed"
            )
        elif not any(r.record_id == rid for r in named):
            problems.append(f"the rejection of {rid!r} ({named[0]}) has no record_id: set it to the record's id")
    if lost := sorted(set(seeded) - set(bad) - pulled):
        problems.append(f"{stream.value} {lost} were lost along with the bad records")
    return problems


class PullChecks(ContractBase):
    @applies(pulls)
    def test_full_pull_returns_each_seeded_record_once(self, double: CrmDouble, connector: Connector, stream: Stream):
        seeded = double.seed(stream, self.seed_count)
        run = drive_pull(connector, stream)
        ids = set(run.live_ids())
        problems = []
        if missing := sorted(set(seeded) - ids):
            problems.append(
                f"{len(missing)} of {len(seeded)} seeded {stream.value} were never pulled: {missing}. Paging stops "
                "early or drops the last page: yield every page, including the one that says there is no next page."
            )
        if twice := _twice(run):
            problems.append(
                f"{stream.value} pulled more than once in one pull: {twice}. Pages overlap: check the first page "
                "number (1 or 0?) and the page/offset arithmetic."
            )
        if extra := sorted(ids - set(seeded)):
            problems.append(f"pulled {stream.value} ids the source does not hold: {extra}")
        _fail(problems)

    @applies(pulls)
    def test_pulled_records_are_valid_canonical_records(
        self, double: CrmDouble, make_connector: Make, stream: Stream, zone: str
    ):
        double.seed(stream, self.seed_count)
        run = drive_pull(make_connector(zone), stream)
        problems = [f"valid source record rejected: {r}" for b in run.batches for r in b.rejects]
        for record in run.records:
            expected = double.expected(stream, getattr(record, "external_id", ""))
            problems += record_problems(record, stream, SOURCE, expected)
        if problems:
            problems.append(f"(the connector ran with context.timezone={zone!r}, context.base_currency='EUR')")
        _fail(problems)

    @applies(pulls)
    def test_values_the_source_leaves_out_stay_empty(self, double: CrmDouble, make_connector: Make, stream: Stream):
        seeded = double.seed(stream, self.seed_count)
        sparse = seeded[1::2]  # across pages
        double.omit_optional(stream, sparse)
        run = drive_pull(make_connector(), stream)
        problems = [f"{stream.value} {r.record_id!r} was rejected: {r}" for b in run.batches for r in b.rejects]
        if lost := sorted(set(sparse) - set(run.live_ids()) - {r.record_id for b in run.batches for r in b.rejects}):
            problems.append(f"{stream.value} {lost} were neither pulled nor rejected")
        for record in run.records:
            if record.external_id in sparse:
                problems += record_problems(record, stream, SOURCE, double.expected(stream, record.external_id))
        if problems:
            problems.append(
                f"({stream.value} {sparse} are served without the values a record may lack (of "
                f"{', '.join(OPTIONAL_FIELDS[stream])}). Leave what the source does not hold None: never today's date, "
                "a made-up name or status, or a currency of your choosing; an order that names no currency is in "
                "context.base_currency, the account's home currency)"
            )
        _fail(problems)

    @applies(pulls)
    def test_a_malformed_source_record_becomes_a_rejection(
        self, double: CrmDouble, make_connector: Make, stream: Stream
    ):
        seeded = double.seed(stream, self.seed_count)
        bad = {seeded[len(seeded) // 2]: "with a value that cannot be read"}
        double.corrupt(stream, list(bad))
        if stream is not Stream.MEMBERS:  # a member needs nothing but its id
            bad[seeded[1]] = f"without its {'date' if stream is Stream.ACTIVITIES else 'date or amount'}"
            double.blank(stream, [seeded[1]])
        try:
            run = drive_pull(make_connector(), stream)
        except ContractError:
            raise
        except Exception as exc:
            raise ContractError(
                f"{stream.value} {sorted(bad)}, served {' or '.join(bad.values())}, made the pull raise "
                f"{type(exc).__name__}: {exc}. Catch the error while mapping the record and put a crmsync.Rejection "
                "in Batch.rejects (crmsync.helpers.reject builds one); the rest of the pull goes on"
            ) from None
        _fail(_rejected(run, stream, bad, seeded))
        double.change(stream, list(bad))  # fixed in the source
        again = drive_pull(make_connector(), stream, run.cursor if self._incremental() else None)
        if lost := sorted(set(bad) - set(again.live_ids())):
            raise ContractError(
                f"{stream.value} {lost} were fixed in the source, but the next pull did not return them: a rejected "
                "record must come back once it changes (do not move past it for good)"
            )

    @applies(pulls)
    def test_records_changed_at_one_instant_across_pages_are_pulled_once(
        self, double: CrmDouble, make_connector: Make, stream: Stream
    ):
        seeded = double.seed(stream, self.cluster_size)
        before = drive_pull(make_connector(), stream)
        double.change(stream, seeded)  # a mass update: one modification time on every record, across pages
        problems = _once(drive_pull(make_connector(), stream), seeded, "a full pull")
        if self._incremental():
            start = _first_cursor(before, "full pull")
            run = drive_pull(make_connector(), stream, start)
            problems += _once(run, seeded, f"an incremental pull from {start!r}")
            problems += _resumes(run, make_connector, stream)
            if not problems and (again := drive_pull(make_connector(), stream, run.cursor).live_ids()):
                problems.append(f"a rerun from {run.cursor!r} after the mass update pulled {sorted(again)[:8]} again")
        if problems:
            problems.append(
                f"({len(seeded)} {stream.value} share one modification time, more than a page: page through one "
                "fixed query (page number, token or id), or keep the ids already delivered at the watermark's "
                "time (crmsync.helpers.Watermark); re-querying 'modified >= last time seen' repeats the same page)"
            )
        _fail(problems)

    def _incremental(self) -> bool:
        return Capability.INCREMENTAL in self.kit_spec.capabilities

    @applies(pulls)
    def test_resuming_from_any_batch_cursor_loses_nothing(
        self, double: CrmDouble, make_connector: Make, stream: Stream
    ):
        double.seed(stream, self.seed_count)
        run = drive_pull(make_connector(), stream)
        problems = []
        for k, batch in enumerate(run.batches):
            later = run.ids_after(k)
            if batch.cursor is None or not later:
                continue
            resumed = drive_pull(make_connector(), stream, batch.cursor)
            if lost := sorted(later - set(resumed.live_ids())):
                problems.append(
                    f"batch {k + 1} of {len(run.batches)} handed cursor {batch.cursor!r}, but resuming from it "
                    f"(after a crash right after storing that batch) never returns {lost}, which came in later "
                    "batches: the cursor runs ahead of its records. A batch's cursor must cover only records in "
                    "that batch or earlier ones (records with equal timestamps across a page boundary too); if "
                    "unsure, hand the cursor only on the last batch."
                )
                break
        _fail(problems)

    @applies(has(Capability.INCREMENTAL))
    def test_rerun_without_changes_pulls_nothing(self, double: CrmDouble, make_connector: Make, stream: Stream):
        double.seed(stream, self.seed_count)
        cursor = _first_cursor(drive_pull(make_connector(), stream), "full pull")
        again = drive_pull(make_connector(), stream, cursor)
        if again.live_ids():
            raise ContractError(
                f"a rerun from cursor {cursor!r} with nothing changed pulled {sorted(again.live_ids())} again: "
                "resume strictly after the cursor (e.g. updated_after, not updated_since)"
            )

    @applies(has(Capability.INCREMENTAL))
    def test_incremental_pull_returns_changed_records_once(
        self, double: CrmDouble, make_connector: Make, stream: Stream
    ):
        seeded = double.seed(stream, self.seed_count)
        cursor = _first_cursor(drive_pull(make_connector(), stream), "full pull")
        changed = [seeded[0], seeded[-1]]
        double.change(stream, changed)
        run = drive_pull(make_connector(), stream, cursor)
        ids = run.live_ids()
        problems = []
        if missing := sorted(set(changed) - set(ids)):
            problems.append(f"changed {stream.value} {missing} were not pulled from cursor {cursor!r}")
        if twice := _twice(run):
            problems.append(f"{stream.value} pulled more than once in one incremental pull: {twice}")
        if not run.snapshot_complete and (unchanged := sorted(set(ids) - set(changed))):
            problems.append(f"unchanged {stream.value} {unchanged} were pulled again: the cursor is not applied")
        for record in run.records:
            if record.external_id in changed:
                problems += record_problems(record, stream, SOURCE, double.expected(stream, record.external_id))
        _fail(problems)

    @applies(has(Capability.INCREMENTAL))
    def test_cursor_survives_a_restart_and_only_moves_forward(
        self, double: CrmDouble, make_connector: Make, stream: Stream
    ):
        seeded = double.seed(stream, self.seed_count)
        first = _first_cursor(drive_pull(make_connector(), stream), "full pull")
        restarted = drive_pull(make_connector(), stream, first)  # a new process, only the stored cursor
        if restarted.live_ids():
            raise ContractError(
                f"a fresh connector resuming from cursor {first!r} pulled {sorted(restarted.live_ids())} again: "
                "put everything needed to resume in the cursor string, not in the connector's memory"
            )
        double.change(stream, [seeded[1]])
        moved = drive_pull(make_connector(), stream, restarted.cursor)
        if seeded[1] not in moved.live_ids():
            raise ContractError(
                f"after a rerun with no changes handed cursor {restarted.cursor!r}, a later change to "
                f"{seeded[1]!r} was not pulled: a rerun must keep (or advance) the cursor, never reset it"
            )
        final = drive_pull(make_connector(), stream, moved.cursor)
        if final.live_ids():
            raise ContractError(
                f"cursor {moved.cursor!r} from the incremental pull did not move forward: resuming from it pulled "
                f"{sorted(final.live_ids())} again"
            )

    @applies(has(Capability.DELETIONS))
    def test_deletions_are_reported(self, double: CrmDouble, make_connector: Make, stream: Stream):
        seeded = double.seed(stream, self.seed_count)
        cursor = drive_pull(make_connector(), stream).cursor
        gone = seeded[: len(seeded) // 2 + 1]  # more than a page of the double's
        double.delete(stream, gone)
        run = drive_pull(make_connector(), stream, cursor)
        reported = run.deleted_ids()
        if run.snapshot_complete:
            reported |= set(seeded) - set(run.live_ids())
        problems = []
        if missing := sorted(set(gone) - reported):
            problems.append(
                f"{stream.value} {missing} were deleted in the source but the pull from cursor {cursor!r} did "
                "not report them: DELETIONS is declared, so put their ids in Batch.deleted (from the API's "
                "deleted-records endpoint) or yield them with deleted=True"
            )
        if back := sorted(set(gone) & set(run.live_ids())):
            problems.append(f"deleted {stream.value} {back} came back as live records")
        _fail(problems)
