"""Generated hostile CSV input, each row with the outcome it must have: stored as written, or rejected on its line.

Strategies: amounts the model may or may not hold (huge and tiny exponents, too many digits, NaN/Infinity
spellings), rows in another encoding (GBK inside a UTF-8 file), overlong lines and cells, unterminated quotes,
duplicate ids, other bad cells. :func:`member_files` and :func:`order_files` build whole files from them, with the
expected result of every row, and :func:`load` reads a file through the connector into a store, as a sync does.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from crmsync_generic_csv import CsvConnector, CsvSettings, columnar
from hypothesis import strategies as st

from crmsync.connector import ConnectorContext, Rejection, Stream
from crmsync.store import Store

MiB = 1 << 20
LIMIT = Decimal(10) ** 14
"""Order.amount holds |amount| < 10^14 with at most 4 decimals (DECIMAL(18, 4))."""

# ---------------------------------------------------------------------------------------------- amounts

NOT_NUMBERS = ["NaN", "nan", "-NaN", "sNaN", "-sNaN", "Infinity", "-Infinity", "+inf", "inf", "-INF", "INFINITY"]
_digits = st.text("0123456789", min_size=1, max_size=40)
amounts = st.one_of(
    st.builds(  # mantissa and exponent, small and huge, in every spelling
        lambda sign, whole, frac, e, exp, plus: f"{sign}{whole}{frac}{e}{'+' if plus and exp >= 0 else ''}{exp}",
        st.sampled_from(["", "-", "+"]),
        _digits,
        st.one_of(st.just(""), _digits.map(lambda d: "." + d)),
        st.sampled_from(["e", "E"]),
        st.one_of(st.integers(-40, 40), st.integers(-(10**9), 10**9), st.sampled_from([19, 28, 50, 100, 999999])),
        st.booleans(),
    ),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),  # any size, any exponent
    st.decimals(min_value=-LIMIT + 1, max_value=LIMIT - 1, places=4).map(str),  # what the model holds
    st.integers(10**12, 10**30).map(str),  # around the limit
    st.builds(lambda whole, frac: f"{whole}.{frac}", st.integers(0, 10**15), _digits),  # too many decimals
    st.sampled_from(NOT_NUMBERS),
)


def amount_outcome(text: str) -> Decimal | None:
    """The value ``text`` must be stored as, or ``None`` when it must be rejected (exact decimal arithmetic)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value.copy_abs() >= LIMIT:
        return None
    if value != value.quantize(Decimal("0.0001")):  # exact below 10^14: at most 18 digits
        return None
    return value


# ---------------------------------------------------------------------------------------------- encodings

HANZI = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈姚卢" + (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚北京上海广州深圳"
)
EUROPEAN = ["Müller", "Zoë", "Łukasz", "Søren", "José", "Ærøskøbing", "Šťastný", "Ångström", "Ñandú", "Göteborg"]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


chinese = st.text(HANZI, min_size=1, max_size=6)
gbk_only = chinese.map(lambda s: s.encode("gbk")).filter(lambda b: not _is_utf8(b))
"""Chinese text in GBK bytes that are not UTF-8."""
european = st.one_of(st.sampled_from(EUROPEAN), st.text("äöüßéèêëçñøåæœłšžčřůőű", min_size=1, max_size=8))

# ---------------------------------------------------------------------------------------------- whole files


@dataclass
class Row:
    """One generated row: its bytes, and either the record it must give or the word its rejection must hold."""

    data: bytes
    expected: dict[str, Any] | None = None
    reason: str = ""
    """A word the rejection's reason holds (set, or ``field`` set, for a row that must be rejected)."""
    line: int = 0
    key: str = ""
    field: str | None = None
    """The field the rejection names."""


@dataclass
class GeneratedFile:
    header: list[str]
    rows: list[Row] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        return _line(self.header) + b"".join(r.data for r in self.rows)

    def number(self) -> None:
        """Set each row's line: the physical line it starts on."""
        line = 2
        for row in self.rows:
            row.line = line
            line += row.data.count(b"\n")

    @property
    def good(self) -> list[Row]:
        return [r for r in self.rows if r.expected is not None]

    @property
    def bad(self) -> list[Row]:
        return [r for r in self.rows if r.reason or r.field]


def _line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode("utf-8")


MEMBER_HEADER = ["external_id", "email", "first_name", "city"]
MEMBER_KINDS = ["good"] * 6 + ["encoding", "quote", "dup", "email", "width", "long_field", "long_line", "blank"]
names = st.one_of(st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12), european)
multiline = st.builds(lambda a, b: f"m{a}\n{b}", st.text("abc ,\"'", max_size=5), st.text('xyz ,"', max_size=5))
# A stray quote is closed by the next quote in the file. When that quote is followed by a delimiter or a line end (a
# quoted cell starting with one) and the lines between happen to make a row of the right width, the result is
# well-formed CSV that no reader can tell from a cell with line breaks; the generated cells stay clear of it.
cells = st.one_of(names, multiline).filter(lambda s: not s.startswith((",", "\n")))


@st.composite
def member_files(draw: st.DrawFn, max_field: int = 40, long_lines: bool = True) -> GeneratedFile:
    """A customers file mixing good rows and every class of bad row (with at least as many UTF-8 names with
    non-ASCII letters as GBK rows, so that ``encoding = auto`` must keep UTF-8)."""
    kinds = draw(st.lists(st.sampled_from(MEMBER_KINDS), max_size=14))
    if not long_lines:
        kinds = [k for k in kinds if k != "long_line"]
    if kinds.count("long_line") > 1:  # one is enough: each is a megabyte
        kinds = [k for i, k in enumerate(kinds) if k != "long_line" or i == kinds.index("long_line")]
    gen = GeneratedFile(MEMBER_HEADER, settings={"max_field_length": max_field, "max_line_length": MiB})
    good_ids: list[str] = []
    for n, kind in enumerate(kinds):
        if kind == "encoding":  # a European name in UTF-8 first, so that the file stays mostly UTF-8
            gen.rows.append(_good_member(f"E{n}", draw(european), "", max_field))
            good_ids.append(f"E{n}")
        gen.rows.append(_member_row(draw, kind, n, good_ids, max_field))
    gen.number()
    return gen


def _good_member(ext: str, name: str, city: str, max_field: int) -> Row:
    name, city = name[:max_field], city[:max_field]
    expected = {
        "external_id": ext,
        "email": f"{ext.lower()}@example.com",
        "first_name": name.strip() or None,
        "attributes": {"city": city.strip()} if city.strip() else {},
    }
    return Row(_line([ext, f"{ext.lower()}@example.com", name, city]), expected, key=ext)


def _member_row(draw: st.DrawFn, kind: str, n: int, good_ids: list[str], max_field: int) -> Row:
    ext = f"B{n}"
    if kind == "good":
        row = _good_member(f"C{n}", draw(cells), draw(cells), max_field)
        good_ids.append(f"C{n}")
        return row
    if kind == "blank":
        return Row(b"\n")
    if kind == "encoding":
        data = f"{ext},{ext.lower()}@example.com,".encode() + draw(gbk_only) + b",Shanghai\n"
        return Row(data, reason="bytes that are not utf-8", key=ext)
    if kind == "quote":
        text = draw(st.text("abcdef é中,;", max_size=10))  # a letter after the quote: see ``cells``
        return Row(f'{ext},{ext.lower()}@example.com,"q{text},Paris\n'.encode(), reason="unterminated quote", key=ext)
    if kind == "dup" and good_ids:
        ext = draw(st.sampled_from(good_ids))
        return Row(_line([ext, "dup@example.com", "Dup", ""]), reason="duplicate customer id", key=ext)
    if kind == "email":
        return Row(_line([ext, "not-an-email", "x", ""]), reason="not an email address", key=ext)
    if kind == "long_field":
        size = max_field + draw(st.integers(1, 50))
        return Row(_line([ext, f"{ext.lower()}@example.com", "x" * size, ""]), reason="max_field_length", key=ext)
    if kind == "long_line":
        size = MiB + draw(st.integers(1, 3000))
        return Row(_line([ext, f"{ext.lower()}@example.com", "y" * size, ""]), reason="max_line_length", key=ext)
    return Row(_line([ext, f"{ext.lower()}@example.com", "x", "", "extra"]), reason="columns", key=ext)


ORDER_HEADER = ["external_id", "member_external_id", "placed_at", "amount", "total"]


@st.composite
def order_files(draw: st.DrawFn, with_total: bool) -> GeneratedFile:
    """Orders of one to three lines, each line with a generated amount, the lines of the orders shuffled.

    Each unreadable amount is rejected on its own line and rejects its order, whether or not ``total`` is mapped;
    an order whose amounts are all readable is stored with its total (or the sum of its lines), unless that sum is
    too large (then it is rejected on the order's first line).
    """
    gen = GeneratedFile(ORDER_HEADER, settings={"orders_columns": {"total": "total"}} if with_total else {})
    orders: dict[str, tuple[list[Decimal | None], Decimal]] = {}
    for n in range(draw(st.integers(0, 8))):
        oid, texts = f"O{n}", draw(st.lists(amounts, min_size=1, max_size=3))
        total = draw(st.decimals(min_value=0, max_value=10**6, places=2))
        orders[oid] = ([amount_outcome(t) for t in texts], total)
        for k, text in enumerate(texts):
            cells = [oid, "C1", "2025-01-01", text, str(total) if k == 0 else ""]
            gen.rows.append(Row(_line(cells), key=oid, field=None if orders[oid][0][k] is not None else "amount"))
    gen.rows = [gen.rows[i] for i in draw(st.permutations(range(len(gen.rows))))]  # lines need not be adjacent
    gen.number()
    for oid, (values, total) in orders.items():
        readable = [v for v in values if v is not None]
        if len(readable) < len(values):
            continue  # each unreadable line carries its rejection
        first = next(r for r in gen.rows if r.key == oid)
        value = total if with_total else sum(readable, Decimal(0))
        if abs(value) < LIMIT:
            first.expected = {"external_id": oid, "amount": value}
        else:
            first.reason, first.field = "too large", "amount"
    return gen


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class Loaded:
    """What a pull left in the store: records by id, and the quarantine (locator, field, reason, key)."""

    records: dict[str, dict[str, Any]]
    quarantine: list[tuple[str, str | None, str, str]]
    rejects: list[Rejection]
    columnwise: bool


@contextmanager
def reading(columnwise: bool) -> Iterator[None]:
    """Force the column-wise read (every file is large enough) or the row readers (none is)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(columnar, "MIN_BYTES", 0 if columnwise else 1 << 60)
        yield


def load(store: Store, folder: Path, stream: Stream, name: str, table: dict[str, Any]) -> Loaded:
    """Pull ``name`` from ``folder`` and store it as a sync does, in one transaction that is rolled back."""
    settings = CsvSettings.model_validate(
        {f"{stream.value}_path": name, "batch_size": 5} | table, context={"base_dir": folder}
    )
    connector = CsvConnector(settings, ConnectorContext(name="shop", base_currency="EUR", timezone=ZoneInfo("UTC")))
    used: list[bool] = []
    original = columnar.usable

    def spy(*args: Any) -> bool:
        used.append(original(*args))
        return used[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(columnar, "usable", spy)
        try:
            with store.transaction(rollback=True) as con:
                rejects: list[Rejection] = []
                for batch in connector.pull(stream, None):
                    rejects += store.write_batch("shop", batch, run_id="r1", base_currency="EUR", rates={})
                cur = con.execute(f"SELECT * FROM {stream.value} WHERE source = 'shop'")
                cols = [d[0] for d in cur.description]
                records = {r[cols.index("external_id")]: dict(zip(cols, r, strict=True)) for r in cur.fetchall()}
                quarantine = con.execute(
                    "SELECT locator, field, reason, record_key FROM quarantine WHERE NOT resolved ORDER BY locator"
                ).fetchall()
        finally:
            connector.close()
    return Loaded(records, quarantine, rejects, any(used))


def read_generated(store: Store, gen: GeneratedFile, stream: Stream, name: str, columnwise: bool) -> Loaded:
    """Write ``gen`` as ``name`` in a temporary folder and :func:`load` it with either reader."""
    with tempfile.TemporaryDirectory() as tmp, reading(columnwise):
        (Path(tmp) / name).write_bytes(gen.data)
        return load(store, Path(tmp), stream, name, gen.settings)


def check_outcome(gen: GeneratedFile, got: Loaded, name: str) -> None:
    """Every good row stored, every bad row quarantined once on its own line (with its field and reason), and
    nothing else in quarantine: nothing lost, nothing invented."""
    expected = sorted((f"{name}:{r.line}", r.field, r.reason) for r in gen.bad)
    found = sorted(got.quarantine)
    assert [q[0] for q in found] == [e[0] for e in expected], (found, expected)
    for (_, named, reason, _), (_, want, word) in zip(found, expected, strict=True):
        assert word in reason and (want is None or named == want), (named, reason, want, word)
    assert sorted(got.records) == sorted(r.expected["external_id"] for r in gen.good if r.expected)
    for row in gen.good:  # stored exactly as written
        assert row.expected is not None
        stored = got.records[row.expected["external_id"]]
        if "attributes" in row.expected:
            stored = stored | {"attributes": json.loads(stored["attributes"] or "{}")}
        assert {k: stored[k] for k in row.expected} == row.expected
