"""Writing a whole table of pushed profiles into the output CSV at once (DuckDB), as :class:`.ProfileWriter` would.

The existing output is merged (rows of members not in the table are kept), rows are ordered by member id and the
file is replaced atomically. Every cell is formatted as :func:`.writer.format_value` formats it — tags joined
with the separator, nothing for a missing value — and neutralised for spreadsheets (:func:`.writer.neutralise`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa

from crmsync.helpers import fsync_dir

_RISKY = "('=', '+', '-', '@', chr(9), chr(13))"
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"


def _neutralise(expr: str) -> str:
    risky = f"left({expr}, 1) IN {_RISKY} AND NOT regexp_matches({expr}, '{_NUMBER}')"
    return f"CASE WHEN {risky} THEN '''' || {expr} ELSE {expr} END"


def _text(name: str, separator: str) -> str:
    if name == "tags":
        return f"coalesce(array_to_string(tags, '{separator}'), '')"
    return f"coalesce(CAST({name} AS VARCHAR), '')"


def write_table(path: Path, fields: list[str], separator: str, encoding: str, table: pa.Table) -> pa.Table:
    """Merge ``table`` (``member_id`` and ``fields``) into the CSV at ``path``; one result row per member."""
    if encoding not in ("utf-8", "utf_8"):
        raise NotImplementedError("the columnar write is for UTF-8 output")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        con.register("incoming", table)
        cells = ", ".join(f"{_neutralise(_text(f, separator))} AS {f}" for f in fields)
        con.execute(
            f"CREATE TABLE new AS SELECT {_neutralise('trim(member_id)')} AS member_id, {cells} "
            "FROM incoming WHERE trim(coalesce(member_id, '')) <> ''"
        )
        rows = "SELECT * FROM new"
        if path.exists() and path.stat().st_size:
            old_cols = {
                c[0].replace("\ufeff", "")
                for c in con.execute(
                    f"DESCRIBE SELECT * FROM read_csv('{path}', all_varchar = true, header = true)"
                ).fetchall()
            }
            pick = ", ".join(f"coalesce({c}, '')" if c in old_cols else "''" for c in ["member_id", *fields])
            rows += (
                f" UNION ALL SELECT {pick} FROM read_csv('{path}', all_varchar = true, header = true, "
                "nullstr = '\x01') "
                "WHERE member_id NOT IN (SELECT member_id FROM new)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            nulls = ", ".join(f"nullif({c}, '') AS {c}" for c in ["member_id", *fields])
            con.execute(
                f"COPY (SELECT {nulls} FROM ({rows}) ORDER BY member_id) TO '{tmp}' "
                "(FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', NEW_LINE '\\n')"
            )
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return con.sql(
            "SELECT member_id, trim(coalesce(member_id, '')) <> '' AS ok, "
            "CASE WHEN trim(coalesce(member_id, '')) = '' THEN 'empty member id' END AS reason, "
            "CAST(NULL AS VARCHAR) AS field, trim(coalesce(member_id, '')) <> '' AS retryable FROM incoming"
        ).to_arrow_table()
    finally:
        con.close()
