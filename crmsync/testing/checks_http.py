"""HTTP error handling: 429/5xx retried, other 4xx sent once and raised, refused credentials an ``AuthError``.

Each check runs once per operation the connector offers (``pull``, ``push``, ``check``; see
:mod:`crmsync.testing.operations`), so a push that retries a 400, or a pull that reads a 401 as an empty page, is
caught whichever call meets the error.
"""

from __future__ import annotations

import pytest

from crmsync.connector import CheckResult, Connector
from crmsync.errors import AuthError, ConnectorError
from crmsync.testing.base import ContractBase, applies, pulls, talks_http
from crmsync.testing.double import CrmDouble
from crmsync.testing.driver import ContractError
from crmsync.testing.operations import describe, prepare


def operations(*names: str):
    """Run the decorated check once per operation of ``names`` that the connector offers."""

    def mark(func):
        func._kit_operations = names
        return func

    return mark


def _first(cls: type[ContractBase]) -> str:
    return "pull" if pulls(cls) else "push"


class HttpChecks(ContractBase):
    @applies(talks_http)
    @pytest.mark.parametrize("status", [429, 500, 503])
    def test_transient_errors_are_retried(self, double: CrmDouble, connector: Connector, status: int):
        operation = _first(type(self))
        run = prepare(type(self), double, connector, operation)
        if baseline := run():
            raise ContractError(f"{baseline} even without an HTTP error: fix the pull/push checks first")
        double.fail_next(status, retry_after=0 if status == 429 else None)
        before = double.calls
        try:
            problem = run()
        except Exception as exc:
            raise ContractError(
                f"one HTTP {status} answer ended {describe(operation, type(self))} with {type(exc).__name__}: {exc}. "
                "429 and 5xx are transient: build the client with self.context.http(...), which retries them"
            ) from None
        if problem or double.calls - before < 2:
            raise ContractError(
                f"after one HTTP {status} answer {problem or 'no call was repeated'}: the failed call was not "
                "retried (was it read as an empty page?). Use self.context.http(...), which retries 429/5xx, and "
                "treat any other non-2xx answer as an error, never as data"
            )

    @applies(talks_http)
    @operations("pull", "push")
    @pytest.mark.parametrize("status", [400, 404, 409, 422])
    def test_client_errors_are_not_retried(self, double: CrmDouble, connector: Connector, status: int, operation: str):
        run = prepare(type(self), double, connector, operation)
        call = describe(operation, type(self))
        double.fail_next(status)
        before = double.calls
        try:
            problem = run()
        except ConnectorError:
            problem = "raised"
        except Exception as exc:
            raise ContractError(
                f"HTTP {status} made {call} raise {type(exc).__name__}: {exc}; raise crmsync.FatalAPIError (AuthError "
                "for 401/403) so the engine knows retrying will not help"
            ) from None
        if (calls := double.calls - before) > 1:
            raise ContractError(
                f"HTTP {status} to {call} was retried ({calls} calls): a 4xx will not change on retry; raise "
                "crmsync.FatalAPIError at once (the shared client from self.context.http() never retries it), or "
                "for a push report the records as RecordResult(ok=False) once"
            )
        if problem != "raised" and (problem is None or operation != "push"):  # read as data, or as a success
            raise ContractError(
                f"an HTTP {status} answer to {call} was not reported as an error: raise crmsync.FatalAPIError "
                "naming the request (crmsync.helpers.describe_request) instead of reading it as data or success"
            )

    @applies(talks_http)
    @operations("pull", "push", "check")
    @pytest.mark.parametrize("status", [401, 403])
    def test_refused_credentials_are_an_auth_error(
        self, double: CrmDouble, connector: Connector, status: int, operation: str
    ):
        run = prepare(type(self), double, connector, operation)
        call = describe(operation, type(self))
        double.fail_next(status, times=1000)  # every call, token requests included
        before = double.calls
        try:
            results = connector.check() if operation == "check" else run()
        except AuthError:
            results = None
        except Exception as exc:
            raise ContractError(
                f"with the credentials refused (HTTP {status} on every call) {call} raised {type(exc).__name__}: "
                f"{exc}; raise crmsync.AuthError: a person must fix the credentials (exit code 2), and retrying "
                "will not help"
            ) from None
        else:
            if operation != "check" or not any(isinstance(r, CheckResult) and not r.ok for r in results or []):
                raise ContractError(
                    f"with the credentials refused (HTTP {status} on every call) {call} returned without an error "
                    f"({results!r}): a 401/403 is never an empty page, a success or a per-record failure; raise "
                    "crmsync.AuthError (check() may instead return CheckResult(ok=False) naming the credentials)"
                )
        if (calls := double.calls - before) > 3:
            raise ContractError(
                f"with the credentials refused {call} made {calls} calls: renew a token at most once, then raise "
                "crmsync.AuthError"
            )
