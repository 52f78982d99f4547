"""Every benchmark script at a small size, so they cannot rot (figures are checked for shape, never for speed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import full  # noqa: E402
import incremental  # noqa: E402
import long_line  # noqa: E402
import zoho_sync  # noqa: E402


def _figures(capsys: pytest.CaptureFixture[str]) -> dict:
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "crmsync" in out  # the readable table follows the JSON line
    return json.loads(first)


def test_baseline_grades_equal_crmsync_at_a_small_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert full.main(["--customers", "300", "--orders", "3000", "--dir", str(tmp_path)]) == 0
    figures = _figures(capsys)
    assert figures["scenario"] == "full"
    assert figures["members_compared"] == 300  # full.main exits with an error when any grade differs
    assert figures["crmsync_peak_mb"] > 0 and figures["baseline_peak_mb"] > 0
    assert set(figures["targets_met"]) == {"time", "memory"}
    rejects = (tmp_path / "work-300-3000" / "out" / "rejects.csv").read_text(encoding="utf-8")
    assert rejects.count("orders.csv") == 7  # the generator's seven bad rows, each quarantined


@pytest.mark.slow
def test_scaling_reports_each_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert full.main(["--scaling", "1000,2000", "--dir", str(tmp_path)]) == 0
    figures = _figures(capsys)
    assert [r["order_rows"] for r in figures["runs"]] == [1000, 2000]
    assert all(r["crmsync_us_per_row"] > 0 for r in figures["runs"])


def test_incremental_rerun_after_changed_orders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert incremental.main(["--customers", "300", "--orders", "3000", "--percent", "5", "--dir", str(tmp_path)]) == 0
    runs = _figures(capsys)["runs"]
    assert [r["mode"] for r in runs] == ["delta", "full"]
    for r in runs:
        assert r["orders_changed"] > 0
        assert r["members_compared"] == 300
        assert 0 < r["profiles_pushed"] < 300  # only the members whose grades changed
        assert 0 < r["members_recomputed"] < 300  # only the members whose orders changed
    assert runs[0]["orders_changed"] == runs[1]["orders_changed"]
    assert runs[0]["profiles_pushed"] == runs[1]["profiles_pushed"]


def test_change_orders_flips_the_status_of_the_chosen_share(tmp_path: Path) -> None:
    src = tmp_path / "orders.csv"
    src.write_bytes(b"order_id,customer_id,customer_email,order_date,status,currency,line_amount,sku\n")
    with src.open("ab") as fh:
        for i in range(2000):
            fh.write(f"O{i},C1,,2025-01-01 10:00:00,paid,EUR,1.00,S\n".encode())
    n = incremental.change_orders(src, tmp_path / "changed.csv", 10)
    changed = (tmp_path / "changed.csv").read_text().splitlines()
    assert 100 < n < 300
    assert sum(",refunded," in line for line in changed) == n
    assert len(changed) == 2001
    delta = tmp_path / "delta.csv"
    assert incremental.change_orders(src, tmp_path / "again.csv", 10, delta) == n
    lines = delta.read_text().splitlines()
    assert lines[0].startswith("order_id,") and len(lines) == n + 1
    assert all(",refunded," in line for line in lines[1:])


@pytest.mark.slow
def test_zoho_scenario_against_the_local_fake(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--contacts", "300", "--orders", "900", "--changed", "20", "--latency", "0", "--timeout", "120"]
    assert zoho_sync.main(argv) == 0
    runs = _figures(capsys)["runs"]
    assert [r["run"] for r in runs] == ["first sync", "rerun, no change", "rerun, 20 orders changed"]
    first, same, changed = runs
    assert first["pulled"] == {"members": 300, "orders": 900}
    assert first["api_calls"] >= first["minimum"] > 0
    assert same["pulled"]["orders"] == 0 and same["pushed"] == 0
    assert changed["pulled"]["orders"] == 20


@pytest.mark.slow
def test_long_line_is_rejected_and_the_rest_pulled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--line-mb", "3", "--customers", "200", "--orders", "2000", "--dir", str(tmp_path)]
    assert long_line.main(args) == 0
    figures = _figures(capsys)
    assert figures["long_line_rejected"] and "max_line_length" in figures["reason"]
    assert figures["orders_pulled"] == figures["control_orders_pulled"] > 0
    assert figures["exit_code"] == 1 and figures["peak_mb"] > 0


def test_days_decided_by_a_daily_and_a_late_sync(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import days

    assert days.main(["--customers", "300", "--orders", "3000", "--gap", "5", "--dir", str(tmp_path)]) == 0
    runs = _figures(capsys)["runs"]
    assert [r["run"] for r in runs] == ["first", "next day", "5 days later"]
    assert [r["days_decided"] for r in runs][:2] == [0, 1]
    assert 1 <= runs[2]["days_decided"] <= 5  # the days on which a tier could change
    assert all(r["grade_s"] > 0 for r in runs)
