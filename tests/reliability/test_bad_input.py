"""Bad-input campaign: generated CSV files, policy conditions and settings files never reach the user as a traceback.

Only :class:`~crmsync.CrmsyncError` subclasses (with the file and the key path) or rejections (with the file,
the line and the field) may come out. ``GENERATED`` counts the cases tried, for the campaign's report.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import crmsync_generic_csv
import duckdb
from crmsync_generic_csv import CsvConnector, CsvSettings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crmsync.connector import ConnectorContext, Rejection, Stream
from crmsync.errors import ConfigError, CrmsyncError, PolicyError
from crmsync.models import Member, Order
from crmsync.plugins import PluginHost
from crmsync.policy import STORE_EXTENSION
from crmsync.policy.compiled import compile_policy
from crmsync.policy.model import Policy
from crmsync.settings import load_settings
from crmsync.store import Store

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
cell = st.one_of(nasty, st.text(max_size=12), st.decimals(allow_nan=False, allow_infinity=False).map(str))
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
        # a row of the wrong shape or encoding has no single field; its reason says what is wrong with the row
        assert rej.field or "columns" in rej.reason or "bytes" in rej.reason, f"no field named: {rej}"
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


# ---------------------------------------------------------------------------------------------- conditions

METRICS = ["spend_365d", "orders_365d", "orders_lifetime", "spend_lifetime", "days_since_last_order", "points"]
atom = st.one_of(
    st.sampled_from(METRICS),
    st.sampled_from(["tier", "nosuch", "attr('region')", "attr_num('age')", "today()", "date('2024-02-30')"]),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.text(max_size=6).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.sampled_from(["true", "false", "null", "(", ")", ",", "'", '"', "and", "not", "between"]),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["+", "-", "*", "/", "%", "=", "!=", "<>", "<", ">=", "and", "or", "in", "is", ""])
    return st.one_of(
        st.tuples(children, ops, children).map(" ".join),
        children.map(lambda c: f"not ({c})"),
        children.map(lambda c: f"({c})"),
        st.tuples(st.sampled_from(["days_since", "abs", "round", "min", "coalesce", "year", "bogus"]), children).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(children, st.lists(children, max_size=3)).map(lambda t: f"{t[0]} in ({', '.join(t[1])})"),
        st.tuples(children, children, children).map(lambda t: f"{t[0]} between {t[1]} and {t[2]}"),
    )


conditions = st.one_of(st.recursive(atom, _combine, max_leaves=8), st.text(max_size=30))


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
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
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
