from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def crmsync_logger() -> Iterator[logging.Logger]:
    """Commands configure the ``crmsync`` logger for their process (handlers on the streams of the moment); each
    test gets the logger back as it was, so no later test logs to a stream that is gone."""
    logger = logging.getLogger("crmsync")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield logger
    logger.handlers, logger.level, logger.propagate = handlers, level, propagate


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
