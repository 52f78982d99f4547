"""Helpers for connector plugins: everything here is public API, like the names in :mod:`crmsync`.

Plugins import from ``crmsync`` (the contract: connector, records, errors, specs) and from ``crmsync.helpers``
(what most connectors need besides); every other module of crmsync is internal and may change without notice.

Reading source values
    :class:`BadValue`, :func:`parse_time`, :func:`parse_decimal`, :func:`reject` (a mapping error as a
    :class:`~crmsync.Rejection`), :func:`aware`, :func:`normalise_email`, :data:`DEFAULT_STATUS_MAP` (order statuses
    understood without configuration), :data:`ORDER_FIELDS` and :data:`ACTIVITY_FIELDS` (what a column mapping names).
Cursors and paging
    :class:`Watermark` (modification-time cursor with an overlap window, linear under clusters of one timestamp),
    :class:`CursorCodec` (versioned cursor text), :class:`Paginator` (page positions checked for loops).
Settings
    :data:`SecureUrl` (https, or http to a loopback host), :data:`MemorySize`, :func:`ensure_secure_url`,
    :func:`is_loopback`; paths are :data:`crmsync.ConfigPath`, :data:`crmsync.ReadPath`, :data:`crmsync.WritePath`.
HTTP, OAuth and secrets
    :class:`OAuthRefreshAuth` and its :class:`Token` (an ``httpx.Auth`` for the refresh-token flow),
    :func:`describe_request` (method, host and path of a request: what messages may show), :func:`safe_repr`,
    :func:`register_secret` (mask a value in every log record), :func:`redact_text`, :func:`parse_retry_after`,
    :data:`RETRY_STATUSES` (what the shared client retries).
Files
    :func:`fsync_dir` (make a rename into a folder durable, where the platform can).
"""

from crmsync.auth import OAuthRefreshAuth, Token
from crmsync.helpers.cursors import CHECKPOINT_ALWAYS, CursorCodec, Watermark
from crmsync.helpers.paging import Paginator
from crmsync.helpers.values import BadValue, SecureUrl, parse_decimal, parse_time, reject
from crmsync.http import RETRY_STATUSES, ensure_secure_url, is_loopback, parse_retry_after
from crmsync.models import ACTIVITY_FIELDS, DEFAULT_STATUS_MAP, ORDER_FIELDS, aware, normalise_email
from crmsync.redact import describe_request, redact_text, register_secret, safe_repr
from crmsync.settings import MemorySize
from crmsync.store.files import fsync_dir

__all__ = [
    "ACTIVITY_FIELDS",
    "CHECKPOINT_ALWAYS",
    "DEFAULT_STATUS_MAP",
    "ORDER_FIELDS",
    "RETRY_STATUSES",
    "BadValue",
    "CursorCodec",
    "MemorySize",
    "OAuthRefreshAuth",
    "Paginator",
    "SecureUrl",
    "Token",
    "Watermark",
    "aware",
    "describe_request",
    "ensure_secure_url",
    "fsync_dir",
    "is_loopback",
    "normalise_email",
    "parse_decimal",
    "parse_retry_after",
    "parse_time",
    "redact_text",
    "register_secret",
    "reject",
    "safe_repr",
]
