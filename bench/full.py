"""Full run: CSV exports to graded profiles, crmsync against hand-written baselines, in the same run.

The baselines are the pandas, polars (lazy) and DuckDB-SQL scripts beside this file (``--baselines``, all three by
default). Every run first checks that crmsync's grades equal each baseline's for every member (tier, points,
tags, RFM segment, lifecycle) and stops if one differs; then it reports the wall time and peak memory of each
program (each in its own subprocess), crmsync's time per phase and its ratios against each baseline. With
``--repeat N`` every program runs N times, interleaved, and the figures are the median and the minimum. With
several ``--orders`` sizes it is the scaling scenario: time per order row at each size.

    python bench/full.py --customers 1000000 --orders 10000000 --dir /tmp/crmsync-bench --repeat 2
    python bench/full.py --scaling 100000,1000000,10000000 --dir /tmp/crmsync-bench --baselines pandas
    python bench/full.py --engine spark --customers 100000 --orders 1000000 --dir /tmp/crmsync-bench --baselines duckdb

With ``--engine spark`` crmsync grades on Spark in local mode (``pip install "crmsync[spark]"`` and Java), reading
the orders and activities as Parquet made once from the exports, and the table adds the seconds of each stage of
the grading on Spark.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    BASELINES,
    Measured,
    baseline,
    baseline_names,
    compare,
    crmsync_sync,
    emit,
    generate,
    machine,
    write_config,
)

TARGETS = {"pandas": {"time": 0.8, "memory": 0.5}, "polars": {"time": 2.0, "memory": 0.5}}
"""crmsync's targets as ratios of a baseline's figures (wall time, peak memory)."""


def summary(runs: list[Measured], rows: int) -> dict[str, Any]:
    """Median and minimum wall time, CPU time and peak memory of repeated runs of one program."""
    walls, peaks, cpus = [m.wall_s for m in runs], [m.peak_mb for m in runs], [m.cpu_s for m in runs]
    wall = round(statistics.median(walls), 2)
    return {
        "wall_s": wall,
        "wall_s_min": min(walls),
        "cpu_s": round(statistics.median(cpus), 2),
        "cpu_s_min": min(cpus),
        "runs_cpu_s": cpus,
        "peak_mb": round(statistics.median(peaks), 1),
        "peak_mb_min": min(peaks),
        "runs_s": walls,
        "us_per_row": round(wall / rows * 1e6, 3),
    }


def phases(reports: list[dict[str, Any]]) -> dict[str, float]:
    """crmsync's time per phase, the median over its runs."""
    names = {k for r in reports for k in r.get("timings", {})}
    return {k: round(statistics.median(r.get("timings", {}).get(k, 0.0) for r in reports), 2) for k in sorted(names)}


def checked(work: Path, name: str) -> int:
    """Members compared between crmsync's profiles and baseline ``name``'s; stops the run if one differs."""
    check = compare(work / "out" / "profiles.csv", work / f"baseline-{name}.csv")
    if check["differ"] or check["members"] != check["baseline_members"]:
        raise SystemExit(
            f"grades differ from the {name} baseline for {check['differ']} members, e.g. {check['examples']}"
        )
    return check["members"]


def full(
    root: Path,
    customers: int,
    orders: int,
    *,
    memory_limit: str,
    baselines: list[str],
    repeat: int = 1,
    engine: str = "duckdb",
) -> dict[str, Any]:
    data = generate(root / f"data-{customers}-{orders}", customers, orders)
    work = root / (f"work-{customers}-{orders}" + ("-spark" if engine == "spark" else ""))
    ours: list[Measured] = []
    reports: list[dict[str, Any]] = []
    theirs: dict[str, list[Measured]] = {name: [] for name in baselines}
    compared = 0
    for _ in range(repeat):  # interleaved, so a busy spell of the machine does not fall on one program alone
        shutil.rmtree(work, ignore_errors=True)
        write_config(work, data, memory_limit=memory_limit, engine=engine)
        m, report = crmsync_sync(work)
        ours.append(m)
        reports.append(report)
        for name in baselines:
            theirs[name].append(baseline(data, work / f"baseline-{name}.csv", name))
            compared = checked(work, name)
    crmsync = {**summary(ours, orders), "phases_s": phases(reports), "engine": engine}
    if engine == "spark":  # the grading's stages on Spark (the rest of it is the member-level step in the store)
        stages = {k for r in reports for k in r.get("extra", {}).get("spark_s", {})}
        spark = [r.get("extra", {}).get("spark_s", {}) for r in reports]
        crmsync["spark_s"] = {k: round(statistics.median(s.get(k, 0.0) for s in spark), 2) for k in sorted(stages)}
    crmsync["other_s"] = round(crmsync["wall_s"] - sum(crmsync["phases_s"].values()), 2)
    results: dict[str, Any] = {}
    for name, runs in theirs.items():
        s = summary(runs, orders)
        s["time_ratio"] = round(crmsync["wall_s"] / s["wall_s"], 3)
        s["time_ratio_min"] = round(crmsync["wall_s_min"] / s["wall_s_min"], 3)  # the least disturbed runs
        s["cpu_ratio"] = round(crmsync["cpu_s"] / s["cpu_s"], 3)
        s["memory_ratio"] = round(crmsync["peak_mb"] / s["peak_mb"], 3)
        results[name] = s
    return {
        "customers": customers,
        "order_rows": orders,
        "repeat": repeat,
        "members_compared": compared,
        "crmsync": crmsync,
        "baselines": results,
        "targets_met": {
            name: {k: results[name][f"{k}_ratio"] <= limit for k, limit in TARGETS[name].items()}
            for name in baselines
            if name in TARGETS
        },
    }


def table(r: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows of the readable table of one full run: crmsync, then one column per baseline."""
    c, b = r["crmsync"], r["baselines"]
    names = list(b)
    target = {n: "/".join(f"{TARGETS[n][k]}" for k in ("time", "memory")) if n in TARGETS else "" for n in names}
    met = {n: r["targets_met"].get(n, {}) for n in names}
    verdict = {
        n: "/".join("met" if met[n][k] else "missed" for k in ("time", "memory")) if met[n] else "" for n in names
    }
    rows: list[tuple[Any, ...]] = [
        ("members (grades equal)", r["members_compared"], *(r["members_compared"] for _ in names)),
        ("wall time s, median", c["wall_s"], *(b[n]["wall_s"] for n in names)),
        ("wall time s, min", c["wall_s_min"], *(b[n]["wall_s_min"] for n in names)),
        ("CPU time s (user+sys), median", c["cpu_s"], *(b[n]["cpu_s"] for n in names)),
        ("CPU time s, min", c["cpu_s_min"], *(b[n]["cpu_s_min"] for n in names)),
        ("peak memory MB, median", c["peak_mb"], *(b[n]["peak_mb"] for n in names)),
        ("peak memory MB, min", c["peak_mb_min"], *(b[n]["peak_mb_min"] for n in names)),
        ("crmsync time / this, medians", 1.0, *(b[n]["time_ratio"] for n in names)),
        ("crmsync time / this, minima", 1.0, *(b[n]["time_ratio_min"] for n in names)),
        ("crmsync CPU time / this, medians", 1.0, *(b[n]["cpu_ratio"] for n in names)),
        ("crmsync memory / this, medians", 1.0, *(b[n]["memory_ratio"] for n in names)),
        ("target time/memory", "", *(target[n] for n in names)),
        ("target met", "", *(verdict[n] for n in names)),
    ]
    rows += [(f"crmsync {phase} s", seconds, *("" for _ in names)) for phase, seconds in c["phases_s"].items()]
    rows += [(f"  spark {stage} s", seconds, *("" for _ in names)) for stage, seconds in c.get("spark_s", {}).items()]
    rows.append(("crmsync other s (start-up...)", c["other_s"], *("" for _ in names)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000, help="order rows (line items)")
    parser.add_argument("--scaling", help="comma-separated order-row counts (customers = rows / 10)")
    parser.add_argument("--dir", type=Path, required=True, help="data and work folder (kept for reruns)")
    parser.add_argument("--memory-limit", default="1400MB", help="the store's DuckDB memory limit")
    parser.add_argument(
        "--baselines", default=",".join(BASELINES), help=f"comma-separated, from {', '.join(BASELINES)} (default all)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each program; figures are median and min")
    parser.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="crmsync's grading engine; spark: local mode, orders and activities read as Parquet (made once)",
    )
    args = parser.parse_args(argv)
    try:
        names = baseline_names(args.baselines)
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    host = machine()  # before the runs: the load average says how busy the machine was
    opts = {"memory_limit": args.memory_limit, "baselines": names, "repeat": args.repeat, "engine": args.engine}
    header = (f"crmsync {args.engine}", *names)
    if args.scaling:
        sizes = [int(s) for s in args.scaling.split(",")]
        results = [full(args.dir, max(1, n // 10), n, **opts) for n in sizes]
        rows: list[tuple[Any, ...]] = []
        for r in results:
            c, b = r["crmsync"], r["baselines"]
            rows.append((f"{r['order_rows']:,} rows: us/row", c["us_per_row"], *(b[n]["us_per_row"] for n in names)))
            rows.append((f"{r['order_rows']:,} rows: peak MB", c["peak_mb"], *(b[n]["peak_mb"] for n in names)))
        emit("scaling", {"machine": host, "runs": results}, rows, header)
        return 0
    r = full(args.dir, args.customers, args.orders, **opts)
    emit("full", {"machine": host, **r}, table(r), header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
