"""One --as-of rule for every command: a date is the end of that day in sync.timezone, a time without an offset is
read there, one with an offset is taken as given; sync, plan, explain, preview, backtest and export see the same
orders."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmsync.plugins
from crmsync.connector import Stream
from crmsync.errors import ConfigError
from crmsync.models import Order
from crmsync.plugins import PluginHost
from crmsync.policy.days import TICK, day_end, local_day, parse_instant
from tests.conftest import MEMORY_CONFIG
from tests.support import WORLDS, World, member
from tests.test_cli import run_main

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))


@pytest.fixture(autouse=True)
def use_host(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> PluginHost:
    monkeypatch.setattr(crmsync.plugins, "_HOST", host)
    return host


def _order(oid: str, member_id: str, at: datetime) -> Order:
    return Order(
        source="crm",
        external_id=oid,
        member_external_id=member_id,
        placed_at=at,
        amount=Decimal("1500"),
        currency="EUR",
        status="paid",
    )


@pytest.fixture
def shanghai(write_config, host: PluginHost) -> Path:  # type: ignore[no-untyped-def]
    world = _crm(4)
    world.put(Stream.ORDERS, _order("o1", "m1", datetime(2026, 10, 15, 20, 0, tzinfo=SHANGHAI)))  # 12:00 UTC
    world.put(Stream.ORDERS, _order("o2", "m2", datetime(2026, 10, 16, 0, 30, tzinfo=SHANGHAI)))  # the next day
    world.put(Stream.ORDERS, _order("o3", "m3", datetime(2026, 10, 15, 0, 0, tzinfo=SHANGHAI)))  # 14 Oct in UTC
    world.put(Stream.ORDERS, _order("o4", "m4", datetime(2026, 10, 15, 23, 59, 59, 999999, tzinfo=SHANGHAI)))
    return write_config(
        MEMORY_CONFIG.replace('base_currency = "EUR"', 'base_currency = "EUR"\ntimezone = "Asia/Shanghai"')
    )


def _crm(members: int) -> World:
    """The members source ``crm`` with members m1..m``members``."""
    world = World()
    WORLDS["crm"] = world
    for i in range(1, members + 1):
        world.put(Stream.MEMBERS, member(i))
    return world


def _gold(doc: dict) -> int:
    return doc.get("tier_distribution", doc.get("distribution", {})).get("Gold", 0)


@pytest.mark.parametrize("as_of", ["2026-10-15", "2026-10-15T23:59:59.999999", "2026-10-15T15:59:59.999999Z"])
def test_every_command_reads_the_same_date_as_the_same_instant(
    shanghai: Path, capsys: pytest.CaptureFixture[str], as_of: str
) -> None:
    cfg = ["--config", str(shanghai)]
    docs, codes = {}, []
    for command in ("plan", "sync", "preview"):
        code, out, _ = run_main([*cfg, command, "--json", "--as-of", as_of], capsys)
        codes.append(code)
        docs[command] = json.loads(out)
    code, out, _ = run_main([*cfg, "backtest", "--json", "--from", as_of, "--to", as_of], capsys)
    codes.append(code)
    docs["backtest"] = json.loads(out)[0]
    tiers = {}
    for m in ("m1", "m2", "m3", "m4"):
        code, out, _ = run_main([*cfg, "explain", m, "--json", "--as-of", as_of], capsys)
        codes.append(code)
        doc = json.loads(out)
        tiers[m] = doc["grades"]["tier"]["value"]
        assert doc["as_of"] == "2026-10-15T23:59:59.999999+08:00"
    path = shanghai.parent / "export.csv"
    code, _, _ = run_main([*cfg, "export", str(path), "--columns", "member_id,tier", "--as-of", as_of], capsys)
    codes.append(code)
    assert codes == [0] * len(codes)
    golds = {command: _gold(doc) for command, doc in docs.items()}
    golds["explain"] = sum(t == "Gold" for t in tiers.values())
    golds["export"] = path.read_text(encoding="utf-8").count(",Gold")
    preview = docs["preview"]
    # every order placed on 15 October in Shanghai counts, the one placed just after midnight does not
    assert tiers == {"m1": "Gold", "m2": "Bronze", "m3": "Gold", "m4": "Gold"}
    assert golds == dict.fromkeys(golds, 3)
    assert preview["as_of"] == "2026-10-15 23:59:59.999999+08:00"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["sync", "--as-of", "2026-13-01"], "--as-of"),
        (["explain", "m1", "--as-of", "15.10.2026"], "--as-of"),
        (["backtest", "--from", "2026-10-01", "--to", "tomorrow"], "--to"),
        (["report", "--from", "2026-10-01T25:00", "--to", "2026-10-15"], "--from"),
        (["export", "out.csv", "--as-of", "yesterday"], "--as-of"),
        (["override", "m1", "--tier", "Gold", "--reason", "x", "--until", "2026-10-15T10:00"], "--until"),
    ],
)
def test_a_bad_date_names_its_option(
    shanghai: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    run_main(["--config", str(shanghai), "sync", "--as-of", "2026-10-15"], capsys)
    code, _, err = run_main(["--config", str(shanghai), *args], capsys)
    assert code == 2
    assert err.startswith(f"error: {option}: not a date:")


@settings(max_examples=200, deadline=None)
@given(day=st.dates(date(1990, 1, 1), date(2060, 12, 31)), tz=st.sampled_from(ZONES))
def test_a_date_is_the_last_instant_of_that_day_in_the_zone(day: date, tz: str) -> None:
    zone = ZoneInfo(tz)
    at = parse_instant(day.isoformat(), zone)
    assert at == day_end(day, zone)
    assert local_day(at, zone) == day
    assert local_day(at + TICK, zone) == day + timedelta(days=1)
    naive = parse_instant(f"{day.isoformat()}T12:00", zone)
    assert naive.astimezone(zone).replace(tzinfo=None) in (
        datetime(day.year, day.month, day.day, 12),
        datetime(day.year, day.month, day.day, 13),  # noon skipped by a clock change
    )
    assert parse_instant(f"{day.isoformat()}T12:00+00:00", zone) == datetime(
        day.year, day.month, day.day, 12, tzinfo=UTC
    )


def test_a_bad_value_is_refused() -> None:
    with pytest.raises(ConfigError, match="--as-of: not a date: '2026-02-30'"):
        parse_instant("2026-02-30", SHANGHAI)


def test_the_report_counts_the_past_days_a_sync_decided(shanghai: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ["--config", str(shanghai)]
    decided = []
    for as_of in ("2026-10-15T09:00", "2026-10-15T09:30", "2026-10-16T09:00", "2026-11-20T09:00"):
        code, out, _ = run_main([*cfg, "sync", "--json", "--as-of", as_of], capsys)
        assert code == 0
        decided.append(json.loads(out)["days_decided"])
    # the first sync decides no past day, a second one the same day neither, the next day's one day; after a gap
    # of 35 days only the days on which a tier could change: 16 October (an order came due), none after it
    assert decided == [0, 0, 1, 1]
    code, out, _ = run_main([*cfg, "sync", "--as-of", "2026-11-21T09:00"], capsys)
    assert "1 past days decided" in out


def test_a_sync_after_a_pause_decides_every_day_in_weekly_transactions_as_daily_syncs_would(
    write_config, capsys: pytest.CaptureFixture[str], host: PluginHost
) -> None:  # type: ignore[no-untyped-def]
    policy = MEMORY_CONFIG.replace('condition = "spend_365d >= 1000"', 'condition = "days_since_last_order < 10"')
    policy += "\n[policy.downgrade]\ngrace_days = 3\nmax_levels = 1\n"
    world = _crm(3)
    for i, days_in in enumerate((0, 4, 9)):
        world.put(Stream.ORDERS, _order(f"o{i}", f"m{i + 1}", datetime(2026, 10, 1 + days_in, 9, tzinfo=SHANGHAI)))
    late, daily = (write_config(policy, name) for name in ("late.toml", "daily.toml"))
    for path, store in ((late, "late.duckdb"), (daily, "daily.duckdb")):
        path.write_text(path.read_text().replace("store.duckdb", store))
    docs = {}
    for path, dates in ((late, ["2026-10-01", "2026-10-21"]), (daily, [f"2026-10-{d:02d}" for d in range(1, 22)])):
        for d in dates:
            code, out, _ = run_main(["--config", str(path), "sync", "--json", "--as-of", d], capsys)
            assert code == 0
        docs[path.stem] = json.loads(out)
    assert docs["late"]["days_decided"] == 20  # every day: the condition reads the days since an order
    assert docs["late"]["tier_distribution"] == docs["daily"]["tier_distribution"]
    explained = {}
    for path in (late, daily):
        for m in ("m1", "m2", "m3"):
            _, out, _ = run_main(["--config", str(path), "explain", m, "--json", "--as-of", "2026-10-21"], capsys)
            grade = json.loads(out)["grades"]["tier"]
            explained.setdefault(m, []).append((grade["value"], grade["reason"]))
    assert all(a == b for a, b in explained.values())
    # Gold while the last order is under 10 days old, then 3 days of grace, then Silver (their spend)
    assert {m: v[0][0] for m, v in explained.items()} == {"m1": "Silver", "m2": "Silver", "m3": "Gold"}
    assert explained["m3"][0][1].startswith("kept Gold in the grace period until 2026-10-23 (not qualifying since")


def test_explain_and_preview_decide_the_days_since_the_last_sync_on_a_read_only_store_and_write_nothing(
    write_config, capsys: pytest.CaptureFixture[str], host: PluginHost
) -> None:  # type: ignore[no-untyped-def]
    config = MEMORY_CONFIG.replace(
        'condition = "spend_365d >= 1000"', 'condition = "spend_365d >= 1000"\nentry_bonus = 100'
    )
    config = config.replace('base_currency = "EUR"', 'base_currency = "EUR"\ntimezone = "Asia/Shanghai"')
    config += '\n[policy.points]\nper_currency_unit = "1"\n'
    world = _crm(2)
    world.put(Stream.ORDERS, _order("o1", "m1", datetime(2026, 10, 1, 9, tzinfo=SHANGHAI)))
    path = write_config(config)
    cfg = ["--config", str(path)]
    assert run_main([*cfg, "sync", "--as-of", "2026-10-01T08:00"], capsys)[0] == 0  # before the order: Bronze
    world.put(Stream.ORDERS, _order("o2", "m2", datetime(2026, 10, 3, 9, tzinfo=SHANGHAI)))
    store = path.parent / "store.duckdb"
    before = store.read_bytes()
    store.chmod(0o444)  # the read-only commands need no write access to the store
    try:
        code, out, _ = run_main([*cfg, "explain", "m1", "--json", "--as-of", "2026-10-20"], capsys)
        assert code == 0
        doc = json.loads(out)
        # 1 October decided in a temporary copy: Gold entered that day, its bonus dated at the day's end
        assert doc["grades"]["tier"]["value"] == "Gold" and doc["grades"]["points"]["value"] == 1600
        bonus = [e for e in doc["ledger"] if e["kind"] == "bonus"]
        assert [(e["points"], e["occurred_at"][:19]) for e in bonus] == [(100, "2026-10-01 15:59:59")]
        code, out, _ = run_main([*cfg, "preview", "--json", "--as-of", "2026-10-20"], capsys)
        assert code == 0
        assert json.loads(out)["points"]["outstanding"] == 1600  # o2 was not pulled: only m1's points
    finally:
        store.chmod(0o644)
    assert store.read_bytes() == before
