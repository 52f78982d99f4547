"""The ``crmsync`` command line: a click group, one module per command family.

Exit codes (see :class:`crmsync.ExitCode`): 0 done, 1 done with rejected records, 2 configuration or usage error,
3 run failed. Errors are printed as one clear message; a traceback only with ``--verbose``.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from crmsync.errors import ConfigError, CrmsyncError, ExitCode, PluginError, StoreError, describe_unexpected

BUILTIN_MODULES = ("run_cmds", "info_cmds", "init_cmd", "policy_cmds", "report_cmds", "data_cmds", "store_cmds")


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
        """The configuration; a connector whose secrets are not in the environment is only refused where used."""
        if self._settings is None:
            from crmsync.settings import load_settings

            self._settings = load_settings(self.config, host=self.host)
            configure_logging(self._settings, self.verbose)
        return self._settings

    @property
    def crm_settings(self) -> Any:
        """The configuration for a command that calls the CRMs: every connector's secrets must be set.

        Raises:
            ConfigError: naming each missing secret's key (exit code 2).
        """
        settings = self.settings
        settings.require_secrets()
        return settings

    @contextmanager
    def store(self, *, read_only: bool = False) -> Any:
        """The store of the configuration, opened for writing (with the run lock) or ``read_only`` (beside other
        readers, no lock); a damaged file met on the way is reported as such (exit code 3, the way out)."""
        from crmsync.store import Store, access

        s = self.settings.store
        try:
            store = Store.open(s.path, read_only=read_only, **self.store_options())
        except OSError as exc:
            raise path_error("store.path", s.path, exc) from None
        try:
            yield store
        except Exception as exc:
            if access.is_damaged(exc):
                raise access.damaged_error(s.path, exc) from None
            raise
        finally:
            store.close()

    def store_options(self) -> dict[str, Any]:
        """How the configuration opens the store (:meth:`crmsync.store.Store.open`'s options), with the policy's
        tables."""
        from crmsync.policy import STORE_EXTENSION

        s = self.settings.store
        return {
            "memory_limit": s.memory_limit,
            "threads": s.threads,
            "extensions": [STORE_EXTENSION],
            "wait": s.busy_timeout,
            "keep_backups": s.keep_backups,
        }

    @property
    def member_match(self) -> Any:
        """How orders and activities find their member, as configured (``[sync] members`` and ``match_by``)."""
        from crmsync.store.matching import MemberMatch

        return MemberMatch.configured(self.settings.sync)


PERSON_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS})
"""Errors of a path that a person must fix (permissions, a missing or wrong kind of folder); others may pass."""


def path_error(key: str, path: Path, exc: OSError) -> CrmsyncError:
    """A :class:`ConfigError` naming ``key`` when a person must fix the path, else a :class:`StoreError`."""
    reason = exc.strerror or type(exc).__name__
    where = f"{exc.filename}: " if exc.filename and str(exc.filename) != str(path) else ""
    message = f"{key}: cannot use {path} ({where}{reason})"
    if exc.errno in PERSON_ERRNOS:
        return ConfigError(message, hint="choose a path in a folder this user can write")
    return StoreError(message)


class ConsoleFormatter(logging.Formatter):
    """Formats records for the terminal: without tracebacks unless ``tracebacks`` (``--verbose``).

    The log file keeps them: a failure's traceback is looked up there.
    """

    def __init__(self, fmt: str, *, tracebacks: bool) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks:
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Any, verbose: bool) -> None:
    """Log ``crmsync.*`` to the terminal and to ``[logging] file``, at ``[logging] level`` (DEBUG with --verbose).

    Raises:
        ConfigError: the log file cannot be opened (``logging.file``).
    """
    from crmsync.redact import RedactingFilter

    root = logging.getLogger("crmsync")
    root.setLevel(logging.DEBUG if verbose else getattr(logging, settings.logging.level))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(ConsoleFormatter(LOG_FORMAT, tracebacks=verbose))
    handlers: list[logging.Handler] = [console]
    if settings.logging.file:
        path = Path(settings.logging.file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise path_error("logging.file", path, exc) from None
        file.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(file)
    for h in handlers:
        h.addFilter(RedactingFilter())
    for old in root.handlers:
        old.close()
    root.handlers = handlers
    root.propagate = False


def log_files() -> list[str]:
    """The files ``crmsync.*`` logs to (empty before the configuration is loaded)."""
    return [h.baseFilename for h in logging.getLogger("crmsync").handlers if isinstance(h, logging.FileHandler)]


def where_to_look() -> str:
    """Where the traceback of an unexpected error is: the log file if there is one, else ``--verbose``."""
    files = log_files()
    if files:
        return f"the traceback is in {files[0]}; rerun with --verbose to print it"
    return "rerun with --verbose for the traceback"


def _log_to_files(exc: BaseException) -> None:
    """Write ``exc`` with its traceback to the log files only (the terminal gets one line)."""
    logger = logging.getLogger("crmsync")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "command failed", (), exc_info=None)
    record.exc_info = (type(exc), exc, exc.__traceback__)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


DATES_HELP = (
    "Dates: --as-of, --from and --to take a date or an ISO datetime and mean the same instant in every command: "
    "a date is the end of that day (its last microsecond), a time without an offset is read in sync.timezone. "
    "--until and tier days (grace periods, tier_since) are calendar days in sync.timezone."
)


def as_of_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--as-of DATE``, read by :func:`when` the same way in every command."""
    return click.option(
        "--as-of",
        metavar="DATE",
        help="Grade as of this date or ISO datetime (default: now); a date means the end of that day in sync.timezone.",
    )(f)


def when(app: AppContext, value: str | None, option: str = "--as-of") -> datetime:
    """The instant a date option stands for (see :data:`DATES_HELP`); now when it is not given.

    Raises:
        ConfigError: the value is not a date or datetime (exit code 2).
    """
    from crmsync.policy.days import parse_instant, zone

    if not value:
        return datetime.now(UTC)
    return parse_instant(value, zone(app.settings.sync.timezone), option=option)


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


@click.group(
    cls=CrmsyncGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=f"Grade customers and write the grades back into their CRM.\n\n{DATES_HELP}",
)
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
        if os.environ.get("CRMSYNC_TRACEBACK"):
            raise
        with suppress(Exception):  # the log file may be what failed
            _log_to_files(exc)
        if verbose:
            import traceback

            traceback.print_exc()
            click.echo(f"error: {describe_unexpected(exc)}", err=True)
        else:
            click.echo(f"error: {describe_unexpected(exc)} ({where_to_look()})", err=True)
        sys.exit(int(ExitCode.FAILED))
    sys.exit(int(rv or 0))


__all__ = ["AppContext", "ConfigError", "as_of_option", "cli", "json_option", "main", "when", "where_to_look"]

_register_builtins()
