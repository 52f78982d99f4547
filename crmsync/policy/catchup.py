"""Deciding tiers day by day, whatever the run schedule.

A tier decision is taken at the end of every day (in ``sync.timezone``) and stored with the day it was taken for
(``policy_tier_clock``). A grading first decides, in order, every day that ended since the last decided one and
before the evaluation day, each at the day's last instant with the data as it stood then; then it grades the
evaluation time itself from the tiers held at the end of the day before (see :mod:`crmsync.policy.tiers`). A run
after a 34-day gap therefore decides 34 days, so grace periods start on the day a member stopped qualifying and a
member drops at most ``max_levels`` per day, exactly as daily runs would have decided.

Days on which nothing can change are skipped: when no tier condition reads a value that moves with the time alone
(days since an order, RFM, lifecycle, ``today()``, ``days_in_tier``...), a member's tier can only change on a day
one of its metrics comes due (``stale_at``: an order leaving a window or coming due, points expiring, a period
ending), a grace period ends, a period starts or a lock ends; the days in between are left as they are.

The first grading of a store decides no day: it grades its evaluation time from nothing held, and the days after it
are decided from there. With ``[policy.points] imported_orders = "tier_at_order"`` it instead decides every day from
the first order on, as if crmsync had always run.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import duckdb

from crmsync.policy.days import local_day, sql_day
from crmsync.policy.ddl import (
    BONUS_TABLE,
    CACHE_META,
    CACHE_TABLE,
    CLOCK_TABLE,
    LEDGER_TABLE,
    OVERRIDES_TABLE,
    STATE_TABLE,
)
from crmsync.policy.expr import sql_string
from crmsync.policy.model import Policy
from crmsync.policy.modes import GradingMode, PolicyTables
from crmsync.policy.tiers import grace_days
from crmsync.store.db import Connection, scalar


class CompiledPolicy(Protocol):
    """What deciding days needs of a compiled policy (:class:`crmsync.policy.CompiledPolicy`)."""

    policy: Policy
    tz: ZoneInfo

    @property
    def time_dependent(self) -> bool: ...

    def decide_day(self, con: Connection, day: date, mode: GradingMode) -> None: ...


ONE_DAY = timedelta(days=1)
PERSISTENT = PolicyTables()


def exists(con: Connection, name: str, temporary: bool) -> bool:
    """Whether a table ``name`` exists (a temporary one with ``temporary``)."""
    sql = "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND temporary = ?"
    return bool(scalar(con, sql, [name, temporary]))


def decided_through(con: Connection, tables: PolicyTables) -> date | None:
    """The last day whose decisions ``tables.state`` holds; ``None`` before the first grading."""
    if not exists(con, tables.clock, tables.temporary):
        return None
    return scalar(con, f"SELECT max(decided_through) FROM {tables.clock}")


def _set_decided(con: Connection, tables: PolicyTables, day: date) -> None:
    con.execute(f"DELETE FROM {tables.clock}")
    con.execute(f"INSERT INTO {tables.clock} VALUES ({sql_day(day)}, now())")


def _first_day(compiled: CompiledPolicy, con: Connection, today: date, tables: PolicyTables) -> date:
    """The day before the first one to decide when nothing is decided yet: the day before ``today``; when the
    policy replays history and no tier is held yet, the day before the first order or activity."""
    if compiled.policy.points.imported_orders != "tier_at_order" or scalar(con, f"SELECT count(*) FROM {tables.state}"):
        return today - ONE_DAY
    first = scalar(
        con,
        "SELECT CAST(least((SELECT min(placed_at) FROM orders SEMI JOIN _pol_members USING (member_id) "
        "WHERE NOT coalesce(deleted, false)), (SELECT min(occurred_at) FROM activities SEMI JOIN _pol_members "
        "USING (member_id) WHERE NOT coalesce(deleted, false))) AS DATE)",
    )
    return min(first, today) - ONE_DAY if first is not None else today - ONE_DAY


def pending(compiled: CompiledPolicy, con: Connection, as_of: datetime, tables: PolicyTables) -> bool:
    """Whether a grading as of ``as_of`` has days to decide first."""
    today = local_day(as_of, compiled.tz)
    clock = decided_through(con, tables)
    if clock is None:
        clock = _first_day(compiled, con, today, tables) if exists(con, tables.state, tables.temporary) else None
    return clock is not None and clock + ONE_DAY < today


def may_be_pending(compiled: CompiledPolicy, con: Connection, as_of: datetime, tables: PolicyTables) -> bool:
    """Whether days may be left to decide before the day of ``as_of`` (a cheap look at the last decided day)."""
    clock = decided_through(con, tables)
    if clock is None:
        return compiled.policy.points.imported_orders == "tier_at_order"
    return clock + ONE_DAY < local_day(as_of, compiled.tz)


def advance(
    compiled: CompiledPolicy, con: Connection, as_of: datetime, mode: GradingMode, limit: int | None = None
) -> int:
    """Decide the days not decided yet before the day of ``as_of`` (at most ``limit`` of them), storing the tiers
    held at each day's end in ``mode.tables``; returns how many days were evaluated (days on which nothing can
    change are skipped, and not counted)."""
    today = local_day(as_of, compiled.tz)
    clock = decided_through(con, mode.tables)
    if clock is None:
        clock = _first_day(compiled, con, today, mode.tables)
        _set_decided(con, mode.tables, clock)
    day, decided = clock + ONE_DAY, 0
    while day < today and (limit is None or decided < limit):
        compiled.decide_day(con, day, mode)
        decided += 1
        day = _next_day(compiled, con, day, mode) if not compiled.time_dependent else day + ONE_DAY
    through = min(day, today) - ONE_DAY  # the stored tiers hold until the next day to decide
    if through > clock:
        _set_decided(con, mode.tables, through)
    return decided


def _next_day(compiled: CompiledPolicy, con: Connection, day: date, mode: GradingMode) -> date:
    """The next day on which a tier can change after ``day`` was decided: the first day a member's metrics come
    due, a grace period ends, a qualification period starts or a lock ends (at least the day after ``day``)."""
    tables = mode.tables
    grace = " ".join(
        f"WHEN {sql_string(t.name)} THEN {g}"
        for t, g in zip(compiled.policy.tiers, grace_days(compiled.policy), strict=True)
    )
    events = [
        f"(SELECT min(CAST(stale_at AS DATE)) FROM {tables.cache})",
        f"(SELECT min(below_since + CASE tier {grace} ELSE 0 END) FROM {tables.state} WHERE below_since IS NOT NULL)",
    ]
    if compiled.policy.qualification.period != "rolling":
        events.append(f"(SELECT min(CAST(period_end AS DATE)) FROM {tables.cache})")
    if mode.use_locks:
        events.append(f"(SELECT min(until) + 1 FROM {OVERRIDES_TABLE} WHERE until >= {sql_day(day)})")
    nxt = scalar(con, f"SELECT least({', '.join(events)})")
    return max(day + ONE_DAY, nxt) if nxt is not None else date.max


def explain_modes(
    compiled: CompiledPolicy, con: Connection, as_of: datetime, mode: GradingMode
) -> tuple[GradingMode | None, GradingMode]:
    """For a grading that writes nothing (``EXPLAIN``, ``PREVIEW``) with days to decide first: copy the stored
    tiers, bonuses, points and metrics into temporary tables, and return the mode that decides the days in them
    and the mode of the grading itself; ``(None, mode)`` when there is nothing to decide."""
    if mode.write_state or not mode.stateful or not pending(compiled, con, as_of, PERSISTENT):
        return None, mode
    tables = PolicyTables.temp("_pol_x")
    copies = (
        (STATE_TABLE, tables.state),
        (CLOCK_TABLE, tables.clock),
        (LEDGER_TABLE, tables.ledger),
        (CACHE_TABLE, tables.cache),
        (CACHE_META, tables.cache_meta),
        (BONUS_TABLE, tables.bonus),
    )
    for source, copy in copies:
        if exists(con, source, False):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {copy} AS SELECT * FROM {source}")
        else:
            con.execute(f"DROP TABLE IF EXISTS {copy}")
    days = replace(GradingMode.SYNC, out=mode.out, tables=tables, expire_locks=False, changed_only=False)
    return replace(days, use_profiles=mode.use_profiles, use_locks=mode.use_locks), replace(mode, tables=tables)


def create_temp(con: Connection, tables: PolicyTables) -> None:
    """Empty temporary tables shaped like the store's, for a grading that starts from nothing (a backtest)."""
    shaped = ((STATE_TABLE, tables.state), (CLOCK_TABLE, tables.clock), (LEDGER_TABLE, tables.ledger))
    for source, copy in (*shaped, (BONUS_TABLE, tables.bonus)):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {copy} AS SELECT * FROM {source} WHERE false")
    for name in (tables.cache, tables.cache_meta):
        con.execute(f"DROP TABLE IF EXISTS {name}")


def drop_temp(con: Connection, tables: PolicyTables, *extra: str) -> None:
    """Drop the temporary tables (and ``extra`` ones); after a failed statement the transaction refuses this, and
    its rollback drops them."""
    with suppress(duckdb.Error):
        for name in (tables.state, tables.clock, tables.ledger, tables.cache, tables.cache_meta, tables.bonus, *extra):
            con.execute(f"DROP TABLE IF EXISTS {name}")
