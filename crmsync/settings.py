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
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from crmsync.errors import ConfigError
from crmsync.policy.model import Policy

if TYPE_CHECKING:
    from crmsync.plugins import PluginHost

DEFAULT_CONFIG = "crmsync.toml"


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    return Path(ctx.get("base_dir") or ".")


def _resolve(value: Path, info: ValidationInfo) -> Path:
    value = Path(os.path.expanduser(str(value)))
    return value if value.is_absolute() else (_base_dir(info) / value)


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if not path.is_file():
        raise ValueError(f"file not found ({path})")
    return path


ConfigPath = Annotated[Path, AfterValidator(_resolve)]
"""A path read relative to the configuration file's folder."""
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
"""Like :data:`ConfigPath`, and the file must exist (``file not found`` otherwise)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(_Strict):
    path: ConfigPath = Field(Path("crmsync.duckdb"), description="the store file (created on first run)")
    keep_runs: int = Field(200, ge=1, description="run records kept; older ones are pruned")
    memory_limit: str | None = Field(
        "2GB", description="DuckDB memory limit, e.g. '4GB' (beyond it DuckDB spills to disk); empty: 80% of RAM"
    )
    threads: int | None = Field(None, ge=1)


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
    max_attempts: int = Field(5, ge=1, description="push attempts before a change is reported as dead")

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
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    config_path: Path | None = Field(None, exclude=True)
    connector_settings: dict[str, BaseModel] = Field(default_factory=dict, exclude=True)
    """Each connector's table validated by its plugin's settings model (filled by :func:`load_settings`)."""

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
    settings.config_path = file.resolve()
    if host is not None:
        validate_connectors(settings, host)
    return settings


def _build(data: dict[str, Any], base_dir: Path) -> Settings:
    # BaseSettings' __init__ does not take a validation context; resolve paths ourselves afterwards.
    settings = Settings(**data)
    ctx = {"base_dir": base_dir}
    store = StoreSettings.model_validate(settings.store.model_dump(), context=ctx)
    log = LoggingSettings.model_validate(settings.logging.model_dump(), context=ctx)
    return settings.model_copy(update={"store": store, "logging": log})


def validate_connectors(settings: Settings, host: PluginHost) -> None:
    """Validate each ``[connectors.NAME]`` table with the settings model of the plugin it names."""
    problems: list[str] = []
    validated: dict[str, BaseModel] = {}
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
        except ValidationError as exc:
            problems.extend(format_validation_error(exc, prefix=f"connectors.{name}"))
    if problems:
        raise ConfigError(f"{settings.config_path}: invalid configuration", problems=problems)
    settings.connector_settings = validated
