"""pytest plugin registered through the ``pytest11`` entry point: the kit's fixtures for any test session.

Import-light on purpose (pytest loads it in every session of an environment where crmsync is installed):
nothing from the kit is imported until a fixture is used, and no fixture is autouse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from crmsync.connector import ConnectorContext


@pytest.fixture
def crmsync_context() -> ConnectorContext:
    """A :class:`crmsync.ConnectorContext` named ``test`` whose HTTP client never really sleeps."""
    from crmsync.connector import ConnectorContext
    from crmsync.http import make_client

    def factory(**kwargs: Any) -> Any:
        kwargs.setdefault("sleep", lambda seconds: None)
        return make_client(**kwargs)

    return ConnectorContext(name="test", http_factory=factory)
