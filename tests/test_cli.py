"""The command line: exit codes, --json documents, error messages without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import crmsync.plugins
from crmsync.cli import cli, main
from crmsync.connector import Stream
from crmsync.plugins import PluginHost
from crmsync.store import Store
from tests.support import WORLDS, World, member, order


@pytest.fixture(autouse=True)
def use_host(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> PluginHost:
    monkeypatch.setattr(crmsync.plugins, "_HOST", host)
    return host


@pytest.fixture
def world() -> World:
    w = World()
    WORLDS["crm"] = w
    for i in range(1, 4):
        w.put(Stream.MEMBERS, member(i))
    w.put(Stream.ORDERS, order("o1", "m1", "1500", 3))
    return w


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_sync_json_report_and_rerun(memory_config: Path, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--config", str(memory_config), "sync", "--json", "--as-of", "2026-01-01"], capsys)
    assert code == 0
    report = json.loads(out)
    for key in ("run_id", "status", "pulled", "profiles_changed", "pushed", "rejected", "api_calls", "duration_s"):
        assert key in report
    assert report["status"] == "ok"
    assert report["pulled"]["crm"]["members"]["pulled"] == 3
    assert report["tier_distribution"] == {"Gold": 1, "Bronze": 2}
    assert report["pushed"] == {"crm": 3}

    code, out, _ = run_main(["--config", str(memory_config), "sync", "--as-of", "2026-01-01"], capsys)
    assert code == 0
    assert "nothing changed" in out

    code, out, _ = run_main(["--config", str(memory_config), "runs", "--json"], capsys)
    assert [r["status"] for r in json.loads(out)] == ["ok", "ok"]


def test_rejected_records_exit_1(memory_config: Path, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.reject["m2"] = "INVALID_DATA"
    code, out, _ = run_main(["--config", str(memory_config), "sync", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["push_rejected"] == {"crm": 1}


def test_config_error_exit_2_without_traceback(
    write_config,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    path = write_config('[sync]\nmembers = "crm"\n[connectors.crm]\nplugin = "memory"\nbatch_size = -x\n')
    code, _, err = run_main(["--config", str(path), "sync"], capsys)
    assert code == 2
    assert "not valid TOML" in err and "Traceback" not in err

    code, _, err = run_main(["--config", str(path.parent / "missing.toml"), "check"], capsys)
    assert code == 2 and "configuration file not found" in err


def test_policy_error_exit_2(write_config, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    path = write_config(
        '[sync]\nmembers = "crm"\n[connectors.crm]\nplugin = "memory"\n'
        '[[policy.tiers]]\nname = "Gold"\ncondition = "spendd_365d >= 10"\n[[policy.tiers]]\nname = "Basic"\n'
    )
    code, _, err = run_main(["--config", str(path), "sync"], capsys)
    assert code == 2
    assert "policy.tiers" in err and "spendd_365d" in err


def test_locked_store_exit_3(memory_config: Path, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(memory_config.parent / "store.duckdb"):
        code, _, err = run_main(["--config", str(memory_config), "sync"], capsys)
    assert code == 3
    assert "in use by another crmsync run" in err


def test_plan_lists_changes_and_pushes_nothing(
    memory_config: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(["--config", str(memory_config), "plan", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["dry_run"] is True
    assert {c["member_id"] for c in doc["changes"]} == {"m1", "m2", "m3"}
    assert world.push_calls == []


def test_check_reports_and_explain(memory_config: Path, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--config", str(memory_config), "check", "--json"], capsys)
    assert code == 0 and json.loads(out)["ok"] is True
    run_main(["--config", str(memory_config), "sync"], capsys)
    code, out, _ = run_main(["--config", str(memory_config), "explain", "m1", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["profile"]["tier"] == "Gold" and doc["grades"]["tier"]["value"] == "Gold"
    assert "spend_365d" in doc["grades"]["tier"]["reason"] and doc["metrics"]["spend_365d"] == "1500.0000"
    code, _, err = run_main(["--config", str(memory_config), "explain", "nobody"], capsys)
    assert code == 2 and "no member with id 'nobody'" in err


def test_plugins_lists_registered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["plugins", "--json"], capsys)
    assert code == 0
    info = {p["name"]: p for p in json.loads(out)}
    assert info["memory"]["connectors"] == ["memory"]
    assert info["memory"]["status"] == "ok"


def test_init_writes_a_config_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "new.toml"
    code, _, _ = run_main(["init", str(target)], capsys)
    assert code == 0 and target.exists()
    assert "[[policy.tiers]]" in target.read_text()
    code, _, err = run_main(["init", str(target)], capsys)
    assert code == 2 and "already exists" in err


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_main(["sync", "--no-such-flag"], capsys)
    assert code == 2
    assert cli.get_command(None, "sync") is not None  # type: ignore[arg-type]


def test_override_preview_backtest_history_forget_rejects(
    memory_config: Path, world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = ["--config", str(memory_config)]
    run_main([*cfg, "sync", "--as-of", "2026-01-01"], capsys)

    code, _, err = run_main([*cfg, "override", "m2", "--tier", "Diamond", "--reason", "vip"], capsys)
    assert code == 2 and "unknown tier 'Diamond'" in err
    code, out, _ = run_main(
        [*cfg, "override", "m2", "--tier", "Gold", "--until", "2030-12-31", "--reason", "key"], capsys
    )
    assert code == 0 and "locked at Gold" in out
    code, out, _ = run_main([*cfg, "sync", "--json", "--as-of", "2026-01-02"], capsys)
    assert json.loads(out)["tier_distribution"]["Gold"] == 2
    assert world.pushed["m2"]["tier"] == "Gold"
    code, out, _ = run_main([*cfg, "override", "--list", "--json"], capsys)
    assert [(o["member_id"], o["tier"], o["until"]) for o in json.loads(out)] == [("m2", "Gold", "2030-12-31")]

    code, out, _ = run_main([*cfg, "history", "m2", "--json"], capsys)
    tiers = [(e["previous"], e["new"]) for e in json.loads(out) if e["field"] == "tier"]
    assert tiers == [(None, "Bronze"), ("Bronze", "Gold")]

    code, out, _ = run_main([*cfg, "preview", "--as-of", "2025-06-01", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["members"] == 3 and sum(doc["distribution"].values()) == 3

    chart = tmp_path / "chart.html"
    code, out, _ = run_main(
        [
            *cfg,
            "backtest",
            "--from",
            "2025-10-31",
            "--to",
            "2026-01-31",
            "--every",
            "month",
            "--chart",
            str(chart),
            "--json",
        ],
        capsys,
    )
    periods = json.loads(out)
    assert code == 0 and [p["as_of"][:10] for p in periods] == ["2025-10-31", "2025-11-30", "2025-12-31", "2026-01-31"]
    assert "<svg" in chart.read_text()

    code, out, _ = run_main([*cfg, "rejects", "--json"], capsys)
    assert code == 0 and json.loads(out) == []

    code, out, _ = run_main([*cfg, "forget", "m3", "--yes", "--json"], capsys)
    assert code == 0 and json.loads(out)["erased"]["members"] == 1
    code, out, _ = run_main([*cfg, "history", "m3", "--json"], capsys)
    assert json.loads(out) == []
    code, out, err = run_main([*cfg, "forget", "m3", "--yes"], capsys)
    assert code == 0 and "member m3 was already forgotten" in out
    code, _, err = run_main([*cfg, "forget", "m3", "m404", "--yes"], capsys)
    assert code == 2 and "no member with id 'm404'" in err


@pytest.mark.parametrize(("error", "code"), [("auth", 2), ("retry", 3)])
def test_a_failed_sync_reports_its_error_kind_exit_code_and_hint(
    memory_config: Path, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, error: str,
    code: int,
) -> None:  # fmt: skip
    from crmsync.errors import AuthError, RetryableError
    from tests.support import MemoryConnector

    raised = {
        "auth": AuthError("refresh token revoked", connector="crm", hint="run the connector's authorisation again"),
        "retry": RetryableError("GET /contacts: HTTP 429; gave up after 5 attempt(s)", connector="crm", retry_after=60),
    }[error]

    def fail(self, stream, cursor):  # type: ignore[no-untyped-def]
        raise raised

    monkeypatch.setattr(MemoryConnector, "pull", fail)
    got, out, err = run_main(["--config", str(memory_config), "sync", "--json"], capsys)
    report = json.loads(out)
    assert got == code and report["status"] == "failed"
    assert report["error"] == {
        "kind": type(raised).__name__,
        "message": raised.message,
        "exit_code": code,
        "retry_after": getattr(raised, "retry_after", None),
        "hint": raised.hint,
    }
    assert err.startswith(f"error: {raised.message}") and "Traceback" not in err
    assert (f"hint: {raised.hint}" in err) == bool(raised.hint)
    got, out, _ = run_main(["--config", str(memory_config), "runs", "--json"], capsys)
    assert json.loads(out)[0]["error"] == report["error"]


def test_report_and_export(
    memory_config: Path, world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import csv

    cfg = ["--config", str(memory_config)]
    run_main([*cfg, "sync", "--as-of", "2026-01-01"], capsys)
    code, out, _ = run_main([*cfg, "report", "--from", "2025-11-30", "--to", "2026-01-31", "--json"], capsys)
    periods = json.loads(out)
    assert code == 0 and [p["as_of"][:10] for p in periods] == ["2025-11-30", "2025-12-31", "2026-01-31"]
    assert periods[0]["members"] == 3 and set(periods[0]["by_tier"]) == {"Gold", "Silver", "Bronze"}
    assert {"repurchase_rate", "aov", "upgrade_rate", "downgrade_rate", "returning_rate"} <= set(periods[0])
    code, out, _ = run_main([*cfg, "report", "--to", "2026-01-31"], capsys)
    assert code == 0 and "programme KPIs per period" in out and "2025-02-28 .. 2025-03-31" in out  # 12 periods

    target = tmp_path / "members.csv"
    code, out, _ = run_main([*cfg, "export", str(target), "--as-of", "2026-01-01", "--json"], capsys)
    assert code == 0 and json.loads(out)["rows"] == 3
    with target.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["member_id"]: r["tier"] for r in rows} == {m: world.pushed[m]["tier"] for m in ("m1", "m2", "m3")}
    assert "email" not in rows[0] and "spend_lifetime" in rows[0]

    for args, message in (
        (["--columns", "member_id,email"], "email: personal data"),
        (["--columns", "member_id,tier,tier"], "tier: named twice"),
        (["--columns", "member_id,tierr"], "tierr: unknown column (did you mean tier?)"),
    ):
        code, _, err = run_main([*cfg, "export", str(target), *args], capsys)
        assert code == 2 and message in err and "Traceback" not in err
    code, _, err = run_main([*cfg, "export", str(tmp_path / "members.txt")], capsys)
    assert code == 2 and "name it .csv or .parquet" in err
    code, _, err = run_main([*cfg, "export", str(tmp_path / "nowhere" / "m.csv")], capsys)
    assert code == 2 and "does not exist" in err

    code, out, _ = run_main([*cfg, "export", str(tmp_path / "p.parquet"), "--personal", "--json"], capsys)
    assert code == 0 and json.loads(out)["columns"][-4:] == ["email", "phone", "first_name", "last_name"]
    import pyarrow.parquet as pq

    assert sorted(pq.read_table(tmp_path / "p.parquet").column("email").to_pylist()) == [
        f"user{i}@example.com" for i in (1, 2, 3)
    ]
    code, out, _ = run_main([*cfg, "export", "--list-columns", "--json"], capsys)
    assert code == 0 and {"member_id", "tier", "spend_365d", "email"} <= set(json.loads(out))
