"""The ``crmsync`` command line: a click group, one module per command family.

Exit codes (see :class:`crmsync.ExitCode`): 0 done, 1 done with rejected records, 2 configuration or usage error,
3 run failed. Errors are printed as one clear message; a traceback only with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from crmsync.errors import ConfigError, CrmsyncError, ExitCode, PluginError

BUILTIN_MODULES = ("run_cmds", "info_cmds", "init_cmd", "policy_cmds", "data_cmds")


@dataclass
class AppContext:
    config: str | None = None
    verbose: bool = False
    _settings: Any = None
    _host: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> Any:
        if self._host is None:
            from crmsync.plugins import get_host

            self._host = get_host()
        return self._host

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from crmsync.settings import load_settings

            self._settings = load_settings(self.config, host=self.host)
            configure_logging(self._settings, self.verbose)
        return self._settings

    @contextmanager
    def store(self) -> Any:
        from crmsync.policy import STORE_EXTENSION
        from crmsync.store import Store

        s = self.settings.store
        store = Store.open(s.path, memory_limit=s.memory_limit, threads=s.threads, extensions=[STORE_EXTENSION])
        try:
            yield store
        finally:
            store.close()


def configure_logging(settings: Any, verbose: bool) -> None:
    root = logging.getLogger("crmsync")
    root.setLevel(logging.DEBUG if verbose else getattr(logging, settings.logging.level))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.logging.file:
        Path(settings.logging.file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(settings.logging.file, encoding="utf-8"))
    try:
        from crmsync.redact import RedactingFilter
    except ImportError:  # pragma: no cover - redaction module is part of the core
        RedactingFilter = None  # type: ignore[assignment,misc]
    for h in handlers:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        if RedactingFilter is not None:
            h.addFilter(RedactingFilter())
    root.handlers = handlers
    root.propagate = False


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


class CrmsyncGroup(click.Group):
    """Built-in commands first, then commands that plugins add through ``crmsync_commands``."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        cache = ctx.meta.setdefault("crmsync.plugin_commands", None)
        if cache is not None:
            return cache
        from crmsync.plugins import get_host

        cache = {}
        for plugin, cmd in get_host().commands():
            if not isinstance(cmd, click.Command) or not cmd.name:
                raise PluginError(f"plugin {plugin!r}: crmsync_commands returned {cmd!r}, not a click command")
            if cmd.name in self.commands or cmd.name in cache:
                raise PluginError(f"plugin {plugin!r}: command name {cmd.name!r} is already taken")
            cache[cmd.name] = cmd
        ctx.meta["crmsync.plugin_commands"] = cache
        return cache

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self.commands)
        with suppress(CrmsyncError):  # a broken plugin must not break --help
            names += sorted(self._plugin_commands(ctx))
        return names

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        return self._plugin_commands(ctx).get(cmd_name)


@click.group(cls=CrmsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    metavar="PATH",
    help="Configuration file (default: $CRMSYNC_CONFIG, else ./crmsync.toml).",
)
@click.option("--verbose", "-v", is_flag=True, help="Debug logging and tracebacks on errors.")
@click.version_option(package_name="crmsync")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: bool) -> None:
    """Grade customers and write the grades back into their CRM."""
    ctx.obj = AppContext(config=config, verbose=verbose)


def _register_builtins() -> None:
    import importlib

    for mod in BUILTIN_MODULES:
        module = importlib.import_module(f"crmsync.cli.{mod}")
        for cmd in getattr(module, "COMMANDS", ()):
            cli.add_command(cmd)
    try:
        from crmsync.cli.new_plugin import new_plugin
    except ImportError:
        pass
    else:
        cli.add_command(new_plugin)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group and map errors to exit codes."""
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="crmsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(int(ExitCode.FAILED))
    except click.ClickException as exc:
        exc.show()
        sys.exit(int(ExitCode.CONFIG) if exc.exit_code == 2 else exc.exit_code)
    except CrmsyncError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(int(ExitCode.FAILED))
    except Exception as exc:
        if verbose or os.environ.get("CRMSYNC_TRACEBACK"):
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --verbose for details)", err=True)
        sys.exit(int(ExitCode.FAILED))
    sys.exit(int(rv or 0))


__all__ = ["AppContext", "ConfigError", "cli", "json_option", "main"]

_register_builtins()
