"""plugins/zoho/README.md lists every setting of the connector with its real default."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from crmsync_zoho.settings import ZohoSettings
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

README = Path(__file__).resolve().parents[2] / "plugins" / "zoho" / "README.md"


def documented() -> dict[str, str]:
    """Setting -> the default column of the README's settings table."""
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README.read_text(encoding="utf-8"), flags=re.M)
    return {name: default.strip() for name, default in rows}


def shown(value: Any) -> str:
    """A default as the README writes it (TOML values in backticks)."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, int | float):
        return f"`{value:g}`"
    if value == []:
        return "`[]`"
    return "none" if value is None else repr(value)


@pytest.mark.parametrize("name", list(ZohoSettings.model_fields))
def test_every_setting_is_documented_with_its_default(name: str) -> None:
    table = documented()
    assert name in table, f"{name} is missing from the settings table of {README.name}"
    field = ZohoSettings.model_fields[name]
    if field.default is PydanticUndefined and field.default_factory is None:
        assert table[name] == "(required)"
        return
    default = field.default if field.default_factory is None else field.default_factory()
    if isinstance(default, BaseModel):
        return  # a table of its own keys, described in the row
    assert table[name] == shown(default), name


def test_the_table_names_no_setting_that_does_not_exist() -> None:
    assert set(documented()) <= set(ZohoSettings.model_fields)
