"""``check()`` and ``create_fields()``: credentials, scopes, the pushed fields, their options, Bulk Write.

Zoho refuses a pushed value that is not an option of a picklist or multi-select field, per record. ``check`` names
every value a push can write (the policy's tiers, RFM segments, lifecycle stages, tags and benefit tags: see
:attr:`crmsync.ConnectorContext.push_values`; ``tier_names`` / ``tag_names`` in the settings win where set) that a
target field lacks; ``create_fields`` creates missing fields with all their values and adds the missing options
to existing fields (``PATCH /settings/fields``, at most five fields per call; an option without ``id`` is added).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from crmsync import CheckResult, ConnectorContext, ConnectorError
from crmsync_zoho.client import ZohoClient, loads
from crmsync_zoho.settings import ZohoSettings

COMPATIBLE = {
    "tier": {"picklist", "text"},
    "points": {"integer", "bigint", "double"},
    "tags": {"multiselectpicklist"},
    "rfm_segment": {"picklist", "text"},
    "lifecycle": {"picklist", "text"},
}
NONE_OPTION = "-None-"
PATCH_LIMIT = 5
"""Fields per ``PATCH /settings/fields`` call."""
OPTION_KINDS = ("picklist", "multiselectpicklist")


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


def push_values(settings: ZohoSettings, context: ConnectorContext) -> dict[str, tuple[str, ...]]:
    """Every value a push can write per canonical field: the policy's, or ``tier_names``/``tag_names`` when set."""
    values = {k: tuple(v) for k, v in context.push_values.items()}
    values.setdefault("tier", tuple(context.tier_names))
    values.setdefault("tags", tuple(context.tag_names))
    if settings.tier_names:
        values["tier"] = tuple(settings.tier_names)
    if settings.tag_names:
        values["tags"] = tuple(settings.tag_names)
    return values


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _values_check(name: str, kind: str, meta: dict[str, Any], wanted: Sequence[str]) -> CheckResult:
    if kind in OPTION_KINDS:
        allowed = picklist_values(meta)
        missing = [v for v in wanted if v not in allowed]
        if missing:
            return CheckResult(
                name,
                False,
                f"{kind} lacks {len(missing)} value(s) a push can write: {_quoted(missing)} (has {_quoted(allowed)});"
                " add them in Zoho or run `crmsync check --create-fields`",
            )
        if not wanted:
            return CheckResult(name, True, f"{kind} values: {_quoted(allowed)} (the policy names none to verify)")
        return CheckResult(name, True, f"{kind} allows all {len(wanted)} values a push can write")
    length = meta.get("length")
    too_long = [v for v in wanted if isinstance(length, int) and len(v) > length]
    if too_long:
        return CheckResult(name, False, f"{kind} of length {length} is too short for {_quoted(too_long)}")
    return CheckResult(name, True, kind)


def _field_check(canonical: str, api: str, meta: dict[str, Any] | None, wanted: Sequence[str]) -> CheckResult:
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
    return _values_check(name, str(kind), meta, wanted)


def _scopes(token_scope: str, settings: ZohoSettings) -> CheckResult:
    granted = {s.strip().lower() for s in token_scope.replace(",", " ").split()}
    need = [(settings.contacts_module, "READ"), (settings.contacts_module, "UPDATE"), (settings.orders.module, "READ")]
    missing = [f"ZohoCRM.modules.{_module_scope(m)}.{op}" for m, op in need if not has_scope(granted, m, op)]
    if not granted & {"zohocrm.settings.fields.read", "zohocrm.settings.fields.all", "zohocrm.settings.all"}:
        missing.append("ZohoCRM.settings.fields.READ")
    return CheckResult("scopes", not missing, f"missing: {', '.join(missing)}" if missing else "ok")


def check(client: ZohoClient, settings: ZohoSettings, context: ConnectorContext) -> list[CheckResult]:
    try:
        token = client.connect()
    except ConnectorError as exc:
        return [CheckResult("credentials", False, exc.message)]
    results = [CheckResult("credentials", True, f"token from {client.label}, API at {client.api_url}")]
    if token.scope:
        results.append(_scopes(token.scope, settings))
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
    values = push_values(settings, context)
    for canonical, api in settings.push_fields.mapping().items():
        results.append(_field_check(canonical, api, metadata.get(api), values.get(canonical, ())))
    return results + bulk_write_check(client, settings, token.scope)


def bulk_write_check(client: ZohoClient, settings: ZohoSettings, scope: str | None) -> list[CheckResult]:
    """Bulk Write's prerequisites, when a push can reach ``bulk_write_threshold`` (as many contacts as that).

    Its scopes (when the token answer lists them), the org id its upload names, and an empty probe of the upload
    host (nothing is uploaded): an answer other than 401/403 shows the host is reachable and takes the token.
    """
    threshold = settings.bulk_write_threshold
    if threshold is None:
        return []
    try:
        body = client.json("GET", client.url(f"{settings.contacts_module}/actions/count")) or {}
    except ConnectorError as exc:
        return [CheckResult("Bulk Write", False, f"cannot count contacts: {exc.message}")]
    count = int(body.get("count") or 0)
    if count < threshold:
        return [CheckResult("Bulk Write", True, f"not used: {count} contacts, bulk_write_threshold {threshold}")]
    results = []
    if scope:
        granted = {s.strip().lower() for s in scope.replace(",", " ").split()}
        need = {"ZohoCRM.bulk.CREATE": {"zohocrm.bulk.create", "zohocrm.bulk.all"},
                "ZohoFiles.files.ALL": {"zohofiles.files.all", "zohofiles.files.create"}}  # fmt: skip
        if not settings.org_id:
            need["ZohoCRM.org.READ"] = {"zohocrm.org.read", "zohocrm.org.all"}
        missing = [name for name, ok in need.items() if not granted & ok]
        if missing:
            results.append(CheckResult("Bulk Write scopes", False, f"missing: {', '.join(missing)} (pushes of "
                                       f"{threshold}+ changes fall back to updates of 100)"))  # fmt: skip
    try:
        org = client.org_id()
        response = client.request(
            "POST",
            f"{client.upload_url}/crm/{settings.api_version}/upload",
            headers={"feature": "bulk-write", "X-CRM-ORG": org},
        )
    except ConnectorError as exc:
        return [*results, CheckResult("Bulk Write", False, f"{exc.message} (pushes fall back to updates of 100)")]
    host = httpx.URL(client.upload_url).host
    if response.status_code in (401, 403):
        detail = f"upload host {host} refused the token (HTTP {response.status_code})"
        return [*results, CheckResult("Bulk Write", False, f"{detail}; pushes fall back to updates of 100")]
    return [*results, CheckResult("Bulk Write", True, f"org id {org}, upload host {host} reachable ({count} contacts)")]


def field_definition(canonical: str, api: str, values: Sequence[str]) -> dict[str, Any] | str:
    """The create-field payload for one pushed field, or why it cannot be created."""
    label = api.replace("_", " ")
    if canonical == "points":
        return {"field_label": label, "data_type": "integer"}
    if not values:
        key = {"tier": "tier_names", "tags": "tag_names"}.get(canonical)
        where = f"set {key} in the connector settings" if key else "the policy names none"
        return f"no values to create the picklist with ({where})"
    kind = "multiselectpicklist" if canonical == "tags" else "picklist"
    options = [{"display_value": v, "actual_value": v} for v in values]
    return {"field_label": label, "data_type": kind, "pick_list_values": options}


def create_missing(client: ZohoClient, settings: ZohoSettings, context: ConnectorContext) -> list[CheckResult]:
    """Create the missing pushed fields with all their values; add missing options to existing option fields."""
    module = settings.contacts_module
    existing = {f["api_name"]: f for f in client.fields_metadata(module)}
    values = push_values(settings, context)
    results: list[CheckResult] = []
    create: list[tuple[str, dict[str, Any]]] = []
    extend: list[tuple[str, dict[str, Any]]] = []
    for canonical, api in settings.push_fields.mapping().items():
        meta = existing.get(api)
        if meta is None:
            definition = field_definition(canonical, api, values.get(canonical, ()))
            if isinstance(definition, str):
                results.append(CheckResult(f"create {api}", False, definition))
            else:
                create.append((api, definition))
        elif meta.get("data_type") in OPTION_KINDS and canonical != "points":
            missing = [v for v in values.get(canonical, ()) if v not in picklist_values(meta)]
            if missing:
                options = [{"display_value": v, "actual_value": v} for v in missing]
                extend.append((api, {"id": meta["id"], "pick_list_values": options}))
    if create:
        results += _send(client, "POST", module, create, "created")
    for start in range(0, len(extend), PATCH_LIMIT):
        results += _send(client, "PATCH", module, extend[start : start + PATCH_LIMIT], "options added")
    return results or [CheckResult("create fields", True, "every pushed field exists with every value")]


def _send(
    client: ZohoClient, method: str, module: str, fields: list[tuple[str, dict[str, Any]]], done: str
) -> list[CheckResult]:
    """One fields call; a result per field, read from the answer's ``fields`` in input order."""
    verb = "create" if method == "POST" else "add options to"
    try:
        response = client.request(
            method, client.url("settings/fields"), params={"module": module}, json={"fields": [d for _, d in fields]}
        )
        if response.status_code not in (200, 201, 207, 400):
            client.fail(response)
    except ConnectorError as exc:
        scope = "ZohoCRM.settings.fields.ALL" if method == "POST" else "ZohoCRM.settings.fields.UPDATE (or .ALL)"
        return [CheckResult(f"{verb} {api}", False, f"{exc.message} (needs {scope})") for api, _ in fields]
    try:
        answers = (loads(response.content).get("fields") or []) if response.content else []
    except (ValueError, AttributeError):
        answers = []
    results = []
    for i, (api, definition) in enumerate(fields):
        answer = answers[i] if i < len(answers) and isinstance(answers[i], dict) else {}
        ok = str(answer.get("status", "")).lower() == "success"
        added = [o["display_value"] for o in definition.get("pick_list_values", [])]
        detail = f"{done}: {_quoted(added)}" if ok and added else done
        if not ok:
            detail = f"{answer.get('code', f'HTTP {response.status_code}')}: {answer.get('message', 'refused')}"
        results.append(CheckResult(f"{verb} {api}", ok, detail))
    return results
