"""docs/writing-a-plugin.md is runnable and complete: its cursor-paged example connector passes the kit against its
double, every check the kit can generate is in its table, the check count it shows for the scaffold is right, and
every Python block is valid code."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from crmsync.cli.new_plugin import render_plugin
from crmsync.testing import ConnectorContract

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"
FILE = re.compile(r"```python\n# file: (?P<path>[\w/.]+)\n(?P<code>.*?)```", re.S)


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def example_files() -> dict[str, str]:
    """The files of the guide's complete example, by path."""
    return {m["path"]: m["code"] for m in FILE.finditer(guide())}


def write_example(root: Path, files: dict[str, str] | None = None) -> Path:
    """Write the example package and its tests under ``root``; return the tests folder."""
    for path, code in (files or example_files()).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
    return root / "tests"


def run_kit(pytester: pytest.Pytester, root: Path, *args: str) -> pytest.HookRecorder:
    """Run the example's tests/test_contract.py in a nested session, the package and the double importable."""
    tests = root / "tests"
    sys.path[:0] = [str(root), str(tests)]
    try:
        return pytester.inline_run(
            str(tests / "test_contract.py"), "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:xdist",
            *args,
        )  # fmt: skip
    finally:
        for path in (str(root), str(tests)):
            sys.path.remove(path)
        for name in [m for m in sys.modules if m.startswith(("crmsync_hublike", "hublike_double", "test_contract"))]:
            del sys.modules[name]


def test_the_guide_holds_the_whole_example() -> None:
    files = example_files()
    assert set(files) == {
        "crmsync_hublike/__init__.py",
        "crmsync_hublike/connector.py",
        "tests/hublike_double.py",
        "tests/test_contract.py",
    }
    for path, code in files.items():
        compile(code, path, "exec")


@pytest.mark.slow
def test_the_example_connector_passes_the_kit(pytester: pytest.Pytester, tmp_path: Path) -> None:
    root = tmp_path / "crmsync-hublike"
    write_example(root)
    recorder = run_kit(pytester, root)
    passed, skipped, failed = recorder.listoutcomes()
    assert not failed, [r.longreprtext[-2000:] for r in failed]
    assert not skipped
    shown = re.search(r"`pytest` runs (\d+) checks against it", guide())
    assert shown is not None and int(shown.group(1)) == len(passed)


def test_every_check_of_the_kit_is_in_the_guide_with_when_it_runs() -> None:
    section = guide().split("### The checks")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(test_\w+)` \| ([^|]+) \|", section, re.M)
    checks = sorted(n for n in dir(ConnectorContract) if n.startswith("test_"))
    assert sorted(name for name, _ in rows) == checks
    assert all(when.strip() for _, when in rows)


def test_the_scaffold_check_count_in_the_guide_is_right(pytester: pytest.Pytester, tmp_path: Path) -> None:
    root, _ = render_plugin("acme", tmp_path)
    pytester.makepyfile(
        test_scaffold=f"""
import sys
sys.path[:0] = [{str(root / "src")!r}, {str(root / "tests")!r}]
import pytest
from acme_double import AcmeApi
from crmsync_acme.connector import SPEC
from crmsync.testing import ConnectorContract


class TestAcme(ConnectorContract):
    spec = SPEC

    @pytest.fixture
    def crm(self):
        return AcmeApi()
"""
    )
    try:
        items, _ = pytester.inline_genitems("-p", "no:cacheprovider", "-p", "no:xdist")
    finally:
        for name in [m for m in sys.modules if m.startswith(("crmsync_acme", "acme_double"))]:
            del sys.modules[name]
    shown = re.search(r"^(\d+) passed in", guide(), re.M)
    assert shown is not None and int(shown.group(1)) == len(items)


def test_every_python_block_of_the_guide_is_valid_code() -> None:
    blocks = re.findall(r"```python\n(.*?)```", guide(), re.S)
    assert len(blocks) >= 15
    for block in blocks:
        compile(block, "writing-a-plugin.md", "exec")
