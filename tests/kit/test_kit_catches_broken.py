"""Proof that the kit works: run the contract (in a nested pytest) against each deliberately broken
connector and check that the expected check fails with a message naming the problem, while the correct
reference connector passes every check."""

from __future__ import annotations

from collections import Counter

import pytest

from .broken import cases, reference

TEMPLATE = """
import pytest
from crmsync.testing import ConnectorContract, PagedJsonApi
from {module} import {name}


class TestConnector(ConnectorContract):
    spec = {spec}

    @pytest.fixture
    def crm(self):
        return {double}
"""


def run_contract(
    pytester: pytest.Pytester, module: str, name: str, spec: str, *args: str, double: str = "PagedJsonApi()"
) -> dict[str, pytest.TestReport]:
    """Run the contract in a nested session; return the call-phase report of each check by test name."""
    source = TEMPLATE.format(module=module, name=name, spec=spec, double=double)
    pytester.makepyfile(test_contract=source)
    recorder = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:xdist", *args)
    reports = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        if report.when == "call" or report.outcome != "passed":
            reports[report.nodeid.split("::")[-1]] = report
    return reports


@pytest.mark.parametrize("double", ["PagedJsonApi()", cases.UTC_Z, cases.NAIVE])
def test_the_reference_connector_passes_every_check(pytester: pytest.Pytester, double: str):
    reports = run_contract(pytester, reference.__name__, "REFERENCE_SPEC", "REFERENCE_SPEC", double=double)
    failed = {name: r.longreprtext for name, r in reports.items() if not r.passed}
    assert not failed
    assert len(reports) >= 60  # every capability of the reference is exercised
    assert not any(r.skipped for r in reports.values())


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_the_kit_catches_the_broken_connector(pytester: pytest.Pytester, name: str):
    case = cases.CASES[name]
    # only the check that must catch it, to keep the suite fast (the others may fail too)
    spec = f"CASES[{name!r}].spec"
    reports = run_contract(pytester, cases.__name__, "CASES", spec, "-k", case.check, double=case.double)
    caught = {n: r for n, r in reports.items() if r.failed and n.split("[")[0] == case.check}
    assert caught, f"{case.check} did not fail; failures: {[n for n, r in reports.items() if r.failed]}"
    messages = "\n".join(r.longreprtext for r in caught.values())
    assert case.phrase in messages
    assert "ContractError" in messages  # the kit's own verdict, not a crash inside the kit


def test_each_broken_connector_differs_from_the_reference_and_the_others():
    variants = {(case.spec.factory, case.spec.settings_model) for case in cases.CASES.values()}
    assert len(variants) == len(cases.CASES) >= 40
    assert (reference.ReferenceConnector, reference.ExampleSettings) not in variants


def test_every_class_of_bug_authors_make_has_several_variants():
    per_class = Counter(case.bug for case in cases.CASES.values())
    assert {bug: per_class[bug] for bug in cases.ISSUE_CLASSES if per_class[bug] < 2} == {}
    assert set(per_class) <= {*cases.ISSUE_CLASSES, "other"}
