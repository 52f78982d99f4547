"""Cursor checks beyond one pull: a change committed late (stamped before the newest change already delivered) is
pulled exactly once, and the cursors handed over for a large cluster of one instant cost linear time."""

from __future__ import annotations

from collections.abc import Callable

from crmsync.connector import Capability, Connector, Stream
from crmsync.testing.base import ContractBase, applies, has
from crmsync.testing.checks_basic import bounded_settings
from crmsync.testing.data import LATE_BY
from crmsync.testing.double import CrmDouble
from crmsync.testing.driver import ContractError, PullRun, drive_pull

Make = Callable[..., Connector]

GROWTH_LIMIT = 3.0
"""Twice the records of one instant may cost at most this many times the cursor text (linear: 2, quadratic: 4)."""
SMALL_CURSORS = 100_000
"""Cursor text (characters, all cursors of a pull together) too small to matter, whatever its growth."""


def cursor_volume(run: PullRun) -> tuple[int, int]:
    """How many cursors a pull handed over, and their length together."""
    cursors = [b.cursor for b in run.batches if b.cursor is not None]
    return len(cursors), sum(len(c) for c in cursors)


class CursorChecks(ContractBase):
    @applies(has(Capability.INCREMENTAL))
    def test_a_change_committed_late_is_pulled_once(self, double: CrmDouble, make_connector: Make, stream: Stream):
        seeded = double.seed(stream, self.seed_count)
        start = drive_pull(make_connector(), stream).cursor
        double.change(stream, [seeded[0], seeded[-1]])
        if Capability.DELETIONS in self.kit_spec.capabilities:
            double.delete(stream, [seeded[2]])  # a run sees changes and deletions ...
        cursor = drive_pull(make_connector(), stream, start).cursor
        late = [seeded[1], seeded[3]]
        double.commit_late(stream, late)  # ... then a transaction that began before the newest change commits
        run = drive_pull(make_connector(), stream, cursor)
        ids, problems = run.live_ids(), []
        if missing := sorted(set(late) - set(ids)):
            problems.append(
                f"{stream.value} {missing}, changed in a transaction that committed after the last pull (stamped "
                f"{LATE_BY.total_seconds():g} s before the newest change that pull delivered), were not pulled from "
                f"cursor {cursor!r}: re-read an overlap window before the watermark (say a minute; "
                "crmsync.helpers.Watermark.since(overlap)) and skip the versions already delivered"
            )
        if twice := sorted({i for i in ids if ids.count(i) > 1}):
            problems.append(f"{stream.value} {twice} were pulled more than once in one pull")
        if not run.snapshot_complete and (again := sorted(set(ids) - set(late))):
            problems.append(f"{stream.value} {again}, delivered before, were pulled again through the overlap")
        if not problems and (rerun := drive_pull(make_connector(), stream, run.cursor).live_ids()):
            problems.append(
                f"a rerun from {run.cursor!r} pulled {sorted(rerun)} again: remember the versions delivered inside "
                "the overlap window (Watermark.delivered/note) so that each is delivered once"
            )
        if problems:
            raise ContractError("\n".join(problems))

    @applies(has(Capability.INCREMENTAL))
    def test_cursors_for_a_large_cluster_grow_linearly(self, double: CrmDouble, make_connector: Make, stream: Stream):
        model = self.kit_spec.settings_model
        settings = model.model_validate({**double.settings(), **bounded_settings(model)})  # the largest pages
        ids: list[str] = []
        volumes = []
        for _ in range(2):
            ids += double.seed(stream, self.large_cluster_size)
            double.change(stream, ids)  # a mass update: every record of the stream at one instant
            run = drive_pull(make_connector(settings=settings), stream, max_batches=2 * len(ids) + 10)
            if lost := len(set(ids) - set(run.live_ids())):
                raise ContractError(f"a full pull of {len(ids)} {stream.value} of one instant lost {lost} of them")
            volumes.append(cursor_volume(run))
        (n1, v1), (n2, v2) = volumes
        if v2 > SMALL_CURSORS and v2 > GROWTH_LIMIT * max(v1, 1):
            raise ContractError(
                f"a pull of {len(ids)} {stream.value} changed at one instant handed over {n2} cursors of "
                f"{v2:,} characters in all, {v2 / max(v1, 1):.1f} times the {v1:,} ({n1} cursors) of a pull of half "
                "as many: the engine stores every cursor, so writing a cursor that grows with the cluster after "
                "every page costs quadratic time (at 100,000 records, 100 a page: some 550 MB of cursor text, not "
                "2 MB). Hand a cursor with every page only while it is small, then at doubling sizes: "
                "crmsync.helpers.Watermark.checkpoint_due"
            )
