"""The conformance test class a plugin author subclasses.

::

    from crmsync.testing import ConnectorContract, PagedJsonApi

    class TestAcme(ConnectorContract):
        spec = "acme"                     # or the ConnectorSpec object

        @pytest.fixture
        def crm(self):
            return AcmeDouble()           # a CrmDouble, e.g. a PagedJsonApi subclass

Every check is a ``test_*`` method; which of them exist follows the spec's capabilities (a connector that
cannot push has no push checks), and pull checks run once per stream the connector can pull.
"""

from __future__ import annotations

from crmsync.testing.checks_basic import BasicChecks
from crmsync.testing.checks_cursors import CursorChecks
from crmsync.testing.checks_http import HttpChecks
from crmsync.testing.checks_pull import PullChecks
from crmsync.testing.checks_push import PushChecks


class ConnectorContract(BasicChecks, HttpChecks, PullChecks, CursorChecks, PushChecks):
    """Subclass it, set ``spec``, and provide a ``crm`` fixture returning a :class:`~crmsync.testing.CrmDouble`.

    Class attributes:
        spec: the connector's :class:`~crmsync.ConnectorSpec`, or its name among installed plugins.
        http: ``False`` for connectors that read files (no HTTP error checks then).
        refuses_records: ``False`` when the push target cannot refuse single records (a file).
        custom_fields: ``False`` when the push target has no custom fields for ``check()`` to verify.
        batch_answers: ``False`` when each write call carries one record (no check of a record missing from a
            write answer).
        seed_count: records seeded per check (default 7: three pages of a page size of 3).
        cluster_size: records changed at one instant in the cluster check (default 25).
        large_cluster_size: records of one instant in the cursor-cost check (default 2,500, then twice as many).
    """
