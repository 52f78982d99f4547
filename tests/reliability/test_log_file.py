"""The log file: a Zoho sync (the command line, in process, against the fake org with faults) leaves in
``[logging] file`` its retries and back-offs, token renewals, refused tokens, 4xx/5xx answers and give-ups, with
method, host and path only: never a query value, a token or a secret."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import crmsync.plugins
from crmsync.cli import main
from crmsync.plugins import PluginHost
from tests.zoho.fake import CLIENT_SECRET, REFRESH_TOKEN, err

from .zoho_harness import MAX_RETRIES, FaultyZoho, _Plugin, secrets_env, seed, write_config

API = "www.zohoapis.com/crm/v8"


def _invoke(config: Path, zoho: FaultyZoho, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    host = PluginHost()
    host.register(_Plugin(zoho), "zoho-fault-harness")
    monkeypatch.setattr(crmsync.plugins, "get_host", lambda: host)
    code: int | str | None = 0
    with CliRunner().isolation() as (out, err_, _):
        try:
            main(["--config", str(config), *args])
        except SystemExit as exc:
            code = exc.code
        sys.stdout.flush()
        sys.stderr.flush()
        return int(code or 0), out.getvalue().decode() + err_.getvalue().decode()


def _first(n: int, answer: Callable[[httpx.Request], httpx.Response]) -> Callable[..., Any]:
    return lambda zoho, request, i: answer(request) if n == 0 or i <= n else None


def _config(tmp_path: Path, level: str) -> Path:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('level = "DEBUG"', f'level = "{level}"'))
    return config


FAULTS = {
    "read Contacts": _first(2, lambda r: httpx.Response(503)),
    "read Sales_Orders": _first(1, lambda r: httpx.Response(429, headers={"Retry-After": "7"})),
    "update Contacts": _first(1, lambda r: err(401, "INVALID_TOKEN", "invalid oauth token")),
}


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_log_file_gets_retries_renewals_and_error_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    secrets_env(monkeypatch)
    zoho = FaultyZoho(faults=dict(FAULTS))
    seed(zoho.fake, contacts=30, orders=40)
    config = _config(tmp_path, level)
    code, output = _invoke(config, zoho, monkeypatch, "sync")
    assert code == 0, output
    log = (tmp_path / "crmsync.log").read_text(encoding="utf-8")
    lines = log.splitlines()
    expected = [
        r"INFO crmsync\.auth: access token renewed at .*accounts\.zoho\.com.* \(valid for \d+ s\)",
        rf"INFO crmsync\.http: GET {API}/Contacts: HTTP 503 in \d+ ms",
        rf"INFO crmsync\.http: GET {API}/Contacts: HTTP 503; retry 1 of {MAX_RETRIES} in [\d.]+ s",
        rf"INFO crmsync\.http: GET {API}/Contacts: HTTP 503; retry 2 of {MAX_RETRIES} in [\d.]+ s",
        rf"INFO crmsync\.http: GET {API}/Sales_Orders: HTTP 429; retry 1 of {MAX_RETRIES} in 7\.0 s",
        rf"INFO crmsync\.auth: PUT {API}/Contacts: the access token was refused \(HTTP 401\); renewing it once",
        r"INFO crmsync\.cli: sync run \S+: ok, \d+ pulled, 30 changed, 30 pushed, 0 rejected",
    ]
    for pattern in expected:
        assert any(re.search(pattern, line) for line in lines), f"no line matches {pattern!r}:\n{log}"
    # every answer at DEBUG, only the failed ones at INFO
    answers_200 = [line for line in lines if re.search(r": HTTP 200 in \d+ ms$", line)]
    assert bool(answers_200) == (level == "DEBUG"), log
    assert sum(zoho.seen.values()) >= len(answers_200)
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, *zoho.fake.access):
        assert secret not in log
    assert "?" not in "".join(line.split(": ", 1)[-1] for line in lines if "crmsync.http" in line)  # no queries
    assert "Traceback" not in output


def test_verbose_logs_every_answer_at_debug_and_give_ups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_env(monkeypatch)
    zoho = FaultyZoho(faults={"read Contacts": _first(0, lambda r: httpx.Response(503))})
    seed(zoho.fake, contacts=5, orders=3)
    config = _config(tmp_path, "WARNING")
    code, output = _invoke(config, zoho, monkeypatch, "--verbose", "sync")
    assert code == 3, output
    log = (tmp_path / "crmsync.log").read_text(encoding="utf-8")
    attempts = MAX_RETRIES + 1
    assert re.search(rf"GET {API}/Contacts: HTTP 503; gave up after {attempts} attempt\(s\)", log), log
    assert len(re.findall(rf"GET {API}/Contacts: HTTP 503 in \d+ ms", log)) == attempts
    assert re.search(r"DEBUG crmsync\.http: POST accounts\.zoho\.com/oauth/v2/token: HTTP 200 in \d+ ms", log), log
    assert re.search(r"INFO crmsync\.cli: sync run \S+: failed", log), log


def test_refused_credentials_are_logged_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_env(monkeypatch)
    zoho = FaultyZoho()
    zoho.fake.valid_refresh.clear()
    seed(zoho.fake, contacts=3, orders=1)
    config = _config(tmp_path, "INFO")
    code, output = _invoke(config, zoho, monkeypatch, "sync")
    assert code == 2, output
    log = (tmp_path / "crmsync.log").read_text(encoding="utf-8")
    assert len(re.findall(r"INFO crmsync\.auth: the OAuth credentials were refused by .*accounts\.zoho\.com", log)) == 1
    assert "Traceback" not in output and CLIENT_SECRET not in log + output and REFRESH_TOKEN not in log + output
