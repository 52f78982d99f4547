"""Call budgets: per-endpoint window, daily budget in the state, rate-limit answers, calls in the report."""

from __future__ import annotations

import json

import pytest
from crmsync_fxiaoke.errors import SetupError
from crmsync_fxiaoke.limits import BUDGET_LEFT, RESERVE, CallBudget, seconds_to_reset
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.connector import ConnectorContext, ProfileChange, Stream
from crmsync.errors import RetryableError

from .fake import FakeFxiaoke


def grade(member_id: str) -> ProfileChange:
    return ProfileChange(member_id, {"points": 7}, {}, frozenset({"points"}))


@pytest.fixture
def accounts(fake: FakeFxiaoke) -> list[str]:
    ids = [f"a{i}" for i in range(6)]
    for i in ids:
        fake.put("AccountObj", {"_id": i, "name": i})
    return ids


def test_client_window_paces_each_endpoint(fake: FakeFxiaoke, connect, accounts) -> None:
    fake.per_window = 3  # the tenant would refuse a fourth call within 20 s
    conn = connect(calls_per_window=3)
    start = fake.now
    assert all(r.ok for r in conn.push([grade(i) for i in accounts]))
    update_times = [c for c in fake.calls if c["path"].endswith("update")]
    assert len(update_times) == 6
    assert fake.now - start == 20  # waited once for the window to free a slot
    assert conn.context.api_calls.get("retries") is None  # never refused


def test_rate_limit_answers_back_off_until_the_window_frees(fake: FakeFxiaoke, connect, accounts) -> None:
    fake.per_window = 3
    fake.rate_code = 14001
    conn = connect(calls_per_window=None)
    assert all(r.ok for r in conn.push([grade(i) for i in accounts[:4]]))
    # the 4th update was refused at 2, 4, 8 s and accepted after waiting 16 s more (30 s > the 20 s window)
    assert conn.context.api_calls["retries"] == 4
    assert conn.context.api_calls["update AccountObj"] == 8


def test_calls_are_counted_by_endpoint_and_object(fake: FakeFxiaoke, connect, accounts) -> None:
    conn = connect(page_size=4)
    list(conn.pull(Stream.MEMBERS, None))
    conn.push([grade("a1")])
    assert conn.context.api_calls == {"token": 1, "query AccountObj": 2, "describe AccountObj": 1,
                                      "update AccountObj": 1}  # fmt: skip


def test_daily_budget_stops_the_run_and_is_shared_through_the_state(fake: FakeFxiaoke, connect, accounts) -> None:
    context = ConnectorContext(name="fx")
    conn = connect(context, daily_budget=4)
    results = conn.push([grade(i) for i in accounts[:2]])  # token + describe + 2 updates
    assert all(r.ok for r in results)
    assert context.api_calls[BUDGET_LEFT] == 0
    again = connect(ConnectorContext(name="fx", state=context.state), daily_budget=4)
    with pytest.raises(RetryableError) as err:
        again.push([grade("a3")])
    assert err.value.retry_after == 35200 and "daily budget of 4" in str(err.value)
    assert len(fake.calls) == 4
    fake.now += 35200  # midnight in Beijing: a new day's budget
    assert again.push([grade("a3")])[0].ok
    # hours later: a renewed token, the describe the refused push never made, the update
    assert [c["path"].rsplit("/", 1)[-1] for c in fake.calls[4:]] == ["token", "describe", "update"]
    assert again.context.api_calls[BUDGET_LEFT] == 1


class CountingState:
    """Connector state that counts its writes per key."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.writes: dict[str, int] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str | None) -> None:
        self.writes[key] = self.writes.get(key, 0) + 1
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value


def stored_count(state: CountingState) -> int:
    return json.loads(state.data["fxiaoke:fx:daily"])["used"]


@settings(max_examples=30, deadline=None)
@given(runs=st.lists(st.tuples(st.integers(1, 260), st.booleans()), min_size=1, max_size=4))
def test_the_daily_count_is_written_once_per_block_and_a_crash_never_loses_a_call(runs) -> None:
    """Each run makes ``calls`` calls and either ends (settles the count) or dies (keeps the reservation)."""
    state, fake, made = CountingState(), FakeFxiaoke(), 0
    for calls, crashes in runs:
        budget = CallBudget(ConnectorContext(name="fx", state=state), per_window=None, window=20, daily=10_000,
                            clock=lambda: fake.now, monotonic=lambda: fake.now, sleep=fake.sleep)  # fmt: skip
        before = state.writes.get("fxiaoke:fx:daily", 0)
        for _ in range(calls):
            budget.acquire("/cgi/crm/v2/data/update")
        made += calls
        if not crashes:
            budget.report()
        writes = state.writes["fxiaoke:fx:daily"] - before
        assert writes <= -(-calls // RESERVE) + (not crashes)  # one write per block of calls, one to settle
        assert made <= stored_count(state) < made + RESERVE  # never below the calls made, at most a block above
        if not crashes:
            assert stored_count(state) == made
        made = stored_count(state)  # what the next run starts from (a crash's reservation stays counted)


def test_a_run_over_two_beijing_days_counts_each_day_from_zero(fake: FakeFxiaoke, connect) -> None:
    state = CountingState()
    conn = connect(ConnectorContext(name="fx", state=state), daily_budget=100)
    conn.client.budget.acquire("/x")
    fake.now += seconds_to_reset(fake.now)  # 00:00 in Beijing
    for _ in range(3):
        conn.client.budget.acquire("/x")
    conn.client.budget.report()
    assert json.loads(state.data["fxiaoke:fx:daily"]) == {"day": "2024-06-11", "used": 3}
    assert conn.context.api_calls[BUDGET_LEFT] == 97


def test_a_run_stopped_by_an_error_stores_the_exact_count_when_closed(fake: FakeFxiaoke, connect, accounts) -> None:
    state = CountingState()
    conn = connect(ConnectorContext(name="fx", state=state), daily_budget=1000, page_size=2)
    pages = conn.pull(Stream.MEMBERS, None)
    next(pages)  # token and one page
    fake.unlicensed = True  # the next call answers 30003
    with pytest.raises(SetupError):
        list(pages)
    assert stored_count(state) == RESERVE  # the reservation made by the first call
    conn.close()
    assert stored_count(state) == 3 and len(fake.calls) == 3
