from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.errors import ConfigError, ExitCode
from crmsync.plugins import PluginHost
from crmsync.settings import find_config, load_settings


def test_valid_config_loads_and_validates_connector_settings(memory_config: Path, host: PluginHost) -> None:
    s = load_settings(memory_config, host=host)
    assert s.sync.members == "crm"
    assert s.store.path == memory_config.parent / "store.duckdb"
    assert s.connector_settings["crm"].batch_size == 2  # type: ignore[attr-defined]
    assert [t.name for t in s.policy.tiers] == ["Gold", "Silver", "Bronze"]


def test_environment_overrides_file_with_nested_keys(
    memory_config: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMSYNC_SYNC__BASE_CURRENCY", "USD")
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__BATCH_SIZE", "7")
    s = load_settings(memory_config, host=host)
    assert s.sync.base_currency == "USD"
    assert s.connector_settings["crm"].batch_size == 7  # type: ignore[attr-defined]
    assert s.connectors["crm"]["plugin"] == "memory"  # env merged into the table, not replacing it


def test_lookup_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRMSYNC_CONFIG", raising=False)
    assert find_config(None) == Path("crmsync.toml")
    monkeypatch.setenv("CRMSYNC_CONFIG", "/etc/crmsync/prod.toml")
    assert find_config(None) == Path("/etc/crmsync/prod.toml")
    assert find_config("x.toml") == Path("x.toml")


def test_every_problem_reported_with_key_path(write_config, host: PluginHost) -> None:  # type: ignore[no-untyped-def]
    path = write_config(
        """
        [sync]
        members = "crm"
        orders = ["shop"]
        base_currency = "euro"
        timezone = "Mars/Olympus"
        colour = "blue"

        [connectors.crm]
        plugin = "memory"
        """
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, host=host)
    problems = "\n".join(info.value.problems)
    assert "sync.base_currency:" in problems
    assert "sync.timezone: unknown time zone 'Mars/Olympus'" in problems
    assert "sync.colour: unknown key" in problems
    assert info.value.exit_code == ExitCode.CONFIG


def test_unknown_connector_and_plugin_and_bad_connector_setting(write_config, host: PluginHost) -> None:  # type: ignore[no-untyped-def]
    path = write_config(
        """
        [sync]
        members = "crm"
        orders = ["nowhere"]

        [connectors.crm]
        plugin = "memory"
        batch_size = "many"
        """
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, host=host)
    assert any(p.startswith("sync.orders: no connector named 'nowhere'") for p in info.value.problems)

    path = write_config(
        """
        [sync]
        members = "crm"

        [connectors.crm]
        plugin = "memory"
        batch_size = "many"

        [connectors.other]
        plugin = "hubspot"
        """
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, host=host)
    problems = info.value.problems
    assert any(p.startswith("connectors.crm.batch_size:") for p in problems)
    assert any("connectors.other.plugin: unknown connector plugin 'hubspot'" in p for p in problems)


def test_toml_syntax_error_and_missing_file(write_config, tmp_path: Path, host: PluginHost) -> None:  # type: ignore[no-untyped-def]
    path = write_config("[sync\nmembers = 'x'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, host=host)
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "absent.toml", host=host)


def test_policy_errors_name_the_key(write_config, host: PluginHost) -> None:  # type: ignore[no-untyped-def]
    path = write_config(
        """
        [sync]
        members = "crm"
        [connectors.crm]
        plugin = "memory"
        [[policy.tiers]]
        name = "Gold"
        condition = "spend_365d >= 10"
        bogus = 1
        """
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, host=host)
    assert any(p.startswith("policy.tiers.0.bogus: unknown key") for p in info.value.problems)


def test_odd_keys_are_quoted_in_the_key_path(write_config, host: PluginHost) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[store]\n" 0" = 1\n[sync]\nmembers = "crm"\n[connectors.crm]\nplugin = "memory"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, host=host)
    assert info.value.problems == ['store." 0": unknown key (check the spelling)']
