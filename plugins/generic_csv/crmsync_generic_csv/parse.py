"""Cell parsers: datetimes, money, booleans, emails, currencies. Each raises :class:`CellError` with a reason.

These do the validation the canonical models would do, so that the reader can build records with
``model_construct`` (no per-row pydantic overhead) and still never hand the engine an invalid record.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation

from crmsync.helpers import aware, normalise_email

_CURRENCY = re.compile(r"[A-Z]{3}")
_MONEY_NOISE = str.maketrans("", "", " \u00a0\u3000$€£¥￥")
_MAX_AMOUNT = Decimal(10) ** 14  # Order.amount: 18 digits, 4 of them decimals
_QUANTUM = Decimal("0.0001")
_PLAIN = re.compile(r"-?\d{1,14}(\.\d{0,4})?")
_TRUE = {"1", "true", "yes", "y", "t", "on", "是", "x"}
_FALSE = {"0", "false", "no", "n", "f", "off", "否"}


class CellError(ValueError):
    """A cell that cannot be read; the message is the reason shown to people."""


class DateParser:
    """Read ISO 8601 or any of ``formats`` (strptime); naive values are read in ``tz``; returns UTC."""

    def __init__(self, formats: list[str], tz: tzinfo) -> None:
        self.formats = list(formats)
        self.tz = tz
        self._last: str | None = None

    def __call__(self, text: str) -> datetime:
        text = text.strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            value = self._strptime(text)
        try:
            return aware(value, self.tz)
        except (OverflowError, ValueError) as exc:
            raise CellError(f"date out of range: {text!r}") from exc

    def _strptime(self, text: str) -> datetime:
        if self._last is not None:
            try:
                return datetime.strptime(text, self._last)
            except ValueError:
                pass
        for fmt in self.formats:
            try:
                value = datetime.strptime(text, fmt)
            except ValueError:
                continue
            self._last = fmt
            return value
        tried = ", ".join(["ISO 8601", *self.formats])
        raise CellError(f"not a date/time: {text!r} (formats tried: {tried})")


def parse_amount(text: str, decimal_comma: bool = False) -> Decimal:
    """Money as Decimal: thousands separators, spaces and a currency symbol are ignored."""
    if not decimal_comma and _PLAIN.fullmatch(text):
        return Decimal(text)  # the common case, already within Order.amount's digits
    cleaned = text.translate(_MONEY_NOISE)
    cleaned = cleaned.replace(".", "").replace(",", ".") if decimal_comma else cleaned.replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise CellError(f"not an amount: {text!r}") from None
    return check_amount(value, text)


def check_amount(value: Decimal, text: object = None) -> Decimal:
    """``value`` as ``Order.amount`` holds it (18 digits, 4 of them decimals), or :class:`CellError`.

    The size is checked before any rounding: rounding ``1E+28`` or a 40-digit number to whole units or to
    4 places needs more digits than the decimal context has.
    """
    shown = text if text is not None else str(value)
    if not value.is_finite():
        raise CellError(f"not an amount: {shown!r}")
    if value.copy_abs() >= _MAX_AMOUNT:  # copy_abs: exact, never rounded nor overflowing
        raise CellError(f"amount too large: {shown!r}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        rounded = value.quantize(_QUANTUM)
        if rounded != value:
            raise CellError(f"more than 4 decimal places: {shown!r}")
        value = rounded
    elif isinstance(exponent, int) and exponent > 0:
        value = value.quantize(Decimal(1))
    return value


def parse_rate(text: str, decimal_comma: bool = False) -> Decimal:
    value = parse_amount(text, decimal_comma)
    if value <= 0:
        raise CellError(f"exchange rate must be positive: {text!r}")
    return value


def parse_points(text: str, decimal_comma: bool = False) -> Decimal:
    return parse_amount(text, decimal_comma)


def parse_currency(text: str) -> str:
    value = text.strip().upper()
    if not _CURRENCY.fullmatch(value):
        raise CellError(f"not an ISO 4217 currency code: {text!r}")
    return value


def parse_email(text: str) -> str | None:
    try:
        return normalise_email(text)
    except ValueError:
        raise CellError(f"not an email address: {text.strip()!r}") from None


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CellError(f"not a yes/no value: {text!r}")
