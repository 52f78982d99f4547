"""docs/cli.md is the ``--help`` of every command.

Regenerate it with ``CRMSYNC_UPDATE_DOCS=1 pytest tests/test_docs.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from click.testing import CliRunner

from crmsync.cli import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
BUILTIN = [
    "init",
    "check",
    "plan",
    "sync",
    "explain",
    "preview",
    "backtest",
    "report",
    "export",
    "override",
    "runs",
    "rejects",
    "history",
    "forget",
    "retry",
    "store",
    "store check",
    "store backup",
    "store restore",
    "store rebuild",
    "plugins",
    "new-plugin",
]


def render() -> str:
    runner = CliRunner()
    parts = [
        "# Command line reference\n",
        "Generated from `crmsync --help` and `crmsync COMMAND --help`; exit codes are in the README.\n",
    ]
    for args in [[], *(name.split() for name in BUILTIN)]:
        result = runner.invoke(cli, [*args, "--help"], prog_name="crmsync", terminal_width=100)
        assert result.exit_code == 0, result.output
        title = "crmsync " + " ".join(args) if args else "crmsync"
        parts.append(f"## `{title.strip()}`\n\n```text\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


def test_cli_reference_matches_help() -> None:
    text = render()
    if os.environ.get("CRMSYNC_UPDATE_DOCS"):
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, (
        "docs/cli.md is stale: CRMSYNC_UPDATE_DOCS=1 pytest tests/test_docs.py"
    )
    for name in BUILTIN:
        assert cli.get_command(None, name.split()[0]) is not None, name  # type: ignore[arg-type]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """CI must run exactly what README.md tells a newcomer to run for the tests."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    [test_command] = [b for b in blocks if "pytest" in b]
    ci_lines = (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci_lines
