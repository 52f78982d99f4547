"""Client-side call budgets: a sliding window per endpoint and a daily budget kept in the connector state.

Fxiaoke allows 100 calls per 20 seconds per interface and sells a daily call quota per tenant (it resets at
00:00 Beijing time). :class:`CallBudget` waits before a call that would overrun the window, and refuses a call
beyond the configured daily budget with :class:`~crmsync.RetryableError` carrying the seconds until the
quota resets, so a scheduled run stops cleanly and the next day's run resumes.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crmsync.connector import ConnectorContext
from crmsync.errors import RetryableError

QUOTA_ZONE = ZoneInfo("Asia/Shanghai")
BUDGET_LEFT = "daily_budget_left"
"""Key in ``context.api_calls`` holding the calls left in today's budget (only with a daily budget)."""


def seconds_to_reset(now: float) -> float:
    """Seconds from epoch time ``now`` to the next 00:00 in Beijing, when the daily quota resets."""
    local = datetime.fromtimestamp(now, QUOTA_ZONE)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), QUOTA_ZONE)
    return max(1.0, (midnight - local).total_seconds())


class CallBudget:
    """Paces calls per endpoint and counts them against a daily budget.

    Args:
        context: its ``state`` keeps the day's count (so several runs a day share it) and ``api_calls``
            shows what is left.
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

    def _today(self) -> str:
        return datetime.fromtimestamp(self.clock(), QUOTA_ZONE).date().isoformat()

    def used_today(self) -> int:
        raw = self.context.state.get(self._key)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return int(data.get("used", 0)) if data.get("day") == self._today() else 0

    def left(self) -> int | None:
        return None if self.daily is None else max(0, self.daily - self.used_today())

    def acquire(self, endpoint: str) -> None:
        """Wait for a slot in ``endpoint``'s window and take one call of today's budget (or raise)."""
        with self._lock:
            if self.daily is not None:
                used = self.used_today()
                if used >= self.daily:
                    raise RetryableError(
                        f"the daily budget of {self.daily} Fxiaoke calls is used up",
                        connector=self.context.name,
                        retry_after=seconds_to_reset(self.clock()),
                        hint="raise daily_budget if the tenant's purchased quota allows; it resets at 00:00 Beijing",
                    )
                self.context.state.set(self._key, json.dumps({"day": self._today(), "used": used + 1}))
                self.context.api_calls[BUDGET_LEFT] = self.daily - used - 1
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

    def report(self) -> None:
        """Put the calls left today into ``context.api_calls`` (nothing without a daily budget)."""
        left = self.left()
        if left is not None:
            self.context.api_calls[BUDGET_LEFT] = left
