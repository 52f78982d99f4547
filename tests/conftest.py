from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crmsync.plugins import PluginHost
from tests.support import WORLDS, MemoryPlugin

pytest_plugins = ["pytester"]

MEMORY_CONFIG = """
[store]
path = "store.duckdb"

[sync]
members = "crm"
orders = ["crm"]
activities = ["crm"]
push = ["crm"]
base_currency = "EUR"

[connectors.crm]
plugin = "memory"

[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 1000"

[[policy.tiers]]
name = "Silver"
condition = "spend_365d >= 200 or orders_lifetime >= 3"

[[policy.tiers]]
name = "Bronze"
"""


@pytest.fixture
def host() -> Iterator[PluginHost]:
    """A fresh plugin host with the in-memory connector plugin (no entry points)."""
    h = PluginHost()
    h.register(MemoryPlugin(), "memory")
    WORLDS.clear()
    yield h
    WORLDS.clear()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "crmsync.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def memory_config(write_config: Callable[[str], Path]) -> Path:
    return write_config(MEMORY_CONFIG)
