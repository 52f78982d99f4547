"""Building canonical records from values the reader has already validated, without per-row pydantic work.

``builder(Model)`` returns a function taking the fields of ``Model`` as keyword arguments (in any order; a field
with a plain default may be left out) and returning an instance, exactly as ``Model.model_construct`` would build
it but several times faster.
It is checked once against ``model_construct``; should a pydantic release build instances differently, the
plain ``model_construct`` is used instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel

from crmsync import Activity, Member, Order

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__

SAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    Member: {"source": "s", "external_id": "1", "email": "a@b.cd", "attributes": {"k": "v"}},
    Order: {
        "source": "s",
        "external_id": "1",
        "placed_at": datetime(2025, 1, 1, tzinfo=UTC),
        "amount": Decimal(1),
        "currency": "EUR",
    },
    Activity: {"source": "s", "external_id": "1", "kind": "k", "occurred_at": datetime(2025, 1, 1, tzinfo=UTC)},
}


def _fast(model: type[M]) -> Callable[..., M]:
    fields = model.__pydantic_fields__
    names = tuple(fields)
    all_fields = frozenset(names)
    defaults = {n: f.default for n, f in fields.items() if not f.is_required() and f.default_factory is None}
    new = model.__new__

    def build(**values: Any) -> M:
        obj = new(model)
        _set(obj, "__dict__", {name: values[name] if name in values else defaults[name] for name in names})
        _set(obj, "__pydantic_fields_set__", set(all_fields))
        _set(obj, "__pydantic_extra__", None)
        _set(obj, "__pydantic_private__", None)
        return obj

    return build


def builder(model: type[M]) -> Callable[..., M]:
    """A fast constructor for ``model`` (every field without a plain default must be passed), or
    ``model.model_construct``."""
    fallback: Callable[..., M] = model.model_construct
    if model.__pydantic_post_init__ or model.__private_attributes__ or model.__pydantic_root_model__:
        return fallback
    fast = _fast(model)
    sample = dict(SAMPLES.get(model, {}))
    try:
        full = model.model_validate(sample).model_dump()
        made = fast(**full)
        same = made == model.model_construct(**full) and made.model_dump() == full and repr(made)
    except Exception:
        return fallback
    return fast if same else fallback
