"""Hostile CSV input: amounts the model cannot hold, rows in another encoding, overlong lines and cells,
unterminated quotes, duplicate ids and headers, unreadable line amounts under an order total.

Whole generated files mixing every class are read by both readers in the bad-input campaign
(``tests/reliability/test_bad_input.py``); these are the classes one by one.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from crmsync_generic_csv.files import CsvFile, scan
from crmsync_generic_csv.parse import CellError, parse_amount
from crmsync_generic_csv.records import BadRow, RecordReader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.connector import Stream
from crmsync.errors import ConfigError
from crmsync.store import Store
from tests.generic_csv.csv_support import pull
from tests.reliability.hostile_support import EUROPEAN, MiB, amount_outcome, amounts, chinese, load, reading

CAMPAIGN = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
STORE = Store.open(None)


# ---------------------------------------------------------------------------------------------- amounts


@settings(max_examples=400, deadline=None)
@given(text=amounts)
def test_an_amount_is_read_exactly_or_rejected_never_raises_otherwise(text: str) -> None:
    expected = amount_outcome(text)
    try:
        value = parse_amount(text)
    except CellError as exc:
        assert expected is None, f"{text!r} holds {expected} but was refused: {exc}"
        return
    assert expected is not None, f"{text!r} cannot be held but was read as {value!r}"
    assert value == expected and value.as_tuple().exponent >= -4  # type: ignore[operator]


@pytest.mark.parametrize("text", ["1e28", "1E+50", "-1e100", "1e999999999", "9" * 40 + ".12345", "1e-30", "-Infinity"])
def test_an_amount_the_model_cannot_hold_is_rejected_with_line_and_field(make_connector, write_csv, text):
    write_csv(
        "orders.csv", f"external_id,member_external_id,placed_at,amount\nO1,C1,2025-01-01,{text}\nO2,C1,2025-01-01,5"
    )
    got = pull(make_connector(orders_path="orders.csv"), Stream.ORDERS)
    assert list(got.by_id()) == ["O2"]  # the read goes on
    [rejection] = got.rejects
    assert (rejection.locator, rejection.field, rejection.record_id) == ("orders.csv:2", "amount", "O1")


@pytest.mark.parametrize("cell", ["abc", "1e28", "NaN", "1.00001"])
def test_with_a_total_column_an_unreadable_line_amount_still_rejects_its_order(make_connector, write_csv, cell):
    write_csv(
        "orders.csv",
        f"external_id,member_external_id,placed_at,amount,total\nO1,C1,2025-01-01,,20.00\nO1,,,{cell},\nO2,C1,2025-01-01,,5",
    )
    got = pull(make_connector(orders_path="orders.csv", orders_columns={"total": "total"}), Stream.ORDERS)
    assert sorted(got.by_id()) == ["O2"]  # an empty line amount is fine when the total says it
    assert [(r.locator, r.field, r.record_id) for r in got.rejects] == [("orders.csv:3", "amount", "O1")]


def test_every_bad_line_of_an_order_is_reported(make_connector, write_csv):
    write_csv("orders.csv", "external_id,member_external_id,placed_at,amount\nO1,C1,2025-01-01,x\nO1,,,1\nO1,,,y")
    got = pull(make_connector(orders_path="orders.csv"), Stream.ORDERS)
    assert got.records == []
    assert [r.locator for r in got.rejects] == ["orders.csv:2", "orders.csv:4"]


def _quarantine_of(text: str, make_connector, write_csv) -> tuple[list[str], list[tuple[str, str | None, str]]]:
    write_csv("customers.csv", raw=text.encode())
    connector = make_connector(members_path="customers.csv")
    with Store.open(None) as store:
        for batch in connector.pull(Stream.MEMBERS, None):
            store.write_batch("shop", batch, run_id="r1", base_currency="EUR", rates={})
        ids = [r[0] for r in store.con.execute("SELECT external_id FROM members ORDER BY 1").fetchall()]
        rows = store.con.execute("SELECT locator, field, reason FROM quarantine").fetchall()
    return ids, sorted(rows, key=lambda row: int(row[0].rpartition(":")[2]))


@given(copies=st.integers(2, 6), before=st.integers(0, 3))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_each_duplicate_row_of_an_id_keeps_its_own_quarantine_entry(make_connector, write_csv, copies, before):
    rows = [f"P{i},p{i}@example.com" for i in range(before)] + [f"C1,c{i}@example.com" for i in range(copies)]
    ids, quarantine = _quarantine_of("external_id,email\n" + "\n".join(rows) + "\n", make_connector, write_csv)
    assert ids == sorted(["C1", *(f"P{i}" for i in range(before))])  # the first row of C1 wins
    assert [q[0] for q in quarantine] == [f"customers.csv:{before + 3 + k}" for k in range(copies - 1)]
    assert all(q[1] == "external_id" and "duplicate customer id" in q[2] for q in quarantine)


# ---------------------------------------------------------------------------------------------- unterminated quotes


@pytest.mark.parametrize(
    ("body", "stored", "bad"),
    [
        ('C1,"a@b.cd\nC2,x@y.cd\nC3,z@y.cd\n', ["C2", "C3"], [2]),  # runs to the end of the file
        ('C1,"a@b.cd\nC2,x@y.cd\nC3,"z@y.cd"\nC4,q@y.cd\n', ["C2", "C3", "C4"], [2]),  # closed by a later quote
        ('C1,"a@b.cd\nC2,"x@y.cd\nC3,z@y.cd\n', ["C3"], [2, 3]),  # two in a row
        ('C1,"a@b.cd\nC2,x@y.cd",extra\nC3,z@y.cd\n', ["C3"], [2, 3]),  # closed, but too many columns
        ('C0,"Two\nLines@y.cd"\nC1,"a@b.cd\n', [], [2, 4]),  # a real line break in a cell is kept (email bad)
    ],
)
def test_a_row_after_an_unterminated_quote_is_read_on_its_own(make_connector, write_csv, body, stored, bad):
    ids, quarantine = _quarantine_of("external_id,email\n" + body, make_connector, write_csv)
    assert ids == stored
    assert [q[0] for q in quarantine] == [f"customers.csv:{n}" for n in bad]
    assert any("unterminated quote" in q[2] for q in quarantine)


@settings(max_examples=200, deadline=None)
@given(before=st.integers(0, 5), after=st.integers(0, 40), limit=st.integers(12, 400), closed=st.booleans())
def test_an_unterminated_quote_costs_its_own_row_only(before: int, after: int, limit: int, closed: bool) -> None:
    """Whether the quote runs to the end of the file, past the length limit, or into a later stray quote."""
    rows = [f"r{i},v{i}" for i in range(before)] + ['q,"open'] + [f"s{i},w{i}" for i in range(after)]
    rows += ['z,"closed"x'] if closed else []
    reader = RecordReader(io.StringIO("\n".join(rows) + "\n", newline=""), ",", max_line=limit, max_field=limit)
    reader.width = 2
    got = list(reader)
    expected = [r.replace('"', "").split(",") for r in rows]
    assert [line for line, _ in got] == list(range(1, len(rows) + 1))
    for (_, row), want in zip(got, expected, strict=True):
        if want[0] == "q":
            assert isinstance(row, BadRow) and "unterminated quote" in row.problem and row[0] == "q"
        else:
            assert row == want and not isinstance(row, BadRow)


def test_a_well_formed_cell_with_line_breaks_is_one_value(make_connector, write_csv):
    ids, quarantine = _quarantine_of(
        'external_id,email,note\nC1,a@b.cd,"one\ntwo, ""three"""\nC2,c@d.ef,x\n', make_connector, write_csv
    )
    assert (ids, quarantine) == (["C1", "C2"], [])


# ---------------------------------------------------------------------------------------------- encodings


def test_one_gbk_row_in_a_utf8_file_does_not_garble_the_others(make_connector, write_csv):
    data = "external_id,name\nC1,Müller\n".encode() + "C2,张三\n".encode("gbk") + b"C3,Plain\n"
    write_csv("customers.csv", raw=data)
    got = pull(make_connector(members_path="customers.csv"), Stream.MEMBERS)
    assert {k: m.attributes.get("name") for k, m in got.by_id().items()} == {"C1": "Müller", "C3": "Plain"}
    assert [(r.locator, r.record_id) for r in got.rejects] == [("customers.csv:3", "C2")]


@CAMPAIGN
@given(names=st.lists(st.tuples(chinese, chinese, st.sampled_from(["男", "女"])), min_size=1, max_size=15))
def test_a_gbk_file_is_still_read_as_gb18030(names) -> None:
    """Every row in GBK (with a 男/女 column, whose 女 happens to be valid UTF-8 on its own)."""
    text = "客户编号,姓名,城市,性别\n" + "".join(f"C{i},{a},{b},{g}\n" for i, (a, b, g) in enumerate(names))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "customers.csv").write_bytes(text.encode("gbk"))
        assert scan(Path(tmp) / "customers.csv").encoding == "gb18030"
        got = load(STORE, Path(tmp), Stream.MEMBERS, "customers.csv", {"members_columns": {"external_id": "客户编号"}})
    assert got.quarantine == []
    assert {k: json.loads(v["attributes"]) for k, v in got.records.items()} == {
        f"C{i}": {"姓名": a, "城市": b, "性别": g} for i, (a, b, g) in enumerate(names)
    }


def test_european_names_survive_beside_a_damaged_byte(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(EUROPEAN))).encode() + b"99,\xd5\xc5\n")
    assert scan(path).encoding == "utf-8"


# -------------------------------------------------------------------------------------- overlong lines and cells

small_lines = st.lists(st.tuples(st.integers(0, 130), st.sampled_from(["\n", "\r\n", "\r"])), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(lines=small_lines, limit=st.integers(8, 64))
def test_records_longer_than_the_limit_are_bad_rows_and_the_read_goes_on(lines, limit) -> None:
    """Lines of every length around a small limit, with LF, CR LF and CR endings (a CR at the limit included)."""
    text = "".join(f"{i:04d}" + "x" * n + end for i, (n, end) in enumerate(lines))
    reader = RecordReader(io.StringIO(text, newline=""), ",", max_line=limit, max_field=10**6)
    got = list(reader)
    expected = [(i + 1, 4 + n > limit) for i, (n, _) in enumerate(lines)]
    assert [(line, isinstance(row, BadRow)) for line, row in got] == expected
    for (i, (n, _)), (_, row) in zip(enumerate(lines), got, strict=True):
        if isinstance(row, BadRow):
            assert "max_line_length" in row.problem and row[0].startswith(f"{i:04d}") and len(row[0]) < 210
        else:
            assert row == [f"{i:04d}" + "x" * n]


@settings(max_examples=200, deadline=None)
@given(
    cells=st.lists(st.lists(st.text('ab,"\n', max_size=12), min_size=1, max_size=4), max_size=10),
    limit=st.integers(1, 8),
)
def test_cells_longer_than_the_limit_make_their_row_bad(cells, limit) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(cells)
    reader = RecordReader(io.StringIO(out.getvalue(), newline=""), ",", max_line=10**6, max_field=limit)
    got = [row for _, row in reader]
    assert len(got) == len(cells)  # a lone empty cell is written as "" and read back
    for row, original in zip(got, cells, strict=True):
        long = [i for i, cell in enumerate(original) if len(cell) > limit]
        assert isinstance(row, BadRow) == bool(long)
        if long:
            assert row.column == long[0] and "max_field_length" in row.problem
        else:
            assert row == original


def _long_file(path: Path, size: int, rows: int, newline: bool) -> None:
    with path.open("wb") as fh:
        fh.write(b"external_id,member_external_id,placed_at,amount\n")
        fh.writelines(b"A%d,C1,2025-01-01,5\n" % i for i in range(rows))
        fh.write(b"LONG,C1,2025-01-01,")
        block = b"9" * MiB
        for _ in range(size // MiB):
            fh.write(block)
        if newline:
            fh.write(b"\n")
            fh.writelines(b"B%d,C1,2025-01-01,5\n" % i for i in range(rows))


@pytest.mark.slow
@pytest.mark.parametrize("newline", [True, False], ids=["in-the-middle", "without-an-end"])
@pytest.mark.parametrize("columnwise", [True, False], ids=["columnwise", "rows"])
def test_a_line_of_tens_of_megabytes_is_rejected_without_being_held(tmp_path, newline, columnwise):
    (tmp_path / "warm").mkdir()  # the first conversions import modules (pyarrow loads pandas): not the line's cost
    _long_file(tmp_path / "warm" / "orders.csv", 0, 10, newline)
    with reading(columnwise):
        load(STORE, tmp_path / "warm", Stream.ORDERS, "orders.csv", {"batch_size": 10_000})
    _long_file(tmp_path / "orders.csv", 32 * MiB, 2000, newline)
    tracemalloc.start()
    try:
        with reading(columnwise):
            got = load(STORE, tmp_path, Stream.ORDERS, "orders.csv", {"batch_size": 10_000})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB, f"{peak / MiB:.0f} MiB held for a 32 MiB line"
    assert not got.columnwise  # a file with such a line is read row by row
    assert len(got.records) == (4000 if newline else 2000)
    [(locator, field, reason, key)] = got.quarantine
    assert (locator, field, key) == ("orders.csv:2002", None, "LONG")
    assert "longer than max_line_length (1048576)" in reason and str(32 * MiB + 19) in reason


@pytest.mark.parametrize("columnwise", [True, False])
def test_a_long_cell_is_rejected_by_both_readers(tmp_path, columnwise):
    rows = [f"C{i},c{i}@example.com,{'n' * (50 if i == 3 else 5)}" for i in range(6)]
    (tmp_path / "customers.csv").write_text("external_id,email,note\n" + "\n".join(rows) + "\n")
    with reading(columnwise):
        got = load(STORE, tmp_path, Stream.MEMBERS, "customers.csv", {"max_field_length": 20})
    assert got.columnwise == columnwise
    assert sorted(got.records) == ["C0", "C1", "C2", "C4", "C5"]
    [(locator, field, reason, key)] = got.quarantine
    assert (locator, field, key) == ("customers.csv:5", "note", "C3")
    assert "max_field_length (20)" in reason


@pytest.mark.parametrize("value", [1024, MiB - 1, 17 << 20])
def test_line_limit_outside_its_range_is_refused(make_connector, write_csv, value):
    write_csv("orders.csv", "external_id,member_external_id,placed_at,amount\n")
    with pytest.raises(ValueError, match="max_line_length"):
        make_connector(orders_path="orders.csv", max_line_length=value)


# ---------------------------------------------------------------------------------------------- duplicate headers

header_case = st.sampled_from([str.lower, str.upper, str.title]).flatmap(
    lambda f: st.tuples(st.just(f), st.sampled_from(["", " ", "  "]), st.sampled_from(["", " "]))
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spelling=header_case, stream=st.sampled_from(["orders", "members"]))
def test_a_header_naming_a_read_column_twice_is_refused_with_the_names(make_connector, write_csv, spelling, stream):
    case, left, right = spelling
    twice = "amount" if stream == "orders" else "city"  # a mapped field; an attribute
    header = ["external_id", "member_external_id", "placed_at", twice, f"{left}{case(twice)}{right}"]
    write_csv(f"{stream}.csv", raw=(",".join(header) + "\nO1,C1,2025-01-01,5,6\n").encode())
    connector = make_connector(**{f"{stream}_path": f"{stream}.csv"})
    with pytest.raises(ConfigError) as info:
        pull(connector, Stream(stream))
    message = str(info.value)
    assert f"{stream}.csv" in message and "more than once" in message and "(columns 4 and 5)" in message
    assert repr(twice) in message
    [checked] = [result for result in connector.check() if result.name == f"shop: {stream} file"]
    assert not checked.ok and "more than once" in checked.detail


def test_a_duplicate_column_that_is_never_read_is_allowed(make_connector, write_csv):
    write_csv("orders.csv", "external_id,member_external_id,placed_at,amount,note,Note\nO1,C1,2025-01-01,5,a,b")
    assert list(pull(make_connector(orders_path="orders.csv"), Stream.ORDERS).by_id()) == ["O1"]


def test_header_row_that_cannot_be_read_names_the_file(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("id," + "h" * (2 * MiB) + "\n1,2\n")
    with pytest.raises(ConfigError, match=r"f\.csv:1: the header row cannot be read"):
        CsvFile(path, scan(path), ",")
