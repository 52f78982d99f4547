"""What the benchmark scripts share: data generation, configuration, measured subprocesses, comparison, output.

Each measured program runs in its own subprocess; its wall time is taken around it and its peak resident memory
comes from ``os.wait4`` (the kernel's ``ru_maxrss`` of exactly that child, children of its own included).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
AS_OF = "2026-11-01T00:00:00+00:00"
"""Every benchmark grades as of the end of the generated data."""
CRMSYNC = [sys.executable, "-c", "import sys; from crmsync.cli import main; sys.exit(main())"]
BASELINES = {"pandas": "baseline_pandas.py", "polars": "baseline_polars.py", "duckdb": "baseline_duckdb.py"}
"""The hand-written scripts crmsync is measured against, by name; each grades the same data with the same policy."""


@dataclass
class Measured:
    wall_s: float
    peak_mb: float
    cpu_s: float
    """User plus system CPU time of the process (and its waited-for children): less disturbed by a busy machine."""
    returncode: int
    stdout: str
    stderr: str


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` to its end; wall time, CPU time and peak RSS of that process (``os.wait4``)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        peak = round(usage.ru_maxrss / 1024, 1)
        return Measured(round(wall, 2), peak, round(cpu, 2), proc.returncode, out.read(), err.read())


def generate(folder: Path, customers: int, orders: int, *, seed: int = 1) -> Path:
    """Generated CSV exports in ``folder`` (reused when the same size is already there)."""
    stamp = folder / "generated.json"
    args = {"customers": customers, "orders": orders, "seed": seed, "activities": customers * 2, "bad_rows": 7}
    if stamp.exists() and json.loads(stamp.read_text()) == args:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    cmd = [sys.executable, str(BENCH / "generate.py"), "--customers", str(customers), "--orders", str(orders)]
    cmd += ["--out", str(folder), "--line-items", "--activities", str(args["activities"]), "--bad-rows", "7"]
    cmd += ["--seed", str(seed)]
    subprocess.run(cmd, check=True, capture_output=True)
    stamp.write_text(json.dumps(args))
    return folder


ORDER_COLUMNS = (
    '{ external_id = "order_id", member_external_id = "customer_id", member_email = "customer_email", '
    'placed_at = "order_date", amount = "line_amount" }'
)
ACTIVITY_COLUMNS = '{ external_id = "activity_id", member_external_id = "customer_id" }'


def lake(data: Path) -> Path:
    """The order and activity exports of ``data`` as Parquet files of text columns, as a data lake would hold the raw
    export (``orders.parquet``, ``activities.parquet``; made once). Rows a typed table cannot hold (a wrong number of
    cells, bytes that are not text) are left out."""
    import duckdb

    for name in ("orders", "activities"):
        target = data / f"{name}.parquet"
        if not target.exists():
            con = duckdb.connect()
            src = f"read_csv('{data / f'{name}.csv'}', all_varchar = true, header = true, ignore_errors = true)"
            con.execute(f"COPY (SELECT * FROM {src}) TO '{target}.tmp' (FORMAT parquet)")
            os.replace(f"{target}.tmp", target)
    return data


def spark_grading(data: Path, conf: str) -> str:
    """The ``[grading]`` tables grading on Spark in local mode, orders and activities read from ``lake(data)``."""
    return f"""
[grading]
engine = "spark"

[grading.spark]
master = "local[*]"
conf = {conf}
orders = {{ parquet = "{data / "orders.parquet"}", columns = {ORDER_COLUMNS}, source = "shop" }}
activities = {{ parquet = "{data / "activities.parquet"}", columns = {ACTIVITY_COLUMNS}, source = "shop" }}
"""


def write_config(
    work: Path, data: Path, *, orders: str = "orders.csv", memory_limit: str = "1400MB", engine: str = "duckdb"
) -> Path:
    """A ``crmsync.toml`` in ``work`` reading the exports in ``data`` with the benchmark policy; with ``engine =
    "spark"`` the orders and activities are graded on Spark where they are, as Parquet (:func:`lake`)."""
    work.mkdir(parents=True, exist_ok=True)
    spark = engine == "spark"
    streams = "[]" if spark else '["shop"]'
    text = f"""[store]
path = "crmsync.duckdb"
memory_limit = "{memory_limit}"

[sync]
members = "shop"
orders = {streams}
activities = {streams}
push = ["shop"]
base_currency = "EUR"
timezone = "UTC"

[connectors.shop]
plugin = "generic_csv"
members_path = "{data / "customers.csv"}"
orders_path = "{data / orders}"
activities_path = "{data / "activities.csv"}"
output_path = "out/profiles.csv"
rejects_path = "out/rejects.csv"
push_batch_size = 10000000
members_columns = {{ external_id = "customer_id" }}
orders_columns = {ORDER_COLUMNS}
activities_columns = {ACTIVITY_COLUMNS}

"""
    if spark:
        conf = '{ "spark.driver.memory" = "3g", "spark.sql.shuffle.partitions" = "8", "spark.ui.enabled" = false }'
        text += spark_grading(lake(data), conf)
    path = work / "crmsync.toml"
    path.write_text(text + "\n" + (BENCH / "policy.toml").read_text(encoding="utf-8"), encoding="utf-8")
    return path


def compile_crmsync() -> None:
    """Write the bytecode of crmsync and of its plugins, as an installed package has it, so that start-up is measured
    without compiling sources (which an editable install under ``PYTHONDONTWRITEBYTECODE`` would do every run)."""
    import compileall
    from importlib.util import find_spec

    for name in ("crmsync", "crmsync_generic_csv", "crmsync_zoho", "crmsync_fxiaoke"):
        spec = find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(folder, quiet=1)


def crmsync_sync(work: Path, as_of: str = AS_OF) -> tuple[Measured, dict[str, Any]]:
    """``crmsync sync --json --as-of AS_OF`` in ``work``; the measurement and the run report."""
    compile_crmsync()
    m = run([*CRMSYNC, "--config", str(work / "crmsync.toml"), "sync", "--json", "--as-of", as_of], cwd=work)
    if m.returncode not in (0, 1):
        raise RuntimeError(f"crmsync sync failed ({m.returncode}): {m.stdout[-2000:]} {m.stderr[-2000:]}")
    start = m.stdout.find("{")
    try:
        return m, json.JSONDecoder().raw_decode(m.stdout[start:])[0]
    except ValueError:
        raise RuntimeError(f"crmsync sync printed no report: {m.stdout[:1000]} {m.stderr[-2000:]}") from None


def baseline(data: Path, out: Path, name: str = "pandas") -> Measured:
    """Run the baseline script ``name`` (a key of :data:`BASELINES`) on ``data``, writing its profiles to ``out``."""
    script = BENCH / BASELINES[name]
    m = run([sys.executable, str(script), "--data", str(data), "--as-of", AS_OF, "--out", str(out)])
    if m.returncode != 0:
        raise RuntimeError(f"{name} baseline failed: {m.stderr[-2000:]}")
    return m


def baseline_names(text: str) -> list[str]:
    """``pandas,polars,duckdb`` as a list, each checked against :data:`BASELINES`."""
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline {', '.join(map(repr, unknown))}: choose from {', '.join(BASELINES)}")
    return list(dict.fromkeys(names))


def read_profiles(path: Path) -> dict[str, tuple[str, ...]]:
    fields = ("tier", "points", "tags", "rfm_segment", "lifecycle")
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["member_id"]: tuple(row[f] for f in fields) for row in csv.DictReader(fh)}


def compare(ours: Path, theirs: Path) -> dict[str, Any]:
    """Members whose grades differ between two profile files (and the first few of them)."""
    a, b = read_profiles(ours), read_profiles(theirs)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return {"members": len(a), "baseline_members": len(b), "differ": len(differ), "examples": differ[:5]}


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import psutil

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": {n: installed(n) for n in ("duckdb", "pandas", "polars", "pyarrow", "pyspark")},
    }


def emit(
    scenario: str,
    figures: dict[str, Any],
    rows: list[tuple[Any, ...]],
    header: tuple[str, ...] = ("crmsync", "baseline/target"),
) -> None:
    """Print one line of JSON and a readable table (``rows``: what, then one value per ``header`` column)."""
    print(json.dumps({"scenario": scenario, **figures}, sort_keys=True))
    width = max(len(str(r[0])) for r in rows) if rows else 10
    print(f"\n{scenario}")
    print(f"{'':{width}}" + "".join(f"  {h:>16}" for h in header))
    for what, *values in rows:
        print(f"{what!s:{width}}" + "".join(f"  {v!s:>16}" for v in values))
