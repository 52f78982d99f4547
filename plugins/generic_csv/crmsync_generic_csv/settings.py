"""Settings of the ``generic_csv`` connector: which files, how their columns map, how values are written.

Example ``crmsync.toml`` table::

    [connectors.shop]
    plugin = "generic_csv"
    members_path = "customers.csv"
    orders_path = "orders.csv"
    output_path = "out/profiles.csv"
    members_columns = { external_id = "customer_id" }
    orders_columns = { external_id = "order_id", member_external_id = "customer_id",
                       member_email = "customer_email", placed_at = "order_date", amount = "line_amount" }
    date_formats = ["%d/%m/%Y %H:%M", "%Y/%m/%d"]
    status_map = { "已付款" = "paid", "已退款" = "refunded" }

Paths are read relative to the configuration file's folder. Column maps name the CSV header of each
canonical field; a field not named is looked up under its canonical name.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from crmsync import PUSHED_FIELDS, ConfigPath, OrderStatus, ReadPath, WritePath
from crmsync.helpers import ACTIVITY_FIELDS, DEFAULT_STATUS_MAP, ORDER_FIELDS, MemorySize
from crmsync_generic_csv.records import CHUNK, LIMIT, MAX_FIELD, MAX_LINE

MEMBER_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "created_at", "updated_at", "opt_in")
FIELDS = {"members": MEMBER_FIELDS, "orders": ORDER_FIELDS, "activities": ACTIVITY_FIELDS}

OPTIONAL_BY_DEFAULT = {"total", "refunded_amount"}
"""Fields looked up only when mapped explicitly (``total``: use an order-total column instead of summing lines;
``refunded_amount``: the amount refunded on the order)."""


def is_pattern(path: Path) -> bool:
    """Whether ``path`` is a glob pattern (``*``, ``?`` or ``[`` in it)."""
    return glob.has_magic(str(path))


def matches(path: Path) -> list[Path]:
    """The files ``path`` names: itself, or for a pattern every matching file in name order."""
    if not is_pattern(path):
        return [path] if path.is_file() else []
    return sorted((Path(p) for p in glob.glob(str(path)) if Path(p).is_file()), key=str)


def _input(path: Path) -> Path:
    if not matches(path):
        raise ValueError(f"no file matches ({path})" if is_pattern(path) else f"file not found ({path})")
    return path


InputPath = Annotated[ReadPath, AfterValidator(_input)]
"""An input file, or a glob pattern of export files (read relative to the configuration file's folder)."""


class CsvSettings(BaseModel):
    """The ``[connectors.NAME]`` table of a ``generic_csv`` connector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members_path: InputPath | None = Field(None, description="customers CSV, or a glob pattern of export files")
    orders_path: InputPath | None = Field(
        None, description="orders CSV (one row per order or per line item), or a glob pattern of export files"
    )
    activities_path: InputPath | None = Field(None, description="activities CSV or glob pattern (optional)")
    output_path: WritePath | None = Field(None, description="profiles CSV written by push (created if missing)")
    rejects_path: WritePath | None = Field(
        None, description="CSV that bad rows are appended to (default: next to the output, or the input)"
    )

    members_columns: dict[str, str] = Field(default_factory=dict, description="canonical field -> CSV header")
    orders_columns: dict[str, str] = Field(default_factory=dict)
    activities_columns: dict[str, str] = Field(default_factory=dict)
    member_attributes: list[str] | None = Field(
        None, description="CSV headers copied into Member.attributes (default: every column not mapped)"
    )

    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = Field("auto", description="'auto' (BOM/UTF-8, else GB18030), or a codec: utf-8, gbk, gb18030")
    date_formats: list[str] = Field(default_factory=list, description="strptime formats tried after ISO 8601")
    default_currency: str | None = Field(
        None, pattern=r"^[A-Za-z]{3}$", description="for rows without a currency (default: sync.base_currency)"
    )
    decimal_comma: bool = Field(False, description="amounts are written 1.234,56")
    status_map: dict[str, OrderStatus] = Field(default_factory=dict, description="source status -> canonical")

    max_line_length: int = Field(
        MAX_LINE,
        ge=CHUNK,
        le=LIMIT,
        description="longest row in characters (its line, or the lines of a row with line breaks in a quoted cell); "
        "a longer row is rejected with its line, and never held in memory whole",
    )
    max_field_length: int = Field(
        MAX_FIELD, ge=1, le=LIMIT, description="longest cell in characters; a row with a longer cell is rejected"
    )
    batch_size: int = Field(50_000, ge=1, description="records per batch")
    group_partition_bytes: int = Field(
        32 * 1024 * 1024, ge=1, description="orders files larger than this are grouped in partitions on disk"
    )
    spill_dir: ConfigPath | None = Field(None, description="folder for those partitions (default: system temp)")
    memory_limit: MemorySize = Field(
        "600MB",
        description="DuckDB memory limit of the column-wise read of large files (beyond it DuckDB spills to disk)",
    )
    push_batch_size: int = Field(10_000, ge=1, description="changes per push call (one atomic rewrite each)")
    tags_separator: Literal["|", ";"] = "|"
    output_encoding: str = Field("utf-8", description="of the output and rejects files (utf-8-sig for Excel)")
    push_fields: list[str] = Field(default_factory=lambda: list(PUSHED_FIELDS))

    @field_validator("encoding", "output_encoding")
    @classmethod
    def _encoding(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip().lower()
        if value == "auto" and info.field_name == "encoding":
            return value
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (use auto, utf-8, utf-8-sig, gbk or gb18030)") from None

    @field_validator("push_fields")
    @classmethod
    def _push_fields(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in PUSHED_FIELDS]
        if unknown:
            raise ValueError(f"unknown pushed field(s) {unknown} (known: {', '.join(PUSHED_FIELDS)})")
        return [f for f in PUSHED_FIELDS if f in value]  # fixed order, duplicates dropped

    @model_validator(mode="after")
    def _columns(self) -> CsvSettings:
        problems = []
        for stream, fields in FIELDS.items():
            mapping: dict[str, str] = getattr(self, f"{stream}_columns")
            for key in mapping:
                if key not in fields:
                    problems.append(f"{stream}_columns.{key}: unknown field (known: {', '.join(fields)})")
        if problems:
            raise ValueError("\n".join(problems))
        if not (self.members_path or self.orders_path or self.activities_path or self.output_path):
            raise ValueError("set at least one of members_path, orders_path, activities_path, output_path")
        return self

    # ------------------------------------------------------------------ derived values
    def columns(self, stream: str) -> dict[str, str]:
        """Canonical field -> CSV header for ``stream``, defaults filled in."""
        mapping: dict[str, str] = getattr(self, f"{stream}_columns")
        return {f: mapping.get(f, f) for f in FIELDS[stream] if f in mapping or f not in OPTIONAL_BY_DEFAULT}

    def path(self, stream: str) -> Path | None:
        return getattr(self, f"{stream}_path")

    def statuses(self) -> dict[str, OrderStatus]:
        out = dict(DEFAULT_STATUS_MAP)
        out.update({k.strip().lower(): v for k, v in self.status_map.items()})
        return out

    def default_rejects_path(self) -> Path:
        if self.rejects_path is not None:
            return self.rejects_path
        if self.output_path is not None:
            return self.output_path.with_name(self.output_path.stem + ".rejects.csv")
        first = self.members_path or self.orders_path or self.activities_path
        assert first is not None  # guaranteed by the validator
        return first.with_name("crmsync_rejects.csv")

    def fingerprint(self, stream: str) -> str:
        """A short hash of every setting that changes how ``stream``'s file is read (part of the cursor)."""
        relevant: dict[str, object] = {
            "columns": self.columns(stream),
            "attributes": self.member_attributes,
            "delimiter": self.delimiter,
            "encoding": self.encoding,
            "date_formats": self.date_formats,
            "currency": self.default_currency,
            "decimal_comma": self.decimal_comma,
            "status_map": {k: str(v) for k, v in sorted(self.status_map.items())},
        }
        limits = [self.max_line_length, self.max_field_length]
        if limits != [MAX_LINE, MAX_FIELD]:  # named only when set, so that cursors kept from before stay valid
            relevant["limits"] = limits
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
