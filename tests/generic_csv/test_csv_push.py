"""Pushing profiles to the output CSV: merge, stable order, formula neutralisation, atomic rewrite."""

from __future__ import annotations

import csv
import os

import pytest
from crmsync_generic_csv import writer
from crmsync_generic_csv.writer import neutralise

from crmsync.connector import ProfileChange
from crmsync.errors import ConfigError, ConnectorError


def change(member_id: str, **values) -> ProfileChange:
    full = {"tier": "Bronze", "points": 0, "tags": [], "rfm_segment": None, "lifecycle": "new"} | values
    return ProfileChange(member_id=member_id, values=full, previous={}, changed=frozenset(values))


def read_rows(path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.fixture
def output(make_connector, tmp_path):
    connector = make_connector(output_path="out/profiles.csv")
    return connector, tmp_path / "out" / "profiles.csv"


def test_push_writes_header_sorted_rows_and_one_result_per_change(output):
    connector, path = output
    results = connector.push(
        [change("m2", tier="Gold", points=120, tags=["vip", "at_risk"]), change("m1", rfm_segment="Champions")]
    )

    assert sorted((r.member_id, r.ok) for r in results) == [("m1", True), ("m2", True)]
    assert read_rows(path) == [
        ["member_id", "tier", "points", "tags", "rfm_segment", "lifecycle"],
        ["m1", "Bronze", "0", "", "Champions", "new"],
        ["m2", "Gold", "120", "vip|at_risk", "", "new"],
    ]


def test_push_merges_into_the_existing_file(output):
    connector, path = output
    connector.push([change("m1"), change("m3")])
    connector.push([change("m2", tier="Silver"), change("m3", tier="Gold")])

    rows = read_rows(path)
    assert [(r[0], r[1]) for r in rows[1:]] == [("m1", "Bronze"), ("m2", "Silver"), ("m3", "Gold")]


def test_push_merges_a_file_written_by_an_earlier_process(output, make_connector):
    connector, path = output
    connector.push([change("m1", tier="Gold")])
    later = make_connector(output_path="out/profiles.csv", tags_separator=";")
    later.push([change("m2", tags=["a", "b"])])

    assert read_rows(path)[1:] == [["m1", "Gold", "0", "", "", "new"], ["m2", "Bronze", "0", "a;b", "", "new"]]


def test_push_notices_the_file_changed_on_disk_between_calls(output):
    connector, path = output
    connector.push([change("m1")])
    path.write_text("member_id,tier\nm9,Platinum\n", encoding="utf-8")  # replaced by someone else
    connector.push([change("m2")])
    # the new file is merged, not the stale copy in memory: m1 went with the old file
    assert [r[:2] for r in read_rows(path)[1:]] == [["m2", "Bronze"], ["m9", "Platinum"]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1+cmd", "'+1+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-5", "-5"),
        ("-5.25", "-5.25"),
        ("+3", "+3"),
        ("Gold", "Gold"),
        ("", ""),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected


def test_pushed_cells_are_neutralised_but_negative_points_stay_numbers(output):
    connector, path = output
    connector.push([change("=m1", tier="=cmd|'/c calc'!A1", points=-5, tags=["-x", "ok"], lifecycle="@risk")])
    connector.push([change("m2")])  # rewriting keeps the escaped cells as they are (no double quoting)

    assert read_rows(path)[1] == ["'=m1", "'=cmd|'/c calc'!A1", "-5", "'-x|ok", "", "'@risk"]


def test_push_fields_subset_in_fixed_order(make_connector, tmp_path):
    connector = make_connector(output_path="p.csv", push_fields=["lifecycle", "tier"])
    connector.push([change("m1", tier="Gold")])
    assert read_rows(tmp_path / "p.csv") == [["member_id", "tier", "lifecycle"], ["m1", "Gold", "new"]]
    assert connector.push_fields == ("tier", "lifecycle")


def test_failure_mid_write_leaves_the_old_file_intact(output, monkeypatch):
    connector, path = output
    connector.push([change("m1", tier="Gold")])
    before = path.read_bytes()
    real_writer = csv.writer

    class Boom:
        def __init__(self, fh, **kwargs):
            self.inner = real_writer(fh, **kwargs)

        def writerow(self, row):
            return self.inner.writerow(row)

        def writerows(self, rows):
            for i, row in enumerate(rows):
                if i == 1:
                    raise OSError(28, "No space left on device")
                self.inner.writerow(row)

    monkeypatch.setattr(writer.csv, "writer", Boom)
    with pytest.raises(ConnectorError, match="No space left on device"):
        connector.push([change("m0"), change("m2", tier="Silver")])

    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["profiles.csv"]  # no temp file left behind
    monkeypatch.undo()
    connector.push([change("m2", tier="Silver")])  # the failed batch is retried by the engine
    assert [r[:2] for r in read_rows(path)[1:]] == [["m1", "Gold"], ["m2", "Silver"]]


def test_failure_at_replace_leaves_the_old_file_intact(output, monkeypatch):
    connector, path = output
    connector.push([change("m1")])
    before = path.read_bytes()

    def fail(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(writer.os, "replace", fail)
    with pytest.raises(ConnectorError):
        connector.push([change("m2")])
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["profiles.csv"]


def test_empty_member_id_is_a_rejected_result(output):
    connector, path = output
    results = connector.push([change(" "), change("m1")])
    assert [(r.ok, r.retryable) for r in results] == [(False, False), (True, True)]
    assert len(read_rows(path)) == 2


def test_push_without_output_path_is_a_config_error(make_connector, write_csv):
    write_csv("customers.csv", "external_id\nc1")
    connector = make_connector(members_path="customers.csv")
    with pytest.raises(ConfigError, match="output_path"):
        connector.push([change("m1")])


def test_push_batch_size_comes_from_settings(make_connector):
    assert make_connector(output_path="p.csv", push_batch_size=2500).push_batch_size == 2500
