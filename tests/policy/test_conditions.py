"""The condition language: parsing, checks with key paths and columns, compilation, evaluation in SQL."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_support import Store, compiled, day, grade

from crmsync import MetricSpec
from crmsync.errors import PolicyError
from crmsync.policy import Policy, compile_policy
from crmsync.policy.expr import MAX_DEPTH, MAX_LENGTH, ExprError, parse


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
    # what a tier condition may read is the tier held until now
    assert problems == ["policy.tiers[0].condition: unknown metric 'tier' at column 1 (did you mean held_tier?)"]


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


@pytest.mark.parametrize(
    "points",
    [{}, {"per_currency_unit": "1", "expiry": "end_of_year"}, {"per_currency_unit": "1", "expiry_days": 30}],
)
def test_one_zone_counts_days_and_year_ends_and_is_in_the_version_unless_utc(points: dict) -> None:
    data = {"points": points, "tags": {"x": "orders_lifetime > 1"}}
    utc, default = compiled(data, tz="UTC"), compiled(data)
    shanghai, kolkata = compiled(data, tz="Asia/Shanghai"), compiled(data, tz="Asia/Kolkata")
    assert utc.version == default.version  # stores graded before zones counted keep their version
    assert len({utc.version, shanghai.version, kolkata.version}) == 3  # days end elsewhere in every other zone
    assert shanghai.tz.key == "Asia/Shanghai" and not hasattr(shanghai, "timezone")  # one setting, not two


# ------------------------------------------------------------------ what check accepts, grading can run

DIGITS_OF_OTHER_SCRIPTS = st.characters(categories=["Nd"]).filter(lambda c: c not in "0123456789")


@settings(max_examples=30, deadline=None)
@given(digit=DIGITS_OF_OTHER_SCRIPTS, where=st.sampled_from(["spend_365d >= 1{}0", "orders_{}0d > 1", "{} = 1"]))
def test_digits_of_other_scripts_are_refused_at_their_column(digit: str, where: str) -> None:
    text = where.format(digit)
    problems = _problems({"tiers": [{"name": "Gold", "condition": text}, {"name": "Bronze"}]})
    column = text.index(digit) + 1
    assert problems == [
        f"policy.tiers[0].condition: unexpected character {digit!r} at column {column} "
        "(write numbers with the digits 0-9)"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "year(null) > 2000",
        "month(null) = 3",
        "day(null) = 1",
        "days_since(null) > 3",
        "days_until(null) < 3",
        "year(coalesce(null, last_order_at)) = 2025 or month(null) is null",
    ],
)
def test_date_functions_of_null_grade_as_null(store: Store, text: str) -> None:
    store.member("m")
    store.order("m", "10", day(1))
    assert grade(store, {"tags": {"t": text, "always": "orders_lifetime = 1"}}, columns="tags")["m"] == [
        "always",
        *(["t"] if "is null" in text else []),
    ]


def quoted(text: str) -> str:
    """A string literal of the condition language (a quote doubled, a backslash escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


KEY_CHARS = st.sampled_from(list("\\'\"./~[]$* aé0"))
attribute_keys = st.one_of(st.text(max_size=10), st.text(KEY_CHARS, max_size=6), st.sampled_from(["a/b", "a.b", "~1"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pairs=st.dictionaries(
        attribute_keys, st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6), max_size=8
    )
)
def test_attr_reads_any_key_exactly(store: Store, pairs: dict[str, str]) -> None:
    """Backslashes, quotes, dots, slashes, tildes and brackets in a key name only that key: one member per key."""
    store.con.execute("DELETE FROM members")
    attributes = [{key: value, "a": {"b": "nested"}, "~": "tilde"} for key, value in pairs.items()]
    for i, attrs in enumerate(attributes):
        store.member(f"m{i}", attributes=json.dumps(attrs))
    tags = {f"t{i}": f"attr({quoted(key)}) = {quoted(value)}" for i, (key, value) in enumerate(pairs.items())}
    graded = grade(store, {"tags": tags}, columns="tags") if tags else {}
    for j, attrs in enumerate(attributes):
        wanted = [f"t{i}" for i, (key, value) in enumerate(pairs.items()) if attrs.get(key) == value]
        assert sorted(graded[f"m{j}"]) == sorted(wanted), (attrs, tags)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("not " * 3000 + "true", 401),
        (" and ".join(["true"] * 2000), None),
        (" + ".join(["1"] * 3000) + " > 0", None),
        ("- " * 3000 + "1 > 0", 199),
        ("not (" * 1000 + "true" + ")" * 1000, 501),
        ("abs(" * 500 + "1" + ")" * 500 + " > 0", None),
    ],
)
def test_pathological_nesting_is_refused_not_a_recursion_error(text: str, column: int | None) -> None:
    problems = _problems({"tiers": [{"name": "Gold", "condition": text}, {"name": "Bronze"}]})
    assert len(problems) == 1
    assert problems[0].startswith(
        f"policy.tiers[0].condition: condition nests more than {MAX_DEPTH} levels deep at column "
    )
    if column is not None:
        assert f"at column {column} " in problems[0]


def test_nesting_up_to_the_limit_grades(store: Store) -> None:
    store.member("m")
    text = "not " * (MAX_DEPTH - 3) + "false"  # an odd number of nots, and the literal: within the limit
    assert grade(store, {"tags": {"t": text}}, columns="tags")["m"] == ["t"]


def test_overlong_condition_is_refused() -> None:
    text = "orders_lifetime in (" + ", ".join(["1"] * (MAX_LENGTH // 3)) + ")"
    problems = _problems({"tags": {"t": text}})
    assert problems == [f"policy.tags.t: condition is {len(text)} characters long (at most {MAX_LENGTH})"]


def test_what_the_database_refuses_is_reported_at_its_column() -> None:
    # a constant that overflows the database's integers is found when the policy is checked, not in a run
    problems = _problems({"tags": {"t": "orders_lifetime > 1 and 999999999999999999 * 999999999999999999 > 1"}})
    assert len(problems) == 1, problems
    assert problems[0].startswith("policy.tags.t: the database cannot evaluate this (Out of Range Error: Overflow")
    assert problems[0].endswith(" at column 25")
