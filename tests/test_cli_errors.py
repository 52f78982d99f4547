"""What a person sees when something goes wrong: one line and where to look for an unexpected error (exit 3, a
traceback only with --verbose), the same exit-2 message for a policy's overflow in every command that grades,
and commands that never call a CRM running without the CRM's secrets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import crmsync_fxiaoke
import crmsync_generic_csv
import crmsync_zoho
import pytest

import crmsync
import crmsync.plugins
from crmsync.cli import main
from crmsync.connector import Stream
from crmsync.plugins import PluginHost
from tests.support import WORLDS, MemoryPlugin, World, member, order


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


class BoomPlugin:
    """Commands that fail in ways crmsync did not foresee."""

    @crmsync.hookimpl
    def crmsync_commands(self) -> Iterator[click.Command]:
        @click.command()
        @click.pass_obj
        def boom(app: object) -> None:
            _ = app.settings  # type: ignore[attr-defined]  # the configuration (and so the log file) is loaded
            raise RuntimeError("first line\nsecond line of a long library message")

        @click.command()
        @click.pass_obj
        def deep(app: object) -> None:
            _ = app.settings  # type: ignore[attr-defined]

            def down(n: int) -> int:
                return down(n + 1) + 1

            down(0)

        yield boom
        yield deep


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    host = PluginHost()
    host.register(MemoryPlugin(), "memory")
    host.register(BoomPlugin(), "boom")
    monkeypatch.setattr(crmsync.plugins, "_HOST", host)
    WORLDS.clear()
    w = WORLDS["crm"] = World()
    for i in range(1, 4):
        w.put(Stream.MEMBERS, member(i))
    w.put(Stream.ORDERS, order("o1", "m1", "1500", 3))
    w.put(Stream.ORDERS, order("o2", "m2", "20", 3))
    yield w
    WORLDS.clear()


def _with_log(config: Path, log: bool) -> Path | None:
    if not log:
        return None
    config.write_text(config.read_text() + '\n[logging]\nfile = "logs/crmsync.log"\n')
    return config.parent / "logs" / "crmsync.log"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("log", [True, False], ids=["log file", "no log file"])
@pytest.mark.parametrize(
    ("command", "kind", "first"),
    [
        (["boom"], "RuntimeError", "first line"),
        (["deep"], "RecursionError", "maximum recursion depth exceeded"),
        (["sync"], "ValueError", "first line"),
    ],
)
def test_unexpected_error_is_one_line_with_where_to_look(
    memory_config: Path,
    world: World,
    capsys: pytest.CaptureFixture[str],
    log: bool,
    command: list[str],
    kind: str,
    first: str,
) -> None:
    def fail() -> None:
        raise ValueError("first line\nsecond line of a long library message")

    world.on_push = fail  # inside a run: the engine records the failure, the command line reports it
    log_file = _with_log(memory_config, log)
    code, _, err = run_main(["--config", str(memory_config), *command], capsys)
    assert code == 3
    assert "Traceback" not in err and "second line" not in err, err
    line = _one_error_line(err)
    where = f"the traceback is in {log_file}; rerun with --verbose to print it" if log_file else "rerun with --verbose"
    assert re.fullmatch(rf"error: unexpected {kind}: {re.escape(first)}.* \({re.escape(where)}.*\)", line), line
    if log_file:
        text = log_file.read_text(encoding="utf-8")
        assert "Traceback (most recent call last)" in text and f"{kind}: " in text

    code, _, err = run_main(["--config", str(memory_config), "--verbose", *command], capsys)
    assert code == 3
    assert "Traceback (most recent call last)" in err and f"{kind}" in err


OVERFLOW = """
[[policy.tiers]]
name = "Gold"
condition = "orders_365d * 999999999999999999 * 999999999999999999 > 1"

[[policy.tiers]]
name = "Bronze"
"""


def test_overflow_gives_the_same_exit_2_message_in_every_command_that_grades(
    write_config, world: World, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import MEMORY_CONFIG

    config = write_config(MEMORY_CONFIG.split("[[policy.tiers]]")[0] + OVERFLOW)
    messages = {}
    for command in (
        ["sync"],
        ["plan"],
        ["preview"],
        ["explain", "m1"],
        ["backtest", "--from", "2025-06-01", "--to", "2025-12-31"],
        ["report", "--from", "2025-06-01", "--to", "2025-12-31"],
        ["export", "out.csv"],
    ):
        code, _, err = run_main(["--config", str(config), *command], capsys)
        assert code == 2, (command, err)
        assert "Traceback" not in err
        messages[command[0]] = _one_error_line(err)
    assert len(set(messages.values())) == 1, messages
    assert messages["sync"].startswith("error: policy: grading failed, a value is out of range (")


# ------------------------------------------------------------------ local commands and CRM secrets

CRM_CONFIG = """
[store]
path = "store.duckdb"

[sync]
members = "shop"
orders = ["shop"]
push = {push}
base_currency = "EUR"

[connectors.shop]
plugin = "generic_csv"
members_path = "customers.csv"
orders_path = "orders.csv"
output_path = "out/profiles.csv"
{crm}
[[policy.tiers]]
name = "Gold"
condition = "spend_365d >= 100"

[[policy.tiers]]
name = "Bronze"
"""
CRMS = """
[connectors.zoho]
plugin = "zoho"
client_id = "1000.CLIENT"

[connectors.fx]
plugin = "fxiaoke"
app_id = "FSAID_1"
user_id = "1000"
"""
SECRETS = {
    "connectors.zoho.client_secret": "CRMSYNC_CONNECTORS__ZOHO__CLIENT_SECRET",
    "connectors.zoho.refresh_token": "CRMSYNC_CONNECTORS__ZOHO__REFRESH_TOKEN",
    "connectors.fx.app_secret": "CRMSYNC_CONNECTORS__FX__APP_SECRET",
    "connectors.fx.permanent_code": "CRMSYNC_CONNECTORS__FX__PERMANENT_CODE",
}
LOCAL = [
    ["runs"],
    ["rejects"],
    ["history", "C1"],
    ["explain", "C1"],
    ["preview"],
    ["backtest", "--from", "2025-10-01", "--to", "2025-12-31"],
    ["report", "--to", "2025-12-31"],
    ["export", "members.parquet"],
    ["override", "--list"],
    ["override", "C2", "--tier", "Gold", "--reason", "key account"],
    ["forget", "C3", "--yes"],
]


@pytest.fixture
def crm_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    host = PluginHost()
    for module, name in ((crmsync_generic_csv, "generic_csv"), (crmsync_zoho, "zoho"), (crmsync_fxiaoke, "fxiaoke")):
        host.register(module, name)
    monkeypatch.setattr(crmsync.plugins, "_HOST", host)
    for var in SECRETS.values():
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "customers.csv").write_text("external_id,email\nC1,a@example.com\nC2,b@example.com\nC3,c@example.com\n")
    (tmp_path / "orders.csv").write_text(
        "external_id,member_external_id,placed_at,amount,currency\nO1,C1,2025-12-01,150.00,EUR\n"
    )
    config = tmp_path / "crmsync.toml"
    config.write_text(CRM_CONFIG.format(push='["shop"]', crm=""))
    assert main_code(config, "sync") == 0  # the store is filled by a sync that needs no CRM
    config.write_text(CRM_CONFIG.format(push='["shop", "zoho", "fx"]', crm=CRMS))
    return config


def main_code(config: Path, *args: str) -> int:
    try:
        main(["--config", str(config), *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    raise AssertionError("main() always exits")


@pytest.mark.parametrize("command", LOCAL, ids=" ".join)
def test_local_commands_need_no_crm_secret(
    crm_world: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["--config", str(crm_world), *command], capsys)
    assert code == 0, err
    assert "missing" not in err


@pytest.mark.parametrize("command", [["check"], ["plan"], ["sync"]], ids=" ".join)
def test_commands_that_call_the_crm_name_each_missing_secret(
    crm_world: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["--config", str(crm_world), *command], capsys)
    assert code == 2, out + err
    assert "Traceback" not in err
    for key, var in SECRETS.items():
        assert f"{key}: missing (required; a secret: set it in the environment as {var})" in err, err
    code, out, _ = run_main(["--config", str(crm_world), "runs", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 1  # refused before a run began


def test_other_mistakes_in_a_table_without_secrets_are_still_reported(
    crm_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crm_world.write_text(crm_world.read_text().replace('client_id = "1000.CLIENT"', 'client_id = ""\nregion = "eu"'))
    code, _, err = run_main(["--config", str(crm_world), "runs"], capsys)
    assert code == 2
    assert "connectors.zoho.client_id:" in err and "connectors.zoho.region: unknown key" in err
    assert "client_secret" in err  # reported with the rest, as before
