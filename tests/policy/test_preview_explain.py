"""Explain, preview and backtest (the chart: test_chart_browser.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from policy_support import NOW, Store, compiled, day

from crmsync.errors import CrmsyncError
from crmsync.policy.explain import explain
from crmsync.policy.preview import backtest, period_ends, preview

POLICY = {
    "tiers": [
        {"name": "Gold", "condition": "spend_365d >= 1000", "cost": "25", "benefits": ["free_shipping", "lounge"]},
        {"name": "Silver", "condition": "spend_365d >= 300", "cost": "5", "benefits": ["free_shipping"]},
        {"name": "Bronze"},
    ],
    "benefit_tags": True,
    "benefit_tag_prefix": "b_",
    "tags": {"big_spender": "tier = 'Gold' and orders_lifetime >= 2"},
}


def _seed(store: Store) -> None:
    for m in ("a", "b", "c"):
        store.member(m)
    store.order("a", "800", day(200))
    store.order("a", "400", day(20))
    store.order("b", "350", day(100))


def test_benefits_become_tags(store: Store) -> None:
    _seed(store)
    compiled(POLICY).grade(store.con, NOW)
    assert store.graded("tags") == {
        "a": ["b_free_shipping", "b_lounge", "big_spender"],
        "b": ["b_free_shipping"],
        "c": [],
    }


def test_explain_gives_metric_values_and_the_deciding_rule(store: Store) -> None:
    _seed(store)
    p = compiled(POLICY)
    ex = explain(p, store.con, "a", NOW)
    assert ex.metrics["spend_365d"] == Decimal("1200")
    assert ex.grades["tier"].value == "Gold"
    assert ex.grades["tier"].reason == "qualifies for Gold: spend_365d >= 1000 (spend_365d=1200.0000)"
    assert ex.grades["tags"].value == ["b_free_shipping", "b_lounge", "big_spender"]
    assert (
        "big_spender: tier = 'Gold' and orders_lifetime >= 2 (tier=Gold, orders_lifetime=2)" in ex.grades["tags"].reason
    )
    assert ex.grades["lifecycle"].value == "returning"
    assert ex.as_dict()["grades"]["rfm"]["value"]["segment"] == ex.grades["rfm"].value["segment"]
    # explain writes nothing
    assert store.con.execute("SELECT count(*) FROM policy_tier_state").fetchone() == (0,)
    with pytest.raises(CrmsyncError, match="not found"):
        explain(p, store.con, "nobody", NOW)


def test_explain_names_the_grace_period(store: Store) -> None:
    _seed(store)
    p = compiled({**POLICY, "downgrade": {"grace_days": 30}})
    p.grade(store.con, day(19))
    store.save_profiles()
    ex = explain(p, store.con, "a", NOW + timedelta(days=180))  # the 400 order is still in the window, 800 is not
    assert ex.grades["tier"].value == "Gold"
    assert ex.grades["tier"].reason.startswith("kept Gold in the grace period until ")
    assert "qualifies for Silver" in ex.grades["tier"].reason


def test_preview_compares_with_current_profiles(store: Store) -> None:
    _seed(store)
    p = compiled(POLICY)
    p.grade(store.con, NOW)
    store.save_profiles()  # a Gold, b Silver, c Bronze
    store.member("d")
    result = preview(store.con, p, day(150))  # a: only the 800 order; b: none yet; d: new member
    assert result.distribution == {"Gold": 0, "Silver": 1, "Bronze": 3}
    assert (result.up, result.down, result.same, result.new) == (0, 2, 1, 1)
    assert result.cost == Decimal("5")
    assert result.members == 4


def test_backtest_replays_history_with_grace(store: Store) -> None:
    store.member("a")
    start = datetime(2024, 1, 15, tzinfo=UTC)
    store.order("a", "1000", start - timedelta(days=1))
    p = compiled(
        {
            **POLICY,
            "tiers": [
                {**t, "condition": t.get("condition", "").replace("365d", "30d")} if "condition" in t else t
                for t in POLICY["tiers"]
            ],
            "downgrade": {"grace_days": 20, "max_levels": 1},
        }
    )
    periods = backtest(store.con, p, start, datetime(2024, 4, 15, tzinfo=UTC), every="month")
    assert [x.as_of.date().isoformat() for x in periods] == ["2024-01-15", "2024-02-15", "2024-03-15", "2024-04-15"]
    tiers = [next(t for t, n in x.distribution.items() if n) for x in periods]
    # Jan: Gold. Feb 13: the order leaves the 30-day window, the grace period starts. Drops are decided per day,
    # not per evaluation: Mar 4 (20 days later) one level down to Silver, Mar 5 to Bronze; so by Mar 15 the member
    # is Bronze, as daily syncs would have pushed (a monthly replay used to show a month of Silver).
    assert tiers == ["Gold", "Gold", "Bronze", "Bronze"]
    assert [(x.up, x.down) for x in periods] == [(0, 0), (0, 0), (0, 1), (0, 0)]
    assert periods[0].cost == Decimal("25")
    assert store.con.execute("SELECT count(*) FROM policy_tier_state").fetchone() == (0,)


def test_period_ends() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert len(period_ends(start, start + timedelta(days=14), "week")) == 3
    assert len(period_ends(start, start + timedelta(days=9), 3)) == 4
    with pytest.raises(ValueError, match="positive number of days"):
        period_ends(start, start + timedelta(days=9), 0)


def test_rendered_tables_show_the_figures(store: Store) -> None:
    from rich.console import Console

    from crmsync.cli.policy_view import explanation_table, overrides_table
    from crmsync.cli.trial_view import backtest_table, preview_table
    from crmsync.policy import list_overrides, set_override

    _seed(store)
    p = compiled(POLICY)
    set_override(store.con, "c", "Silver", None, "partner", "ops")
    console = Console(width=200, record=True, color_system=None)
    console.print(explanation_table(explain(p, store.con, "a", NOW)))
    console.print(preview_table(preview(store.con, p, NOW)))
    console.print(backtest_table(backtest(store.con, p, day(10), NOW, every=5), p.tier_names))
    console.print(overrides_table(list_overrides(store.con)))
    text = console.export_text()
    assert "qualifies for Gold: spend_365d >= 1000" in text
    assert "spend_365d" in text and "1200.0000" in text
    assert re.search(r"not graded before\W+3", text)
    assert "partner" in text and "ops" in text


def test_explain_at_a_later_date_decides_the_days_in_between_as_syncs_would_and_writes_nothing(store: Store) -> None:
    _seed(store)
    p = compiled({**POLICY, "downgrade": {"grace_days": 30, "max_levels": 1}, "points": {"per_currency_unit": "1"}})
    p.grade(store.con, day(19))
    tables = ("policy_tier_state", "policy_tier_clock", "policy_points_ledger", "policy_member_metrics")
    before = {t: store.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}
    later = NOW + timedelta(days=200)  # a's 400 order left the window 165 days ago: grace over, dropped twice
    explained = {m: explain(p, store.con, m, later) for m in ("a", "b", "c")}
    assert {t: store.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables} == before
    p.grade(store.con, later)
    synced = store.graded("tier, tier_since, previous_tier, points, reasons")
    for m, ex in explained.items():
        g = ex.grades
        assert (g["tier"].value, g["points"].value, g["tier"].reason) == (
            synced[m][0],
            synced[m][3],
            json.loads(synced[m][4])["tier"],
        )
    # a's 800 order left the window on day 165: 30 days of grace, then Silver, which its 400 order still gives
    assert synced["a"][:3] == ("Silver", (NOW + timedelta(days=195)).date(), "Gold")
    assert explained["a"].decision == {
        "move": "stay",
        "rule": "entry",
        "held_tier": "Silver",
        "qualifies_for": "Silver",
    }
