"""Discovery through the entry point, settings validation with key paths, and ``check``."""

from __future__ import annotations

import os
import textwrap

import pytest
from crmsync_generic_csv import CsvConnector, CsvSettings
from pydantic import ValidationError

from crmsync.connector import Capability
from crmsync.errors import ConfigError
from crmsync.plugins import PluginHost
from crmsync.settings import load_settings, validate_connectors


@pytest.fixture
def csv_host() -> PluginHost:
    host = PluginHost()
    host.load_entrypoints()
    return host


def test_plugin_is_discovered_through_its_entry_point(csv_host):
    spec = csv_host.connector_spec("generic_csv")
    assert spec is not None
    assert spec.settings_model is CsvSettings and spec.factory is CsvConnector
    assert spec.capabilities == CsvConnector.capabilities
    assert {Capability.PULL_ORDERS, Capability.PUSH_PROFILES, Capability.INCREMENTAL} <= spec.capabilities
    assert csv_host.plugins["generic_csv"].status == "ok"


def write_config(tmp_path, table: str) -> os.PathLike[str]:
    path = tmp_path / "crmsync.toml"
    body = f"""
        [sync]
        members = "shop"
        orders = ["shop"]

        [connectors.shop]
        plugin = "generic_csv"
        {table}
    """
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_missing_file_is_reported_with_its_key_path(tmp_path, csv_host):
    (tmp_path / "customers.csv").write_text("external_id\nc1\n", encoding="utf-8")
    config = write_config(tmp_path, 'members_path = "customers.csv"\norders_path = "data/orders.csv"')

    with pytest.raises(ConfigError) as info:
        load_settings(config, host=csv_host)
    assert any(p.startswith("connectors.shop.orders_path: file not found") for p in info.value.problems)
    assert not any("members_path" in p for p in info.value.problems)


def test_paths_are_resolved_relative_to_the_config_file(tmp_path, csv_host):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text("x\n", encoding="utf-8")
    config = write_config(tmp_path, 'orders_path = "data/orders.csv"\noutput_path = "out/profiles.csv"')
    settings = load_settings(config)
    validate_connectors(settings, csv_host)

    shop = settings.connector_settings["shop"]
    assert isinstance(shop, CsvSettings)
    assert shop.orders_path == tmp_path / "data" / "orders.csv"
    assert shop.output_path == tmp_path / "out" / "profiles.csv"
    assert shop.default_rejects_path() == tmp_path / "out" / "profiles.rejects.csv"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"orders_path": "nope.csv"}, "orders_path\n  Value error, file not found"),
        ({"output_path": "p.csv", "orders_columns": {"sum": "x"}}, "orders_columns.sum: unknown field"),
        ({"output_path": "p.csv", "encoding": "klingon"}, "unknown encoding 'klingon'"),
        ({"output_path": "p.csv", "status_map": {"done": "shipped"}}, "status_map.done"),
        ({"output_path": "p.csv", "push_fields": ["tier", "karma"]}, "unknown pushed field"),
        ({"output_path": "p.csv", "delimiter": ",,"}, "delimiter"),
        ({"output_path": "p.csv", "batch_size": 0}, "batch_size"),
        ({"output_path": "p.csv", "colour": "red"}, "colour\n  Extra inputs are not permitted"),
        ({}, "set at least one of members_path"),
    ],
)
def test_settings_errors_name_the_key(tmp_path, table, expected):
    with pytest.raises(ValidationError) as info:
        CsvSettings.model_validate(table, context={"base_dir": tmp_path})
    assert expected in str(info.value)


def test_check_reports_files_headers_and_output_folder(make_connector, write_csv, tmp_path):
    write_csv("customers.csv", "external_id,email\nc1,a@x.com")
    write_csv("orders.csv", "order_id,amount\nA,1")
    connector = make_connector(members_path="customers.csv", orders_path="orders.csv", output_path="out/p.csv")

    results = {r.name: r for r in connector.check()}

    assert results["shop: members file"].ok
    assert not results["shop: orders file"].ok
    assert "'external_id'" in results["shop: orders file"].detail  # the missing column is named
    assert results["shop: output file"].ok
    assert not (tmp_path / "out").exists()  # check never writes


def test_check_reports_an_output_folder_that_cannot_be_created(make_connector, tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be", encoding="utf-8")
    results = {r.name: r for r in make_connector(output_path="blocker/p.csv").check()}
    assert not results["shop: output file"].ok
    assert "cannot write" in results["shop: output file"].detail


def test_check_reports_a_file_removed_after_validation(make_connector, write_csv):
    path = write_csv("customers.csv", "external_id\nc1")
    connector = make_connector(members_path="customers.csv")
    path.unlink()
    [result] = [r for r in connector.check() if r.name == "shop: members file"]
    assert not result.ok and "cannot read" in result.detail
