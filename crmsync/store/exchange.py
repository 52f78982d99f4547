"""What another grading engine reads from the store, and writes back into it: the members orders are matched to,
the pulled orders and activities as Parquet, and the rows of policy tables of one row per member.

Only rows of one per member (or the Parquet files, written by the database without passing through Python) leave
the store this way: crmsync's memory stays bounded by the member count.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from crmsync.store.db import Connection

GRADED_COLUMNS = {
    "orders": "member_id, source, external_id, amount_base, refunded_amount_base, placed_at, status, deleted",
    "activities": "member_id, source, external_id, kind, occurred_at, points, deleted",
}
"""The columns of the pulled records that grading reads (see :func:`crmsync.policy.metrics.inputs_sql`)."""


def members_for_matching(con: Connection, source: str) -> pa.Table:
    """The members of ``source`` that rows are matched to (``source, external_id, email, deleted``)."""
    sql = "SELECT source, external_id, email, coalesce(deleted, false) AS deleted FROM members WHERE source = ?"
    return con.sql(sql, params=[source]).to_arrow_table()


def export_parquet(con: Connection, stream: str, path: Path) -> None:
    """Write the pulled ``orders`` or ``activities`` that found their member to ``path`` (a Parquet file)."""
    columns = GRADED_COLUMNS[stream]
    target = str(path).replace("'", "''")
    con.execute(
        f"COPY (SELECT {columns} FROM {stream} WHERE member_id IS NOT NULL) TO '{target}' "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
