"""Read-only commands run beside each other and never take the run lock; beside a run that writes the store they
wait for it (``[store] busy_timeout``) and then stop with one clear line; a run waits for readers the same way."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .rel_support import AS_OF, CsvWorld, crmsync_env, run_cli

READERS = [
    ["explain", "C0003"],
    ["explain", "C0004", "--json"],
    ["preview", "--as-of", "2025-12-01"],
    ["backtest", "--from", "2025-10-01", "--to", "2025-12-31"],
    ["runs"],
    ["rejects", "--json"],
    ["history", "C0003"],
    ["store", "check"],
]
HOLD = """
import sys, time
from crmsync.store import Store
store = Store.open(sys.argv[1], read_only=sys.argv[2] == "read")
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
store.close()
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("readers")
    config = CsvWorld(folder, members=30, orders=200, activities=20).write()
    done = run_cli(config, "sync", "--as-of", AS_OF, env=crmsync_env())
    assert done.returncode == 1, done.stderr  # the world's bad rows
    return config


def hold(store: Path, mode: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD), str(store), mode, str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=crmsync_env())  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def start(config: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", "from crmsync.cli import main; main()", "--config", str(config), *args]
    return subprocess.Popen(cmd, env=env, cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_read_only_commands_run_together_beside_a_reader(deployment: Path) -> None:
    reader = hold(deployment.parent / "store.duckdb", "read", 60)
    try:
        env = crmsync_env({"CRMSYNC_STORE__BUSY_TIMEOUT": "0"})  # none of them may wait for another
        procs = [(args, start(deployment, args, env)) for args in READERS]
        for args, proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, (args, err)
            assert "in use" not in err and "Traceback" not in err
    finally:
        reader.kill()
        reader.wait()


@pytest.mark.slow
def test_a_reader_waits_for_a_writer_then_says_so_and_a_writer_waits_for_readers(deployment: Path) -> None:
    store = deployment.parent / "store.duckdb"
    writer = hold(store, "write", 60)
    try:
        t0 = time.monotonic()
        done = run_cli(deployment, "runs", env=crmsync_env({"CRMSYNC_STORE__BUSY_TIMEOUT": "1"}))
        assert time.monotonic() - t0 >= 1
        assert done.returncode == 3 and "Traceback" not in done.stderr
        assert f"the store {store} is being written by a crmsync run (pid {writer.pid}); this command waited" in (
            done.stderr
        )
        assert "busy_timeout" in done.stderr
    finally:
        writer.kill()
        writer.wait()
    reader = hold(store, "read", 3)
    t0 = time.monotonic()
    done = run_cli(deployment, "sync", "--as-of", AS_OF, env=crmsync_env({"CRMSYNC_STORE__BUSY_TIMEOUT": "30"}))
    assert done.returncode == 0, done.stderr  # waited for the reader, then ran
    assert time.monotonic() - t0 >= 1.5
    reader.wait()
    reader = hold(store, "read", 60)
    try:
        done = run_cli(deployment, "sync", "--as-of", AS_OF, env=crmsync_env({"CRMSYNC_STORE__BUSY_TIMEOUT": "0.5"}))
        assert done.returncode == 3 and f"is being read by pid {reader.pid}" in done.stderr
    finally:
        reader.kill()
        reader.wait()
