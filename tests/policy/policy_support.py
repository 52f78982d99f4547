"""An in-memory store with the tables the store provides, its fixtures, and small helpers to fill them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from crmsync.policy import POLICY_DDL, Policy, compile_policy
from crmsync.store.records import TABLES

STORE_DDL = [
    *(t.ddl for t in TABLES.values()),
    """CREATE TABLE profiles (member_id VARCHAR PRIMARY KEY, tier VARCHAR, tier_rank INTEGER, tier_since DATE,
        previous_tier VARCHAR, points BIGINT, rfm_r INTEGER, rfm_f INTEGER, rfm_m INTEGER, rfm_segment VARCHAR,
        lifecycle VARCHAR, tags VARCHAR[], reasons JSON, policy_version VARCHAR, computed_at TIMESTAMPTZ)""",
]
"""The record tables as the store declares them, and the profiles."""

NOW = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)
START = datetime(2024, 1, 31, 12, tzinfo=UTC)
"""The first period end of the random worlds' trial runs (:class:`World`)."""


def day(n: int, base: datetime = NOW) -> datetime:
    """``n`` days (* 24 h) before ``base``."""
    return base - timedelta(days=n)


class Store:
    """Thin helpers over the connection; every value is explicit in the tests."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def member(
        self, member_id: str, *, created_at: datetime | None = None, deleted: bool = False, attributes: str = "{}"
    ) -> None:
        self.con.execute(
            "INSERT INTO members (source, external_id, created_at, updated_at, attributes, opt_in, deleted) "
            "VALUES ('crm', ?, ?, ?, ?, true, ?)",
            [member_id, created_at or day(1000), created_at or day(1000), attributes, deleted],
        )

    def order(
        self,
        member_id: str | None,
        amount: str | Decimal,
        placed_at: datetime,
        *,
        status: str = "paid",
        external_id: str | None = None,
        deleted: bool = False,
        refunded: str | Decimal | None = None,
    ) -> str:
        ext = external_id or self._id("o")
        refund = None if refunded is None else Decimal(refunded)
        self.con.execute(
            "INSERT INTO orders (source, external_id, member_id, placed_at, amount, currency, amount_base, status, "
            "updated_at, deleted, refunded_amount, refunded_amount_base) "
            "VALUES ('shop', ?, ?, ?, ?, 'EUR', ?, ?, ?, ?, ?, ?)",
            [ext, member_id, placed_at, Decimal(amount), Decimal(amount), status, placed_at, deleted, refund, refund],
        )
        return ext

    def set_order(self, external_id: str, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self.con.execute(f"UPDATE orders SET {sets} WHERE external_id = ?", [*values.values(), external_id])

    def activity(self, member_id: str, kind: str, occurred_at: datetime, *, points: str | None = None) -> str:
        ext = self._id("a")
        self.con.execute(
            "INSERT INTO activities (source, external_id, member_id, kind, occurred_at, points, deleted) "
            "VALUES ('crm', ?, ?, ?, ?, ?, false)",
            [ext, member_id, kind, occurred_at, None if points is None else Decimal(points)],
        )
        return ext

    def save_profiles(self) -> None:
        """Do what the engine does after grading: keep ``graded`` as the previous result."""
        self.con.execute("DELETE FROM profiles")
        self.con.execute("INSERT INTO profiles SELECT * FROM graded")

    def graded(self, columns: str = "tier") -> dict[str, Any]:
        rows = self.con.execute(f"SELECT member_id, {columns} FROM graded ORDER BY member_id").fetchall()
        return {r[0]: (r[1] if len(r) == 2 else tuple(r[1:])) for r in rows}


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect()
    yield c
    c.close()


@pytest.fixture
def store(con: duckdb.DuckDBPyConnection) -> Store:
    return Store(con)


def save_graded(con: duckdb.DuckDBPyConnection, incremental: bool) -> None:
    """Do what the engine does with ``graded``: keep it as the profiles (of the members it holds when
    ``incremental``, dropping those of members gone)."""
    if incremental:
        con.execute(
            "DELETE FROM profiles WHERE member_id IN (SELECT member_id FROM graded) "
            "OR member_id NOT IN (SELECT member_id FROM _pol_members)"
        )
    else:
        con.execute("DELETE FROM profiles")
    con.execute("INSERT INTO profiles SELECT * FROM graded")


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory database with the store's tables and the policy's."""
    c = duckdb.connect(":memory:")
    c.execute("SET TimeZone = 'UTC'")
    for stmt in STORE_DDL + POLICY_DDL:
        c.execute(stmt)
    return c


def compiled(data: dict[str, Any], metrics: tuple = (), tz: str | None = None, **options: Any):
    """The policy ``data`` compiled (``tz``: ``sync.timezone``, also given as ``timezone``)."""
    if tz is not None:
        options["timezone"] = tz
    return compile_policy(Policy.model_validate(data), metrics, **options)


def grade(store: Store, data: dict[str, Any], as_of: datetime = NOW, columns: str = "tier") -> dict[str, Any]:
    policy = compiled(data)
    policy.grade(store.con, as_of)
    return store.graded(columns)


@dataclass
class World:
    """The same random members, orders and activities in two stores; ``orders`` keeps them for reference sums."""

    seed: int
    stores: list[Store] = field(default_factory=list)
    orders: list[tuple[str, Decimal, datetime, str]] = field(default_factory=list)
    members: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.stores = [Store(connect()), Store(connect())]
        members = self.members = [f"m{i:02d}" for i in range(rng.randint(8, 25))]
        for s in self.stores:
            for m in members:
                s.member(m, created_at=START - timedelta(days=500))
        for n in range(rng.randint(20, 120)):
            m, at = rng.choice(members), START + timedelta(days=rng.uniform(-150, 200), hours=rng.randint(0, 23))
            amount, status = Decimal(rng.choice([25, 60, 140, 260, 410])), rng.choice(["paid"] * 5 + ["refunded"])
            self.orders.append((m, amount, at, status))
            for s in self.stores:
                s.order(m, amount, at, status=status, external_id=f"o{n}")
        for _ in range(rng.randint(0, 30)):
            m, at = rng.choice(members), START + timedelta(days=rng.uniform(-100, 200))
            kind = rng.choice(["review", "redeem", "login"])
            for s in self.stores:
                s.activity(m, kind, at, points="30" if kind == "redeem" else None)
