"""A store damaged on disk (64 KiB of garbage at generated offsets, or a file cut short): every command either works
or stops with exit 3 and one message naming the file and the way out, never a traceback; ``store check`` finds
the damage; ``store rebuild`` (or a restore) brings the deployment back, and forgotten members stay forgotten."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from crmsync.cli import main
from tests.test_cli import run_main

from .rel_support import AS_OF, CsvWorld

COMMANDS = [["runs"], ["rejects"], ["history", "C0004"], ["explain", "C0004"], ["sync", "--as-of", AS_OF]]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment after two syncs and the erasure of member C0009, kept as it is (each test copies it)."""
    folder = tmp_path_factory.mktemp("pristine")
    config = CsvWorld(folder, members=40, orders=400, activities=40).write()
    cfg = ["--config", str(config)]
    for args in (["sync", "--as-of", AS_OF], ["forget", "C0009", "--yes"], ["sync", "--as-of", AS_OF]):
        with pytest.raises(SystemExit) as info:
            main([*cfg, *args])
        assert info.value.code in (0, 1), args
    return folder


def copy(pristine: Path, tmp_path: Path) -> tuple[list[str], Path]:
    folder = tmp_path / "deploy"
    shutil.copytree(pristine, folder)
    return ["--config", str(folder / "crmsync.toml")], folder / "store.duckdb"


def damage(store: Path, seed: int) -> str:
    rnd = random.Random(seed)
    size = store.stat().st_size
    if seed % 5 == 4:
        store.open("r+b").truncate(rnd.randrange(4096, size))
        return "cut short"
    offset = rnd.randrange(0, size - 65536)
    with store.open("r+b") as fh:
        fh.seek(offset)
        fh.write(rnd.randbytes(65536))
    return f"garbage at {offset}"


def said_damaged(err: str, store: Path) -> bool:
    return f"the store {store} is damaged" in err and "crmsync store rebuild" in err and "store restore" in err


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_a_damaged_store_gives_one_clear_message_and_rebuild_brings_it_back(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int
) -> None:
    cfg, store = copy(pristine, tmp_path)
    how = damage(store, seed)
    failures = 0
    for args in COMMANDS:
        code, _, err = run_main([*cfg, *args], capsys)
        assert "Traceback" not in err and "unexpected" not in err, (how, args, err)
        assert code in (0, 1) or (code == 3 and said_damaged(err, store)), (how, args, code, err)
        failures += code == 3
    code, out, _ = run_main([*cfg, "store", "check", "--json"], capsys)
    doc = json.loads(out)
    assert (code == 3) == (not doc["ok"]), (how, doc)
    if failures:
        assert code == 3, (how, doc)  # what failed a command, check finds
    code, out, err = run_main([*cfg, "store", "rebuild", "--yes", "--json"], capsys)
    assert code == 0, err
    rebuilt = json.loads(out)
    assert rebuilt["erasures"] == 1 and Path(rebuilt["set_aside"]).exists()
    code, out, err = run_main([*cfg, "sync", "--as-of", AS_OF, "--json"], capsys)
    assert code in (0, 1), err
    assert json.loads(out)["members_graded"] == 39  # every member but the forgotten one
    code, out, _ = run_main([*cfg, "store", "check", "--json"], capsys)
    assert code == 0 and json.loads(out)["ok"]
    assert b"person9@example.com" not in store.read_bytes()


@pytest.mark.slow
def test_a_backup_put_back_resumes_and_keeps_members_forgotten_since(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, store = copy(pristine, tmp_path)
    backup = tmp_path / "backups"
    backup.mkdir()
    code, out, err = run_main([*cfg, "store", "backup", str(backup), "--json"], capsys)
    assert code == 0, err
    copy_path = Path(json.loads(out)["backup"])
    assert copy_path.parent == backup and copy_path.stat().st_size > 0
    code, _, err = run_main([*cfg, "store", "backup", str(copy_path)], capsys)
    assert code == 2 and "exists" in err
    code, _, _ = run_main([*cfg, "forget", "C0011", "--yes"], capsys)
    assert code == 0
    damage(store, 1)
    code, out, err = run_main([*cfg, "store", "restore", str(copy_path), "--yes"], capsys)
    assert code == 0, err
    assert "now holds a copy" in out and "replaced-" in out
    code, out, err = run_main([*cfg, "sync", "--as-of", AS_OF, "--json"], capsys)
    assert code in (0, 1), err
    assert json.loads(out)["members_graded"] == 38  # C0009 and C0011, forgotten after the backup, stay out
    assert b"person11@example.com" not in store.read_bytes()
