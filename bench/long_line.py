"""A line without an end: ``crmsync sync`` over exports whose orders file ends in one huge line (2 GiB by default).

The orders export gets one more line of ``--line-mb`` MiB and no line break, as a truncated or corrupted export
has. crmsync must reject that line with its file and line number (it is longer than ``max_line_length``), store
every other row, and do so in bounded memory and in time proportional to the file. The same exports without the
line are synced first, so that the figures can be compared.

    python bench/long_line.py --line-mb 2048 --dir /tmp/crmsync-bench
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import crmsync_sync, emit, generate, machine, write_config

BLOCK = b"9" * (1 << 20)


def _with_long_line(data: Path, target: Path, mib: int) -> int:
    """Copy the exports in ``data`` to ``target``, the orders file ending in a line of ``mib`` MiB; its number."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("customers.csv", "activities.csv", "orders.csv"):
        shutil.copyfile(data / name, target / name)
    with (target / "orders.csv").open("rb+") as fh:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        fh.write(b"LONG,C0000001,,2026-01-01 10:00:00,paid,EUR,")
        for _ in range(mib):
            fh.write(BLOCK)
    return lines + 1


def _rejection(report: dict[str, Any], locator: str) -> dict[str, Any] | None:
    return next((r for r in report.get("rejected", []) if r.get("locator") == locator), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--line-mb", type=int, default=2048, help="size of the line without an end, in MiB")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--orders", type=int, default=100_000, help="order rows (line items) besides the long line")
    parser.add_argument("--dir", type=Path, required=True, help="data and work folder (data kept for reruns)")
    args = parser.parse_args(argv)

    data = generate(args.dir / f"data-{args.customers}-{args.orders}", args.customers, args.orders)
    plain = args.dir / "long-line-control"
    shutil.rmtree(plain, ignore_errors=True)
    control, control_report = crmsync_sync(write_config(plain, data).parent)

    hostile = args.dir / "long-line-data"
    shutil.rmtree(hostile, ignore_errors=True)
    line = _with_long_line(data, hostile, args.line_mb)
    work = args.dir / "long-line-work"
    shutil.rmtree(work, ignore_errors=True)
    measured, report = crmsync_sync(write_config(work, hostile).parent)
    shutil.rmtree(hostile, ignore_errors=True)  # gigabytes: not kept

    rejected = _rejection(report, f"orders.csv:{line}")
    pulled = report["pulled"]["shop"]["orders"]["pulled"]
    figures = {
        "line_mb": args.line_mb,
        "order_rows": args.orders,
        "wall_s": measured.wall_s,
        "peak_mb": measured.peak_mb,
        "control_wall_s": control.wall_s,
        "control_peak_mb": control.peak_mb,
        "orders_pulled": pulled,
        "control_orders_pulled": control_report["pulled"]["shop"]["orders"]["pulled"],
        "long_line_rejected": rejected is not None,
        "reason": rejected["reason"] if rejected else None,
        "exit_code": measured.returncode,
        "machine": machine(),
    }
    emit(
        "long_line",
        figures,
        [
            ("wall time s", measured.wall_s, control.wall_s),
            ("peak memory MB", measured.peak_mb, control.peak_mb),
            ("orders pulled", pulled, figures["control_orders_pulled"]),
            (f"line {line} rejected", rejected is not None, True),
        ],
    )
    print("\n(baseline/target column: the same exports without the long line)")
    return 0 if rejected is not None and pulled == figures["control_orders_pulled"] else 1


if __name__ == "__main__":
    sys.exit(main())
