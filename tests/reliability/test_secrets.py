"""Secrets: a Zoho sync (the command line, in process, against the fake org) never shows the client secret, the
refresh token or an access token in stdout, stderr, the log file, the JSON report, an error or the store (the
token cache is sealed); the store file is private; the token only goes to the data centre's Zoho hosts over HTTPS."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

import crmsync.plugins
from crmsync.cli import main
from crmsync.plugins import PluginHost
from tests.zoho.fake import CLIENT_SECRET, REFRESH_TOKEN

from .zoho_harness import FaultyZoho, _Plugin, secrets_env, seed, write_config

ZOHO_US_HOSTS = {"accounts.zoho.com", "www.zohoapis.com", "content.zohoapis.com"}


def _invoke(
    config: Path, zoho: FaultyZoho, monkeypatch: pytest.MonkeyPatch, *args: str, verbose: bool = True
) -> tuple[int, str, str]:
    """Run the command line's entry point (errors mapped to exit codes as for a user); stdout and everything."""
    host = PluginHost()
    host.register(_Plugin(zoho), "zoho-fault-harness")
    monkeypatch.setattr(crmsync.plugins, "get_host", lambda: host)
    runner = CliRunner()
    code: int | str | None = 0
    with runner.isolation() as (out, err, _):
        try:
            main(["--config", str(config), *(["--verbose"] if verbose else []), *args])
        except SystemExit as exc:
            code = exc.code
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return int(code or 0), stdout, stdout + stderr


def _store_text(path: Path) -> tuple[str, str]:
    """Every text value in the store, outside the connector state; and the connector state."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        parts = []
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall():
            if table != "connector_state":
                parts += [str(r) for r in con.execute(f"SELECT * FROM {table}").fetchall()]
        state = str(con.execute("SELECT * FROM connector_state").fetchall())
        return "\n".join(parts), state
    finally:
        con.close()


def test_secrets_never_leak_and_the_token_stays_with_zoho(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_env(monkeypatch)
    zoho = FaultyZoho()
    seed(zoho.fake, contacts=30, orders=40)
    config = write_config(tmp_path)
    code, stdout, first = _invoke(config, zoho, monkeypatch, "sync", "--json")
    assert code == 0, first
    report = json.loads(stdout)
    assert report["pushed"] == {"crm": 30}
    tokens = list(zoho.fake.access)
    # a second run whose token has died and whose refresh token is then refused: the error path
    zoho.fake.expire_access_tokens()
    zoho.fake.valid_refresh.clear()
    zoho.fake.add_order(next(iter(zoho.fake.records["Contacts"])), "10.00")
    code2, _, second = _invoke(config, zoho, monkeypatch, "sync", "--json")
    assert (code2 == 2 and "credentials" in second.lower()) or "invalid_code" in second, second
    assert tokens
    log = (tmp_path / "crmsync.log").read_text(encoding="utf-8")
    store, state = _store_text(tmp_path / "store.duckdb")
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *tokens):
        for name, text in (("output", first + second), ("log", log), ("store", store)):
            assert secret not in text, f"a secret is in the {name}"
    assert CLIENT_SECRET not in state and REFRESH_TOKEN not in state
    assert not any(t in state for t in tokens)  # the token cache is sealed with the secrets of the environment
    assert "sealed:zoho:crm:token" in state
    mode = stat.S_IMODE((tmp_path / "store.duckdb").stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)
    # where the token and the refresh credentials went
    assert zoho.hosts and all(scheme == "https" for scheme, _, _, _ in zoho.hosts)
    assert {host for _, host, _, _ in zoho.hosts} <= ZOHO_US_HOSTS
    assert {host for _, host, auth, _ in zoho.hosts if auth} <= {"www.zohoapis.com", "content.zohoapis.com"}
    assert {host for _, host, _, refresh in zoho.hosts if refresh} == {"accounts.zoho.com"}


def test_plain_http_is_refused_except_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_env(monkeypatch)
    zoho = FaultyZoho()
    seed(zoho.fake, contacts=3, orders=2)
    config = write_config(tmp_path, "")
    text = config.read_text().replace('plugin = "zoho"', 'plugin = "zoho"\napi_url = "http://www.zohoapis.com"')
    config.write_text(text)
    code, _, output = _invoke(config, zoho, monkeypatch, "sync", verbose=False)
    assert code == 2 and "https" in output and "Traceback" not in output, output
    assert not zoho.hosts  # nothing was sent
