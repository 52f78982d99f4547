"""Every TOML example in docs/policy.md is a policy that loads and compiles."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from crmsync.policy import Policy, compile_policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
BLOCKS = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_reference_has_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example{i}" for i in range(len(BLOCKS))])
def test_example_loads_and_compiles(block: str) -> None:
    data = tomllib.loads(block)
    assert set(data) == {"policy"}, "an example shows [policy...] tables only"
    compiled = compile_policy(Policy.model_validate(data["policy"]), timezone="Asia/Shanghai")
    assert compiled.version
