"""Plugins use crmsync's public API only: the built-in plugins and the scaffold's package import names that
``crmsync``, ``crmsync.helpers`` (and, in tests, ``crmsync.testing``) publish in ``__all__``, nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import crmsync
import crmsync.helpers
import crmsync.testing
from crmsync.cli.new_plugin import render_plugin

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {
    "crmsync": set(crmsync.__all__),
    "crmsync.helpers": set(crmsync.helpers.__all__),
}
FOR_TESTS = {**PUBLIC, "crmsync.testing": set(crmsync.testing.__all__)}


def private_uses(source: str, allowed: dict[str, set[str]]) -> list[str]:
    """Every import of a crmsync module or name outside ``allowed``, and every ``crmsync.<name>`` it does not
    publish, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "crmsync" and a.name not in allowed]  # fmt: skip
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "crmsync":
            module = node.module or ""
            if module not in allowed:
                found.append(f"{node.lineno}: from {module} import ...")
                continue
            found += [f"{node.lineno}: from {module} import {a.name}" for a in node.names
                      if a.name not in allowed[module] and f"{module}.{a.name}" not in allowed]  # fmt: skip
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "crmsync"
            and node.attr not in allowed["crmsync"]
            and f"crmsync.{node.attr}" not in allowed
        ):
            found.append(f"{node.lineno}: crmsync.{node.attr}")
    return found


def plugin_sources() -> list[Path]:
    return sorted(p for p in (ROOT / "plugins").rglob("*.py") if "tests" not in p.relative_to(ROOT).parts)


def test_the_guard_sees_private_imports() -> None:
    source = (
        "import crmsync\nimport crmsync.store\nfrom crmsync.redact import safe_repr\n"
        "from crmsync import Batch, engine\nfrom crmsync.helpers import Watermark, paging\n"
        "x = crmsync.models.aware\ny = crmsync.Batch\n"
    )
    assert private_uses(source, PUBLIC) == [
        "2: import crmsync.store",
        "3: from crmsync.redact import ...",
        "4: from crmsync import engine",
        "5: from crmsync.helpers import paging",
        "6: crmsync.models",
    ]


@pytest.mark.parametrize("path", plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_built_in_plugins_import_only_the_public_api(path: Path) -> None:
    assert private_uses(path.read_text(encoding="utf-8"), PUBLIC) == []


def test_the_scaffold_imports_only_the_public_api(tmp_path: Path) -> None:
    root, written = render_plugin("acme", tmp_path)
    uses = {}
    for path in written:
        if path.suffix == ".py":
            allowed = FOR_TESTS if "tests" in path.relative_to(root).parts else PUBLIC
            uses[str(path.relative_to(root))] = private_uses(path.read_text(encoding="utf-8"), allowed)
    assert len(uses) >= 4 and {k: v for k, v in uses.items() if v} == {}


def test_every_public_name_is_documented_in_the_plugin_guide() -> None:
    guide = (ROOT / "docs" / "writing-a-plugin.md").read_text(encoding="utf-8")
    missing = [name for name in crmsync.helpers.__all__ if f"`{name}" not in guide]
    assert missing == []
