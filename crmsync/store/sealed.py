"""Sealed connector state: what a connector caches that would be a usable credential (an access token).

The store must hold no usable credential: anyone who copies the store file must not be able to call the CRM.
:class:`SealedState` encrypts each value (AES-256-GCM) with a key derived (HKDF-SHA256) from the connector's
secret settings — the values of its ``SecretStr`` fields, which live in the environment, never in the store. A
copy of the store without the environment yields ciphertext only; after the secrets change (a new refresh token,
a rotated app secret) old values no longer open and read as absent, so the connector fetches a new token.

A connector without secret settings gets a :class:`MemoryState`: nothing it caches there is written anywhere.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, SecretStr

from crmsync.connector import KeyValueState

PREFIX = "sealed1:"
_NONCE = 12


def secret_values(settings: Any) -> list[str]:
    """Every ``SecretStr`` value in ``settings`` (nested models, lists and dicts included), in field order."""
    return [s.get_secret_value() for s in _secrets(settings) if s.get_secret_value()]


def _secrets(value: Any) -> Iterator[SecretStr]:
    if isinstance(value, SecretStr):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _secrets(item)


def derive_key(secrets: Iterable[str], connector: str) -> bytes:
    """A 256-bit key from the connector's secrets; another connector name gives another key."""
    material = b"\x00".join(s.encode() for s in secrets)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"crmsync sealed state v1", info=connector.encode())
    return hkdf.derive(material)


class MemoryState:
    """State kept for the life of the process only."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self._data.pop(key, None)
        else:
            self._data[key] = value

    def __repr__(self) -> str:
        return f"<MemoryState {len(self._data)} key(s)>"


class SealedState:
    """A :class:`~crmsync.connector.KeyValueState` whose values are encrypted before they reach ``inner``."""

    def __init__(self, inner: KeyValueState, key: bytes, connector: str) -> None:
        self._inner = inner
        self._aead = AESGCM(key)
        self._connector = connector

    def _aad(self, key: str) -> bytes:
        return f"{self._connector}\x00{key}".encode()

    def get(self, key: str) -> str | None:
        raw = self._inner.get(f"sealed:{key}")
        if not raw or not raw.startswith(PREFIX):
            return None
        try:
            blob = base64.b64decode(raw[len(PREFIX) :], validate=True)
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], self._aad(key)).decode()
        except (ValueError, InvalidTag):
            return None  # sealed with other secrets (rotated) or damaged: as if absent

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self._inner.set(f"sealed:{key}", None)
            return
        nonce = os.urandom(_NONCE)
        blob = nonce + self._aead.encrypt(nonce, value.encode(), self._aad(key))
        self._inner.set(f"sealed:{key}", PREFIX + base64.b64encode(blob).decode())

    def __repr__(self) -> str:
        return f"<SealedState {self._connector!r}>"


def sealed_state(inner: KeyValueState, settings: Any, connector: str) -> KeyValueState:
    """Sealed state over ``inner`` keyed by ``settings``' secrets, or memory-only state when it has none."""
    secrets = secret_values(settings)
    if not secrets:
        return MemoryState()
    return SealedState(inner, derive_key(secrets, connector), connector)
