"""The kit run directly against the reference connector: every applicable check passes."""

import pytest

from crmsync.testing import ConnectorContract, PagedJsonApi

from .broken.reference import REFERENCE_SPEC


class TestReferenceConnector(ConnectorContract):
    spec = REFERENCE_SPEC

    @pytest.fixture
    def crm(self) -> PagedJsonApi:
        return PagedJsonApi()
