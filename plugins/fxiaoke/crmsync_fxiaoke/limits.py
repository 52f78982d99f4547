"""Client-side call budgets: a sliding window per endpoint and a daily budget kept in the connector state.

Fxiaoke allows 100 calls per 20 seconds per interface and sells a daily call quota per tenant (it resets at
00:00 Beijing time). :class:`CallBudget` waits before a call that would overrun the window, and refuses a call
beyond the configured daily budget with :class:`~crmsync.RetryableError` carrying the seconds until the
quota resets, so a scheduled run stops cleanly and the next day's run resumes. The count is written to the store
once per block of calls, never after each call.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crmsync import ConnectorContext, RetryableError

QUOTA_ZONE = ZoneInfo("Asia/Shanghai")
RESERVE = 50
"""Calls counted ahead in the state by one write (see :class:`CallBudget`)."""
BUDGET_LEFT = "daily_budget_left"
"""Key in ``context.api_calls`` holding the calls left in today's budget (only with a daily budget)."""


def seconds_to_reset(now: float) -> float:
    """Seconds from epoch time ``now`` to the next 00:00 in Beijing, when the daily quota resets."""
    local = datetime.fromtimestamp(now, QUOTA_ZONE)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), QUOTA_ZONE)
    return max(1.0, (midnight - local).total_seconds())


class CallBudget:
    """Paces calls per endpoint and counts them against a daily budget.

    The day's count lives in the connector state, so several runs a day share it. Writing it after every call
    would cost a store transaction a call; instead a call that starts a block of :data:`RESERVE` calls writes
    the count *including the whole block* (a reservation), and :meth:`settle` writes the exact count when a
    pull, push or check ends. A crash therefore never loses a call from the count; it can only leave it up to
    ``RESERVE - 1`` calls too high for the rest of that Beijing day (the budget errs on the side of the
    tenant's quota).

    Args:
        context: its ``state`` keeps the day's count and ``api_calls`` shows what is left.
        per_window: calls allowed per ``window`` seconds per endpoint (``None``: no pacing).
        daily: calls allowed per Beijing day (``None``: unlimited).
        clock: wall-clock epoch seconds (the day); monotonic: for the window; sleep: injectable for tests.
    """

    def __init__(
        self,
        context: ConnectorContext,
        *,
        per_window: int | None,
        window: float,
        daily: int | None,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.context = context
        self.per_window = per_window
        self.window = window
        self.daily = daily
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._key = f"fxiaoke:{context.name}:daily"
        self._day: str | None = None
        self._used = 0
        """Calls made today, as far as this process knows (read from the state once a day)."""
        self._stored = 0
        """The count the state holds for ``_day``: ``_used`` plus what is still reserved."""

    def _today(self) -> str:
        return datetime.fromtimestamp(self.clock(), QUOTA_ZONE).date().isoformat()

    def _roll(self) -> None:
        """Read the day's count from the state when the Beijing day is not the one in memory."""
        today = self._today()
        if today == self._day:
            return
        raw = self.context.state.get(self._key)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        self._day = today
        self._used = self._stored = int(data.get("used", 0)) if data.get("day") == today else 0

    def _write(self, count: int) -> None:
        self.context.state.set(self._key, json.dumps({"day": self._day, "used": count}))
        self._stored = count

    def used_today(self) -> int:
        with self._lock:
            self._roll()
            return self._used

    def left(self) -> int | None:
        return None if self.daily is None else max(0, self.daily - self.used_today())

    def acquire(self, endpoint: str) -> None:
        """Wait for a slot in ``endpoint``'s window and take one call of today's budget (or raise)."""
        with self._lock:
            if self.daily is not None:
                self._take(self.daily)
            if self.per_window is None:
                return
            recent = self._recent.setdefault(endpoint, deque())
            now = self.monotonic()
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) >= self.per_window:
                wait = recent[0] + self.window - now
                if wait > 0:
                    self.sleep(wait)
                    now = self.monotonic()
                recent.popleft()
            recent.append(now)

    def _take(self, daily: int) -> None:
        self._roll()
        if self._used >= daily:
            raise RetryableError(
                f"the daily budget of {daily} Fxiaoke calls is used up",
                connector=self.context.name,
                retry_after=seconds_to_reset(self.clock()),
                hint="raise daily_budget if the tenant's purchased quota allows; it resets at 00:00 Beijing",
            )
        self._used += 1
        if self._used > self._stored:
            self._write(self._used + RESERVE - 1)
            log = self.context.logger
            log.debug(
                "%s: daily call count %d stored with %d more reserved", self.context.name, self._used, RESERVE - 1
            )
        self.context.api_calls[BUDGET_LEFT] = daily - self._used

    def settle(self) -> None:
        """Write the exact count over a reservation (at the end of a pull, push or check)."""
        with self._lock:
            if self._day is not None and self._day == self._today() and self._stored != self._used:
                self._write(self._used)

    def report(self) -> None:
        """Settle the count and put the calls left today into ``context.api_calls`` (with a daily budget)."""
        self.settle()
        left = self.left()
        if left is not None:
            self.context.api_calls[BUDGET_LEFT] = left
