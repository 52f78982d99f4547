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
import points_balance  # noqa: E402
import zoho_sync  # noqa: E402


def _figures(capsys: pytest.CaptureFixture[str]) -> dict:
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "crmsync" in out  # the readable table follows the JSON line
    return json.loads(first)


@pytest.mark.spark
@pytest.mark.slow
def test_the_spark_engine_grades_equal_the_duckdb_baseline_at_a_small_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--engine",
        "spark",
        "--customers",
        "300",
        "--orders",
        "3000",
        "--dir",
        str(tmp_path),
        "--baselines",
        "duckdb",
    ]
    assert full.main(argv) == 0  # exits with an error when any grade differs
    figures = _figures(capsys)
    assert figures["members_compared"] == 300 and figures["crmsync"]["engine"] == "spark"
    assert set(figures["crmsync"]["spark_s"]) == {"session", "inputs", "aggregates"}
    assert (tmp_path / "data-300-3000" / "orders.parquet").exists()  # the lake made once from the exports


def test_every_baseline_grades_equal_crmsync_at_a_small_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert full.main(["--customers", "300", "--orders", "3000", "--dir", str(tmp_path)]) == 0
    figures = _figures(capsys)
    assert figures["scenario"] == "full"
    assert figures["members_compared"] == 300  # full.main exits with an error when any grade differs
    assert set(figures["baselines"]) == {"pandas", "polars", "duckdb"}  # all three by default
    assert figures["crmsync"]["peak_mb"] > 0 and set(figures["crmsync"]["phases_s"]) >= {"pull", "grade", "push"}
    for b in figures["baselines"].values():
        assert b["peak_mb"] > 0 and b["wall_s"] > 0
        assert b["time_ratio"] == round(figures["crmsync"]["wall_s"] / b["wall_s"], 3)
        assert b["time_ratio_min"] == round(figures["crmsync"]["wall_s_min"] / b["wall_s_min"], 3)
    assert {name: set(t) for name, t in figures["targets_met"].items()} == {
        "pandas": {"time", "memory"},
        "polars": {"time", "memory"},
    }
    work = tmp_path / "work-300-3000"
    rejects = (work / "out" / "rejects.csv").read_text(encoding="utf-8")
    assert rejects.count("orders.csv") == 7  # the generator's seven bad rows, each quarantined
    assert sorted(p.name for p in work.glob("baseline-*.csv")) == [
        "baseline-duckdb.csv",
        "baseline-pandas.csv",
        "baseline-polars.csv",
    ]


@pytest.mark.slow
def test_full_runs_the_chosen_baselines_repeatedly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--customers", "100", "--orders", "800", "--dir", str(tmp_path), "--baselines", "duckdb", "--repeat", "2"]
    assert full.main(argv) == 0
    figures = _figures(capsys)
    assert list(figures["baselines"]) == ["duckdb"] and figures["targets_met"] == {}
    runs = [figures["crmsync"]["runs_s"], figures["baselines"]["duckdb"]["runs_s"]]
    assert [len(r) for r in runs] == [2, 2]
    for r, s in zip(runs, (figures["crmsync"], figures["baselines"]["duckdb"]), strict=True):
        assert s["wall_s_min"] == min(r) and s["wall_s"] == round((r[0] + r[1]) / 2, 2)


@pytest.mark.parametrize("bad", ["numpy", "pandas,", ",", "pandas,polar"])
def test_full_refuses_an_unknown_baseline(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        full.main(["--dir", str(tmp_path), "--baselines", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "choose from pandas, polars, duckdb" in err
    assert not any(tmp_path.iterdir())  # nothing generated or run


@pytest.mark.slow
def test_scaling_reports_each_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert full.main(["--scaling", "1000,2000", "--dir", str(tmp_path), "--baselines", "polars"]) == 0
    figures = _figures(capsys)
    assert [r["order_rows"] for r in figures["runs"]] == [1000, 2000]
    for r in figures["runs"]:
        assert list(r["baselines"]) == ["polars"] and r["members_compared"] == r["order_rows"] // 10
        assert r["crmsync"]["us_per_row"] > 0 and r["baselines"]["polars"]["us_per_row"] > 0


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
    assert [r["run"] for r in runs] == [
        "first sync", "rerun, no change, after the full write-back", "rerun, no change", "rerun, 20 orders changed",
        "rerun, mass update of 300 contacts in one second", "rerun, no change, after the mass update",
    ]  # fmt: skip
    first, read_back, same, changed, mass, settled = runs
    assert first["pulled"] == {"members": 300, "orders": 900}
    assert first["api_calls"] >= first["minimum"] > 0
    assert read_back["pulled"] == {"members": 0, "orders": 0} and read_back["calls_by_kind"]["read Contacts"] == 2
    assert same["pulled"]["orders"] == 0 and same["calls_by_kind"]["read Contacts"] == 1
    assert changed["pulled"]["orders"] == 20
    assert mass["pulled"]["members"] == 300 and settled["pulled"] == {"members": 0, "orders": 0}


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


def test_export_and_backtest_at_a_small_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import export

    assert export.main(["--customers", "300", "--orders", "3000", "--dir", str(tmp_path)]) == 0
    figures = _figures(capsys)
    assert figures["csv"]["rows"] == figures["parquet"]["rows"] == 300  # main exits with an error otherwise
    assert figures["backtest_4_months"]["periods"] == 4
    assert all(figures[k]["peak_mb"] > 0 and figures[k]["wall_s"] > 0 for k in ("csv", "parquet", "backtest_4_months"))


def test_points_balance_at_a_small_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert points_balance.main(["--members", "300", "--entries", "5", "--overdrawn", "0.2"]) == 0
    figures = _figures(capsys)
    assert figures["scenario"] == "points_balance" and figures["orders"] == 1500
    assert figures["replayed_members"] >= 40 and figures["longest_replay"] > 1
    assert figures["negative_balances_allow_negative_false"] == 0 < figures["negative_balances_allow_negative_true"]
