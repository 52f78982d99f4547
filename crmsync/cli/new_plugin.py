"""``crmsync new-plugin NAME``: write a ready-to-install connector plugin package from the kit's templates.

The package (``crmsync-NAME/``) holds its own ``pyproject.toml`` with the ``crmsync`` entry point, an example
connector for a typical paged JSON REST API, a respx double of that API, the conformance test and a README.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from crmsync.errors import ConfigError

TEMPLATES = Path(__file__).resolve().parent.parent / "testing" / "templates" / "plugin"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def render_plugin(name: str, directory: Path) -> tuple[Path, list[Path]]:
    """Write ``crmsync-NAME/`` under ``directory``; return the package folder and the files written.

    Raises:
        ConfigError: ``name`` is not a valid connector name, or the folder already exists.
    """
    if not _NAME.match(name):
        raise ConfigError(f"plugin name {name!r}: use lower-case letters, digits and underscores (e.g. 'hubspot')")
    from crmsync import __version__

    words = name.split("_")
    values = {
        "name": name,
        "dist": name.replace("_", "-"),
        "Class": "".join(w.capitalize() for w in words),
        "Title": " ".join(w.capitalize() for w in words),
        "crmsync_version": __version__,
    }
    root = directory / f"crmsync-{values['dist']}"
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another --dir or remove it first")
    written = []
    for template in sorted(TEMPLATES.rglob("*.tmpl")):
        relative = str(template.relative_to(TEMPLATES)).removesuffix(".tmpl")
        text = template.read_text(encoding="utf-8")
        for key, value in values.items():
            relative = relative.replace("{{" + key + "}}", value)
            text = text.replace("{{" + key + "}}", value)
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return root, written


@click.command("new-plugin", context_settings={"help_option_names": ["-h", "--help"]})  # also when run on its own
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to create crmsync-NAME/ in.",
)
def new_plugin(name: str, directory: Path) -> None:
    """Write a connector plugin package crmsync-NAME/ ready to install and test.

    NAME is the connector's name in configurations (plugin = "NAME"): lower-case letters, digits, "_".
    """
    root, written = render_plugin(name, directory)
    click.echo(f"created {root}")
    for path in written:
        click.echo(f"  {path.relative_to(root)}")
    click.echo(f'\nnext:\n  cd {root}\n  pip install -e ".[test]"\n  pytest')
