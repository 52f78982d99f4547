"""Days in ``sync.timezone``: the one rule for evaluation dates, day ends, and calendar periods.

Tier decisions are made per day: a day is a calendar day in ``sync.timezone`` (``UTC`` unless configured), and the
decision for a day is the one taken at its end, the last microsecond before the next day starts. A date given where
an instant is needed (``--as-of 2026-10-15``, ``--from``, ``--to``) means that instant: the end of the day, so that
every command reads the same date the same way and sees every order placed on that day.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb

from crmsync.errors import ConfigError
from crmsync.store.db import Connection, scalar

TICK = timedelta(microseconds=1)
"""The resolution of an instant: the end of a day is one tick before the next day starts."""


def zone(name: str | ZoneInfo) -> ZoneInfo:
    """The time zone called ``name`` (an IANA name such as ``Asia/Shanghai``).

    Raises:
        ConfigError: the name is unknown.
    """
    if isinstance(name, ZoneInfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r} (use an IANA name like 'Asia/Shanghai')") from None


def local_day(at: datetime, tz: ZoneInfo) -> date:
    """The calendar day in ``tz`` on which the instant ``at`` falls."""
    if at.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return at.astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz`` (in UTC). A midnight skipped by a clock change starts the day at the
    moment the clock jumps."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def day_end(day: date, tz: ZoneInfo) -> datetime:
    """The last instant of ``day`` in ``tz`` (in UTC): the instant a day's tier decision is taken."""
    return day_start(day + timedelta(days=1), tz) - TICK


def parse_instant(value: str, tz: ZoneInfo, *, option: str = "--as-of") -> datetime:
    """The instant a command-line date or datetime stands for: a date (``2026-10-15``) is the end of that day in
    ``tz``; a datetime without an offset is read in ``tz``; one with an offset (``Z``, ``+08:00``) is taken as given.

    Raises:
        ConfigError: naming ``option`` when ``value`` is neither.
    """
    text = value.strip()
    try:
        if len(text) == 10:
            return day_end(date.fromisoformat(text), tz)
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{option}: not a date: {value!r} (use YYYY-MM-DD, or an ISO datetime like 2026-10-15T09:30)"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).astimezone(UTC)


def parse_day(value: str, *, option: str) -> date:
    """A calendar day given on the command line (``YYYY-MM-DD``).

    Raises:
        ConfigError: naming ``option`` when ``value`` is not a date.
    """
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{option}: not a date: {value!r} (use YYYY-MM-DD)") from None


def calendar_period(day: date, kind: str) -> tuple[date, date, date]:
    """The calendar period (``calendar_year`` or ``calendar_month``) holding ``day``: its first day, the first day
    of the next period, and the first day of the previous one."""
    if kind == "calendar_year":
        return date(day.year, 1, 1), date(day.year + 1, 1, 1), date(day.year - 1, 1, 1)
    if kind == "calendar_month":
        start = day.replace(day=1)
        nxt = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        prev = date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, 1)
        return start, nxt, prev
    raise ValueError(f"not a calendar period: {kind!r}")


def sql_day(day: date) -> str:
    """A SQL DATE literal."""
    return f"DATE '{day.isoformat()}'"


@contextmanager
def session_zone(con: Connection, tz: ZoneInfo) -> Iterator[None]:
    """Let the database read dates in ``tz`` for the duration of a grading (a date attribute ``2026-03-31`` is the
    start of that day there, a timestamp's date is its day there), then restore its setting."""
    before = scalar(con, "SELECT current_setting('TimeZone')")
    con.execute(f"SET TimeZone = '{tz.key}'")
    try:
        yield
    finally:
        with suppress(duckdb.Error):  # a failed grading's transaction refuses statements; its rollback follows
            con.execute(f"SET TimeZone = '{before}'")
