"""Incremental pulls: an unchanged file yields nothing; a changed one is a full snapshot; batches and cursors."""

from __future__ import annotations

import json

from crmsync.connector import Stream
from tests.generic_csv.csv_support import pull

MEMBERS = "customer_id,email\n" + "".join(f"c{i},m{i}@x.com\n" for i in range(1, 8))


def members_connector(make_connector, write_csv, text=MEMBERS, **extra):
    write_csv("customers.csv", raw=text.encode())
    return make_connector(members_path="customers.csv", members_columns={"external_id": "customer_id"}, **extra)


def test_first_pull_is_a_full_snapshot_with_a_cursor_on_the_last_batch_only(make_connector, write_csv):
    connector = members_connector(make_connector, write_csv, batch_size=3)
    got = pull(connector, Stream.MEMBERS)

    assert [len(b.records) for b in got.batches] == [3, 3, 1]
    assert [b.cursor is None for b in got.batches] == [True, True, False]
    assert [b.snapshot_complete for b in got.batches] == [False, False, True]
    [(sha256, size)] = json.loads(got.cursor)["files"].values()
    assert size == len(MEMBERS.encode()) and len(sha256) == 64


def test_rejects_count_towards_the_batch_size(make_connector, write_csv):
    text = MEMBERS + "c8,bad\nc9,bad\n"
    connector = members_connector(make_connector, write_csv, text=text, batch_size=4)
    got = pull(connector, Stream.MEMBERS)
    assert [len(b.records) + len(b.rejects) for b in got.batches] == [4, 4, 1]


def test_unchanged_file_yields_no_batches(make_connector, write_csv):
    connector = members_connector(make_connector, write_csv)
    cursor = pull(connector, Stream.MEMBERS).cursor

    assert pull(connector, Stream.MEMBERS, cursor).batches == []


def test_changed_file_is_read_fully_as_a_snapshot(make_connector, write_csv):
    connector = members_connector(make_connector, write_csv, batch_size=100)
    cursor = pull(connector, Stream.MEMBERS).cursor
    changed = MEMBERS.replace("c3,m3@x.com\n", "").replace("m5@x.com", "new5@x.com")
    write_csv("customers.csv", raw=changed.encode())

    got = pull(connector, Stream.MEMBERS, cursor)

    assert len(got.batches) == 1 and got.batches[0].snapshot_complete
    members = got.by_id()
    assert sorted(members) == ["c1", "c2", "c4", "c5", "c6", "c7"]  # whole file, not just the change
    assert members["c5"].email == "new5@x.com"
    assert got.cursor != cursor
    assert pull(connector, Stream.MEMBERS, got.cursor).batches == []


def test_same_size_different_content_is_a_change(make_connector, write_csv):
    connector = members_connector(make_connector, write_csv)
    cursor = pull(connector, Stream.MEMBERS).cursor
    write_csv("customers.csv", raw=MEMBERS.replace("m1@", "z1@").encode())
    assert pull(connector, Stream.MEMBERS, cursor).by_id()["c1"].email == "z1@x.com"


def test_changed_mapping_or_zone_rereads_an_unchanged_file(make_connector, write_csv):
    connector = members_connector(make_connector, write_csv)
    cursor = pull(connector, Stream.MEMBERS).cursor

    remapped = members_connector(make_connector, write_csv, member_attributes=["email"])
    other_zone = members_connector(make_connector, write_csv, timezone="Asia/Shanghai")
    assert len(pull(remapped, Stream.MEMBERS, cursor).records) == 7
    assert len(pull(other_zone, Stream.MEMBERS, cursor).records) == 7


def test_garbage_cursor_means_a_full_read(make_connector, write_csv):
    connector = members_connector(make_connector, write_csv)
    for cursor in ("not json", json.dumps({"v": 99}), json.dumps([1, 2])):
        assert len(pull(connector, Stream.MEMBERS, cursor).records) == 7


def test_empty_file_is_an_empty_snapshot(make_connector, write_csv):
    connector = members_connector(make_connector, write_csv, text="customer_id,email\n")
    got = pull(connector, Stream.MEMBERS)
    assert [(len(b.records), b.snapshot_complete, b.cursor is not None) for b in got.batches] == [(0, True, True)]


def test_each_stream_has_its_own_cursor(make_connector, write_csv):
    write_csv("customers.csv", raw=MEMBERS.encode())
    write_csv("orders.csv", "order_id,customer_id,placed_at,amount\nA,c1,2025-01-01,1")
    connector = make_connector(
        members_path="customers.csv",
        orders_path="orders.csv",
        members_columns={"external_id": "customer_id"},
        orders_columns={"external_id": "order_id", "member_external_id": "customer_id"},
    )
    members_cursor = pull(connector, Stream.MEMBERS).cursor
    orders_cursor = pull(connector, Stream.ORDERS).cursor
    write_csv("orders.csv", "order_id,customer_id,placed_at,amount\nA,c1,2025-01-01,2")

    assert pull(connector, Stream.MEMBERS, members_cursor).batches == []
    assert pull(connector, Stream.ORDERS, orders_cursor).records[0].amount == 2
