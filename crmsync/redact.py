"""The one place that hides secrets: in URLs (query values, user info), headers, reprs and log records.

Every message crmsync builds about an HTTP request goes through :func:`describe_request` (method, host, path:
never query values, headers or bodies). Anything that may still carry a secret (a log line quoting an
exception, a third-party library's debug output) passes :class:`RedactingFilter`, which masks known secret
values registered with :func:`register_secret` (the host registers every ``SecretStr`` of a connector's settings
with :func:`register_secrets` before the connector is built) plus common token shapes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

MASK = "***"

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-crm-org",
    }
)

SENSITIVE_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "client_secret",
        "code",
        "token",
        "password",
        "secret",
        "api_key",
        "apikey",
        "corpaccesstoken",
        "appsecret",
        "permanentcode",
    }
)

_PATTERNS = [
    # "Authorization: Zoho-oauthtoken 1000.abc", "Bearer abc"
    re.compile(r"(?i)\b(zoho-oauthtoken|bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    # key=value and "key": "value" forms of secret-named keys
    re.compile(
        r"(?i)(\"?(?:access_token|refresh_token|client_secret|password|secret|api_key|corpAccessToken"
        r"|appSecret|permanentCode)\"?\s*[=:]\s*\"?)([^\"&\s,}]+)"
    ),
    # Zoho token shape: 1000.<32 hex>.<32 hex>
    re.compile(r"\b1000\.[0-9a-f]{16,}(?:\.[0-9a-f]{16,})?\b"),
]

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in log records from now on (values shorter than 6 are ignored)."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def register_secrets(value: Any) -> int:
    """Register every ``SecretStr``/``SecretBytes`` value found in ``value`` (a settings model, walked through
    nested models, lists and mappings); return how many were found.

    The host calls it with each connector's validated settings before the connector is built, so a plugin that logs
    a credential by mistake, even while it starts, logs ``***``.
    """
    from pydantic import BaseModel, SecretBytes, SecretStr

    if isinstance(value, SecretStr):
        register_secret(value.get_secret_value())
        return 1
    if isinstance(value, SecretBytes):
        register_secret(value.get_secret_value().decode("utf-8", "replace"))
        return 1
    if isinstance(value, BaseModel):
        return sum(register_secrets(getattr(value, name, None)) for name in type(value).model_fields)
    if isinstance(value, Mapping):
        return sum(register_secrets(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return sum(register_secrets(v) for v in value)
    return 0


def redact_text(text: str) -> str:
    """Mask registered secrets and common token shapes in free text."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _PATTERNS[2].sub(MASK, text)


def redact_url(url: httpx.URL | str) -> str:
    """The URL with every query value and any user info masked (keys stay, so the shape is readable)."""
    url = httpx.URL(str(url))
    if url.userinfo:
        url = url.copy_with(username=MASK, password=None)
    if url.query:
        params = [(k, MASK) for k, _ in url.params.multi_items()]
        url = url.copy_with(params=params)
    return str(url).replace("%2A%2A%2A", MASK)


def redact_headers(headers: Mapping[str, str] | httpx.Headers) -> dict[str, str]:
    """A copy of ``headers`` with credentials and cookies masked."""
    items = headers.multi_items() if isinstance(headers, httpx.Headers) else headers.items()
    return {k: (MASK if k.lower() in SENSITIVE_HEADERS else v) for k, v in items}


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` (recursively) with values of secret-named keys masked."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key.lower() in SENSITIVE_KEYS:
            out[key] = MASK
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        else:
            out[key] = value
    return out


def describe_request(request: httpx.Request) -> str:
    """``"GET www.zohoapis.com/crm/v8/Contacts"``: method, host (and port if not default), path; nothing else."""
    url = request.url
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    return f"{request.method} {host}{url.path}"


def safe_repr(obj: object, fields: Iterable[str], secret_fields: Iterable[str] = ()) -> str:
    """``<Name a=1 secret=***>``: a repr that shows ``fields`` and masks ``secret_fields``."""
    parts = [f"{f}={getattr(obj, f, None)!r}" for f in fields]
    parts += [f"{f}={MASK}" for f in secret_fields]
    return f"<{type(obj).__name__} {' '.join(parts)}>"


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's message, arguments and exception text.

    Attach it to handlers (``handler.addFilter(RedactingFilter())``) or loggers; it never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw text
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            formatter = logging.Formatter()
            record.exc_text = redact_text(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach one :class:`RedactingFilter` to every handler of ``logger`` (the root logger by default)."""
    logger = logger or logging.getLogger()
    flt = RedactingFilter()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt
