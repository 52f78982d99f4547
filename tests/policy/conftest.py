"""Fixtures of the policy tests: an in-memory store with the store's tables (see ``policy_support``)."""

from __future__ import annotations

from policy_support import con, store

__all__ = ["con", "store"]
