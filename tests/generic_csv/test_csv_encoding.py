"""Encodings: UTF-8 with and without BOM, GBK/GB18030 Chinese exports, detection, undecodable bytes."""

from __future__ import annotations

import pytest
from crmsync_generic_csv.files import scan

from crmsync.connector import Stream
from tests.generic_csv.csv_support import pull

CUSTOMERS = "customer_id,first_name,last_name,city\nc1,伟,王,北京\nc2,Zoë,Müller,Köln\n"
CHINESE_ONLY = "customer_id,first_name,last_name,city\nc1,伟,王,北京\nc2,芳,李,上海\n"


@pytest.mark.parametrize(
    ("encoding", "setting", "text"),
    [
        ("utf-8", "auto", CUSTOMERS),
        ("utf-8-sig", "auto", CUSTOMERS),
        ("utf-8-sig", "utf-8", CUSTOMERS),  # a BOM under an explicit utf-8 does not leak into the first header
        ("gb18030", "auto", CUSTOMERS),
        ("gb18030", "gb18030", CUSTOMERS),
        ("gbk", "auto", CHINESE_ONLY),
        ("gbk", "gbk", CHINESE_ONLY),
    ],
)
def test_encodings_read_chinese_names(make_connector, write_csv, encoding, setting, text):
    write_csv("customers.csv", raw=text.encode(encoding))
    connector = make_connector(
        members_path="customers.csv", members_columns={"external_id": "customer_id"}, encoding=setting
    )
    got = pull(connector, Stream.MEMBERS)

    assert got.rejects == []
    members = got.by_id()
    assert list(members) == ["c1", "c2"]  # the first header was found despite a BOM
    assert (members["c1"].first_name, members["c1"].last_name) == ("伟", "王")
    assert members["c1"].attributes["city"] == "北京"
    expected_c2 = "Zoë" if text == CUSTOMERS else "芳"
    assert members["c2"].first_name == expected_c2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (CUSTOMERS.encode("utf-8"), "utf-8"),
        (CUSTOMERS.encode("utf-8-sig"), "utf-8-sig"),
        (CHINESE_ONLY.encode("gbk"), "gb18030"),
        (b"id,name\n1,plain ascii\n", "utf-8"),
    ],
)
def test_auto_detection(tmp_path, data, expected):
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    info = scan(path)
    assert (info.encoding, info.clean, info.size) == (expected, True, len(data))


def test_mostly_utf8_file_with_a_stray_byte_stays_utf8(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes("id,name\n1,北京\n2,上海\n".encode() + b"3,bad\xff\n")
    info = scan(path)
    assert (info.encoding, info.clean) == ("utf-8", False)


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_undecodable_bytes_reject_only_their_row(make_connector, write_csv, encoding):
    good = "customer_id,first_name\nc1,王伟\n".encode(encoding)
    write_csv("customers.csv", raw=good + b"c2,bad\xff\xfe\nc3,ok\n")
    connector = make_connector(
        members_path="customers.csv", members_columns={"external_id": "customer_id"}, encoding=encoding
    )
    got = pull(connector, Stream.MEMBERS)

    assert sorted(got.by_id()) == ["c1", "c3"]
    assert got.by_id()["c1"].first_name == "王伟"
    [rejection] = got.rejects
    assert (rejection.locator, rejection.record_id) == ("customers.csv:3", "c2")
    assert "bytes that are not" in rejection.reason
    assert rejection.raw == {"customer_id": "c2", "first_name": "bad\\xff\\xfe"}  # kept, shown as escapes


def test_other_delimiter(make_connector, write_csv):
    write_csv("customers.csv", "customer_id;first_name\nc1;Ann")
    connector = make_connector(
        members_path="customers.csv", members_columns={"external_id": "customer_id"}, delimiter=";"
    )
    assert pull(connector, Stream.MEMBERS).by_id()["c1"].first_name == "Ann"


def test_quoted_multiline_cell_keeps_line_numbers(make_connector, write_csv):
    write_csv("customers.csv", raw=b'customer_id,first_name,email\nc1,"Ann\nMarie",a@x.com\nc2,Bob,broken\n')
    connector = make_connector(members_path="customers.csv", members_columns={"external_id": "customer_id"})
    got = pull(connector, Stream.MEMBERS)
    assert got.by_id()["c1"].first_name == "Ann\nMarie"
    assert [r.locator for r in got.rejects] == ["customers.csv:4"]
