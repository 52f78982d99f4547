"""A third-party connector with ``SecretStr`` settings (top-level and nested): commands that work on the store alone
run without its secrets, commands that call it name each missing one, and a secret the connector logs while it
starts is masked by the host, which registers every ``SecretStr`` value of its settings itself."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import crmsync_generic_csv
import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

import crmsync
import crmsync.plugins
from crmsync.cli import main
from crmsync.helpers import SecureUrl
from crmsync.plugins import PluginHost

TOKEN = "pat-na1-5f0c2b7e-8d1a-4c3b-9e6f-0a1b2c3d4e5f"
CLIENT_SECRET = "cs-9a8b7c6d5e4f3a2b1c0d"
VARS = {
    "connectors.acme.api_token": "CRMSYNC_CONNECTORS__ACME__API_TOKEN",
    "connectors.acme.auth.client_secret": "CRMSYNC_CONNECTORS__ACME__AUTH__CLIENT_SECRET",
}


class AcmeAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str
    client_secret: SecretStr


class AcmeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: SecureUrl
    api_token: SecretStr
    auth: AcmeAuth
    webhook_secret: SecretStr | None = None


class AcmeConnector(crmsync.Connector):
    capabilities = frozenset({crmsync.Capability.PUSH_PROFILES})

    def __init__(self, settings: AcmeSettings, context: crmsync.ConnectorContext) -> None:
        super().__init__(settings, context)
        token = settings.api_token.get_secret_value()
        context.logger.info("acme: starting with token %s and secret %s", token, settings.auth.client_secret)
        context.logger.info("acme: client secret %s", settings.auth.client_secret.get_secret_value())

    def check(self) -> list[crmsync.CheckResult]:
        return [crmsync.CheckResult("acme fields", True)]

    def push(self, changes):
        return [crmsync.RecordResult(c.member_id, True) for c in changes]


class AcmePlugin:
    @crmsync.hookimpl
    def crmsync_connectors(self) -> Iterator[crmsync.ConnectorSpec]:
        yield crmsync.ConnectorSpec("acmecrm", AcmeSettings, AcmeConnector, capabilities=AcmeConnector.capabilities)


CONFIG = """
[store]
path = "store.duckdb"

[sync]
members = "shop"
orders = ["shop"]
push = ["shop", "acme"]

[connectors.shop]
plugin = "generic_csv"
members_path = "customers.csv"
orders_path = "orders.csv"
output_path = "out/profiles.csv"

[connectors.acme]
plugin = "acmecrm"
base_url = "http://localhost:8765/api"
auth = {{ client_id = "acme-client" }}

[logging]
level = "INFO"
file = "{log}"

[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 100"

[[policy.tiers]]
name = "Bronze"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    host = PluginHost()
    host.register(crmsync_generic_csv, "generic_csv")
    host.register(AcmePlugin(), "acme_plugin")
    monkeypatch.setattr(crmsync.plugins, "_HOST", host)
    for var in VARS.values():
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "customers.csv").write_text("external_id,email\nC1,a@example.com\n")
    (tmp_path / "orders.csv").write_text("external_id,member_external_id,placed_at,amount,currency\n")
    path = tmp_path / "crmsync.toml"
    path.write_text(CONFIG.format(log=tmp_path / "crmsync.log"))
    yield path
    logging.getLogger("crmsync").handlers.clear()


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.parametrize("command", [["runs", "--json"], ["rejects"], ["history", "C1"]], ids=" ".join)
def test_local_commands_run_without_the_plugins_secrets(
    config: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, err = run(config, capsys, *command)
    assert code == 0, err
    assert "missing" not in err
    if command[0] == "runs":
        assert json.loads(out) == []


@pytest.mark.parametrize("command", [["check"], ["sync"]], ids=" ".join)
def test_commands_that_call_it_name_each_missing_secret(
    config: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    code, out, err = run(config, capsys, *command)
    assert code == 2, out + err
    for key, var in VARS.items():
        assert f"{key}: missing (required; a secret: set it in the environment as {var})" in err
    assert "webhook_secret" not in err  # optional


def test_secrets_the_connector_logs_as_it_starts_are_masked(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARS["connectors.acme.api_token"], TOKEN)
    monkeypatch.setenv(VARS["connectors.acme.auth.client_secret"], CLIENT_SECRET)
    code, out, err = run(config, capsys, "check")
    assert code == 0, out + err
    log = (config.parent / "crmsync.log").read_text()
    assert "acme: starting with token *** and secret **********" in log
    assert "acme: client secret ***" in log
    for secret in (TOKEN, CLIENT_SECRET):
        assert secret not in log + out + err
