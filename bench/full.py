"""Full run: CSV exports to graded profiles, crmsync against the pandas baseline, in the same run.

First checks that crmsync's grades equal the baseline's for every member (tier, points, tags, RFM segment,
lifecycle), then reports the wall time and peak memory of both (each in its own subprocess) and their ratios.
With several ``--orders`` sizes it is the scaling scenario: time per order row at each size.

    python bench/full.py --customers 1000000 --orders 10000000 --dir /tmp/crmsync-bench
    python bench/full.py --scaling 100000,1000000,10000000 --dir /tmp/crmsync-bench
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import baseline, compare, crmsync_sync, emit, generate, machine, write_config

TARGET_TIME = 0.8
TARGET_MEMORY = 0.5


def full(root: Path, customers: int, orders: int, *, memory_limit: str) -> dict[str, Any]:
    data = generate(root / f"data-{customers}-{orders}", customers, orders)
    work = root / f"work-{customers}-{orders}"
    shutil.rmtree(work, ignore_errors=True)
    write_config(work, data, memory_limit=memory_limit)
    ours, report = crmsync_sync(work)
    theirs = baseline(data, work / "baseline.csv")
    check = compare(work / "out" / "profiles.csv", work / "baseline.csv")
    if check["differ"]:
        raise SystemExit(f"grades differ from the baseline for {check['differ']} members, e.g. {check['examples']}")
    return {
        "customers": customers,
        "order_rows": orders,
        "members_compared": check["members"],
        "crmsync_s": ours.wall_s,
        "baseline_s": theirs.wall_s,
        "time_ratio": round(ours.wall_s / theirs.wall_s, 3),
        "crmsync_peak_mb": ours.peak_mb,
        "baseline_peak_mb": theirs.peak_mb,
        "memory_ratio": round(ours.peak_mb / theirs.peak_mb, 3),
        "crmsync_phases_s": report.get("timings", {}),
        "crmsync_us_per_row": round(ours.wall_s / orders * 1e6, 3),
        "baseline_us_per_row": round(theirs.wall_s / orders * 1e6, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000, help="order rows (line items)")
    parser.add_argument("--scaling", help="comma-separated order-row counts (customers = rows / 10)")
    parser.add_argument("--dir", type=Path, required=True, help="data and work folder (kept for reruns)")
    parser.add_argument("--memory-limit", default="1400MB", help="the store's DuckDB memory limit")
    args = parser.parse_args(argv)
    if args.scaling:
        sizes = [int(s) for s in args.scaling.split(",")]
        results = [full(args.dir, max(1, n // 10), n, memory_limit=args.memory_limit) for n in sizes]
        emit(
            "scaling",
            {"machine": machine(), "runs": results},
            [
                (f"{r['order_rows']:,} rows: us/row (s, MB)", r["crmsync_us_per_row"], r["baseline_us_per_row"])
                for r in results
            ]
            + [(f"{r['order_rows']:,} rows: peak MB", r["crmsync_peak_mb"], r["baseline_peak_mb"]) for r in results],
        )
        return 0
    r = full(args.dir, args.customers, args.orders, memory_limit=args.memory_limit)
    r["targets_met"] = {"time": r["time_ratio"] <= TARGET_TIME, "memory": r["memory_ratio"] <= TARGET_MEMORY}
    emit(
        "full",
        {"machine": machine(), **r},
        [
            ("members (grades equal)", r["members_compared"], r["members_compared"]),
            ("wall time s", r["crmsync_s"], r["baseline_s"]),
            ("peak memory MB", r["crmsync_peak_mb"], r["baseline_peak_mb"]),
            ("time ratio", r["time_ratio"], f"<= {TARGET_TIME}"),
            ("memory ratio", r["memory_ratio"], f"<= {TARGET_MEMORY}"),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
