"""Every member's metrics and grades in one file (``crmsync export``): CSV or Parquet, chosen columns, as of a date.

The members are graded as a sync would grade them at that instant (held tiers, grace periods and locks apply;
nothing is written to the store), and DuckDB writes the rows straight from its tables to the file
(``COPY … TO``): no row passes through Python, so memory stays within the store's ``memory_limit`` whatever the
number of members. The file is written next to its destination and renamed into place when complete.

Columns (:func:`available`): ``member_id``; the grades (``tier`` … ``tags``, ``rfm_fm``, ``reasons``,
``policy_version``); ``as_of``; any metric a condition could name (``spend_90d``, ``activity_login_30d``, a
plugin's), computed for the export even when the policy does not use it; and the personal columns (``email``,
``phone``, ``first_name``, ``last_name``), only when allowed. In CSV, tags are joined with ``|``, times are UTC
ISO 8601, and a text cell a spreadsheet would run as a formula is prefixed with ``'``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from crmsync.errors import ConfigError
from crmsync.policy import metrics as M
from crmsync.policy.compiled import CompiledPolicy
from crmsync.policy.expr import DATE
from crmsync.policy.modes import GradingMode
from crmsync.policy.stages import GRADE_COLUMNS
from crmsync.specs import MetricSpec
from crmsync.store.db import Connection

Format = Literal["csv", "parquet"]
PERSONAL = ("email", "phone", "first_name", "last_name")
"""Columns with personal data: exported only when allowed (``--personal`` or ``logging.verbose_personal_data``)."""
GRADES = ("member_id", *GRADE_COLUMNS, "rfm_fm", "reasons", "policy_version", "as_of")
TEXT = {
    "member_id",
    "tier",
    "previous_tier",
    "rfm_segment",
    "lifecycle",
    "tags",
    "reasons",
    "policy_version",
    *PERSONAL,
}
TAGS_SEPARATOR = "|"
_RISKY = "('=', '+', '-', '@', chr(9), chr(13))"
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"


@dataclass(frozen=True)
class ExportResult:
    """What was written: the file, its format, its columns and how many members (rows)."""

    path: Path
    format: Format
    columns: list[str]
    rows: int
    as_of: datetime


def default_columns(compiled: CompiledPolicy) -> list[str]:
    """``member_id``, the grades, then every metric the policy uses (built-in ones first)."""
    used = [n for n in compiled.used_metrics if n not in GRADES]
    fixed = [n for n in M.FIXED if n in used]
    return ["member_id", *GRADE_COLUMNS, *fixed, *sorted(n for n in used if n not in fixed)]


def available(compiled: CompiledPolicy, plugins: Sequence[MetricSpec] = ()) -> list[str]:
    """Every column an export can name (windowed metrics: those the policy uses and the usual windows)."""
    names = [*GRADES, *default_columns(compiled)[len(GRADE_COLUMNS) + 1 :]]
    names += M.suggestions(compiled.policy.metrics.windows, [p.name for p in plugins])
    return list(dict.fromkeys([*names, *PERSONAL]))


def resolve_columns(
    compiled: CompiledPolicy, names: Sequence[str], plugins: Sequence[MetricSpec], *, personal: bool
) -> dict[str, M.Metric | None]:
    """The chosen columns, each with the metric it needs computed (``None``: a grade or personal column).

    Raises:
        ConfigError: naming every unknown, repeated or not allowed column (exit code 2).
    """
    by_name = {p.name: p for p in plugins}
    out: dict[str, M.Metric | None] = {}
    problems = []
    known = available(compiled, plugins)
    for name in names:
        metric = (
            None if name in GRADES or name in PERSONAL else M.resolve(name, compiled.policy.metrics.windows, by_name)
        )
        if name in out:
            problems.append(f"{name}: named twice")
        elif name in PERSONAL and not personal:
            problems.append(
                f"{name}: personal data; add --personal or set logging.verbose_personal_data = true to export it"
            )
        elif metric is None and name not in GRADES and name not in PERSONAL:
            close = difflib.get_close_matches(name, known, n=1)
            problems.append(f"{name}: unknown column" + (f" (did you mean {close[0]}?)" if close else ""))
        out[name] = metric
    if not names:
        problems.append("no column chosen")
    if problems:
        raise ConfigError(
            "export --columns", problems=problems, hint="crmsync export --list-columns shows every column"
        )
    return out


def _neutralise(expr: str) -> str:
    """SQL: the text ``expr`` prefixed with ``'`` when a spreadsheet would run it as a formula (numbers stay)."""
    risky = f"left({expr}, 1) IN {_RISKY} AND NOT regexp_matches({expr}, '{_NUMBER}')"
    return f"CASE WHEN {risky} THEN '''' || {expr} ELSE {expr} END"


def _select(name: str, metric: M.Metric | None, fmt: Format, as_of: datetime) -> str:
    """SQL of one column over ``g`` (the grades), ``s`` (the stage: metrics) and ``pp`` (personal data)."""
    if name in PERSONAL:
        expr = f"pp.{name}"
    elif name == "as_of":
        expr = M.ts(as_of)
    elif name == "rfm_fm" or metric is not None:
        expr = f's."{name}"'
    elif name == "reasons":
        expr = "CAST(g.reasons AS VARCHAR)"
    else:
        expr = f"g.{name}"
    if fmt == "parquet":
        return f'{expr} AS "{name}"'
    if name == "tags":
        expr = f"array_to_string({expr}, '{TAGS_SEPARATOR}')"
    if name == "as_of" or (metric is not None and metric.type == DATE):
        expr = f"strftime(timezone('UTC', {expr}), '%Y-%m-%dT%H:%M:%SZ')"
    return f'{_neutralise(expr) if name in TEXT else expr} AS "{name}"'


def export(
    con: Connection,
    compiled: CompiledPolicy,
    as_of: datetime,
    path: Path,
    fmt: Format,
    columns: dict[str, M.Metric | None],
) -> ExportResult:
    """Grade as of ``as_of`` as a sync would (writing nothing) and write the ``columns`` of every member to
    ``path`` (resolve them with :func:`resolve_columns`), ordered by member id."""
    extra = {n: m for n, m in columns.items() if m is not None}
    graded = replace(compiled, used_metrics={**compiled.used_metrics, **extra})
    out = graded.run(con, as_of, GradingMode.EXPLAIN).graded
    joins = f"FROM {out} g JOIN _pol_stage s USING (member_id)"
    if any(n in PERSONAL for n in columns):
        con.execute(M.members_sql("_exp_personal", ", ".join(PERSONAL)))
        joins += " LEFT JOIN _exp_personal pp USING (member_id)"
    select = ", ".join(_select(n, m, fmt, as_of) for n, m in columns.items())
    options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    target = str(partial).replace("'", "''")
    try:
        row = con.execute(f"COPY (SELECT {select} {joins} ORDER BY g.member_id) TO '{target}' ({options})").fetchone()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return ExportResult(path, fmt, list(columns), int(row[0]) if row else 0, as_of)
