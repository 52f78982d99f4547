"""``crmsync init``: write a commented starter configuration."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import click

from crmsync.errors import ConfigError


@click.command()
@click.argument("path", default="crmsync.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> int:
    """Write a commented starter configuration to PATH (default ./crmsync.toml)."""
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists (use --force to overwrite)")
    text = files("crmsync.cli").joinpath("templates/starter.toml").read_text(encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}: edit the connectors and the policy, then run 'crmsync check'")
    return 0


COMMANDS = [init]
