"""The column-wise CSV read and the table push give exactly what the row readers and ProfileWriter give."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from crmsync_generic_csv import columnar
from crmsync_generic_csv.connector import CsvConnector
from crmsync_generic_csv.settings import CsvSettings
from crmsync_generic_csv.table_writer import write_table
from crmsync_generic_csv.writer import ProfileWriter

from crmsync.connector import ConnectorContext, ProfileChange, Stream
from crmsync.store import Store

BENCH = Path(__file__).resolve().parents[2] / "bench"
ORDER_COLUMNS = {
    "external_id": "order_id",
    "member_external_id": "customer_id",
    "member_email": "customer_email",
    "placed_at": "order_date",
    "amount": "line_amount",
}


def _pull(folder: Path, tz: str, columnwise: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(columnar, "MIN_BYTES", 0 if columnwise else 1 << 60)
    used: list[Stream] = []
    original = columnar.read_batches

    def spy(stream: Stream, *args: Any) -> Any:
        batches = original(stream, *args)
        if batches is not None:
            used.append(stream)
        return batches

    monkeypatch.setattr(columnar, "read_batches", spy)
    settings = CsvSettings.model_validate(
        {
            "members_path": str(folder / "customers.csv"),
            "orders_path": str(folder / "orders.csv"),
            "activities_path": str(folder / "activities.csv"),
            "rejects_path": str(folder / f"rejects-{columnwise}.csv"),
            "members_columns": {"external_id": "customer_id"},
            "orders_columns": ORDER_COLUMNS,
            "activities_columns": {"external_id": "activity_id", "member_external_id": "customer_id"},
        }
    )
    conn = CsvConnector(settings, ConnectorContext(name="shop", timezone=ZoneInfo(tz)))
    out: dict[str, Any] = {}
    with Store.open(None) as store:
        for stream in Stream:
            rejects = []
            for batch in conn.pull(stream, None):
                rejects += store.write_batch("shop", batch, run_id="r1", base_currency="EUR", rates={})
            rows = store.con.execute(f"SELECT * EXCLUDE (seen_run) FROM {stream.value} ORDER BY external_id")
            out[stream.value] = rows.fetchall()
            out[f"{stream.value} rejects"] = sorted((r.locator, r.field, r.reason, r.record_id) for r in rejects)
            out[f"{stream.value} columnwise"] = stream in used
    return out


def _generated(folder: Path) -> Path:
    cmd = [sys.executable, str(BENCH / "generate.py"), "--customers", "400", "--orders", "4000", "--out", str(folder)]
    cmd += ["--line-items", "--activities", "500", "--bad-rows", "14", "--seed", "3"]
    subprocess.run(cmd, check=True, capture_output=True)
    return folder


def _awkward(folder: Path) -> Path:
    """Cells the SQL must hand over: whitespace, duplicates, odd formats, a clock-change day, a bad line."""
    folder.mkdir()
    (folder / "customers.csv").write_text(
        "customer_id,email,first_name,last_name,phone,created_at,city\n"
        "C1,A@Example.com,Ann,Lee,,2025-03-30 02:30:00,Berlin\n"
        " C2,b@example.com,伟,王\u3000,,2025-01-01,上海\n"
        "C2,dup@example.com,Bo,Li,,2025-01-01,\n"
        "C3,not-an-email,Cy,Ko,,2025-01-01,Paris\n"
        'C4,d@example.com,"Quote ""Q""",Do,,2025-10-26 02:30:00,"Wien, AT"\n'
        "C5,e@example.com,Eve,Ro,,31/02/2025,Rome\n",
        encoding="utf-8",
    )
    (folder / "orders.csv").write_text(
        "order_id,customer_id,customer_email,order_date,status,currency,line_amount,sku\n"
        "O1,C1,,2025-03-30 02:30:00,paid,EUR,10.00,S1\n"
        " O1 ,,,,,,5.5,S2\n"
        'O2,,B@EXAMPLE.COM,2025-05-01T10:00:00,Completed,eur,"1,234.50",S1\n'
        "O3,C3,,2025-05-01 10:00:00,lost,EUR,3.00,S1\n"
        "O4,C4,,2025-05-01 10:00:00,paid,EUR,3.00\n"
        "O5,C1,,2025-05-02 10:00:00,refunded,USD,7.25,S3\n"
        "O6,C1,,2025-05-02 10:00,paid,EUR,2.00,S3\n"
        ",C1,,2025-05-02 10:00:00,paid,EUR,2.00,S3\n"
        "O7,C1,,2025-05-02 10:00:00,paid,EUR,2.123456,S3\n",
        encoding="utf-8",
    )
    (folder / "activities.csv").write_text(
        "activity_id,customer_id,kind,occurred_at,points\n"
        "A1,C1,review,2025-05-01 10:00:00,20\n"
        "A2,C1,,2025-05-01 10:00:00,\n"
        "A3, C4 ,login,2025-05-01 10:00:00,x\n",
        encoding="utf-8",
    )
    return folder


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("make", [_generated, _awkward], ids=["generated", "awkward"])
def test_columnwise_read_stores_what_the_row_readers_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tz: str, make: Any
) -> None:
    folder = make(tmp_path / "data")
    rows = _pull(folder, tz, False, monkeypatch)
    cols = _pull(folder, tz, True, monkeypatch)
    assert all(cols[f"{s.value} columnwise"] for s in Stream)  # the column-wise path really ran
    assert not any(rows[f"{s.value} columnwise"] for s in Stream)
    for stream in Stream:
        assert cols[stream.value] == rows[stream.value], stream
        assert cols[f"{stream.value} rejects"] == rows[f"{stream.value} rejects"], stream
    assert len(rows["orders rejects"]) > 0 and len(rows["members"]) > 0


SPACES = [" ", "\t", "\u3000", "\u00a0", "\u2003", "\u0085", "\x1c"]
"""Characters ``str.strip()`` removes, some of them outside ASCII."""
CELLS = {
    "id": ["O1", "O2", "O3", "O4", "O\x015", "\x01", "", "O6é", "\uff2f7"],
    "member": ["C1", "C2", "C3", "", "C\x014", "\uff235"],
    "email": ["a@b.co", "A@B.CO", "a b@c.d", "\u212a@x.io", "a@b", "", "é@x.fr", "x@y.z\x01"],
    "date": ["2025-01-02", "2025-01-02 03:04:05", "2025-01-02T03:04:05", "2025-02-30", "2025-1-2", "",
             "2025-01-02 24:00:00", "2025-01-02 03:04", "2025-01-02 03:04:05.5",
             "\uff12\uff10\uff12\uff15-01-02", "2025-03-30 02:30:00"],
    "amount": ["1", "1.5", "-2.25", "1.23456", "", "1e3", "\uff11", "100000000000000", "99999999999999.9999", "1,5",
               ".5", "5."],
    "currency": ["EUR", "eur", "", "EURO", "E1R", "ÉUR", "USD"],
    "status": ["paid", "Completed", "", "lost", "已付款", "PAID", "pending"],
    "text": ["x", "Ann", 'say "hi"', "back\\slash", "ctl\x1fx", "mid\u0085dle", "", "a,b", "\x01", "王"],
    "points": ["", "20", "-5", "1.5", "x", "\uff11\uff10"],
    "kind": ["review", "login", "", "Review"],
}  # fmt: skip


def _cell(rng: random.Random, kind: str) -> str:
    """A cell of ``kind``: mostly an ordinary value, else one of the edge cases, sometimes with whitespace."""
    n = rng.randrange(150)
    usual = {"id": f"O{n}", "member": f"C{n % 40}", "email": f"u{n}@x.com", "date": f"2025-0{n % 9 + 1}-1{n % 10}",
             "amount": f"{n}.{n % 100:02d}", "currency": "EUR", "status": "paid", "text": "x", "points": "",
             "kind": "review"}  # fmt: skip
    text = usual[kind] if rng.random() < 0.85 else rng.choice(CELLS[kind])
    if rng.random() < 0.03:
        edge = rng.choice(SPACES)
        text = rng.choice([edge + text, text + edge, edge + text + edge])
    return text


def _random_exports(folder: Path, seed: int) -> Path:
    """Exports whose cells are drawn from families of edge cases (whitespace of every kind, U+0001, lookalike
    digits and letters, quotes, control characters, out-of-range amounts, impossible dates), orders spread over
    several lines in any place of the file."""
    rng = random.Random(seed)
    folder.mkdir()
    files = {
        "customers.csv": (["customer_id", "email", "first_name", "last_name", "phone", "created_at", "city"],
                          ["member", "email", "text", "text", "text", "date", "text"], 60),
        "orders.csv": (["order_id", "customer_id", "customer_email", "order_date", "status", "currency",
                        "line_amount", "sku"],
                       ["id", "member", "email", "date", "status", "currency", "amount", "text"], 300),
        "activities.csv": (["activity_id", "customer_id", "kind", "occurred_at", "points"],
                           ["id", "member", "kind", "date", "points"], 80),
    }  # fmt: skip
    for name, (header, kinds, n) in files.items():
        with (folder / name).open("w", encoding="utf-8", newline="") as fh:
            out = csv.writer(fh, lineterminator="\n")
            out.writerow(header)
            for _ in range(n):
                row = [_cell(rng, k) for k in kinds]
                if name == "orders.csv" and rng.random() < 0.5:  # a later line item: order-level cells empty
                    row = [row[0], *(c if rng.random() < 0.2 else "" for c in row[1:6]), row[6], row[7]]
                out.writerow(row)
    return folder


@pytest.mark.parametrize("seed", range(8))
def test_columnwise_read_equals_the_row_readers_on_random_edge_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    folder = _random_exports(tmp_path / "data", seed)
    tz = ["UTC", "Europe/Berlin"][seed % 2]
    rows = _pull(folder, tz, False, monkeypatch)
    cols = _pull(folder, tz, True, monkeypatch)
    assert all(cols[f"{s.value} columnwise"] for s in Stream)
    for stream in Stream:
        assert cols[stream.value] == rows[stream.value], stream
        assert cols[f"{stream.value} rejects"] == rows[f"{stream.value} rejects"], stream
    assert rows["orders"] and rows["orders rejects"]  # both paths stored orders and rejected some


@pytest.mark.parametrize("bad", [1, 5, columnar.SKIP_INLINE + 40])
def test_locators_count_the_lines_duckdb_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: int) -> None:
    """Lines DuckDB cannot read (a cell too many, a cell too few) anywhere in the file: every stored order keeps
    the line number the row reader gives it, however many such lines come before it."""
    rng = random.Random(bad)
    folder = _random_exports(tmp_path / "data", bad)
    header = "order_id,customer_id,customer_email,order_date,status,currency,line_amount,sku\n"
    lines = [f"O{i},C{i % 40},,2025-01-0{i % 9 + 1},paid,EUR,{i}.50,S\n" for i in range(600)]
    for k in range(bad):
        line = rng.choice([f"X{k},C1,,2025-01-01,paid\n", f"X{k},C1,,2025-01-01,paid,EUR,1,S,extra\n"])
        lines.insert(rng.randrange(len(lines) + 1), line)
    (folder / "orders.csv").write_text(header + "".join(lines), encoding="utf-8")
    rows = _pull(folder, "UTC", False, monkeypatch)
    cols = _pull(folder, "UTC", True, monkeypatch)
    assert cols["orders columnwise"]
    assert cols["orders"] == rows["orders"] and len(rows["orders"]) == 600
    assert cols["orders rejects"] == rows["orders rejects"] and len(rows["orders rejects"]) == bad


def test_a_file_with_line_breaks_inside_cells_is_read_by_the_row_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _awkward(tmp_path / "data")
    text = (folder / "customers.csv").read_text(encoding="utf-8")
    (folder / "customers.csv").write_text(text + 'C9,z@example.com,"Two\nLines",Zed,,2025-01-01,Oslo\n')
    cols = _pull(folder, "UTC", True, monkeypatch)
    assert not cols["members columnwise"] and cols["orders columnwise"]
    assert ("shop", "C9") in {(r[0], r[1]) for r in cols["members"]}


def _changes(n: int, offset: int) -> list[ProfileChange]:
    out = []
    for i in range(n):
        values = {
            "tier": ["Gold", "=cmd()", None, "-5"][i % 4],
            "points": (i * 37 + offset) % 500 - 100,
            "tags": [["a", "b"], [], ["+x"]][i % 3],
            "rfm_segment": ["Can't Lose Them", None, 'say "hi", ok'][i % 3],
            "lifecycle": "new",
        }
        out.append(
            ProfileChange(member_id=f"M{(i * 7 + offset) % 40:03d}", values=values, previous={}, changed=frozenset())
        )
    out.append(ProfileChange(member_id="@odd", values={"tier": "Gold"}, previous={}, changed=frozenset()))
    return out


def test_table_push_writes_the_bytes_profile_writer_writes(tmp_path: Path) -> None:
    fields = ["tier", "points", "tags", "rfm_segment", "lifecycle"]
    writer = ProfileWriter(tmp_path / "rows.csv", fields, "|")
    for offset in (0, 11):  # the second round merges into the file the first wrote
        changes = {c.member_id: c for c in _changes(25, offset)}.values()
        writer.write(list(changes))
        table = pa.table(
            {"member_id": [c.member_id for c in changes]}
            | {f: pa.array([c.values.get(f) for c in changes], type=_type(f)) for f in fields}
        )
        results = write_table(tmp_path / "table.csv", fields, "|", "utf-8", table)
        assert results.column("ok").to_pylist() == [True] * len(changes)
        assert (tmp_path / "table.csv").read_bytes() == (tmp_path / "rows.csv").read_bytes()


def _type(field: str) -> pa.DataType:
    return {"points": pa.int64(), "tags": pa.list_(pa.string())}.get(field, pa.string())


def test_store_rejects_table_rows_without_id_or_exchange_rate() -> None:
    table = pa.table(
        {
            "external_id": ["O1", None, "O2", "O1"],
            "member_external_id": ["C1", "C1", "C1", "C1"],
            "placed_at": pa.array([datetime(2025, 1, 1, tzinfo=UTC)] * 4, pa.timestamp("us", tz="UTC")),
            "amount": pa.array([1, 2, 3, 4], pa.decimal128(18, 4)),
            "currency": ["EUR", "EUR", "JPY", "USD"],
            "status": ["paid"] * 4,
            "_locator": ["o.csv:2", "o.csv:3", "o.csv:4", "o.csv:5"],
        }
    )
    from crmsync.connector import Batch

    with Store.open(None) as store:
        rejects = store.write_batch(
            "shop", Batch(Stream.ORDERS, table=table), run_id="r", base_currency="EUR", rates={"USD": 2}
        )
        rows = store.con.execute("SELECT external_id, amount, amount_base FROM orders").fetchall()
    assert sorted((r.locator, r.field) for r in rejects) == [("o.csv:3", "external_id"), ("o.csv:4", "currency")]
    assert [(r[0], str(r[1]), str(r[2])) for r in rows] == [("O1", "4.0000", "8.0000")]  # the later O1 wins
