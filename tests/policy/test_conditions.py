"""The condition language: parsing, checks with key paths and columns, compilation, evaluation in SQL."""

from __future__ import annotations

import pytest
from policy_support import Store, compiled, day, grade

from crmsync import MetricSpec
from crmsync.errors import PolicyError
from crmsync.policy import Policy, compile_policy
from crmsync.policy.expr import ExprError, parse


def _problems(data: dict) -> list[str]:
    with pytest.raises(PolicyError) as info:
        compiled(data)
    return info.value.problems


def test_unknown_metric_names_key_path_column_and_suggestion() -> None:
    data = {
        "metrics": {"windows": [90, 365]},
        "tiers": [
            {"name": "Gold", "condition": "spend_365d >= 2000"},
            {"name": "Silver", "condition": "orders_90d > 1 and spend_356d >= 500"},
            {"name": "Bronze"},
        ],
    }
    assert _problems(data) == [
        "policy.tiers[1].condition: unknown metric 'spend_356d' at column 20 (did you mean spend_365d?)"
    ]


def test_every_bad_condition_is_reported_at_once() -> None:
    data = {
        "tiers": [{"name": "Gold", "condition": "spend_365d >= "}, {"name": "Bronze"}],
        "tags": {"odd": "tier > 3", "fine": "lifecycle = 'new'", "typo": "lifecyle = 'new'"},
    }
    assert _problems(data) == [
        "policy.tiers[0].condition: condition ends too early at column 15",
        "policy.tags.odd: cannot compare a text with a number at column 8",
        "policy.tags.typo: unknown metric 'lifecyle' at column 1 (did you mean lifecycle?)",
    ]


def test_tier_conditions_cannot_read_the_tier_itself() -> None:
    problems = _problems({"tiers": [{"name": "Gold", "condition": "tier = 'Gold'"}, {"name": "Bronze"}]})
    assert problems == ["policy.tiers[0].condition: unknown metric 'tier' at column 1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spend_lifetime", "a condition must be true or false"),
        ("a $ b", "unexpected character '$' at column 3"),
        ("x in ()", "unexpected ')' at column 7"),
        ("nosuch(1) > 1", "unknown function 'nosuch' at column 1"),
        ("date('31.12.2024') > today()", "date() takes a quoted day"),
        ("days_since(spend_lifetime) > 1", "days_since() needs a date, got a number"),
        ("'a' + 1 > 0", "arithmetic needs numbers, got a text"),
        ("", "empty condition"),
    ],
)
def test_rejected_conditions(text: str, message: str) -> None:
    policy = Policy.model_validate({"tags": {"t": text}})
    with pytest.raises(PolicyError) as info:
        compile_policy(policy)
    assert message in info.value.problems[0]


def test_parse_errors_carry_the_column() -> None:
    with pytest.raises(ExprError) as info:
        parse("orders_lifetime >= 3 and and")
    assert info.value.column == 26


def test_keywords_are_case_insensitive_and_names_may_start_with_keywords(store: Store) -> None:
    store.member("m")
    store.order("m", "10", day(1))
    policy = {
        "tags": {
            "a": "orders_lifetime = 1 AND NOT spend_lifetime < 10 OR false",
            "b": "orders_lifetime IN (1, 2) and lifecycle NOT IN ('potential')",
            "c": "spend_lifetime BETWEEN 10 AND 10.0 and last_order_at IS NOT NULL",
            "d": "(spend_lifetime * 2 - 5) / 3 = 5 and orders_lifetime % 2 = 1 and -spend_lifetime < 0",
            "e": "days_since(last_order_at) = 1 and days_until(first_order_at) = -1",
            "f": "max(spend_lifetime, 50) = 50 and min(spend_lifetime, 50) = 10 and abs(-3) = 3",
            "g": "last_order_at < today() and last_order_at > date('2024-01-01')",
            "h": "spend_lifetime / 0 is null",
            "no": "orders_lifetime in (2, 3) or tier != 'Member'",
        }
    }
    tags = grade(store, policy, columns="tags")["m"]
    assert tags == ["a", "b", "c", "d", "e", "f", "g", "h"]


def test_string_literals_are_escaped(store: Store) -> None:
    store.member("m", attributes='{"region": "O\'Hara", "score": "7", "birthday": "1990-06-30"}')
    policy = {
        "tags": {
            "quote": "attr('region') = 'O''Hara' or attr('region') = \"O'Hara\"",
            "num": "attr_num('score') >= 7",
            "bday": "month(attr_date('birthday')) = month(today()) and day(attr_date('birthday')) = 30",
            "missing": "attr('nope') = 'x'",
        }
    }
    assert grade(store, policy, columns="tags")["m"] == ["bday", "num", "quote"]


def test_plugin_metrics_are_computed_in_sql(store: Store) -> None:
    for m in ("a", "b"):
        store.member(m)
    store.order("a", "10", day(1))
    store.order("a", "30", day(2))
    store.activity("b", "review", day(1))
    specs = (
        MetricSpec("big_orders", "count(*) FILTER (WHERE amount >= 20)"),
        MetricSpec(
            "recent_reviews",
            "count(*) FILTER (WHERE kind = 'review' AND occurred_at > {as_of} - INTERVAL 7 DAY)",
            table="activities",
        ),
    )
    policy = compile_policy(
        Policy.model_validate({"tags": {"big": "big_orders >= 1", "reviewer": "recent_reviews = 1"}}), specs
    )
    policy.grade(store.con, day(0))
    assert store.graded("tags") == {"a": ["big"], "b": ["reviewer"]}


def test_plugin_metric_cannot_shadow_a_builtin() -> None:
    with pytest.raises(PolicyError, match="spend_30d: a plugin metric may not reuse a built-in name"):
        compile_policy(Policy(), [MetricSpec("spend_30d", "sum(amount)")])


def test_version_changes_with_the_policy() -> None:
    a = compiled({"tags": {"x": "orders_lifetime > 1"}})
    b = compiled({"tags": {"x": "orders_lifetime > 2"}})
    assert a.version == compiled({"tags": {"x": "orders_lifetime > 1"}}).version
    assert a.version != b.version
