"""Spec, settings, secrets, ``check`` on a healthy system, and HTTP error handling (retry 429/5xx, not 4xx)."""

from __future__ import annotations

import logging
import re
import typing
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from crmsync.connector import CheckResult, Connector
from crmsync.specs import PLUGIN_API_VERSION
from crmsync.testing.base import ContractBase, applies, pulls, pushes, talks_http
from crmsync.testing.double import CrmDouble
from crmsync.testing.driver import ContractError
from crmsync.testing.operations import available, describe, prepare

SECRET_NAME = re.compile(r"(token|secret|password|passwd|api_?key|credential|private_key)", re.I)


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(a) for a in typing.get_args(annotation))


def secret_fields(model: type) -> list[str]:
    return [n for n, f in model.model_fields.items() if _is_secret(f.annotation)]  # type: ignore[attr-defined]


def _has_secrets(cls: type[ContractBase]) -> bool:
    return bool(secret_fields(cls.kit_spec.settings_model))


def _required(cls: type[ContractBase]) -> bool:
    return any(f.is_required() for f in cls.kit_spec.settings_model.model_fields.values())


def bounded_settings(model: type) -> dict[str, int]:
    """Integer settings with an upper bound, and the largest value each allows."""
    out = {}
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        for item in info.metadata if info.annotation is int else []:
            if getattr(item, "le", None) is not None:
                out[name] = int(item.le)
            elif getattr(item, "lt", None) is not None:
                out[name] = int(item.lt) - 1
    return out


class BasicChecks(ContractBase):
    def test_spec_targets_this_plugin_api(self):
        if self.kit_spec.api_version != PLUGIN_API_VERSION:
            raise ContractError(
                f"spec {self.kit_spec.name!r} declares api_version={self.kit_spec.api_version}; this crmsync "
                f"implements plugin API {PLUGIN_API_VERSION}: update the connector and its spec"
            )

    def test_spec_and_connector_declare_the_same_capabilities(self, connector: Connector):
        declared, actual = set(self.kit_spec.capabilities), set(type(connector).capabilities)
        if declared != actual:
            raise ContractError(
                f"the spec declares {sorted(declared)} but {type(connector).__name__}.capabilities is "
                f"{sorted(actual)}: declare them once (capabilities=MyConnector.capabilities in the spec)"
            )

    def test_settings_reject_unknown_keys(self, double: CrmDouble):
        table = {**double.settings(), "kit_misspelt_key": 1}
        try:
            self.kit_spec.settings_model.model_validate(table)
        except ValidationError as exc:
            if "kit_misspelt_key" in str(exc):
                return
        raise ContractError(
            "a misspelt key (kit_misspelt_key) in the connector table was accepted silently: set "
            "model_config = ConfigDict(extra='forbid') on the settings model"
        )

    @applies(_required)
    def test_settings_name_missing_required_fields(self):
        model = self.kit_spec.settings_model
        required = sorted(n for n, f in model.model_fields.items() if f.is_required())
        try:
            model.model_validate({})
        except ValidationError as exc:
            named = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if set(required) <= named:
                return
        raise ContractError(f"an empty table must be refused naming every required field {required}")

    def test_secret_settings_are_secretstr(self):
        model = self.kit_spec.settings_model
        plain = [n for n in model.model_fields if SECRET_NAME.search(n) and n not in secret_fields(model)]
        if plain:
            raise ContractError(
                f"settings {plain} look like credentials but are not SecretStr: declare them as SecretStr so "
                "they never show in reprs, logs or reports (read them with .get_secret_value())"
            )

    @applies(_has_secrets)
    def test_secrets_stay_out_of_reprs_logs_and_errors(
        self, double: CrmDouble, make_connector: Any, settings: Any, caplog: pytest.LogCaptureFixture
    ):
        table = double.settings()
        secrets = [str(table[n]) for n in secret_fields(self.kit_spec.settings_model) if table.get(n)]
        caplog.set_level(logging.DEBUG)
        connector = make_connector()  # what it logs while it starts counts too
        seen = {"repr(connector)": repr(connector), "str(connector)": str(connector), "repr(settings)": repr(settings)}
        if talks_http(type(self)):
            runs = {op: prepare(type(self), double, connector, op) for op in available(type(self))}
            for status, times in ((None, 0), (400, 1), (401, 1000)):  # the 401s last: they refuse every later call
                for operation, run in runs.items():
                    if status is not None:
                        double.fail_next(status, times=times)
                    try:
                        run()
                    except Exception as exc:
                        where = f"the error {describe(operation, type(self))} raised on HTTP {status}"
                        seen[where] = f"{exc!s} {exc!r}"
        records = caplog.get_records("setup") + caplog.get_records("call")
        for record in records:
            if not record.name.startswith(("httpx", "httpcore")):
                seen[f"log record from {record.name}"] = record.getMessage() + str(record.exc_text or "")
        leaks = [where for where, text in seen.items() if any(s in text for s in secrets)]
        if leaks:
            raise ContractError(
                f"a secret setting appears in {leaks}: keep it as SecretStr, call get_secret_value() only where "
                "the request is built, never log it (not even while the connector starts), and show objects "
                "holding it with crmsync.helpers.safe_repr"
            )

    @applies(lambda cls: bool(bounded_settings(cls.kit_spec.settings_model)) and (pulls(cls) or pushes(cls)))
    def test_settings_at_the_top_of_their_range_work(self, double: CrmDouble, make_connector: Any):
        tops = bounded_settings(self.kit_spec.settings_model)
        settings = self.kit_spec.settings_model.model_validate({**double.settings(), **tops})
        try:
            connector = make_connector(settings=settings)
            problem = prepare(type(self), double, connector, "pull" if pulls(type(self)) else "push")()
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            raise ContractError(
                f"with the settings {tops} (the largest values the settings model allows) {problem}: allow only "
                "values the API accepts (a page size up to what one page may hold, ...), and send what they say"
            )

    def test_check_passes_on_a_healthy_system(self, double: CrmDouble, connector: Connector):
        results = connector.check()
        wrong = [r for r in results if not isinstance(r, CheckResult)]
        failed = [str(r.detail or r.name) for r in results if isinstance(r, CheckResult) and not r.ok]
        if wrong or failed:
            raise ContractError(f"check() on a healthy system returned {wrong or failed}; return CheckResult objects")
