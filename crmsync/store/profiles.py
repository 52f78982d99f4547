"""Profiles: each member's grades as last computed (table ``profiles``), and what the commands read about members.

Grading produces a temporary table shaped like ``profiles`` (the policy's ``graded``); :func:`save` keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from crmsync.models import PUSHED_FIELDS, Profile
from crmsync.store.db import Connection, scalar
from crmsync.store.outbox import fields_sql

SUMMARY = ("tier", "points", "rfm_segment", "lifecycle", "tags")
"""The grades :func:`summary` returns."""


def count(con: Connection) -> int:
    return int(scalar(con, "SELECT count(*) FROM profiles") or 0)


def count_changed(con: Connection, graded: str) -> int:
    """How many of the ``graded`` profiles differ, in what is pushed, from the stored ones (or are new)."""
    return int(
        scalar(
            con,
            f"""SELECT count(*) FROM {graded} g LEFT JOIN profiles p USING (member_id)
                WHERE p.member_id IS NULL
                   OR {fields_sql(PUSHED_FIELDS, "g")} IS DISTINCT FROM {fields_sql(PUSHED_FIELDS, "p")}""",
        )
        or 0
    )


def save(con: Connection, graded: str, *, members: str | None = None) -> None:
    """Keep the ``graded`` profiles. With ``members`` (a table of every member still graded), ``graded`` holds only
    the members whose grades may have changed: the others' profiles stay, and those of members gone are dropped;
    without it, ``graded`` replaces every profile."""
    if members:
        con.execute(
            f"DELETE FROM profiles WHERE member_id IN (SELECT member_id FROM {graded}) "
            f"OR member_id NOT IN (SELECT member_id FROM {members})"
        )
    else:
        con.execute("DELETE FROM profiles")
    con.execute(f"INSERT INTO profiles BY NAME SELECT * FROM {graded}")


def tier_distribution(con: Connection) -> dict[str, int]:
    """Members per tier, highest tier first."""
    rows = con.execute("SELECT tier, count(*) FROM profiles GROUP BY tier ORDER BY min(tier_rank)").fetchall()
    return {tier: int(n) for tier, n in rows}


def read(con: Connection, graded: str, member_source: str) -> list[Profile]:
    """The ``graded`` profiles as :class:`Profile` objects (for plugins that adjust them)."""
    cur = con.execute(f"SELECT * FROM {graded} ORDER BY member_id")
    cols = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        data: dict[str, Any] = dict(zip(cols, row, strict=True))
        data["tags"] = tuple(data.get("tags") or ())
        data["reasons"] = json.loads(data["reasons"]) if isinstance(data.get("reasons"), str) else {}
        data["member_source"] = member_source
        out.append(Profile.model_validate({k: v for k, v in data.items() if k in Profile.model_fields}))
    return out


def set_tags(con: Connection, graded: str, tags: Mapping[str, Sequence[str]]) -> None:
    """Replace the tags of the given ``graded`` members, in one statement."""
    if not tags:
        return
    table = pa.table(
        {"member_id": list(tags), "tags": [sorted(t) for t in tags.values()]},
        schema=pa.schema([("member_id", pa.string()), ("tags", pa.list_(pa.string()))]),
    )
    con.register("_tags", table)
    try:
        con.execute(f"UPDATE {graded} SET tags = t.tags FROM _tags t WHERE {graded}.member_id = t.member_id")
    finally:
        con.unregister("_tags")


def summary(con: Connection, member_id: str) -> dict[str, Any] | None:
    """A member's stored grades (:data:`SUMMARY`), or ``None`` when the member was never graded."""
    row = con.execute(f"SELECT {', '.join(SUMMARY)} FROM profiles WHERE member_id = ?", [member_id]).fetchone()
    return dict(zip(SUMMARY, row, strict=True)) if row else None


def member_exists(con: Connection, external_id: str, *, source: str | None = None, deleted: bool = False) -> bool:
    """Whether the store holds the member (from ``source`` when given; deleted ones too with ``deleted``)."""
    where, params = "external_id = ?", [external_id]
    if source is not None:
        where, params = where + " AND source = ?", [*params, source]
    if not deleted:
        where += " AND NOT deleted"
    return bool(scalar(con, f"SELECT count(*) > 0 FROM members WHERE {where}", params))
