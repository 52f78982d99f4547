"""Paths in the configuration: read relative to the configuration file, declared as read or written, kept apart.

A settings model declares the files it reads and writes with typed fields, so the core can check every path of
a deployment together without knowing any plugin::

    from crmsync.paths import ReadPath, WritePath

    class MySettings(BaseModel):
        export_path: ReadPath                 # a file the connector reads (or a glob pattern of files)
        output_path: WritePath | None = None  # a file the connector writes

:func:`path_problems` gathers them from every connector, adds the store file (written) and the log file
(written), and refuses what would lose data: a written file that is also read (or matched by a pattern that
is read), two settings writing one file, a written path that is a folder or lies under a file or an unwritable
folder, and a store path that holds something other than a DuckDB database.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ValidationInfo

DUCKDB_MAGIC = b"DUCK"
"""DuckDB database files hold these bytes at offset 8."""


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


class PathRole(StrEnum):
    """What crmsync does with a path a setting names."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Declared:
    """Marks a path setting as read or written (metadata of :data:`ReadPath` and :data:`WritePath`)."""

    role: PathRole


ConfigPath = Annotated[Path, AfterValidator(_resolve)]
"""A path read relative to the configuration file's folder."""
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
"""Like :data:`ConfigPath`, and the file must exist (``file not found`` otherwise)."""
ReadPath = Annotated[ConfigPath, Declared(PathRole.READ)]
"""A file crmsync reads, or a glob pattern of files (relative to the configuration file's folder)."""
WritePath = Annotated[ConfigPath, Declared(PathRole.WRITE)]
"""A file crmsync writes (relative to the configuration file's folder)."""


@dataclass(frozen=True)
class SettingPath:
    """One path of the configuration: its key (``connectors.shop.output_path``), role and resolved value."""

    key: str
    role: PathRole
    path: Path


def _role(annotation: Any, metadata: list[Any]) -> PathRole | None:
    """The role a field's annotation declares, looking through ``Annotated``, ``X | None`` and ``list[X]``."""
    for item in metadata:
        if isinstance(item, Declared):
            return item.role
    origin = get_origin(annotation)
    if origin is Annotated:
        _, *meta = get_args(annotation)
        return _role(get_args(annotation)[0], meta)
    if origin in (Union, UnionType, list, tuple, set, frozenset):
        return next((r for a in get_args(annotation) if (r := _role(a, [])) is not None), None)
    return None


def declared_paths(model: BaseModel, prefix: str) -> Iterator[SettingPath]:
    """Every path ``model`` (and the models nested in it) declares with :data:`ReadPath` / :data:`WritePath`."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name, None)
        key = f"{prefix}.{name}"
        role = _role(info.annotation, list(info.metadata))
        if role is not None:
            values = value if isinstance(value, list | tuple | set | frozenset) else [value]
            yield from (SettingPath(key, role, Path(v)) for v in values if v is not None)
        elif isinstance(value, BaseModel):
            yield from declared_paths(value, key)


def _canonical(path: Path) -> Path:
    """``path`` made absolute with links resolved; for a glob pattern, only the part before the first wildcard."""
    parts = path.absolute().parts
    fixed = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
    head = Path(*parts[:fixed]).resolve()
    return head.joinpath(*parts[fixed:])


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links, when both exist), or a pattern ``a`` matches ``b``."""
    ca, cb = _canonical(a), _canonical(b)
    if glob.has_magic(str(a)):
        return len(ca.parts) == len(cb.parts) and all(
            fnmatch.fnmatchcase(q, p) for p, q in zip(ca.parts, cb.parts, strict=True)
        )
    if ca == cb:
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _location_problem(sp: SettingPath) -> str | None:
    """Why ``sp`` (a written path) cannot be written: a folder, under a file, under an unwritable folder."""
    path = sp.path
    if path.is_dir():
        return f"{sp.key}: {path} is a folder; give a file name"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{sp.key}: {path} lies under {folder}, which is a file"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{sp.key}: cannot create {path}: the folder {folder} is not writable"
    return None


def store_problem(path: Path) -> str | None:
    """Why the file at ``path`` cannot be a store: it exists and is not a DuckDB database file."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"store.path: cannot read {path} ({exc.strerror})"
        return None
    if head[8:12] != DUCKDB_MAGIC and not _was_a_store(path):
        return (
            f"store.path: {path} exists and is not a crmsync store (a DuckDB database file); "
            "give the store a file of its own"
        )
    return None


def _was_a_store(path: Path) -> bool:
    """Whether crmsync has used ``path`` as its store (its lock file is beside it): then a file that does not read
    as a database is a damaged store, which the store's commands report and repair, not a file of another kind."""
    from crmsync.store.files import StoreFiles

    return StoreFiles(path).lock.exists()


def path_problems(paths: list[SettingPath]) -> list[str]:
    """One ``key: problem`` line per written path that would lose data or cannot be written (see the module)."""
    problems: list[str] = []
    writes = [p for p in paths if p.role is PathRole.WRITE]
    reads = [p for p in paths if p.role is PathRole.READ]
    for i, w in enumerate(writes):
        problem = _location_problem(w)
        if problem:
            problems.append(problem)
        for r in reads:
            if same_file(r.path, w.path):
                what = f"matches {r.path}, read as" if glob.has_magic(str(r.path)) else "is also read as"
                problems.append(f"{w.key}: {w.path} {what} {r.key}; crmsync would write into its own input")
        for other in writes[i + 1 :]:
            if same_file(w.path, other.path):
                problems.append(f"{other.key}: {other.path} is also written as {w.key}; give each its own file")
    return problems
