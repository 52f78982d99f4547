"""``check()`` and ``create_fields()``: credentials, scopes, the pushed custom fields and their picklists."""

from __future__ import annotations

import json
from typing import Any

from crmsync.connector import CheckResult, ConnectorContext
from crmsync.errors import ConnectorError
from crmsync_zoho.client import ZohoClient
from crmsync_zoho.settings import ZohoSettings

COMPATIBLE = {
    "tier": {"picklist", "text"},
    "points": {"integer", "bigint", "double"},
    "tags": {"multiselectpicklist"},
    "rfm_segment": {"picklist", "text"},
    "lifecycle": {"picklist", "text"},
}
RFM_SEGMENTS = [
    "Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About to Sleep",
    "At Risk", "Can't Lose Them", "Hibernating", "Lost",
]  # fmt: skip
LIFECYCLE_STAGES = ["potential", "new", "returning", "mature", "loyal", "dormant", "churned"]
NONE_OPTION = "-None-"


def _module_scope(module: str) -> str:
    return module.replace("_", "").lower()


def has_scope(granted: set[str], module: str, op: str) -> bool:
    """Whether ``granted`` (lower-cased) covers ``ZohoCRM.modules.<module>.<op>``."""
    m = _module_scope(module)
    ops = {op.lower(), "all"} | ({"write"} if op.lower() in ("update", "create") else set())
    candidates = {f"zohocrm.modules.{m}.{o}" for o in ops} | {f"zohocrm.modules.{o}" for o in ops}
    return bool(granted & candidates)


def picklist_values(field: dict[str, Any]) -> list[str]:
    """The values of a picklist, without Zoho's ``-None-`` placeholder."""
    values = [str(v.get("actual_value") or v.get("display_value")) for v in field.get("pick_list_values") or []]
    return [v for v in values if v != NONE_OPTION]


def _field_check(canonical: str, api: str, meta: dict[str, Any] | None, settings: ZohoSettings) -> CheckResult:
    name = f"field {api} ({canonical})"
    if meta is None:
        return CheckResult(
            name, False, "missing in Contacts: create it (`crmsync check --create-fields`) or fix the name"
        )
    kind = meta.get("data_type")
    if kind not in COMPATIBLE[canonical]:
        allowed = " or ".join(sorted(COMPATIBLE[canonical]))
        return CheckResult(name, False, f"is {kind}, needs {allowed}")
    ops = meta.get("operation_type") or {}
    if meta.get("read_only") or ops.get("api_update") is False:
        return CheckResult(name, False, "is read-only through the API")
    if canonical == "tier" and kind == "picklist":
        allowed = picklist_values(meta)
        missing = [t for t in settings.tier_names if t not in allowed]
        if missing:
            return CheckResult(name, False, f"picklist lacks tier(s) {', '.join(missing)} (has {', '.join(allowed)})")
        if not settings.tier_names:
            return CheckResult(name, True, f"picklist values: {', '.join(allowed)} (set tier_names to verify)")
    return CheckResult(name, True, kind)


def check(client: ZohoClient, settings: ZohoSettings, context: ConnectorContext) -> list[CheckResult]:
    try:
        token = client.connect()
    except ConnectorError as exc:
        return [CheckResult("credentials", False, exc.message)]
    results = [CheckResult("credentials", True, f"token from {client.label}, API at {client.api_url}")]
    if token.scope:
        granted = {s.strip().lower() for s in token.scope.replace(",", " ").split()}
        need = [
            (settings.contacts_module, "READ"),
            (settings.contacts_module, "UPDATE"),
            (settings.orders.module, "READ"),
        ]
        missing = [f"ZohoCRM.modules.{_module_scope(m)}.{op}" for m, op in need if not has_scope(granted, m, op)]
        if not granted & {"zohocrm.settings.fields.read", "zohocrm.settings.fields.all", "zohocrm.settings.all"}:
            missing.append("ZohoCRM.settings.fields.READ")
        results.append(CheckResult("scopes", not missing, f"missing: {', '.join(missing)}" if missing else "ok"))
    for module in (settings.contacts_module, settings.orders.module):
        try:
            client.json("GET", client.url(module), params={"fields": "Modified_Time", "per_page": 1})
            results.append(CheckResult(f"read {module}", True))
        except ConnectorError as exc:
            results.append(CheckResult(f"read {module}", False, exc.message))
    try:
        metadata = {f["api_name"]: f for f in client.fields_metadata(settings.contacts_module)}
    except ConnectorError as exc:
        return [*results, CheckResult("field metadata", False, exc.message)]
    for canonical, api in settings.push_fields.mapping().items():
        meta = metadata.get(api)
        results.append(_field_check(canonical, api, meta, settings))
        if meta and meta.get("pick_list_values"):
            context.state.set(f"zoho:{context.name}:picklist:{api}", json.dumps(picklist_values(meta)))
    return results


def field_definition(canonical: str, api: str, settings: ZohoSettings) -> dict[str, Any] | str:
    """The create-field payload for one pushed field, or why it cannot be created."""
    label = api.replace("_", " ")
    if canonical == "points":
        return {"field_label": label, "data_type": "integer"}
    values = {
        "tier": settings.tier_names,
        "tags": settings.tag_names,
        "rfm_segment": RFM_SEGMENTS,
        "lifecycle": LIFECYCLE_STAGES,
    }[canonical]
    if not values:
        key = "tier_names" if canonical == "tier" else "tag_names"
        return f"set {key} in the connector settings so the picklist can be created with its values"
    kind = "multiselectpicklist" if canonical == "tags" else "picklist"
    return {"field_label": label, "data_type": kind, "pick_list_values": [{"display_value": v} for v in values]}


def create_missing(client: ZohoClient, settings: ZohoSettings) -> list[CheckResult]:
    module = settings.contacts_module
    existing = {f["api_name"] for f in client.fields_metadata(module)}
    results: list[CheckResult] = []
    todo: list[tuple[str, dict[str, Any]]] = []
    for canonical, api in settings.push_fields.mapping().items():
        if api in existing:
            continue
        definition = field_definition(canonical, api, settings)
        if isinstance(definition, str):
            results.append(CheckResult(f"create {api}", False, definition))
        else:
            todo.append((api, definition))
    if not todo:
        return results or [CheckResult("create fields", True, "all pushed fields exist")]
    response = client.request(
        "POST", client.url("settings/fields"), params={"module": module}, json={"fields": [d for _, d in todo]}
    )
    if response.status_code not in (200, 201, 207, 400):
        client.fail(response)
    answers = (json.loads(response.content or b"{}").get("fields") or []) if response.content else []
    for i, (api, _) in enumerate(todo):
        answer = answers[i] if i < len(answers) else {}
        ok = str(answer.get("status", "")).lower() == "success"
        detail = "created" if ok else f"{answer.get('code', 'ERROR')}: {answer.get('message', 'not created')}"
        results.append(CheckResult(f"create {api}", ok, detail))
    return results
