"""Guards on the public surface: exports, hook documentation, and the rule that the core imports no plugin."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import crmsync
from crmsync import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_complete() -> None:
    kind = lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)  # noqa: E731  (constants, classes, rest)
    assert crmsync.__all__ == sorted(crmsync.__all__, key=kind)
    for name in crmsync.__all__:
        assert hasattr(crmsync, name), name
    public = {n for n in dir(crmsync) if not n.startswith("_") and not inspect.ismodule(getattr(crmsync, n))}
    assert public <= set(crmsync.__all__), public - set(crmsync.__all__)


def test_every_hook_is_prefixed_and_documented_with_an_example() -> None:
    hooks = [f for n, f in vars(hookspecs).items() if n.startswith("crmsync_") and callable(f)]
    assert len(hooks) >= 5
    for hook in hooks:
        doc = inspect.getdoc(hook) or ""
        assert len(doc) > 80, hook.__name__
        assert "Example::" in doc, hook.__name__
        assert hasattr(hook, "crmsync_spec"), f"{hook.__name__} is not marked as a hook spec"
    names = {n for n in vars(hookspecs) if callable(vars(hookspecs)[n]) and hasattr(vars(hookspecs)[n], "crmsync_spec")}
    assert all(n.startswith("crmsync_") for n in names)


def test_core_imports_no_plugin() -> None:
    plugin_modules = {p.name for p in (ROOT / "plugins").glob("*/crmsync_*") if p.is_dir()}
    assert {"crmsync_zoho", "crmsync_generic_csv", "crmsync_fxiaoke"} <= plugin_modules
    offenders = []
    for path in (ROOT / "crmsync").rglob("*.py"):
        if "templates" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in plugin_modules]
    assert offenders == []


def test_builtin_plugins_are_discovered_through_entry_points() -> None:
    from importlib.metadata import entry_points

    from crmsync.plugins import PluginHost

    eps = {ep.name: ep.value for ep in entry_points(group="crmsync")}
    assert eps["zoho"] == "crmsync_zoho" and eps["generic_csv"] == "crmsync_generic_csv"
    assert eps["fxiaoke"] == "crmsync_fxiaoke"
    host = PluginHost()
    host.load_entrypoints()
    assert {"zoho", "generic_csv", "fxiaoke"} <= set(host.connector_names())
    assert all(host.plugins[n].status == "ok" for n in ("zoho", "generic_csv", "fxiaoke"))
