"""Exceptions and exit codes.

Every error crmsync raises on purpose derives from :class:`CrmsyncError` and carries the exit code the
command line ends with. The class decides what happens next::

    CrmsyncError                    exit 3 unless stated
    ├── ConfigError                 exit 2: bad configuration or usage; fix the file and rerun
    │   ├── PolicyError             exit 2: the [policy] table is invalid
    │   └── PluginError             exit 2: a plugin is broken, incompatible or conflicts with another
    ├── StoreError                  exit 3: the local store cannot be used
    │   ├── StoreLockedError        exit 3: another run holds the store (or, for a read-only command, writes it)
    │   └── StoreDamagedError       exit 3: the store file is damaged; the message names the way out
    └── ConnectorError              exit 3: a connector failed talking to its system
        ├── AuthError               exit 2: credentials refused; retrying will not help
        ├── RetryableError          exit 3: transient (429, 5xx, timeout); ``retry_after`` seconds if known
        └── FatalAPIError           exit 3: the API answered in a way retrying will not change

Bad rows and rejected pushes are *values* (:class:`crmsync.connector.Rejection`,
:class:`crmsync.connector.RecordResult`), never exceptions: one bad record never stops a run.

Messages never carry secrets, query strings, headers or bodies: build them with
:func:`crmsync.redact.describe_request` when a request is involved.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``crmsync`` command, for schedulers."""

    OK = 0
    """The run finished and every record was handled."""
    REJECTED = 1
    """The run finished, but some records were rejected (see the report)."""
    CONFIG = 2
    """Configuration, credentials or usage error: a person must fix something."""
    FAILED = 3
    """The run failed; nothing half-written remains and a rerun resumes."""


class CrmsyncError(Exception):
    """Base of every error crmsync raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(CrmsyncError):
    """The configuration is invalid; ``problems`` holds one line per problem (``key.path: reason``)."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str = "", *, problems: list[str] | None = None, hint: str | None = None):
        self.problems = list(problems or [])
        if not message:
            message = "invalid configuration" if self.problems else "configuration error"
        if self.problems:
            message = message + ":\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message, hint=hint)


class PolicyError(ConfigError):
    """The grading policy is invalid (unknown metric, bad expression, inconsistent tiers...)."""


class PluginError(ConfigError):
    """A plugin failed to load, declared a bad spec, or conflicts with another plugin."""


class StoreError(CrmsyncError):
    """The local store cannot be opened, migrated or written."""


class StoreLockedError(StoreError):
    """Another crmsync process holds the store; this run did nothing."""


class StoreDamagedError(StoreError):
    """The store file is damaged (a block fails its checksum, the file is cut short): restore a backup or rebuild."""


class ConnectorError(CrmsyncError):
    """A connector failed; ``connector`` names the configured connector when known."""

    def __init__(self, message: str = "", *, connector: str | None = None, hint: str | None = None):
        self.connector = connector
        if connector and not message.startswith(f"{connector}:"):
            message = f"{connector}: {message}"
        super().__init__(message, hint=hint)


class AuthError(ConnectorError):
    """Credentials were refused (revoked token, wrong secret): a person must fix them."""

    exit_code = ExitCode.CONFIG


class RetryableError(ConnectorError):
    """A transient failure that may succeed later (429, 5xx, timeouts, resets)."""

    def __init__(
        self,
        message: str = "",
        *,
        connector: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ):
        super().__init__(message, connector=connector, hint=hint)
        self.retry_after = retry_after


class FatalAPIError(ConnectorError):
    """The API answered in a way that retrying will not change (a 4xx, a malformed body)."""


UNEXPECTED = "unexpected"
"""How the message of an error crmsync did not raise on purpose (a bug, or a library's surprise) starts."""


def describe_unexpected(exc: BaseException, limit: int = 300) -> str:
    """``unexpected KIND: first line of the message``: one line, whatever the exception's text holds."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[: limit - 1] + "…"
    return f"{UNEXPECTED} {type(exc).__name__}: {first}" if first else f"{UNEXPECTED} {type(exc).__name__}"
