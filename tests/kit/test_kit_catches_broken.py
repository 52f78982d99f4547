"""Proof that the kit works: run the contract (in a nested pytest) against each deliberately broken
connector and check that the expected check fails with a message naming the problem, while the correct
reference connector passes every check."""

from __future__ import annotations

import pytest

from .broken import connectors, reference

TEMPLATE = """
import pytest
from crmsync.testing import ConnectorContract, PagedJsonApi
from {module} import {name}


class TestConnector(ConnectorContract):
    spec = {spec}

    @pytest.fixture
    def crm(self):
        return PagedJsonApi()
"""


def run_contract(
    pytester: pytest.Pytester, module: str, name: str, spec: str, *args: str
) -> dict[str, pytest.TestReport]:
    """Run the contract in a nested session; return the call-phase report of each check by test name."""
    pytester.makepyfile(test_contract=TEMPLATE.format(module=module, name=name, spec=spec))
    recorder = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:xdist", *args)
    reports = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        if report.when == "call" or report.outcome != "passed":
            reports[report.nodeid.split("::")[-1]] = report
    return reports


def test_the_reference_connector_passes_every_check(pytester: pytest.Pytester):
    reports = run_contract(pytester, reference.__name__, "REFERENCE_SPEC", "REFERENCE_SPEC")
    failed = {name: r.longreprtext for name, r in reports.items() if not r.passed}
    assert not failed
    assert len(reports) >= 30  # every capability of the reference is exercised
    assert not any(r.skipped for r in reports.values())


@pytest.mark.parametrize("case", sorted(connectors.CASES))
def test_the_kit_catches_the_broken_connector(pytester: pytest.Pytester, case: str):
    _spec, check, phrase = connectors.CASES[case]
    # only the check that must catch it, to keep the suite fast (the others may fail too)
    reports = run_contract(pytester, connectors.__name__, "CASES", f"CASES[{case!r}][0]", "-k", check)
    caught = {name: r for name, r in reports.items() if r.failed and name.split("[")[0] == check}
    assert caught, f"{check} did not fail; failures: {[n for n, r in reports.items() if r.failed]}"
    messages = "\n".join(r.longreprtext for r in caught.values())
    assert phrase in messages
    assert "ContractError" in messages  # the kit's own verdict, not a crash inside the kit


def test_there_are_at_least_ten_distinct_bugs():
    variants = {(spec.factory, spec.settings_model) for spec, _check, _phrase in connectors.CASES.values()}
    assert len(connectors.CASES) >= 10
    assert len(variants) == len(connectors.CASES)
    assert (reference.ReferenceConnector, reference.ExampleSettings) not in variants
