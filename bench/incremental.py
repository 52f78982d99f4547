"""Incremental run: rerun crmsync after 1% of the orders changed, as a fraction of the full run.

The shop's export is regenerated with 1% of its orders changed (paid orders refunded, the others paid), the way
a nightly full export changes. crmsync's second run skips the unchanged customer and activity files by their
hash, reads the changed orders file, grades every member again and pushes only the profiles that changed. The
grades are checked against the pandas baseline on the changed data.

    python bench/incremental.py --customers 1000000 --orders 10000000 --dir /tmp/crmsync-bench
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import baseline, compare, crmsync_sync, emit, generate, machine, write_config

TARGET = 0.10


def change_orders(src: Path, dst: Path, percent: float) -> int:
    """Copy ``src`` to ``dst`` with ``percent`` % of the orders' status flipped; the number of orders changed."""
    changed = 0
    cut = int(percent / 100 * 2**32)
    with src.open("rb") as fin, dst.open("wb") as fout:
        fout.write(fin.readline())
        for line in fin:
            head, sep, rest = line.partition(b",")
            if sep and zlib.crc32(head) < cut:
                cells = rest.split(b",")
                if len(cells) > 3 and cells[3] in (b"paid", b"refunded", b"cancelled", b"pending"):
                    cells[3] = b"refunded" if cells[3] == b"paid" else b"paid"
                    line = head + b"," + b",".join(cells)
                    changed += 1
            fout.write(line)
    return changed


def incremental(root: Path, customers: int, orders: int, percent: float, memory_limit: str) -> dict[str, Any]:
    data = generate(root / f"data-{customers}-{orders}", customers, orders)
    work = root / f"incr-{customers}-{orders}"
    shutil.rmtree(work, ignore_errors=True)
    changed = work / "data"
    changed.mkdir(parents=True)
    for name in ("customers.csv", "activities.csv"):
        (changed / name).symlink_to(data / name)
    shutil.copyfile(data / "orders.csv", changed / "orders.csv")
    write_config(work, changed, memory_limit=memory_limit)
    first, _ = crmsync_sync(work)
    n_changed = change_orders(data / "orders.csv", changed / "orders.csv", percent)
    second, report = crmsync_sync(work)
    baseline(changed, work / "baseline.csv")
    check = compare(work / "out" / "profiles.csv", work / "baseline.csv")
    if check["differ"]:
        raise SystemExit(f"grades differ from the baseline for {check['differ']} members, e.g. {check['examples']}")
    return {
        "customers": customers,
        "order_rows": orders,
        "orders_changed": n_changed,
        "full_s": first.wall_s,
        "incremental_s": second.wall_s,
        "fraction": round(second.wall_s / first.wall_s, 3),
        "incremental_phases_s": report.get("timings", {}),
        "profiles_pushed": sum((report.get("pushed") or {}).values()),
        "members_compared": check["members"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--percent", type=float, default=1.0, help="share of orders changed")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--memory-limit", default="1400MB")
    args = parser.parse_args(argv)
    r = incremental(args.dir, args.customers, args.orders, args.percent, args.memory_limit)
    r["target_met"] = r["fraction"] < TARGET
    emit(
        "incremental",
        {"machine": machine(), **r},
        [
            ("orders changed", r["orders_changed"], ""),
            ("full run s", r["full_s"], ""),
            ("rerun s", r["incremental_s"], ""),
            ("rerun / full", r["fraction"], f"< {TARGET}"),
            ("profiles pushed", r["profiles_pushed"], ""),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
