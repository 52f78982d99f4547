"""Orders and activities whose member is not found: kept, counted in the report, and listed by ``crmsync rejects``
with the file and line they came from (read row by row or column-wise), until their member appears."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from crmsync_generic_csv import columnar

from tests.reliability import rel_support
from tests.test_cli import run_main

CONFIG = rel_support.CONFIG.format(plugin="generic_csv", batch_size=50, push_batch_size=100)


def world(folder: Path, seed: int, members: int = 30, orders: int = 200) -> tuple[Path, dict[str, tuple[str, str]]]:
    """Exports where some orders and activities name nobody; returns the configuration and, per unmatched row's
    locator, the field naming the member and the text the reason must hold."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["external_id,email,first_name,last_name,created_at"]
    lines += [f"C{i:03d},p{i}@example.com,F{i},L{i},2025-01-01 10:00:00" for i in range(members)]
    (folder / "customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected: dict[str, tuple[str, str]] = {}
    lines = ["external_id,member_external_id,member_email,placed_at,amount,currency,status"]
    for i in range(orders):
        kind = rnd.choice(["known"] * 6 + ["stranger id", "stranger email"])
        line = len(lines) + 1
        if kind == "known":
            who = f"C{rnd.randrange(members):03d},"
        elif kind == "stranger id":
            who = f"X{i:04d},"
            expected[f"orders.csv:{line}"] = ("member_external_id", f"no member with id X{i:04d}")
        else:
            who = f",stranger{i}@example.net"
            expected[f"orders.csv:{line}"] = ("member_email", "no member with its email")
        lines.append(f"O{i:05d},{who},2025-06-{1 + i % 28:02d} 12:00:00,{rnd.randrange(5, 900)}.00,EUR,paid")
    (folder / "orders.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = ["external_id,member_external_id,kind,occurred_at", "A1,C001,login,2025-06-01 10:00:00"]
    lines.append("A2,Z999,review,2025-06-02 10:00:00")
    expected["shop activity A2"] = ("member_external_id", "no member with id Z999")  # generic_csv gives no line
    (folder / "activities.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = folder / "crmsync.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return config, expected


@pytest.mark.parametrize("columnwise", [False, True], ids=["row reader", "column-wise read"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_unmatched_rows_are_listed_with_their_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, seed: int, columnwise: bool
) -> None:
    if columnwise:
        monkeypatch.setattr(columnar, "MIN_BYTES", 0)
    config, expected = world(tmp_path, seed)
    cfg = ["--config", str(config)]
    code, out, _ = run_main([*cfg, "sync", "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["rejected_total"] == 0  # unmatched rows are kept, not rejected
    assert report["unmatched_orders"] == sum(k.startswith("orders") for k in expected)
    assert report["unmatched_activities"] == 1 and "unmatched_orders_sample" not in report["extra"]
    code, out, _ = run_main([*cfg, "rejects", "--json"], capsys)
    listed = {e["locator"]: e for e in json.loads(out)}
    assert code == 0 and set(listed) == set(expected)
    for locator, (field, reason) in expected.items():
        entry = listed[locator]
        assert entry["kind"] == "unmatched" and entry["connector"] == "shop" and entry["field"] == field
        assert reason in entry["reason"] and "@" not in entry["reason"]  # never the email
        assert entry["last_run"] == report["run_id"]
    monkeypatch.setenv("COLUMNS", "250")  # a table as wide as its cells
    code, out, _ = run_main([*cfg, "rejects"], capsys)
    assert out.count("unmatched") == len(expected)
    # the members appear: their rows are graded and leave the list
    strangers = [loc for loc, (field, _) in expected.items() if field == "member_external_id"]
    ids = [expected[loc][1].split()[-1] for loc in strangers]
    with (tmp_path / "customers.csv").open("a", encoding="utf-8") as fh:
        fh.writelines(f"{i},{i.lower()}@example.com,N,N,2025-01-01 10:00:00\n" for i in ids)
    code, out, _ = run_main([*cfg, "sync", "--json"], capsys)
    by_email = [loc for loc, (field, _) in expected.items() if field == "member_email"]
    assert code == 0 and json.loads(out)["unmatched_orders"] == len(by_email)
    code, out, _ = run_main([*cfg, "rejects", "--json"], capsys)
    assert {e["locator"] for e in json.loads(out)} == set(by_email)
