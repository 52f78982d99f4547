"""Guards on where things live: the store owns its tables and imports no policy, no import loops in the core, the
engine only orchestrates, and no function needs scrolling without a stated reason."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "crmsync"
BOOKKEEPING = ("outbox", "pushed", "push_audit", "runs", "quarantine", "erasures", "cursors", "connector_state", "meta")
RECORDS = ("members", "orders", "activities", "profiles")
LONG_FUNCTIONS = {
    "crmsync/http.py:make_client": "sixteen keyword arguments, one per line, and their documentation; the body is a "
    "single pass building the transports and the client",
}
"""Functions longer than 60 lines, each with the reason it is not split."""


def core_files() -> Iterator[Path]:
    return (p for p in sorted(CORE.rglob("*.py")) if "templates" not in p.parts)


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The core modules ``path`` imports anywhere in it (at the top, in functions, for type checking only)."""
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            while name not in modules and "." in name:
                name = name.rpartition(".")[0]
            if name in modules:
                found.add(name)
    found.discard(module_of(path))
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_of(p): p for p in core_files()}
    return {m: imports(p, set(files)) for m, p in files.items()}


def a_loop(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of ``graph`` (as the modules along it), or ``None``."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (loop := visit(nxt)):
                return loop
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (loop := visit(start)):
            return loop
    return None


def test_the_store_imports_nothing_of_the_policy() -> None:
    graph = import_graph()
    store = [m for m in graph if m == "crmsync.store" or m.startswith("crmsync.store.")]
    assert len(store) >= 10
    offenders = {m: sorted(t for t in graph[m] if t.startswith("crmsync.policy")) for m in store}
    assert {m: t for m, t in offenders.items() if t} == {}
    # and at run time: loading every module of the store loads no module of the policy
    code = (
        "import importlib, sys\n"
        f"for m in {store!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith('crmsync.policy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_core_has_no_import_loop() -> None:
    graph = import_graph()
    assert a_loop(graph) is None, " -> ".join(a_loop(graph) or [])


def test_the_loop_finder_finds_loops() -> None:
    assert a_loop({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert a_loop({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def sql_on(tables: tuple[str, ...], text: str) -> list[str]:
    pattern = r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+(" + "|".join(tables) + r")\b"
    return re.findall(pattern, text)


@pytest.mark.parametrize(
    "path",
    [p for p in core_files() if "store" not in p.relative_to(CORE).parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_sql_on_the_store_tables_lives_in_the_store(path: Path) -> None:
    """Nobody outside the store touches its bookkeeping; only the policy reads records and profiles (it grades in
    SQL over them)."""
    text = path.read_text(encoding="utf-8")
    assert sql_on(BOOKKEEPING, text) == []
    if "policy" not in path.relative_to(CORE).parts:
        assert sql_on(RECORDS, text) == []


def test_the_sql_finder_sees_statements() -> None:
    assert sql_on(BOOKKEEPING, 'con.execute("DELETE FROM outbox WHERE x")') == ["outbox"]
    assert sql_on(RECORDS, "INSERT INTO profiles BY NAME") == ["profiles"]
    assert sql_on(BOOKKEEPING, "the outbox of a target") == []


def test_the_engine_orchestrates_in_about_300_lines() -> None:
    assert len((CORE / "engine.py").read_text(encoding="utf-8").splitlines()) <= 350


def test_no_function_needs_scrolling() -> None:
    long = {}
    for path in core_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 60:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert set(long) <= set(LONG_FUNCTIONS), {k: v for k, v in long.items() if k not in LONG_FUNCTIONS}


def test_the_readme_names_the_file_of_each_phase() -> None:
    from crmsync.engine import Engine

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## How it works")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert {"config", "pull", "grade", "diff", "push", "report"} <= set(rows)
    for phase in ("pull", "grade", "diff", "push"):
        assert f"`Engine.{phase}`" in rows[phase] and callable(getattr(Engine, phase))
    paths = re.findall(r"`(crmsync/[\w/]+\.py)`", section)
    assert len(paths) >= 10 and [p for p in paths if not (ROOT / p).is_file()] == []
