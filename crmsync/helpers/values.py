"""Reading source values: :class:`BadValue` names the field a value came from, :func:`parse_time` and
:func:`parse_decimal` turn source text into aware datetimes and Decimals (raising :class:`BadValue`), and
:func:`reject` turns any mapping error into the :class:`~crmsync.Rejection` the engine quarantines.

Import these from :mod:`crmsync.helpers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ValidationError

from crmsync.connector import Rejection, Stream
from crmsync.errors import ConfigError
from crmsync.http import ensure_secure_url
from crmsync.models import aware

EPOCH_SCALE = {"s": 1, "ms": 1000}


class BadValue(ValueError):
    """A source value that cannot be read: ``field`` is where it came from, ``reason`` why it was refused.

    Raise it while mapping one source record; :func:`reject` turns it into the record's
    :class:`~crmsync.Rejection` (the rest of the pull goes on).
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def parse_time(
    value: Any, field: str, tz: tzinfo | str = UTC, *, epoch: Literal["s", "ms"] | None = None
) -> datetime | None:
    """A source date/time as an aware UTC datetime (``None`` for an empty value).

    Accepts ISO 8601 with an offset or ``Z`` (kept), a naive date/time or a bare date (read in ``tz``, the
    connector's ``context.timezone``: never in UTC by accident) and, with ``epoch="ms"`` or ``"s"``, epoch
    numbers (UTC by definition).

    Raises:
        BadValue: naming ``field``, for anything else.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return aware(value, tz)
    text = str(value).strip()
    if epoch is not None and text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / EPOCH_SCALE[epoch], UTC)
    try:
        if len(text) == 10:
            return aware(datetime.combine(date.fromisoformat(text), time()), tz)
        return aware(datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")), tz)
    except ValueError:
        what = "a date/time" if epoch is None else f"a time in epoch {'milliseconds' if epoch == 'ms' else 'seconds'}"
        raise BadValue(field, f"not {what}: {text!r}") from None


def parse_decimal(value: Any, field: str, *, what: str = "a number") -> Decimal | None:
    """A source number as :class:`~decimal.Decimal`, never through float (``None`` for an empty value).

    A float (a JSON number parsed without ``parse_float=Decimal``) is read from its shortest repr.

    Raises:
        BadValue: naming ``field`` (``not a number: 'abc'``), also for NaN and infinities.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadValue(field, f"not {what}: {value!r}")
    try:
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, float):
            number = Decimal(repr(value))
        else:
            number = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadValue(field, f"not {what}: {value!r}") from None
    if not number.is_finite():
        raise BadValue(field, f"not {what}: {value!r}")
    return number


def reject(
    stream: Stream, locator: str, exc: Exception, *, record_id: str | None = None, raw: Mapping[str, Any] | None = None
) -> Rejection:
    """The :class:`~crmsync.Rejection` for a record whose mapping raised ``exc``.

    :class:`BadValue` gives its field and reason; a pydantic ``ValidationError`` (a model refusing a value) its first
    error's field and message; a ``KeyError`` the missing key.
    """
    field: str | None = getattr(exc, "field", None)
    reason: str | None = getattr(exc, "reason", None)
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        reason = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    elif isinstance(exc, KeyError):
        field, reason = str(exc.args[0]) if exc.args else None, "missing"
    if not reason:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    return Rejection(stream, locator, field, reason, record_id=record_id, raw=dict(raw) if raw is not None else None)


def _secure_url(value: str) -> str:
    try:
        return str(ensure_secure_url(value.strip().rstrip("/"))).rstrip("/")
    except ConfigError as exc:
        raise ValueError(exc.message) from None


SecureUrl = Annotated[str, AfterValidator(_secure_url)]
"""A settings field holding a base URL: ``https://``, or plain ``http://`` only to a loopback host (``localhost``,
``127.0.0.1``, ``::1``: a local fake of the API). The trailing ``/`` is removed."""
