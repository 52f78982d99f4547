"""Deciding past days: what a sync pays for the tier decisions of the days since the last one.

Tiers are decided per day (see docs/policy.md): a sync first decides every day that ended since the last decided
one, then grades its own time. Measured from a fresh store on the generated data: the first sync (it decides no
past day), the sync one day later with no new data (a daily schedule: one past day), and a sync after a gap
(``--gap`` days later: every day on which a tier could change is decided). Each prints its wall time, its grading
time and how many days it decided.

    python bench/days.py --customers 100000 --orders 1000000 --dir /tmp/crmsync-bench
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AS_OF, crmsync_sync, emit, generate, machine, write_config


def days(root: Path, customers: int, orders: int, gap: int, memory_limit: str) -> dict[str, Any]:
    data = generate(root / f"data-{customers}-{orders}", customers, orders)
    work = root / f"days-{customers}-{orders}"
    shutil.rmtree(work, ignore_errors=True)
    write_config(work, data, memory_limit=memory_limit)
    start = datetime.fromisoformat(AS_OF)
    runs = []
    for label, at in (("first", start), ("next day", start + timedelta(days=1)), (f"{gap} days later", None)):
        at = at or start + timedelta(days=1 + gap)
        m, report = crmsync_sync(work, at.isoformat())
        runs.append(
            {
                "run": label,
                "as_of": at.isoformat(),
                "wall_s": m.wall_s,
                "grade_s": report.get("timings", {}).get("grade"),
                "days_decided": report.get("days_decided"),
                "profiles_changed": report.get("profiles_changed"),
                "peak_mb": m.peak_mb,
            }
        )
    return {"customers": customers, "order_rows": orders, "gap_days": gap, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--gap", type=int, default=34, help="days between the second and the third sync")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--memory-limit", default="1400MB")
    args = parser.parse_args(argv)
    result = days(args.dir, args.customers, args.orders, args.gap, args.memory_limit)
    rows: list[tuple[str, Any, Any]] = []
    for r in result["runs"]:
        rows += [
            (f"{r['run']}: wall s", r["wall_s"], ""),
            (f"{r['run']}: grade s", r["grade_s"], ""),
            (f"{r['run']}: days decided", r["days_decided"], ""),
        ]
    emit("days", {"machine": machine(), **result}, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
