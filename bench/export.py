"""Export and trial runs at scale: ``crmsync export`` (CSV and Parquet) and a three-month ``crmsync backtest`` on a
synced store, wall time and peak memory of each in its own process.

The store is filled by one ``crmsync sync`` of the generated exports (not measured here: see full.py). Each
export is checked to hold one row per member; the backtest's distributions to count every member.

    python bench/export.py --customers 1000000 --orders 10000000 --dir /tmp/crmsync-bench
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import AS_OF, CRMSYNC, crmsync_sync, emit, generate, machine, run, write_config


def _export(work: Path, fmt: str, customers: int) -> dict[str, Any]:
    out = work / f"members.{fmt}"
    m = run([*CRMSYNC, "--config", str(work / "crmsync.toml"), "export", str(out), "--as-of", AS_OF], cwd=work)
    if m.returncode != 0:
        raise RuntimeError(f"export failed ({m.returncode}): {m.stderr[-2000:]}")
    rows = pq.read_metadata(out).num_rows if fmt == "parquet" else sum(1 for _ in out.open("rb")) - 1
    if rows != customers:
        raise SystemExit(f"the {fmt} export holds {rows} rows for {customers} members")
    return {"wall_s": m.wall_s, "peak_mb": m.peak_mb, "rows": rows, "mb": round(out.stat().st_size / 2**20, 1)}


def _backtest(work: Path, customers: int) -> dict[str, Any]:
    cmd = [*CRMSYNC, "--config", str(work / "crmsync.toml"), "backtest", "--json", "--chart", str(work / "c.html")]
    m = run([*cmd, "--from", "2026-08-01", "--to", "2026-11-01"], cwd=work)
    if m.returncode != 0:
        raise RuntimeError(f"backtest failed ({m.returncode}): {m.stderr[-2000:]}")
    periods = json.loads(m.stdout)
    if any(sum(p["distribution"].values()) != customers for p in periods):
        raise SystemExit("a backtest period does not count every member")
    return {"wall_s": m.wall_s, "peak_mb": m.peak_mb, "periods": len(periods)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000, help="order rows (line items)")
    parser.add_argument("--dir", type=Path, required=True, help="data and work folder (kept for reruns)")
    parser.add_argument("--memory-limit", default="1400MB", help="the store's DuckDB memory limit")
    args = parser.parse_args(argv)
    data = generate(args.dir / f"data-{args.customers}-{args.orders}", args.customers, args.orders)
    work = args.dir / f"export-{args.customers}-{args.orders}"
    if not (work / "crmsync.duckdb").exists():
        write_config(work, data, memory_limit=args.memory_limit)
        crmsync_sync(work)
    r = {
        "customers": args.customers,
        "order_rows": args.orders,
        "csv": _export(work, "csv", args.customers),
        "parquet": _export(work, "parquet", args.customers),
        "backtest_4_months": _backtest(work, args.customers),
    }
    emit(
        "export",
        {"machine": machine(), **r},
        [
            (f"{name}: wall s / peak MB", r[name]["wall_s"], r[name]["peak_mb"])
            for name in ("csv", "parquet", "backtest_4_months")
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
