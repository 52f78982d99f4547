from __future__ import annotations

import errno
import os
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


# ------------------------------------------------------------------ settings a person must fix: exit 2, the key named

CSV_CONFIG = """
[store]
path = "store.duckdb"

[sync]
members = "shop"
orders = ["shop"]
push = ["shop"]

[connectors.shop]
plugin = "generic_csv"
members_path = "customers.csv"
orders_path = "orders.csv"
output_path = "out/profiles.csv"
rejects_path = "out/rejects.csv"

[logging]
file = "out/crmsync.log"
"""


@pytest.fixture
def csv_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import crmsync_generic_csv

    import crmsync.plugins

    host = PluginHost()
    host.register(crmsync_generic_csv, "generic_csv")
    monkeypatch.setattr(crmsync.plugins, "_HOST", host)
    (tmp_path / "customers.csv").write_text("external_id,email\nC1,a@example.com\n")
    (tmp_path / "orders.csv").write_text("external_id,member_external_id,placed_at,amount\nO1,C1,2025-01-01,10\n")
    (tmp_path / "out").mkdir()
    path = tmp_path / "crmsync.toml"
    path.write_text(CSV_CONFIG)
    return path


WORDS = {
    "own": "; crmsync would write into its own input",
    "not_store": "exists and is not a crmsync store (a DuckDB database file); give the store a file of its own",
    "size": "is not a memory size: write a number and a unit, like '2GB' or '512MB', or a share of RAM like '50%'",
    "list": '["a", "b"]',
    "table": '{"key": "value"}',
}


def _problems(path: Path) -> list[str]:
    import crmsync.plugins

    with pytest.raises(ConfigError) as info:
        load_settings(path, host=crmsync.plugins._HOST)
    assert info.value.exit_code == ExitCode.CONFIG
    return info.value.problems


def _with(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            'path = "store.duckdb"',
            'path = "customers.csv"',
            "store.path: {d}/customers.csv is also read as connectors.shop.members_path{own}",
        ),
        (
            'path = "store.duckdb"',
            'path = "customers.csv"',
            "store.path: {d}/customers.csv {not_store}",
        ),
        (
            'rejects_path = "out/rejects.csv"',
            'rejects_path = "orders.csv"',
            "connectors.shop.rejects_path: {d}/orders.csv is also read as connectors.shop.orders_path{own}",
        ),
        (
            'output_path = "out/profiles.csv"',
            'output_path = "./out/../customers.csv"',
            "connectors.shop.output_path: {d}/out/../customers.csv is also read as connectors.shop.members_path{own}",
        ),
        (
            'output_path = "out/profiles.csv"',
            'output_path = "store.duckdb"',
            "connectors.shop.output_path: {d}/store.duckdb is also written as store.path; give each its own file",
        ),
        (
            'output_path = "out/profiles.csv"',
            'output_path = "out"',
            "connectors.shop.output_path: {d}/out is a folder; give a file name",
        ),
        ('orders_path = "orders.csv"', 'orders_path = "o*.csv"\nmembers_columns = {}', None),
        ('file = "out/crmsync.log"', 'file = "out"', "logging.file: {d}/out is a folder; give a file name"),
        (
            'path = "store.duckdb"',
            'path = "orders.csv/store.duckdb"',
            "store.path: {d}/orders.csv/store.duckdb lies under {d}/orders.csv, which is a file",
        ),
        (
            'path = "store.duckdb"',
            'path = "store.duckdb"\nmemory_limit = "lots; DROP"',
            "store.memory_limit: 'lots; DROP' {size}",
        ),
    ],
)
def test_paths_and_limits_that_lose_data_or_fail_late_are_refused(
    csv_config: Path, old: str, new: str, problem: str | None
) -> None:
    path = _with(csv_config, old, new)
    if problem is None:  # an output matched by an input's pattern
        (csv_config.parent / "out" / "profiles.csv").touch()
        path = _with(path, 'orders_path = "o*.csv"', 'orders_path = "out/*.csv"')
        problem = (
            "connectors.shop.output_path: {d}/out/profiles.csv matches {d}/out/*.csv, "
            "read as connectors.shop.orders_path{own}"
        )
    assert problem.format(d=csv_config.parent, **WORDS) in _problems(path)


def test_a_folder_the_user_cannot_write_is_refused(csv_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = csv_config.parent / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    path = _with(csv_config, 'path = "store.duckdb"', 'path = "locked/new/store.duckdb"')
    assert _problems(path) == [
        f"store.path: cannot create {locked}/new/store.duckdb: the folder {locked} is not writable"
    ]


@pytest.mark.parametrize(
    ("var", "raw", "problem"),
    [
        (
            "CRMSYNC_SYNC__PUSH",
            "[shop",
            "sync.push: CRMSYNC_SYNC__PUSH is not valid JSON (Expecting value at character 2); write it like {list}",
        ),
        (
            "CRMSYNC_SYNC__EXCHANGE_RATES",
            "{USD: 1",
            "sync.exchange_rates: CRMSYNC_SYNC__EXCHANGE_RATES is not valid JSON (Expecting property name enclosed in "
            "double quotes at character 2); write it like {table}",
        ),
        ("CRMSYNC_SYNC__EXCHANGE_RATES", "[1, 2]", "sync.exchange_rates: Input should be a valid dictionary"),
        (
            "CRMSYNC_STORE__MEMORY_LIMIT",
            "lots; DROP",
            "store.memory_limit: 'lots; DROP' {size}",
        ),
    ],
)
def test_bad_environment_values_name_key_and_variable(
    csv_config: Path, monkeypatch: pytest.MonkeyPatch, var: str, raw: str, problem: str
) -> None:
    monkeypatch.setenv("CRMSYNC_SYNC__BASE_CURRENCY", "USD")  # a plain value next to it is not blamed
    monkeypatch.setenv(var, raw)
    assert _problems(csv_config) == [problem.format(**WORDS)]


@pytest.mark.parametrize(
    ("error", "code", "key"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/srv/x"), 2, "store.path"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/x"), 2, "store.path"),
        (OSError(errno.ENOSPC, "No space left on device"), 3, "store.path"),
    ],
)
def test_a_store_that_cannot_be_created_names_the_key(
    csv_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: OSError,
    code: int,
    key: str,
) -> None:
    from crmsync.cli import main
    from crmsync.store import Store

    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Store, "open", refuse)
    with pytest.raises(SystemExit) as info:
        main(["--config", str(csv_config), "runs"])
    err = capsys.readouterr().err
    assert info.value.code == code
    assert err.startswith(f"error: {key}: cannot use {csv_config.parent}/store.duckdb (") and "Traceback" not in err


def test_a_log_file_that_cannot_be_opened_names_the_key(
    csv_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from crmsync.cli import main

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(csv_config.parent / "out" / "crmsync.log"))

    monkeypatch.setattr(logging.FileHandler, "__init__", refuse)
    with pytest.raises(SystemExit) as info:
        main(["--config", str(csv_config), "runs"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith(f"error: logging.file: cannot use {csv_config.parent}/out/crmsync.log (Permission denied)")


def test_an_output_of_one_connector_read_by_another_is_refused(csv_config: Path) -> None:
    (csv_config.parent / "out" / "profiles.csv").write_text("external_id\nC1\n")
    text = csv_config.read_text().replace(
        "[logging]", '[connectors.again]\nplugin = "generic_csv"\nmembers_path = "out/profiles.csv"\n\n[logging]'
    )
    csv_config.write_text(text)
    d = csv_config.parent
    assert _problems(csv_config) == [
        f"connectors.shop.output_path: {d}/out/profiles.csv is also read as connectors.again.members_path"
        + WORDS["own"]
    ]
