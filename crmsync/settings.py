"""Configuration: one TOML file plus environment variables.

The file is found at ``--config PATH``, else ``$CRMSYNC_CONFIG``, else ``./crmsync.toml``. Every value can be
overridden by an environment variable named ``CRMSYNC_`` + the key path joined by ``__``, e.g.
``CRMSYNC_CONNECTORS__CRM__CLIENT_SECRET`` or ``CRMSYNC_SYNC__BASE_CURRENCY``. Environment beats file.

Each ``[connectors.NAME]`` table is validated by the settings model that its plugin's
:class:`~crmsync.specs.ConnectorSpec` declares. Relative paths are read relative to the configuration
file's folder. Every problem is reported with its key path (``connectors.shop.orders_path: file not
found``), all at once, as a :class:`~crmsync.errors.ConfigError` (exit code 2).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from crmsync.errors import ConfigError
from crmsync.grading.settings import GradingSettings
from crmsync.paths import (
    ConfigPath,
    PathRole,
    SettingPath,
    declared_paths,
    path_problems,
    store_problem,
)
from crmsync.policy.model import Policy
from crmsync.redact import register_secrets

if TYPE_CHECKING:
    from crmsync.plugins import PluginHost

DEFAULT_CONFIG = "crmsync.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(_Strict):
    path: ConfigPath = Field(Path("crmsync.duckdb"), description="the store file (created on first run)")
    keep_runs: int = Field(200, ge=1, description="run records kept; older ones are pruned")
    memory_limit: str | None = Field(
        "2GB", description="DuckDB memory limit, e.g. '4GB' (beyond it DuckDB spills to disk); empty: 80% of RAM"
    )
    threads: int | None = Field(None, ge=1)
    busy_timeout: float = Field(
        10.0, ge=0, description="seconds a command waits for another process holding the store before it gives up"
    )
    keep_backups: int = Field(3, ge=0, description="automatic backups kept (one is taken before each schema upgrade)")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        return memory_size(value)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+|%)\s*$", re.IGNORECASE)
_SCALES = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_WORDS = {"kilo": "k", "mega": "m", "giga": "g", "tera": "t"}


def _unit_bytes(unit: str) -> int | None:
    """Bytes in a unit the database understands: B, KB..TB (1000^n), KiB..TiB (1024^n), K..T, or in words."""
    u = unit.lower()
    if u in ("b", "byte", "bytes"):
        return 1
    word = next((_WORDS[w] for w in _WORDS if u in (f"{w}byte", f"{w}bytes")), None)
    if word:
        return _SCALES[word]
    if u[0] in _SCALES and u[1:] in ("", "b"):
        return _SCALES[u[0]]
    if u[0] in _SCALES and u[1:] == "ib":
        return 1024 ** ("kmgt".index(u[0]) + 1)
    return None


MIN_MEMORY = 16 * 10**6
"""The least memory limit accepted: below it the database cannot even open the store."""


def memory_size(value: str) -> str:
    """Check a memory size such as ``2GB``, ``512MiB``, ``1.5 GB`` or ``50%``; return it without spaces.

    Raises:
        ValueError: not a number with a unit, or below :data:`MIN_MEMORY`.
    """
    match = _SIZE.match(value)
    if match and match.group(2) == "%" and 0 < float(match.group(1)) <= 100:
        return f"{match.group(1)}%"
    factor = _unit_bytes(match.group(2)) if match and match.group(2) != "%" else None
    if match is None or factor is None:
        raise ValueError(
            f"{value!r} is not a memory size: write a number and a unit, like '2GB' or '512MB', or a share of RAM "
            "like '50%'"
        )
    if float(match.group(1)) * factor < MIN_MEMORY:
        raise ValueError(f"{value!r} is too little memory (at least 16MB)")
    return f"{match.group(1)}{match.group(2)}"


MemorySize = Annotated[str, AfterValidator(memory_size)]
"""A memory limit the database understands (see :func:`memory_size`), for settings of the core and of plugins."""


class SyncSettings(_Strict):
    members: str = Field(description="connector that provides members")
    orders: list[str] = Field(default_factory=list, description="connectors that provide orders")
    activities: list[str] = Field(default_factory=list, description="connectors that provide activities")
    push: list[str] = Field(default_factory=list, description="connectors that receive profiles")
    match_by: Literal["auto", "id", "email"] = Field(
        "auto", description="how orders find their member: id (member id column), email, or auto (id, else email)"
    )
    base_currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    exchange_rates: dict[str, Decimal] = Field(
        default_factory=dict, description="units of base currency per unit of a currency, for orders without a rate"
    )
    timezone: str = Field("UTC", description="IANA zone naive source datetimes are read in")
    max_attempts: int = Field(5, ge=1, description="runs that may push a refused change before it is given up")

    @field_validator("members", "orders", "activities", "push", mode="before")
    @classmethod
    def _listify(cls, v: Any, info: ValidationInfo) -> Any:
        if info.field_name != "members" and isinstance(v, str):
            return [v]
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like 'Europe/Berlin')") from None
        return v

    @field_validator("exchange_rates")
    @classmethod
    def _rates(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in v.items():
            if len(code) != 3 or not code.isalpha() or rate <= 0:
                raise ValueError(f"{code}: a rate is a positive number keyed by a 3-letter currency code")
        return {k.upper(): r for k, r in v.items()}


class LoggingSettings(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    file: ConfigPath | None = None
    verbose_personal_data: bool = Field(
        False, description="allow emails and names in logs and reports (member ids only otherwise)"
    )


class Settings(BaseSettings):
    """The root of the configuration file."""

    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
        nested_model_default_partial_update=True,
    )

    store: StoreSettings = Field(default_factory=StoreSettings)
    sync: SyncSettings
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policy: Policy = Field(default_factory=Policy)
    grading: GradingSettings = Field(default_factory=GradingSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    config_path: Path | None = Field(None, exclude=True)
    connector_settings: dict[str, BaseModel] = Field(default_factory=dict, exclude=True)
    """Each connector's table validated by its plugin's settings model (filled by :func:`load_settings`)."""
    missing_secrets: dict[str, list[str]] = Field(default_factory=dict, exclude=True)
    """Connectors left out of ``connector_settings`` because secrets are not set: one problem line per secret."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: the environment overrides the file (passed in as init values).
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _connectors_named(self) -> Settings:
        problems = []
        names = set(self.connectors)
        used = [("sync.members", self.sync.members)]
        used += [(f"sync.{k}", n) for k in ("orders", "activities", "push") for n in getattr(self.sync, k)]
        for key, name in used:
            if name not in names:
                known = ", ".join(sorted(names)) or "none"
                problems.append(f"{key}: no connector named {name!r} (configured: {known})")
        for name, table in self.connectors.items():
            if "plugin" not in table:
                problems.append(f"connectors.{name}.plugin: missing (which plugin provides this connector?)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    def require_secrets(self, names: list[str] | None = None) -> None:
        """Refuse to go on when a connector (of ``names``, default all) lacks secrets; only CRM calls need them.

        Raises:
            ConfigError: one ``connectors.NAME.KEY: missing`` line per secret, naming its environment variable.
        """
        problems = [p for name, lines in self.missing_secrets.items() if names is None or name in names for p in lines]
        if problems:
            raise ConfigError(f"{self.config_path}: invalid configuration", problems=problems)


def find_config(path: str | os.PathLike[str] | None) -> Path:
    """Apply the lookup order: explicit path, ``$CRMSYNC_CONFIG``, ``./crmsync.toml``."""
    chosen = path or os.environ.get("CRMSYNC_CONFIG") or DEFAULT_CONFIG
    return Path(chosen)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _loc(loc: tuple[Any, ...]) -> str:
    """A TOML-style key path; keys that are not bare words are quoted (``store." 0"``)."""
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    return ".".join(str(p) if _BARE_KEY.match(str(p)) else json.dumps(str(p), ensure_ascii=False) for p in parts)


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``key.path: message`` line per problem of a pydantic ``ValidationError``."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        key = _loc(tuple(err.get("loc", ())))
        msg = err.get("msg", "invalid")
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        elif err.get("type") == "missing":
            msg = "missing (required)"
        full = ".".join(p for p in (prefix, key) if p)
        for part in msg.split("\n"):
            lines.append(f"{full}: {part}" if full else part)
    return lines


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    host: PluginHost | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate the configuration; validate each connector table with its plugin's model.

    Raises:
        ConfigError: listing every problem with its key path.
    """
    file = find_config(path)
    if not file.is_file():
        raise ConfigError(
            f"configuration file not found: {file}",
            hint="pass --config PATH, set CRMSYNC_CONFIG, or run 'crmsync init' to write a starter file",
        )
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    if overrides:
        data.update(overrides)
    base_dir = file.resolve().parent
    try:
        settings = _build(data, base_dir)
    except ValidationError as exc:
        raise ConfigError(f"{file}: invalid configuration", problems=format_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(f"{file}: invalid configuration", problems=env_problems(exc)) from None
    settings.config_path = file.resolve()
    if host is not None:
        validate_connectors(settings, host)
    problems = path_problems(list(setting_paths(settings)))
    problems += filter(None, [store_problem(settings.store.path)])
    if problems:
        raise ConfigError(f"{file}: invalid configuration", problems=problems)
    return settings


def _build(data: dict[str, Any], base_dir: Path) -> Settings:
    # BaseSettings' __init__ does not take a validation context; resolve paths ourselves afterwards.
    settings = Settings(**data)
    ctx = {"base_dir": base_dir}
    store = StoreSettings.model_validate(settings.store.model_dump(), context=ctx)
    log = LoggingSettings.model_validate(settings.logging.model_dump(), context=ctx)
    return settings.model_copy(update={"store": store, "logging": log})


def setting_paths(settings: Settings) -> Iterator[SettingPath]:
    """Every path the deployment reads or writes: the store, the log file, and what each connector declares."""
    yield SettingPath("store.path", PathRole.WRITE, settings.store.path)
    if settings.logging.file:
        yield SettingPath("logging.file", PathRole.WRITE, settings.logging.file)
    for name, model in settings.connector_settings.items():
        yield from declared_paths(model, f"connectors.{name}")


def validate_connectors(settings: Settings, host: PluginHost) -> None:
    """Validate each ``[connectors.NAME]`` table with the settings model of the plugin it names.

    A table whose only problem is secrets not set (``SecretStr`` fields) is kept aside in
    ``settings.missing_secrets``: commands that do not call that connector run without them.
    """
    problems: list[str] = []
    validated: dict[str, BaseModel] = {}
    missing: dict[str, list[str]] = {}
    for name, table in settings.connectors.items():
        plugin = table.get("plugin")
        spec = host.connector_spec(str(plugin)) if plugin else None
        if spec is None:
            known = ", ".join(sorted(host.connector_names())) or "none installed"
            problems.append(f"connectors.{name}.plugin: unknown connector plugin {plugin!r} (available: {known})")
            continue
        body = {k: v for k, v in table.items() if k != "plugin"}
        try:
            validated[name] = spec.settings_model.model_validate(body, context={"base_dir": settings.base_dir})
            register_secrets(validated[name])  # masked in every log record, even one the connector writes as it starts
        except ValidationError as exc:
            secrets = [e for e in exc.errors() if e["type"] == "missing" and _is_secret(spec.settings_model, e["loc"])]
            if len(secrets) == exc.error_count():
                missing[name] = [_missing_secret(name, e["loc"]) for e in secrets]
            else:
                problems.extend(format_validation_error(exc, prefix=f"connectors.{name}"))
    if problems:
        raise ConfigError(f"{settings.config_path}: invalid configuration", problems=problems)
    settings.connector_settings = validated
    settings.missing_secrets = missing


def _missing_secret(connector: str, loc: tuple[Any, ...]) -> str:
    key = ".".join(str(p) for p in loc)
    var = "__".join(["CRMSYNC_CONNECTORS", connector, *map(str, loc)]).upper()
    return f"connectors.{connector}.{key}: missing (required; a secret: set it in the environment as {var})"


def _annotation_at(root: Any, keys: Sequence[Any], *, casefold: bool = False) -> Any:
    """The annotation of the setting that ``keys`` lead to from the model ``root`` (``None`` if there is none)."""
    annotation = root
    for key in keys:
        annotation = _unwrap_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = annotation.model_fields
            name = next((n for n in fields if n.lower() == str(key).lower()), None) if casefold else key
            if name not in fields:
                return None
            annotation = fields[name].annotation
        elif get_origin(annotation) is dict:
            annotation = (get_args(annotation) or (str, Any))[1]
        else:
            return None
    return annotation


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _is_secret(model: type[BaseModel], loc: Sequence[Any]) -> bool:
    annotation = _annotation_at(model, loc)
    return annotation is not None and (
        annotation in (SecretStr, SecretBytes) or any(a in (SecretStr, SecretBytes) for a in get_args(annotation))
    )


def _json_example(annotation: Any) -> str | None:
    """How a value of ``annotation`` is written in an environment variable, when it must be JSON."""
    annotation = _unwrap_optional(annotation)
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return '["a", "b"]'
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel | dict)):
        return '{"key": "value"}'
    return None


def env_problems(exc: SettingsError) -> list[str]:
    """One line per ``CRMSYNC_`` variable that must hold JSON and does not (the library names only the table)."""
    table = re.search(r'field "([^"]+)"', str(exc))
    field = table.group(1) if table else ""
    prefix = f"CRMSYNC_{field}".upper()
    problems = []
    for var, value in sorted(os.environ.items()):
        if not field or not (var.upper() == prefix or var.upper().startswith(prefix + "__")):
            continue
        keys = var.upper().removeprefix("CRMSYNC_").lower().split("__")
        example = _json_example(_annotation_at(Settings, keys, casefold=True))
        if example is None:
            continue
        try:
            json.loads(value)
        except ValueError as err:
            where = f"{err.msg} at character {err.pos + 1}" if isinstance(err, json.JSONDecodeError) else str(err)
            problems.append(f"{'.'.join(keys)}: {var} is not valid JSON ({where}); write it like {example}")
    return problems or [f"{field or 'environment'}: a CRMSYNC_ environment variable cannot be read ({exc})"]
