"""Reading large CSV exports column-wise with DuckDB: the same records as the row readers, as Arrow tables.

DuckDB reads the file in parallel into a temporary table; SQL then checks every cell against conservative rules
(ISO dates, plain amounts, known statuses, ASCII emails, no surrounding whitespace...) that are a strict subset
of what the row readers accept, and builds the canonical columns (orders grouped from line items, the first
non-empty order-level value of each order, line amounts summed). Whatever the SQL does not vouch for — a row
that breaks a rule, a row DuckDB cannot read (wrong column count, undecodable bytes), every row of an order or
member touched by one — is handed to the row readers of :mod:`.reader` and :mod:`.orders` with its line number,
so rejections and their reasons are exactly theirs and nothing is lost.

Used only where it is exact: UTF-8 files whose header is on the first line and whose physical lines are the
records (no blank lines, no line breaks inside quoted cells; checked by counting line breaks), without a
decimal comma and, for orders, without ``total``, ``exchange_rate``, ``updated_at`` or ``refunded_amount`` columns.
"""

from __future__ import annotations

import bisect
import codecs
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from crmsync import Batch, ConnectorContext, Rejection, Stream
from crmsync_generic_csv.files import CHUNK, CsvFile
from crmsync_generic_csv.reader import resolve_columns
from crmsync_generic_csv.records import RecordReader, oversized
from crmsync_generic_csv.settings import CsvSettings

MIN_BYTES = 4 * 1024 * 1024
"""Files at least this large are read column-wise (when :func:`usable`)."""
ROWS_PER_BATCH = 1_000_000
WS = r"[\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
WS_CHARS = "(" + ", ".join(f"chr({c})" for c in range(0x3001) if chr(c).isspace()) + ")"
"""Every character ``str.strip()`` removes, as a SQL list."""
EMAIL = r"^[\x{21}-\x{3f}\x{41}-\x{7e}]+@[\x{21}-\x{3f}\x{41}-\x{7e}]+\.[\x{21}-\x{3f}\x{41}-\x{7e}]+$"
ISO = r"^\d{4}-\d{2}-\d{2}([ T]([01]\d|2[0-3]):[0-5]\d:[0-5]\d)?$"
PLAIN = r"^-?\d{1,14}(\.\d{0,4})?$"
TRUE = ("1", "true", "yes", "y", "t", "on", "是", "x")
FALSE = ("0", "false", "no", "n", "f", "off", "否")


def usable(stream: Stream, f: CsvFile, settings: CsvSettings) -> bool:
    """Whether the column-wise read gives exactly what the row reader gives for this file."""
    if f.info.size < MIN_BYTES or codecs.lookup(f.info.encoding).name not in ("utf-8", "utf-8-sig"):
        return False
    if f.info.long_line > settings.max_line_length:  # the row reader rejects it without reading it whole
        return False
    if f.header_line != 1 or settings.decimal_comma or len(set(f.header)) != len(f.header):
        return False
    idx = resolve_columns(stream.value, settings, f)
    if stream is Stream.ORDERS:
        return not ({"total", "exchange_rate", "updated_at", "refunded_amount"} & idx.keys())
    return stream is not Stream.ACTIVITIES or "external_id" in idx


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(values: Any) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


class ColumnarRead:
    """One column-wise read of ``f``; iterate :meth:`batches` (the last carries ``cursor``)."""

    def __init__(self, stream: Stream, f: CsvFile, settings: CsvSettings, context: ConnectorContext) -> None:
        self.stream, self.f, self.settings, self.context = stream, f, settings, context
        self.idx = resolve_columns(stream.value, settings, f)
        self.width = len(f.header)
        self.tmp = tempfile.TemporaryDirectory(prefix="crmsync-", dir=settings.spill_dir)
        self.con = duckdb.connect(  # in memory (no checkpoint to write), spilling to the temporary folder
            ":memory:",
            config={
                "memory_limit": settings.memory_limit,
                "preserve_insertion_order": True,
                "temp_directory": self.tmp.name,
            },
        )
        self.con.execute("SET enable_progress_bar = false")

    def col(self, field: str) -> str:
        return f"c{self.idx[field]}" if field in self.idx else "''"

    def close(self) -> None:
        self.con.close()
        self.tmp.cleanup()

    # ------------------------------------------------------------------ reading
    def load(self) -> bool:
        """Read the file into ``raw``; ``False`` when its lines are not its records (use the row reader)."""
        columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(self.width)) + "}"
        self.con.execute(
            f"""CREATE TABLE raw AS SELECT * FROM read_csv({_lit(str(self.f.path))}, header = true,
                delim = {_lit(self.settings.delimiter)}, quote = '"', escape = '"', nullstr = '\x01',
                auto_detect = false, columns = {columns}, store_rejects = true, rejects_table = '_rej',
                rejects_scan = '_scan', strict_mode = true, null_padding = false,
                max_line_size = {max(2_000_000, self.settings.max_line_length + 64)})"""
        )
        good = self.con.execute("SELECT count(*) FROM raw").fetchone()[0]
        self.bad_lines = sorted({r[0] for r in self.con.execute("SELECT line FROM _rej").fetchall()})
        lines, raw = _lines(self.f.path, set(self.bad_lines))
        if lines != 1 + good + len(self.bad_lines):
            return False
        self.bad_rows = [(n, self._cells(raw[n])) for n in self.bad_lines]
        return True

    def _cells(self, data: bytes) -> list[str]:
        """The cells of one line DuckDB rejected, read as the row reader reads them (a :class:`BadRow` too)."""
        errors = "strict" if self.f.info.clean else "surrogateescape"
        text = data.decode(self.f.info.encoding, errors).rstrip("\r\n") + "\n"
        s = self.settings
        records = RecordReader(io.StringIO(text, newline=""), s.delimiter, s.max_line_length, s.max_field_length)
        return next((row for _, row in records), [])

    def line_of(self, rowids: list[int]) -> list[int]:
        """Physical line numbers of ``raw`` rows (sorted ``rowids``), skipping the lines DuckDB rejected."""
        out, skipped, bad = [], 0, self.bad_lines
        for r in rowids:
            while skipped < len(bad) and bad[skipped] <= 2 + r + skipped:
                skipped += 1
            out.append(2 + r + skipped)
        return out

    def locator_sql(self, rowid: str) -> str:
        """SQL: where a ``raw`` row is in the file, as the row readers name it (``orders.csv:17``)."""
        line = f"{rowid} + 2"
        if self.bad_lines:  # as line_of: skip the lines DuckDB rejected
            adj = [b - j for j, b in enumerate(self.bad_lines)]
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE _skipped AS SELECT unnest(?::BIGINT[]) AS adj, unnest(range(1, ?)) AS n",
                [adj, len(adj) + 1],
            )
            line += f" + coalesce((SELECT max(n) FROM _skipped WHERE adj <= {rowid} + 2), 0)"
        return f"{_lit(self.f.name + ':')} || ({line})"

    def handed_over(self, key_sql: str, keys_table: str) -> list[tuple[int, list[str]]]:
        """``(line, cells)`` of the rows whose key is in ``keys_table`` and of the rejected lines, in file order."""
        cols = ", ".join(f"c{i}" for i in range(self.width))
        rows = self.con.execute(
            f"SELECT rowid, {cols} FROM raw WHERE {key_sql} IN (SELECT k FROM {keys_table}) ORDER BY rowid"
        ).fetchall()
        lines = self.line_of([r[0] for r in rows])
        merged = [(line, list(r[1:])) for line, r in zip(lines, rows, strict=True)] + self.bad_rows
        return sorted(merged, key=lambda item: item[0])

    # ------------------------------------------------------------------ checks shared by the streams
    def fits(self) -> str:
        """SQL: no cell is longer than ``max_field_length`` (in bytes, so never more characters either)."""
        cells = ", ".join(f"strlen(c{i})" for i in range(self.width))
        return f"greatest({cells}) <= {self.settings.max_field_length}"

    def clean(self, field: str) -> str:
        """SQL: the cell of ``field`` is empty or has no whitespace around it."""
        c = self.col(field)
        return f"({c} = '' OR NOT ({c}[1] IN {WS_CHARS} OR {c}[-1] IN {WS_CHARS}))"

    def key(self, field: str) -> str:
        """SQL: the cell of ``field`` stripped as ``str.strip()`` does (the key rows are grouped on)."""
        c = self.col(field)
        edged = f"{c}[1] IN {WS_CHARS} OR {c}[-1] IN {WS_CHARS}"
        return f"CASE WHEN {edged} THEN regexp_replace({c}, '^{WS}+|{WS}+$', '', 'g') ELSE {c} END"

    def when(self, field: str) -> tuple[str, str]:
        """SQL (ok, value) for a datetime cell: ISO 8601 without offset, read in the connector's time zone."""
        c = self.col(field)
        ok = f"({c} = '' OR (regexp_matches({c}, '{ISO}') AND try_cast({c} AS TIMESTAMP) IS NOT NULL))"
        tz = self.context.timezone.key
        value = f"timezone({_lit(tz)}, try_cast(nullif({c}, '') AS TIMESTAMP))"
        if tz != "UTC":  # a day with a clock change is left to the row reader (ambiguous or missing hours)
            ts = f"try_cast(nullif({c}, '') AS TIMESTAMP)"
            zone = _lit(tz)
            shift = f"epoch(timezone({zone}, {ts} + INTERVAL 1 DAY)) - epoch(timezone({zone}, {ts} - INTERVAL 1 DAY))"
            ok = f"({ok} AND ({c} = '' OR {shift} = 172800))"
        return ok, value

    def email(self, field: str) -> tuple[str, str]:
        c = self.col(field)
        return f"({c} = '' OR regexp_matches(lower({c}), '{EMAIL}'))", f"nullif(lower({c}), '')"

    def attributes_sql(self, columns: list[tuple[str, int]]) -> tuple[str, str]:
        """SQL (ok, json) of extra columns as the row reader's ``json.dumps(sort_keys=True)`` text."""
        if not columns:
            return "true", "CAST(NULL AS VARCHAR)"
        ordered = sorted(columns)
        parts = [
            f"CASE WHEN c{i} <> '' THEN {_lit(json.dumps(name, ensure_ascii=False) + ': ')} || '\"' || c{i} || '\"' END"
            for name, i in ordered
        ]
        ok = " AND ".join(
            f"(c{i} = '' OR NOT regexp_matches(c{i}, '^{WS}|{WS}$|[\\x{{00}}-\\x{{1f}}\"\\\\]'))" for _, i in ordered
        )
        body = f"concat_ws(', ', {', '.join(parts)})"
        return ok, f"CASE WHEN {body} = '' THEN NULL ELSE '{{' || {body} || '}}' END"

    # ------------------------------------------------------------------ streams
    def prepare(self) -> list[tuple[int, list[str]]]:
        """Build ``good`` (canonical columns, vouched for) and return the rows for the row reader."""
        return {Stream.ORDERS: self._orders, Stream.MEMBERS: self._members, Stream.ACTIVITIES: self._activities}[
            self.stream
        ]()

    def _bad_keys(self, key_index: int) -> list[str]:
        return [row[key_index].strip() for _, row in self.bad_rows if len(row) > key_index and row[key_index].strip()]

    def _keys_table(self, name: str, sql: str, key_index: int) -> None:
        self.con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        extra = self._bad_keys(key_index)
        if extra:
            self.con.execute(f"INSERT INTO {name} SELECT unnest(?::VARCHAR[])", [extra])

    def _orders(self) -> list[tuple[int, list[str]]]:
        statuses = self.settings.statuses()
        status_case = (
            "CASE lower("
            + self.col("status")
            + ") "
            + " ".join(f"WHEN {_lit(k)} THEN {_lit(v.value)}" for k, v in statuses.items() if k == k.lower())
            + " END"
        )
        placed_ok, placed = self.when("placed_at")
        email_ok, email = self.email("member_email")
        amount, cur, status = self.col("amount"), self.col("currency"), self.col("status")
        fields = ("external_id", "member_external_id", "member_email", "placed_at", "currency", "status", "amount")
        row_ok = " AND ".join(
            [
                *(self.clean(f) for f in fields if f in self.idx),
                placed_ok,
                email_ok,
                f"regexp_matches({amount}, '{PLAIN}')",
                f"({cur} = '' OR regexp_matches({cur}, '^[A-Za-z]{{3}}$'))",
                f"({status} = '' OR {status_case} IS NOT NULL)",
                self.fits(),
            ]
        )
        oid = self.key("external_id")
        member = f"nullif({self.col('member_external_id')}, '')"
        default_currency = (self.settings.default_currency or self.context.base_currency).upper()

        def first(expr: str, cell: str) -> str:
            return f"arg_min({expr}, rowid) FILTER (WHERE {cell} <> '')"

        self.con.execute(
            f"""CREATE TEMP TABLE grouped AS SELECT {oid} AS external_id,
                bool_and({row_ok}) AS ok,
                {first(member, self.col("member_external_id"))} AS member_external_id,
                {first(email, self.col("member_email"))} AS member_email,
                {first(placed, self.col("placed_at"))} AS placed_at,
                sum(try_cast({amount} AS DECIMAL(18, 4))) AS amount,
                coalesce({first("upper(" + cur + ")", cur)}, {_lit(default_currency)}) AS currency,
                coalesce({first(status_case, status)}, 'paid') AS status, min(rowid) AS first_row
            FROM raw WHERE {oid} <> '' GROUP BY 1"""
        )
        vouched = (
            "ok AND placed_at IS NOT NULL AND (member_external_id IS NOT NULL OR member_email IS NOT NULL) "
            "AND amount IS NOT NULL AND abs(amount) < 100000000000000"
        )
        self._keys_table(
            "handed", f"SELECT external_id AS k FROM grouped WHERE NOT ({vouched})", self.idx["external_id"]
        )
        self.con.execute("INSERT INTO handed VALUES ('')")  # rows without an order id: rejected one by one
        self.con.execute(
            f"""CREATE TEMP TABLE good AS SELECT external_id, member_external_id, member_email, placed_at, amount,
                currency, status, {self.locator_sql("first_row")} AS _locator FROM grouped
                WHERE {vouched} AND external_id NOT IN (SELECT k FROM handed) ORDER BY first_row"""
        )
        self.con.execute("DROP TABLE grouped")
        return self.handed_over(oid, "handed")

    def _members(self) -> list[tuple[int, list[str]]]:
        used = set(self.idx.values())
        wanted = self.settings.member_attributes
        extra = [
            (h, i) for i, h in enumerate(self.f.header) if h and (h in wanted if wanted is not None else i not in used)
        ]
        attr_ok, attrs = self.attributes_sql(extra)
        created_ok, created = self.when("created_at")
        updated_ok, updated = self.when("updated_at")
        email_ok, email = self.email("email")
        opt = self.col("opt_in")
        bools = f"CASE WHEN lower({opt}) IN {_in(TRUE)} THEN true WHEN lower({opt}) IN {_in(FALSE)} THEN false END"
        ext = self.key("external_id")
        fields = ("external_id", "email", "phone", "first_name", "last_name", "created_at", "updated_at", "opt_in")
        row_ok = " AND ".join(
            [*(self.clean(f) for f in fields if f in self.idx), created_ok, updated_ok, email_ok, attr_ok,
             f"({opt} = '' OR {bools} IS NOT NULL)", f"{ext} <> ''", self.fits()]
        )  # fmt: skip
        self.con.execute(
            f"""CREATE TEMP TABLE checked AS SELECT rowid AS r, {ext} AS external_id, {row_ok} AS ok,
                count(*) OVER (PARTITION BY {ext}) AS n FROM raw"""
        )
        self._keys_table(
            "handed", "SELECT DISTINCT external_id AS k FROM checked WHERE NOT ok OR n > 1", self.idx["external_id"]
        )
        self.con.execute(
            f"""CREATE TEMP TABLE good AS SELECT {ext} AS external_id, {email} AS email,
                nullif({self.col("phone")}, '') AS phone, nullif({self.col("first_name")}, '') AS first_name,
                nullif({self.col("last_name")}, '') AS last_name, {created} AS created_at, {updated} AS updated_at,
                {attrs} AS attributes, {bools if "opt_in" in self.idx else "CAST(NULL AS BOOLEAN)"} AS opt_in
                FROM raw WHERE {ext} <> '' AND {ext} NOT IN (SELECT k FROM handed) ORDER BY rowid"""
        )
        return self.handed_over(ext, "handed")

    def _activities(self) -> list[tuple[int, list[str]]]:
        used = set(self.idx.values())
        extra = [(h, i) for i, h in enumerate(self.f.header) if h and i not in used]
        attr_ok, attrs = self.attributes_sql(extra)
        when_ok, when = self.when("occurred_at")
        email_ok, email = self.email("member_email")
        pts, kind = self.col("points"), self.col("kind")
        member = self.col("member_external_id")
        fields = ("external_id", "member_external_id", "member_email", "kind", "occurred_at", "points")
        row_ok = " AND ".join(
            [*(self.clean(f) for f in fields if f in self.idx), when_ok, email_ok, attr_ok,
             f"({pts} = '' OR regexp_matches({pts}, '{PLAIN}'))", f"{kind} <> ''", f"{self.col('occurred_at')} <> ''",
             f"({member} <> '' OR {self.col('member_email')} <> '')", f"{self.col('external_id')} <> ''",
             self.fits()]
        )  # fmt: skip
        ext = self.key("external_id")
        self._keys_table("handed", f"SELECT DISTINCT {ext} AS k FROM raw WHERE NOT ({row_ok})", self.idx["external_id"])
        self.con.execute(
            f"""CREATE TEMP TABLE good AS SELECT {ext} AS external_id, nullif({member}, '') AS member_external_id,
                {email} AS member_email, {kind} AS kind, {when} AS occurred_at,
                try_cast(nullif({pts}, '') AS DECIMAL(18, 4)) AS points, {attrs} AS attributes
                FROM raw WHERE {ext} NOT IN (SELECT k FROM handed) ORDER BY rowid"""
        )
        return self.handed_over(ext, "handed")

    # ------------------------------------------------------------------ output
    def tables(self) -> Iterator[pa.Table]:
        """``good`` in tables of about :data:`ROWS_PER_BATCH` rows."""
        pending: list[pa.RecordBatch] = []
        for rb in self.con.sql("SELECT * FROM good").to_arrow_reader(ROWS_PER_BATCH):
            pending.append(rb)
            if sum(b.num_rows for b in pending) >= ROWS_PER_BATCH:
                yield pa.Table.from_batches(pending)
                pending = []
        if pending:
            yield pa.Table.from_batches(pending)


def _lines(path: Path, wanted: set[int]) -> tuple[int, dict[int, bytes]]:
    """Number of physical lines of ``path`` and the bytes of the ``wanted`` ones (1-based).

    Only the wanted lines are kept; the file is read in chunks, so memory stays bounded by them.
    """
    count = 0
    found: dict[int, bytes] = {}
    pieces: list[bytes] = []  # of the current line, when it is wanted
    partial = False  # the current line has bytes
    ordered = sorted(wanted)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            n = chunk.count(b"\n")
            first = bisect.bisect_left(ordered, count + 1)  # the first wanted line this chunk may hold
            if first < len(ordered) and ordered[first] <= count + n + 1:
                parts = chunk.split(b"\n")
                for k, part in enumerate(parts):
                    number = count + k + 1
                    if number in wanted:
                        pieces.append(part)
                        if k < n:
                            found[number] = b"".join(pieces)
                    if k < n:
                        pieces = []
            count += n
            partial = not chunk.endswith(b"\n")
    if partial:
        count += 1
        if count in wanted:
            found[count] = b"".join(pieces)
    return count, found


class _Rows:
    """``f`` seen by a row reader as holding only the given ``(line, cells)`` rows."""

    def __init__(self, f: CsvFile, rows: list[tuple[int, list[str]]]) -> None:
        self._f, self._rows = f, rows
        self.info = replace(f.info, size=0)  # a handful of rows: group them in memory

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        limit = self._f.max_field
        return ((line, oversized(cells, limit) or cells) for line, cells in self._rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def read_batches(
    stream: Stream,
    f: CsvFile,
    settings: CsvSettings,
    context: ConnectorContext,
    reader: Any,
    cursor: str | None,
    snapshot: bool = True,
) -> Iterator[Batch] | None:
    """Batches of ``f`` read column-wise, the last with ``cursor`` and ``snapshot``; ``None`` when the row reader
    must read it.

    ``reader`` is the row reader class of the stream; it reads the rows the SQL does not vouch for.
    """
    if not usable(stream, f, settings):
        return None
    read = ColumnarRead(stream, f, settings, context)
    try:
        if not read.load():
            read.close()
            return None
    except duckdb.Error:
        read.close()
        return None
    return _batches(read, stream, reader, cursor, snapshot)


def _batches(read: ColumnarRead, stream: Stream, reader: Any, cursor: str | None, snapshot: bool) -> Iterator[Batch]:
    try:
        handed = read.prepare()
        records, rejects = [], []
        if handed:
            for item in reader(_Rows(read.f, handed), read.settings, read.context):
                (rejects if isinstance(item, Rejection) else records).append(item)
        for table in read.tables():
            yield Batch(stream, table=table)
        yield Batch(stream, records=records, rejects=rejects, cursor=cursor, snapshot_complete=snapshot)
    finally:
        read.close()
