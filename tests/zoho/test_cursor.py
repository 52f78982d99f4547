"""The pull cursor under clustered changes: thousands of records in one second, exactly-once delivery, resuming
after a crash inside a cluster, a settled window answered 304, cursors of the previous format."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest
from crmsync_zoho.cursor import Watermark, ZohoCursor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.connector import Stream

from .conftest import make_settings
from .fake import FakeZoho


def pull(connector, cursor: str | None) -> tuple[list[str], list[str | None], str | None]:
    """Ids delivered (in order), every batch's cursor, and the last cursor handed over."""
    ids, cursors = [], []
    for batch in connector.pull(Stream.MEMBERS, cursor):
        ids += [m.external_id for m in batch.records]
        cursors.append(batch.cursor)
        cursor = batch.cursor or cursor
    return ids, cursors, cursor


@pytest.mark.slow
def test_twenty_thousand_contacts_changed_in_one_second_are_pulled_once(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(20_000)
    connector = connect()
    _, _, cursor = pull(connector, None)
    fake.tick(3600)
    fake.mass_update("Contacts", ids, Description="imported")  # one Modified_Time on all of them
    context.api_calls.clear()
    got, cursors, cursor = pull(connector, cursor)
    assert Counter(got) == Counter(dict.fromkeys(ids, 1))  # every one, exactly once
    assert context.api_calls == {"read Contacts": 100, "deleted Contacts": 1}  # 20,000 / 200, one look at deletions
    # the cursor is not rewritten after every page while it holds 20,000 versions of one second
    assert 2 <= sum(c is not None for c in cursors) < 20
    # the pull ran in the cluster's second: the next one re-reads the window (late commits), delivers nothing
    fake.tick(120)
    context.api_calls.clear()
    got, _, cursor = pull(connector, cursor)
    assert got == [] and context.api_calls == {"read Contacts": 100, "deleted Contacts": 1}
    # then the window is settled: one 304, one look at deletions
    fake.tick(120)
    context.api_calls.clear()
    got, _, cursor = pull(connector, cursor)
    assert got == [] and context.api_calls == {"read Contacts": 1, "deleted Contacts": 1}
    assert fake.answers_to("read Contacts")[-1] == 304


def test_resuming_from_any_cursor_inside_a_cluster_loses_nothing(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(2_600)
    connector = connect()
    _, _, start = pull(connector, None)
    fake.tick(600)
    fake.mass_update("Contacts", ids, Description="mass")
    got, cursors, _ = pull(connector, start)
    assert sorted(got) == sorted(ids)
    handed = [(k, c) for k, c in enumerate(cursors) if c is not None]
    assert len(handed) >= 3
    delivered_before: list[str] = []
    batches = list(connector.pull(Stream.MEMBERS, start))
    for k, batch in enumerate(batches):
        delivered_before += [m.external_id for m in batch.records]
        if batch.cursor is None:
            continue
        resumed, _, _ = pull(connector, batch.cursor)  # a crash right after this batch was stored
        assert set(delivered_before) | set(resumed) == set(ids), f"batch {k}: records lost"


def test_a_cursor_of_the_previous_format_still_loads(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(3)
    newest = datetime.fromisoformat(fake.records["Contacts"][ids[-1]]["Modified_Time"])
    old = json.dumps({"v": 1, "records": {"at": newest.isoformat(), "seen": {ids[-1]: newest.isoformat()}},
                      "deleted": {"at": newest.isoformat(), "seen": {}}})  # fmt: skip
    state = ZohoCursor.loads(old)
    assert state.records.at == newest and state.records.seen == {ids[-1]: newest} and state.records.checked is None
    got, _, cursor = pull(connect(), old)
    assert sorted(got) == sorted(ids[:-1])  # the two inside the window but not in "seen"; ids[-1] not again
    assert json.loads(cursor)["v"] == 2


def test_watermark_forgets_versions_once_they_leave_the_window() -> None:
    mark = Watermark()
    t0 = datetime.fromisoformat("2025-07-01T09:00:00+00:00")
    overlap = timedelta(seconds=60)
    for i in range(1000):
        mark.note(f"r{i}", t0 + timedelta(seconds=i))
        if i % 200 == 199:
            mark.prune(overlap)
    mark.prune(overlap)
    newest = t0 + timedelta(seconds=999)
    assert mark.at == newest and set(mark.seen) == {f"r{i}" for i in range(939, 1000)}
    assert len(mark._heap) == len(mark.seen)
    mark.note("r999", newest + timedelta(seconds=5))  # seen again in a newer version: the old entry is stale
    mark.complete(newest + timedelta(seconds=5 + 600), overlap)
    assert mark.seen == {"r999": newest + timedelta(seconds=5)} and mark.since(overlap) == mark.at


ops = st.lists(
    st.one_of(
        st.tuples(st.just("seed"), st.integers(1, 450)),
        st.tuples(st.just("mass"), st.floats(0, 1)),
        st.tuples(st.just("edit"), st.integers(0, 5)),
        st.tuples(st.just("wait"), st.sampled_from([0, 1, 30, 59, 61, 600])),
        st.tuples(st.just("pull"), st.just(0)),
    ),
    min_size=3,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_every_version_is_delivered_exactly_once(context, steps) -> None:
    """Random seeds, mass updates and edits in clusters, pulls at random times: each pull delivers exactly the
    versions not delivered before, none twice."""
    from crmsync_zoho.connector import ZohoConnector

    fake = FakeZoho()
    connector = ZohoConnector(make_settings(), context, transport=fake.transport, sleep=fake.sleep)
    delivered: set[tuple[str, str]] = set()
    cursor = None
    for op, arg in [*steps, ("pull", 0)]:
        ids = list(fake.records["Contacts"])
        if op == "seed":
            new = fake.seed_contacts(arg)
            fake.mass_update("Contacts", new, Description="import")  # an import: one second for all
        elif op == "mass" and ids:
            fake.mass_update("Contacts", ids[: max(1, int(len(ids) * arg))], Description=f"m{arg}")
        elif op == "edit" and ids:
            fake.modify("Contacts", ids[arg % len(ids)], Last_Name="Edited")
        elif op == "wait":
            fake.tick(arg)
        elif op == "pull":
            got, _, cursor = pull(connector, cursor)
            versions = {(rid, fake.contact(rid)["Modified_Time"]) for rid in got}
            assert len(got) == len(set(got)), "a record twice in one pull"
            expected = {(rid, r["Modified_Time"]) for rid, r in fake.records["Contacts"].items()} - delivered
            assert versions == expected
            delivered |= versions


def test_a_large_change_found_on_rest_is_read_on_by_bulk_read(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(3_000)
    connector = connect(bulk_threshold=1_000)
    _, _, cursor = pull(connector, None)  # a first pull: one export
    fake.tick(3600)
    fake.mass_update("Contacts", ids, Description="imported")
    fake.tick(5)
    late = fake.add("Contacts", Email="late@example.com", Last_Name="Late")
    context.api_calls.clear()
    got, _, cursor = pull(connector, cursor)
    assert Counter(got) == Counter(dict.fromkeys([*ids, late], 1))  # every one, once, across both transports
    # five REST pages (1,000 records) show the change is large; the rest comes in one export from the newest
    # change those pages held
    assert context.api_calls == {"read Contacts": 5, "bulk_read create": 1, "bulk_read status": 1,
                                 "bulk_read download": 1, "deleted Contacts": 1}  # fmt: skip
    export = json.loads([r for r in fake.requests if r.url.path == "/crm/bulk/v8/read"][-1].content)
    (condition,) = export["query"]["criteria"]["group"]
    assert datetime.fromisoformat(condition["value"]) == datetime.fromisoformat(fake.contact(ids[0])["Modified_Time"])
    fake.tick(600)
    assert pull(connector, cursor)[0] == []
