"""Bad-input campaign: generated CSV files, policy conditions (digits of other scripts, null dates, any attribute
key, pathological nesting), settings files, config path collisions, environment values and memory limits never
reach the user as a traceback.

Only :class:`~crmsync.CrmsyncError` subclasses (with the file and the key path) or rejections (with the file,
the line and the field) may come out; what a person must fix ends the command line with exit code 2.
``GENERATED`` counts the cases tried, for the campaign's report.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import crmsync_generic_csv
import duckdb
import pytest
from crmsync_generic_csv import CsvConnector, CsvSettings
from crmsync_generic_csv.files import scan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import crmsync.plugins
from crmsync.cli import main
from crmsync.connector import ConnectorContext, Rejection, Stream
from crmsync.errors import ConfigError, CrmsyncError, PolicyError
from crmsync.models import Member, Order
from crmsync.plugins import PluginHost
from crmsync.policy import STORE_EXTENSION
from crmsync.policy.compiled import compile_policy
from crmsync.policy.model import Policy
from crmsync.settings import load_settings
from crmsync.store import Store

from .hostile_support import (
    amounts,
    check_outcome,
    european,
    gbk_only,
    load,
    member_files,
    order_files,
    read_generated,
    reading,
)
from .rel_support import AS_OF, CsvWorld, crmsync_env, digest, run_cli

GENERATED: Counter[str] = Counter()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------------------------------------- CSV content

nasty = st.sampled_from(
    [
        "",
        " ",
        '=HYPERLINK("http://x")',
        "+1",
        "-0",
        "1e309",
        "NaN",
        "inf",
        "12,34.5x",
        "1.234,56",
        "\uff11\uff12\uff13",  # full-width digits
        "2025-02-31",
        "2025-13-01 10:00",
        "31/12/2025",
        "0000-00-00",
        "9999-12-31T23:59:59+14:00",
        "\x00",
        'a"b',
        "line\nbreak",
        "é€😀",
        "EUR",
        "XXX",
        "paid",
        "refunded",
        "C0001",
        "@me",
        "9" * 40,
    ]
)
cell = st.one_of(nasty, st.text(max_size=12), st.decimals(allow_nan=False, allow_infinity=False).map(str), amounts)
ORDER_HEADER = ["external_id", "member_external_id", "placed_at", "amount", "currency", "status"]
MEMBER_HEADER = ["external_id", "email", "first_name", "last_name", "created_at"]


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8", errors="surrogatepass")


def _pull(folder: Path, stream: Stream, name: str) -> tuple[list[Any], list[Rejection]]:
    table = {f"{stream.value}_path": name}
    connector = CsvConnector(
        CsvSettings.model_validate(table | {"batch_size": 7}, context={"base_dir": folder}),
        ConnectorContext(name="shop", base_currency="EUR", timezone=ZoneInfo("UTC")),
    )
    try:
        records, rejects = [], []
        for batch in connector.pull(stream, None):
            records += batch.records
            rejects += batch.rejects
        return records, rejects
    finally:
        connector.close()


def _check_rejections(rejects: list[Rejection], file: str, lines: int) -> None:
    for rej in rejects:
        name, _, line = rej.locator.rpartition(":")
        assert name == file and line.isdigit() and 2 <= int(line) <= lines + 1, rej.locator
        # a row of the wrong shape, encoding or length has no single field; its reason says what is wrong with it
        row_level = ("columns", "bytes", "unterminated quote", "max_line_length")
        assert rej.field or any(word in rej.reason for word in row_level), f"no field named: {rej}"
        assert rej.reason


def _outcome(folder: Path, stream: Stream, name: str) -> tuple[list[Any], list[Rejection]] | None:
    try:
        return _pull(folder, stream, name)
    except CrmsyncError as exc:  # e.g. a header without the required columns: a clear error naming the file
        assert name in str(exc), str(exc)
        return None


@FAST
@given(
    rows=st.lists(st.lists(cell, min_size=0, max_size=8), max_size=12),
    header=st.one_of(st.just(ORDER_HEADER), st.permutations(ORDER_HEADER), st.lists(nasty, max_size=6)),
    tail=st.one_of(
        st.just(b""), st.binary(max_size=20), st.just(b'"unterminated,quote\n'), st.just(b"\xff\xfe,\x80\n")
    ),
)
def test_orders_csv_content_never_raises(rows: list[list[str]], header: list[str], tail: bytes) -> None:
    GENERATED["orders.csv files"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = _csv(header, rows) + tail
        (folder / "orders.csv").write_bytes(data)
        result = _outcome(folder, Stream.ORDERS, "orders.csv")
        if result is None:
            return
        records, rejects = result
        # a bare CR ends a line too (the reader reads universal newlines, as editors show them)
        _check_rejections(rejects, "orders.csv", len(data.splitlines()) + 2)
        for rec in records:
            assert isinstance(rec, Order)
            Order.model_validate(rec.model_dump())  # what the reader built is a valid order


@FAST
@given(rows=st.lists(st.lists(cell, min_size=5, max_size=5), max_size=12))
def test_members_csv_every_row_is_a_record_or_a_rejection(rows: list[list[str]]) -> None:
    GENERATED["customers.csv files"] += 1
    rows = [[c.replace("\r", " ") for c in r] for r in rows]  # a bare CR would end the line for the reader
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = _csv(MEMBER_HEADER, rows)
        (folder / "customers.csv").write_bytes(data)
        records, rejects = _pull(folder, Stream.MEMBERS, "customers.csv")
        physical = list(csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline="")))[1:]
        _check_rejections(rejects, "customers.csv", data.count(b"\n") + 2)
        for rec in records:
            assert isinstance(rec, Member)
            Member.model_validate(rec.model_dump())
        rows_read = [r for r in physical if r]
        assert len(records) + len(rejects) == len(rows_read), "a row was neither read nor rejected"


# ---------------------------------------------------------------------------------------------- hostile rows
# Whole files mixing good rows with every class of bad row (see hostile_support), read by both readers into a
# store: every good row stored exactly, every bad row quarantined once on its own line.

CAMPAIGN = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
STORE_HOSTILE = Store.open(None)


HOSTILE_FILES = {
    Stream.ORDERS: ("orders.csv", st.booleans().flatmap(lambda total: order_files(with_total=total))),
    Stream.MEMBERS: ("customers.csv", member_files()),
}


@pytest.mark.parametrize("stream", list(HOSTILE_FILES))
@CAMPAIGN
@given(data=st.data(), columnwise=st.booleans())
def test_generated_files_store_every_good_row_and_quarantine_every_bad_one(
    stream: Stream, data: st.DataObject, columnwise: bool
) -> None:
    """Orders: generated amounts (with and without a total column); customers: every class of bad row."""
    name, files = HOSTILE_FILES[stream]
    gen = data.draw(files)
    GENERATED[f"{name} files (hostile rows)"] += 1
    check_outcome(gen, read_generated(STORE_HOSTILE, gen, stream, name, columnwise), name)


@CAMPAIGN
@given(
    rows=st.lists(st.tuples(st.booleans(), european, gbk_only), min_size=1, max_size=12).filter(
        lambda rows: sum(utf8 for utf8, _, _ in rows) * 2 >= len(rows)
    ),
    columnwise=st.booleans(),
)
def test_a_mostly_utf8_file_stays_utf8_and_rejects_its_other_rows(rows, columnwise) -> None:
    """Each row in UTF-8 or in GBK; at least half UTF-8 with non-ASCII letters."""
    GENERATED["customers.csv files (mixed encodings)"] += 1
    data = b"external_id,first_name\n" + b"".join(
        f"C{i},".encode() + (name.encode() if utf8 else gbk) + b"\n" for i, (utf8, name, gbk) in enumerate(rows)
    )
    with tempfile.TemporaryDirectory() as tmp, reading(columnwise):
        (Path(tmp) / "customers.csv").write_bytes(data)
        assert scan(Path(tmp) / "customers.csv").encoding == "utf-8"
        got = load(STORE_HOSTILE, Path(tmp), Stream.MEMBERS, "customers.csv", {})
    assert {k: v["first_name"] for k, v in got.records.items()} == {
        f"C{i}": name for i, (utf8, name, _) in enumerate(rows) if utf8
    }  # never reinterpreted: Müller stays Müller
    assert [q[0] for q in got.quarantine] == sorted(
        f"customers.csv:{i + 2}" for i, (u, _, _) in enumerate(rows) if not u
    )
    assert all("bytes that are not utf-8" in q[2] for q in got.quarantine)


HOSTILE_MEMBERS = [  # (bytes of the row, the word its rejection holds; "" for a row that must be stored)
    (b"C0001,dup1@example.com,D,D,2024-01-01 10:00:00\n", "duplicate customer id"),
    (b"C0001,dup2@example.com,D,D,2024-01-01 10:00:00\n", "duplicate customer id"),
    (b"C7001,gbk@example.com," + "张三".encode("gbk") + b",L,2024-01-01 10:00:00\n", "bytes that are not"),
    (b'C7002,q@example.com,"Open,L,2024-01-01 10:00:00\n', "unterminated quote"),
    ("C7003,after@example.com,Müller,L,2024-01-01 10:00:00\n".encode(), ""),  # must not vanish into the quote
    (b"C7004,long@example.com," + b"x" * (1 << 21) + b",L,2024-01-01 10:00:00\n", "max_line_length"),
    (b"C7005,field@example.com," + b"y" * 200_000 + b",L,2024-01-01 10:00:00\n", "max_field_length"),
]
HOSTILE_AMOUNTS = ["1e28", "1E+50", "-1e100", "NaN", "-Infinity", "1e-30", "9" * 30, "1" * 15 + ".12345"]


@pytest.mark.slow
def test_sync_over_every_class_of_hostile_row_exits_1_and_loses_nothing(tmp_path: Path) -> None:
    """The command line, end to end: no traceback, every bad row in ``crmsync rejects`` on its own line."""
    config = CsvWorld(tmp_path, members=20, orders=40, activities=5).write()
    with (tmp_path / "customers.csv").open("ab") as fh:
        fh.writelines(row for row, _ in HOSTILE_MEMBERS)
    with (tmp_path / "orders.csv").open("a", encoding="utf-8") as fh:
        fh.writelines(f"X{i},C0003,2025-06-01 10:00:00,{text},EUR,paid\n" for i, text in enumerate(HOSTILE_AMOUNTS))
    done = run_cli(config, "sync", "--json", "--as-of", AS_OF, env=crmsync_env())
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    listed = run_cli(config, "rejects", "--json", env=crmsync_env())
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    entries = {(e["stream"], e["locator"]): e for e in json.loads(listed.stdout)}
    first = 2 + 20  # the line of the first hostile customer
    for k, (_, word) in enumerate(HOSTILE_MEMBERS):
        if word:
            assert word in entries[("members", f"customers.csv:{first + k}")]["reason"]
    first = 2 + 40 + 2  # after the two bad orders every world has
    for k in range(len(HOSTILE_AMOUNTS)):
        assert entries[("orders", f"orders.csv:{first + k}")]["field"] == "amount"
    assert len(entries) == sum(1 for _, word in HOSTILE_MEMBERS if word) + len(HOSTILE_AMOUNTS) + 2
    state = digest(tmp_path / "store.duckdb")
    assert ("shop", "C7003", "after@example.com", "False") in state["members"]
    assert len(state["orders"]) == 40  # every good order stored, no hostile one


@pytest.mark.slow
def test_a_duplicate_header_stops_the_sync_with_the_file_and_columns(tmp_path: Path) -> None:
    config = CsvWorld(tmp_path, members=5, orders=5, activities=2).write()
    text = (tmp_path / "orders.csv").read_text().replace("status", "Amount ", 1)
    (tmp_path / "orders.csv").write_text(text)
    done = run_cli(config, "sync", "--as-of", AS_OF, env=crmsync_env())
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "orders.csv" in done.stderr and "'amount'/'Amount'" in done.stderr and "columns 4 and 6" in done.stderr


# ---------------------------------------------------------------------------------------------- conditions

OTHER_DIGITS = st.text(
    alphabet=st.characters(categories=["Nd"]).filter(lambda c: c not in "0123456789"), min_size=1, max_size=3
)
METRICS = ["spend_365d", "orders_365d", "orders_lifetime", "spend_lifetime", "days_since_last_order", "points"]
atom = st.one_of(
    st.sampled_from(METRICS),
    st.sampled_from(["tier", "nosuch", "attr('region')", "attr_num('age')", "today()", "date('2024-02-30')"]),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.text(max_size=6).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.sampled_from(["true", "false", "null", "(", ")", ",", "'", '"', "and", "not", "between"]),
    # digits of other scripts (Arabic-Indic, Devanagari, full-width...), alone or inside a number or a name
    st.tuples(st.sampled_from(["", "1", "spend_", "orders_"]), OTHER_DIGITS, st.sampled_from(["", "0", "d"])).map(
        "".join
    ),
    # any key, quoted as the language quotes it: backslashes, quotes, dots, slashes, brackets, tildes
    st.tuples(st.sampled_from(["attr", "attr_num", "attr_date"]), st.text(max_size=8)).map(
        lambda t: f"{t[0]}('{t[1].replace(chr(92), chr(92) * 2).replace(chr(39), chr(39) * 2)}')"
    ),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["+", "-", "*", "/", "%", "=", "!=", "<>", "<", ">=", "and", "or", "in", "is", ""])
    return st.one_of(
        st.tuples(children, ops, children).map(" ".join),
        children.map(lambda c: f"not ({c})"),
        children.map(lambda c: f"({c})"),
        st.tuples(st.sampled_from(FUNCTIONS), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, st.lists(children, max_size=3)).map(lambda t: f"{t[0]} in ({', '.join(t[1])})"),
        st.tuples(children, children, children).map(lambda t: f"{t[0]} between {t[1]} and {t[2]}"),
    )


FUNCTIONS = ["days_since", "days_until", "year", "month", "day", "abs", "round", "min", "coalesce", "bogus"]


@st.composite
def nested(draw: st.DrawFn) -> str:
    """Pathological nesting: thousands of prefix operators, calls, parentheses or a long chain of one operator."""
    depth = draw(st.integers(min_value=1, max_value=4000))
    leaf = draw(st.sampled_from(["true", "null", "spend_365d > 1", "1", "last_order_at"]))
    shape = draw(st.sampled_from(["not ", "- ", "(", "abs(", "year(", " and ", " + ", " or "]))
    if shape.startswith(" "):
        return shape.join([leaf] * depth)
    closing = ")" * depth if shape.endswith("(") else ""
    return shape * depth + leaf + closing


conditions = st.one_of(
    st.recursive(atom, _combine, max_leaves=8),
    st.text(max_size=30),
    nested(),
    st.tuples(st.sampled_from(FUNCTIONS[:5]), st.sampled_from(["null", "(null)", "coalesce(null, null)"])).map(
        lambda t: f"{t[0]}({t[1]}) > 1"
    ),
)


def _grading_store() -> Store:
    store = Store.open(None, extensions=[STORE_EXTENSION])  # the policy's tables
    now = datetime(2026, 1, 1, tzinfo=UTC)
    store.con.execute(
        "INSERT INTO members (source, external_id, email, attributes, deleted) VALUES "
        "('s', 'm1', 'a@example.com', '{\"region\": \"north\", \"age\": 41}', false), ('s', 'm2', NULL, NULL, false)"
    )
    store.con.execute(
        "INSERT INTO orders (source, external_id, member_id, member_external_id, placed_at, amount, currency, "
        "amount_base, status, deleted) VALUES ('s', 'o1', 'm1', 'm1', ?, 120.5, 'EUR', 120.5, 'paid', false)",
        [now],
    )
    return store


STORE = None


@FAST
@given(text=conditions)
def test_conditions_compile_and_grade_or_fail_clearly(text: str) -> None:
    global STORE
    GENERATED["conditions"] += 1
    tiers = [{"name": "Gold", "condition": text}, {"name": "Bronze"}]
    try:
        compiled = compile_policy(Policy.model_validate({"tiers": tiers}))
    except ValidationError as exc:  # load_settings turns these into a ConfigError with the key path
        assert "tiers" in str(exc)
        return
    except PolicyError as exc:
        assert exc.problems and all(p.startswith("policy.tiers[0].condition: ") for p in exc.problems), exc.problems
        unplaced = ("empty condition", "characters long")  # the whole text is at fault
        assert all(re.search(r" at column \d+", p) or any(u in p for u in unplaced) for p in exc.problems), exc.problems
        return
    STORE = STORE or _grading_store()
    try:
        with STORE.transaction(rollback=True) as con:
            compiled.grade(con, datetime(2026, 1, 1, tzinfo=UTC))
    except CrmsyncError as exc:
        assert isinstance(exc, PolicyError) and str(exc).startswith("policy: "), str(exc)
    except duckdb.Error as exc:  # the condition compiled, so grading it must not fail in the database
        raise AssertionError(f"{text!r} compiled but grading failed: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------------------------- settings files

CONNECTOR_KEYS = ["plugin", "batch_size", "encoding", "delimiter", "members_columns", "push_fields", "date_formats"]
VALID: dict[str, Any] = {
    "store": {"path": "store.duckdb", "keep_runs": 20},
    "sync": {"members": "shop", "orders": ["shop"], "push": ["shop"], "base_currency": "EUR", "timezone": "UTC"},
    "connectors": {"shop": {"plugin": "generic_csv", "members_path": "c.csv", "orders_path": "o.csv"}},
    "logging": {"level": "INFO"},
    "policy": {"tiers": [{"name": "Gold", "condition": "spend_365d >= 10"}, {"name": "Bronze"}]},
}
scalar = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=10),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["Europe/Berln", "", "..", "/nonexistent/x.csv", "generic_csv", "nosuch", "DEBUG"]),
)
value = st.recursive(
    scalar,
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c, max_size=3)),
    max_leaves=5,
)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML: no surrogate pairs, no DEL
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(doc: dict[str, Any]) -> str:
    lines = []
    for table, body in doc.items():
        if not isinstance(body, dict):
            lines.insert(0, f"{_toml_key(table)} = {_toml_value(body)}")
            continue
        lines.append(f"[{_toml_key(table)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    doc = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 4))):
        table = draw(st.sampled_from([*doc, "extra"]))
        body = doc.setdefault(table, {})
        if not isinstance(body, dict):
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        keys = list(body)
        if action == "delete" and keys:
            del body[draw(st.sampled_from(keys))]
        elif action == "replace" and keys:
            body[draw(st.sampled_from(keys))] = draw(value)
        else:
            body[draw(st.text(min_size=1, max_size=8))] = draw(value)
    shop = doc.get("connectors", {}).get("shop") if isinstance(doc.get("connectors"), dict) else None
    if isinstance(shop, dict):
        shop.update(draw(st.dictionaries(st.sampled_from(CONNECTOR_KEYS), value, max_size=2)))
    return _toml(doc)


def _host() -> PluginHost:
    host = PluginHost()
    host.register(crmsync_generic_csv, "generic_csv")
    return host


HOST = _host()
SETTINGS_DIR = Path(tempfile.mkdtemp(prefix="crmsync-settings-fuzz-"))
(SETTINGS_DIR / "c.csv").write_text("external_id\n1\n")
(SETTINGS_DIR / "o.csv").write_text("external_id,member_external_id,placed_at,amount\n")


def _load(text: str | bytes) -> None:
    path = SETTINGS_DIR / "crmsync.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass"))
    try:
        loaded = load_settings(path, host=HOST)
        compile_policy(loaded.policy)
    except ConfigError as exc:
        message = str(exc)
        assert "crmsync.toml" in message or (exc.problems and all(": " in p for p in exc.problems)), message
        for problem in exc.problems:
            key, _, reason = problem.partition(": ")
            bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", key)  # quoted TOML keys may hold spaces
            assert key.strip() and reason and " " not in bare.strip(), problem


def test_settings_valid_base_loads() -> None:
    path = SETTINGS_DIR / "crmsync.toml"
    path.write_text(_toml(VALID))
    assert load_settings(path, host=HOST).sync.members == "shop"


@FAST
@given(text=mutated())
def test_mutated_settings_load_or_name_the_key(text: str) -> None:
    GENERATED["settings files (mutated)"] += 1
    _load(text)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(st.binary(max_size=60), st.text(max_size=60)))
def test_garbage_settings_files_fail_clearly(raw: bytes | str) -> None:
    GENERATED["settings files (garbage)"] += 1
    _load(raw)


# ---------------------------------------------------------------------------------------------- what a person must fix
# Config path collisions, bad JSON in environment variables, memory limits, log and store paths: each is refused
# with its key path and exit code 2, by the loader and by the command line, and never reaches the user as a traceback.

WRITES = ["store.path", "logging.file", "connectors.shop.output_path", "connectors.shop.rejects_path"]
WRITTEN = {
    "store.path": "store.duckdb",
    "logging.file": "out/crmsync.log",
    "connectors.shop.output_path": "out/p.csv",
    "connectors.shop.rejects_path": "out/r.csv",
}
(SETTINGS_DIR / "sub").mkdir(exist_ok=True)
(SETTINGS_DIR / "out").mkdir(exist_ok=True)
(SETTINGS_DIR / "junk.bin").write_bytes(b"\x00" * 64)


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    *tables, name = key.split(".")
    for table in tables:
        doc = doc.setdefault(table, {})
    doc[name] = value


def _spelled(draw: st.DrawFn, target: str) -> str:
    """The same path written another way: relative, ./x, out/../x, absolute, or through a symbolic link."""
    how = draw(st.sampled_from(["plain", "dot", "updown", "absolute", "link"]))
    if how == "link" and (SETTINGS_DIR / target).exists():
        link = SETTINGS_DIR / ("link-" + target.replace("/", "-"))
        if not link.is_symlink():
            link.symlink_to(SETTINGS_DIR / target)
        return link.name
    return {"dot": f"./{target}", "updown": f"out/../{target}", "absolute": str(SETTINGS_DIR / target)}.get(how, target)


@st.composite
def collisions(draw: st.DrawFn) -> tuple[str, str]:
    """A configuration in which one written path collides with an input, another written path, a folder, a file
    it would lie under, or is a store path that holds something else; and the key that must be named."""
    doc = json.loads(json.dumps(VALID))
    for key, path in WRITTEN.items():
        _set(doc, key, path)
    key = draw(st.sampled_from(WRITES))
    kind = draw(st.sampled_from(["input", "written", "folder", "under a file", "pattern", "not a store"]))
    if kind == "input":
        target = draw(st.sampled_from(["c.csv", "o.csv"]))
    elif kind == "written":
        target = WRITTEN[draw(st.sampled_from([k for k in WRITES if k != key]))]
    elif kind == "folder":
        target = draw(st.sampled_from(["out", "sub", "."]))
    elif kind == "under a file":
        target = draw(st.sampled_from(["c.csv/x", "junk.bin/deeper/x.db"]))
    elif kind == "pattern":
        _set(doc, "connectors.shop.orders_path", draw(st.sampled_from(["o*.csv", "*.csv", "?.csv", "[co].csv"])))
        target = "o.csv"
    else:
        key, target = "store.path", draw(st.sampled_from(["junk.bin", "c.csv"]))
    _set(doc, key, _spelled(draw, target) if target != "." else target)
    return _toml(doc), key


def _cli(path: Path, *args: str) -> tuple[int, str]:
    """The command line's entry point in process: its exit code and what it wrote to stderr."""
    err = io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["--config", str(path), *args])
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), err.getvalue()


def _refused(path: Path, key: str) -> None:
    """Loader and command line both refuse the configuration, naming ``key``, with exit code 2 and no traceback."""
    try:
        load_settings(path, host=HOST)
    except ConfigError as exc:
        assert exc.exit_code == 2
        assert any(p.startswith(f"{key}") or f" {key};" in p or f" {key} " in p for p in exc.problems), exc.problems
    else:
        raise AssertionError(f"{key}: accepted\n{path.read_text()}")
    code, err = _cli(path, "runs")
    assert code == 2, err
    assert "Traceback" not in err and "unexpected" not in err and key in err, err


@FAST
@given(case=collisions())
def test_config_path_collisions_are_refused_with_the_key(case: tuple[str, str], monkeypatch_host: None) -> None:
    GENERATED["config path collisions"] += 1
    text, key = case
    path = SETTINGS_DIR / "crmsync.toml"
    path.write_text(text, encoding="utf-8")
    _refused(path, key)


ENV_JSON = {
    "CRMSYNC_SYNC__PUSH": "sync.push",
    "CRMSYNC_SYNC__ORDERS": "sync.orders",
    "CRMSYNC_SYNC__EXCHANGE_RATES": "sync.exchange_rates",
    "CRMSYNC_POLICY__TIERS": "policy.tiers",
    "CRMSYNC_POLICY__TAGS": "policy.tags",
    "CRMSYNC_CONNECTORS__SHOP__MEMBERS_COLUMNS": "connectors.shop.members_columns",
    "CRMSYNC_STORE": "store",
    "CRMSYNC_STORE__MEMORY_LIMIT": "store.memory_limit",
}
broken_json = st.one_of(
    st.sampled_from(["[shop", "{USD: 1", '{"USD": "x"}', "[1,2]", "{", "null", '"', '["shop",]', "lots; DROP", "[]"]),
    st.text(max_size=16),
    value.map(json.dumps),
)


@FAST
@given(var=st.sampled_from(sorted(ENV_JSON)), raw=broken_json)
def test_bad_environment_values_name_the_key(var: str, raw: str, monkeypatch_host: None) -> None:
    GENERATED["environment values"] += 1
    path = SETTINGS_DIR / "crmsync.toml"
    path.write_text(_toml(VALID), encoding="utf-8")
    key = ENV_JSON[var]
    with env({var: raw.replace("\x00", "")}):
        command = "runs"
        try:
            loaded = load_settings(path, host=HOST)
            command = "preview"  # a condition is checked by the commands that grade ('runs' reads no policy)
            compile_policy(loaded.policy)
        except ConfigError as exc:
            assert exc.problems and all(p.startswith(key) for p in exc.problems), (raw, exc.problems)
            code, err = _cli(path, command)
            assert code == 2 and key in err and "Traceback" not in err and "unexpected" not in err, err


memory = st.one_of(
    st.text(max_size=12),
    st.tuples(
        st.one_of(st.integers(0, 5000).map(str), st.decimals(0, 100, places=2).map(str), st.just(".5")),
        st.sampled_from(["", " "]),
        st.sampled_from(["GB", "gb", "MB", "MiB", "KiB", "TB", "G", "m", "bytes", "gigabytes", "%", "GBs", "XB", "B"]),
    ).map("".join),
)


@FAST
@given(limit=memory)
def test_memory_limits_the_database_refuses_are_config_errors(limit: str) -> None:
    GENERATED["memory limits"] += 1
    doc = json.loads(json.dumps(VALID))
    doc["store"]["memory_limit"] = limit.replace("\x00", "")
    path = SETTINGS_DIR / "crmsync.toml"
    path.write_text(_toml(doc), encoding="utf-8")
    try:
        accepted = load_settings(path, host=HOST).store.memory_limit
    except ConfigError as exc:
        assert [p.split(":")[0] for p in exc.problems] == ["store.memory_limit"], exc.problems
        return
    config = {"memory_limit": accepted} if accepted else {}
    duckdb.connect(":memory:", config=config).close()  # what is accepted, the database accepts


@pytest.fixture
def monkeypatch_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crmsync.plugins, "_HOST", HOST)
    for name in [v for v in os.environ if v.startswith("CRMSYNC_")]:
        monkeypatch.delenv(name)


@contextlib.contextmanager
def env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
