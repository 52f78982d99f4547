"""Field metadata of the fake Zoho org: ``GET``/``POST``/``PATCH /settings/fields`` and the value checks writes use.

Field creation turns a label into an api name (spaces and special characters become ``_``), needs the values of
a picklist, and refuses a label already in use. ``PATCH`` takes at most five fields per call; a
``pick_list_values`` entry without ``id`` adds an option (the others stay), one with an option's ``id`` changes it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

KINDS = {"text", "textarea", "picklist", "multiselectpicklist", "integer", "bigint", "double", "currency", "boolean",
         "date", "datetime", "email", "phone"}  # fmt: skip
LENGTHS = {"text": 255, "picklist": 120, "multiselectpicklist": 2000}
PATCH_LIMIT = 5


def _option(value: str, number: int, oid: str) -> dict[str, Any]:
    return {"display_value": value, "actual_value": value, "reference_value": value, "sequence_number": number,
            "id": oid, "type": "used", "colour_code": None}  # fmt: skip


def push_field(api: str, data_type: str, values: list[str] | None = None, fid: int = 0) -> dict[str, Any]:
    """A field metadata entry shaped like ``GET /settings/fields``."""
    fid_text = f"48768760000007{fid:05d}"
    meta: dict[str, Any] = {
        "api_name": api,
        "field_label": api.replace("_", " "),
        "display_label": api.replace("_", " "),
        "id": fid_text,
        "data_type": data_type,
        "json_type": {"integer": "integer", "multiselectpicklist": "jsonarray"}.get(data_type, "string"),
        "custom_field": True,
        "read_only": False,
        "length": LENGTHS.get(data_type, 9),
        "operation_type": {"web_update": True, "api_create": True, "web_create": True, "api_update": True},
        "pick_list_values": [],
    }
    if values is not None:
        options = ([] if data_type == "multiselectpicklist" else ["-None-"]) + list(values)
        meta["pick_list_values"] = [_option(v, i + 1, f"{fid_text}{i:03d}") for i, v in enumerate(options)]
    return meta


def _fail(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


class FieldsMixin:
    """``/settings/fields`` and :meth:`refusal` for :class:`~tests.zoho.fake.FakeZoho`."""

    fields: dict[str, list[dict[str, Any]]]

    def options(self, meta: dict[str, Any]) -> list[str]:
        return [p["actual_value"] for p in meta["pick_list_values"] if p["actual_value"] != "-None-"]

    def check_value(self, meta: dict[str, Any], value: Any, i: int) -> dict[str, Any] | None:
        """Details of Zoho's ``INVALID_DATA`` for ``value`` in field ``meta`` of record ``i``, or ``None``."""
        api, kind = meta["api_name"], meta["data_type"]
        base = {"api_name": api, "json_path": f"$.data[{i}].{api}"}
        if value is None:
            return None
        if kind in ("integer", "bigint") and (isinstance(value, bool) or not isinstance(value, int)):
            return {"expected_data_type": kind, **base}
        if kind == "picklist" and value not in self.options(meta):
            return {"expected_data_type": "picklist", "supported_values": self.options(meta), **base}
        if kind == "multiselectpicklist" and (
            not isinstance(value, list) or any(v not in self.options(meta) for v in value)
        ):
            return {"expected_data_type": "multiselectpicklist", "supported_values": self.options(meta), **base}
        if kind in ("text", "picklist") and not isinstance(value, str):
            return {"expected_data_type": kind, **base}
        if kind == "text" and len(value) > int(meta.get("length") or 255):
            return {"maximum_length": int(meta.get("length") or 255), **base}
        return None

    def refusal(self, module: str, values: dict[str, Any], i: int) -> tuple[str, dict[str, Any]] | None:
        """Why Zoho refuses writing ``values`` to a record of ``module`` (message, details), or ``None``."""
        from .fake import STANDARD

        metas = {f["api_name"]: f for f in self.fields.get(module, [])}
        for api, value in values.items():
            if api not in metas and api not in STANDARD:
                details = {"api_name": api, "json_path": f"$.data[{i}].{api}"}
                return "the field api name given seems to be invalid", details
            if api in metas and (details := self.check_value(metas[api], value, i)):
                return "invalid data", details
        return None

    # -- /settings/fields --------------------------------------------------------------------------------

    def _fields(self, request: httpx.Request, scopes: str) -> httpx.Response:
        from .fake import _granted

        module = request.url.params.get("module", "")
        wanted = {
            "GET": ("ZohoCRM.settings.fields.READ", "ZohoCRM.settings.fields.ALL", "ZohoCRM.settings.ALL"),
            "POST": ("ZohoCRM.settings.fields.CREATE", "ZohoCRM.settings.fields.ALL", "ZohoCRM.settings.ALL"),
            "PATCH": ("ZohoCRM.settings.fields.UPDATE", "ZohoCRM.settings.fields.ALL", "ZohoCRM.settings.ALL"),
        }.get(request.method)
        if wanted is None:
            return httpx.Response(400, json=_fail("INVALID_REQUEST_METHOD", "the http request method is invalid"))
        if not _granted(scopes, *wanted):
            return httpx.Response(401, json=_fail("OAUTH_SCOPE_MISMATCH", "Unauthorized"))
        if module not in self.fields and module not in ("Contacts", "Sales_Orders", "Deals", "Invoices"):
            return httpx.Response(400, json=_fail("INVALID_MODULE", "the module name given seems to be invalid"))
        if request.method == "GET":
            return httpx.Response(200, json={"fields": self.fields.get(module, [])})
        entries = json.loads(request.content).get("fields") or []
        if request.method == "PATCH" and len(entries) > PATCH_LIMIT:
            return httpx.Response(400, json=_fail("LIMIT_EXCEEDED", "fields exceed the limit",
                                                  {"limit": PATCH_LIMIT, "api_name": "fields"}))  # fmt: skip
        handle = self._create_field if request.method == "POST" else self._patch_field
        answers = [handle(module, i, entry) for i, entry in enumerate(entries)]
        ok = sum(a["status"] == "success" for a in answers)
        status = (201 if request.method == "POST" else 200) if ok == len(answers) else (400 if not ok else 207)
        return httpx.Response(status, json={"fields": answers})

    def _create_field(self, module: str, i: int, entry: dict[str, Any]) -> dict[str, Any]:
        label, kind = str(entry.get("field_label") or ""), entry.get("data_type")
        at = {"json_path": f"$.fields[{i}]"}
        if not label or kind not in KINDS:
            return _fail("INVALID_DATA", "invalid data", {"api_name": "data_type" if label else "field_label", **at})
        api = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
        existing = self.fields.setdefault(module, [])
        if any(f["api_name"] == api or f["field_label"] == label for f in existing):
            return _fail("DUPLICATE_DATA", "duplicate data", {"api_name": "field_label", **at})
        values = [str(v.get("display_value") or "") for v in entry.get("pick_list_values") or []]
        options = kind in ("picklist", "multiselectpicklist")
        if options and (not values or "" in values or len(set(values)) < len(values)):
            return _fail("INVALID_DATA", "invalid data", {"api_name": "pick_list_values", **at})
        meta = push_field(api, kind, values if options else None, len(existing) + 10)
        meta["field_label"] = meta["display_label"] = label
        existing.append(meta)
        return {"code": "SUCCESS", "details": {"id": meta["id"]}, "message": "field created", "status": "success"}

    def _patch_field(self, module: str, i: int, entry: dict[str, Any]) -> dict[str, Any]:
        at = {"json_path": f"$.fields[{i}]"}
        meta = next((f for f in self.fields.get(module, []) if f["id"] == str(entry.get("id"))), None)
        if meta is None:
            return _fail("INVALID_DATA", "the id given seems to be invalid", {"api_name": "id", **at})
        changes = entry.get("pick_list_values") or []
        if changes and meta["data_type"] not in ("picklist", "multiselectpicklist"):
            return _fail("INVALID_DATA", "invalid data", {"api_name": "pick_list_values", **at})
        options = meta["pick_list_values"]
        for change in changes:
            value = str(change.get("display_value") or "")
            if not value:
                return _fail("INVALID_DATA", "invalid data", {"api_name": "display_value", **at})
            if "id" in change:
                target = next((o for o in options if o["id"] == str(change["id"])), None)
                if target is None:
                    return _fail("INVALID_DATA", "the id given seems to be invalid", {"api_name": "id", **at})
                target.update(display_value=value, actual_value=str(change.get("actual_value") or value))
            elif value in self.options(meta):
                return _fail("DUPLICATE_DATA", "duplicate data", {"api_name": "display_value", **at})
            else:
                options.append(_option(value, len(options) + 1, f"{meta['id']}{len(options):03d}"))
        return {"code": "SUCCESS", "details": {"id": meta["id"]}, "message": "field updated", "status": "success"}
