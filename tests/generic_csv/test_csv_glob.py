"""A glob pattern of export files: a full export plus deltas, read in name order, unchanged files skipped."""

from __future__ import annotations

import json

import pytest

from crmsync.connector import Stream
from crmsync.errors import ConfigError
from tests.generic_csv.csv_support import pull

HEADER = "customer_id,email\n"


def connector(make_connector, **extra):  # type: ignore[no-untyped-def]
    return make_connector(members_path="customers-*.csv", members_columns={"external_id": "customer_id"}, **extra)


def test_files_are_read_in_name_order_and_a_later_file_wins(make_connector, write_csv) -> None:  # type: ignore[no-untyped-def]
    write_csv("customers-2.csv", raw=(HEADER + "c2,new2@x.com\nc4,m4@x.com\n").encode())
    write_csv("customers-1.csv", raw=(HEADER + "c1,m1@x.com\nc2,m2@x.com\nc3,m3@x.com\n").encode())
    got = pull(connector(make_connector), Stream.MEMBERS)

    assert [r.external_id for r in got.records] == ["c1", "c2", "c3", "c2", "c4"]
    assert [b.cursor is None for b in got.batches] == [True, False]
    assert not any(b.snapshot_complete for b in got.batches)  # two files: nothing is deleted by absence
    assert [p.rsplit("/", 1)[-1] for p in got_paths(got.cursor)] == ["customers-1.csv", "customers-2.csv"]


def got_paths(cursor: str) -> list[str]:
    return list(json.loads(cursor)["files"])


def test_only_a_new_delta_is_read_on_the_next_pull(make_connector, write_csv) -> None:  # type: ignore[no-untyped-def]
    write_csv("customers-1.csv", raw=(HEADER + "c1,m1@x.com\nc2,m2@x.com\n").encode())
    conn = connector(make_connector)
    first = pull(conn, Stream.MEMBERS)
    assert first.batches[-1].snapshot_complete  # a single matching file is a snapshot

    write_csv("customers-2.csv", raw=(HEADER + "c2,new2@x.com\n").encode())
    second = pull(conn, Stream.MEMBERS, first.cursor)
    assert [(r.external_id, r.email) for r in second.records] == [("c2", "new2@x.com")]
    assert not second.batches[-1].snapshot_complete
    assert len(got_paths(second.cursor)) == 2
    assert pull(conn, Stream.MEMBERS, second.cursor).batches == []


def test_a_changed_earlier_file_is_read_with_every_file_after_it(make_connector, write_csv) -> None:  # type: ignore[no-untyped-def]
    write_csv("customers-1.csv", raw=(HEADER + "c1,m1@x.com\nc2,m2@x.com\n").encode())
    write_csv("customers-2.csv", raw=(HEADER + "c2,new2@x.com\n").encode())
    conn = connector(make_connector)
    cursor = pull(conn, Stream.MEMBERS).cursor
    write_csv("customers-1.csv", raw=(HEADER + "c1,z1@x.com\nc2,m2@x.com\n").encode())

    got = pull(conn, Stream.MEMBERS, cursor)
    assert [(r.external_id, r.email) for r in got.records] == [
        ("c1", "z1@x.com"),
        ("c2", "m2@x.com"),
        ("c2", "new2@x.com"),  # the later file still wins
    ]


def test_single_file_cursor_of_the_older_format_is_honoured(make_connector, write_csv) -> None:  # type: ignore[no-untyped-def]
    write_csv("customers.csv", raw=(HEADER + "c1,m1@x.com\n").encode())
    conn = make_connector(members_path="customers.csv", members_columns={"external_id": "customer_id"})
    [(sha256, size)] = json.loads(pull(conn, Stream.MEMBERS).cursor)["files"].values()
    settings = json.loads(pull(conn, Stream.MEMBERS).cursor)["settings"]
    old = json.dumps({"v": 1, "sha256": sha256, "size": size, "settings": settings})
    assert pull(conn, Stream.MEMBERS, old).batches == []


def test_a_pattern_without_files_is_a_clear_error(make_connector, write_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_csv("customers-1.csv", raw=(HEADER + "c1,m1@x.com\n").encode())
    conn = connector(make_connector)
    (tmp_path / "customers-1.csv").unlink()
    with pytest.raises(ConfigError, match=r"members_path: no file matches"):
        pull(conn, Stream.MEMBERS)
    with pytest.raises(Exception, match="no file matches"):
        make_connector(members_path="none-*.csv")
