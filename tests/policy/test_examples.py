"""Every example policy loads, compiles and grades."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from policy_support import NOW, Store, day

from crmsync.policy import Policy, compile_policy

# buyer: 15 orders of 900 within the last 75 days, 15 reviews and 1 comment.
EXPECTED = {
    "retail": "Platinum",  # spend_365d 13500 >= 5000 and orders_365d 15 >= 6
    "b2b": "Strategic",  # orders_90d 15 >= 12
    "community": "Contributor",  # 15 reviews * 25 + 1 comment * 5 = 380 points >= 300
}
EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "policies").glob("*.toml"))


def test_the_three_examples_exist() -> None:
    assert [p.name for p in EXAMPLES] == ["b2b.toml", "community.toml", "retail.toml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_compiles_and_grades(path: Path, store: Store) -> None:
    policy = Policy.model_validate(tomllib.loads(path.read_text(encoding="utf-8"))["policy"])
    compiled = compile_policy(policy)
    store.member("buyer")
    store.member("idle")
    for i in range(15):
        store.order("buyer", "900", day(5 + i * 5))
        store.activity("buyer", "review", day(1 + i))
    store.activity("buyer", "comment", day(1))
    compiled.grade(store.con, NOW)
    tiers = store.graded("tier")
    assert tiers["idle"] == compiled.tier_names[-1]
    assert tiers["buyer"] == EXPECTED[path.stem]
