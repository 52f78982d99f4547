"""``check()``: credentials, the operator's data permissions, and every field and select option pushes need.

The values a push can write come from the policy (``context.push_values``: every tier, RFM segment, lifecycle
stage and tag, benefit tags included); each must be a usable option of its select field, by label or value
(after ``option_map``). Custom fields and their options cannot be created or changed through the OpenAPI (the
documentation has no such call), so ``check --create-fields`` cannot add them either: a missing field or option
is reported with exactly what an administrator must add in the admin console, and which setting then takes the
field's api name.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from crmsync import CheckResult, ConnectorError
from crmsync_fxiaoke import mapping

if TYPE_CHECKING:
    from crmsync_fxiaoke.connector import FxiaokeConnector

COMPATIBLE = {
    "tier": ("select_one", "text"),
    "points": ("number", "currency", "text"),
    "tags": ("select_many", "text", "long_text"),
    "rfm_segment": ("select_one", "text"),
    "lifecycle": ("select_one", "text"),
}
KIND_NAMES = {
    "select_one": "单选 (select_one)",
    "select_many": "多选 (select_many)",
    "number": "数字 (number)",
    "text": "单行文本 (text)",
    "long_text": "多行文本 (long_text)",
    "currency": "金额 (currency)",
}


def expected_options(conn: FxiaokeConnector, canonical: str) -> list[str]:
    """Every value a push of ``canonical`` can write, in the policy's order, as the option it is written as.

    The values come from the policy through ``context.push_values``; ``tier_names`` stands in for the tiers only
    when the connector runs without a policy.
    """
    values = conn.context.push_values.get(canonical)
    if values is None and canonical == "tier":
        values = tuple(conn.settings.tier_names)
    mapped = conn.settings.option_map.get(canonical, {})
    return list(dict.fromkeys(mapped.get(v, v) for v in values or ()))


def missing_options_detail(conn: FxiaokeConnector, canonical: str, meta: dict[str, Any], missing: list[str]) -> str:
    """What an administrator must add, where, and in which order."""
    api, label = str(meta.get("api_name")), meta.get("label") or meta.get("api_name")
    obj, wanted = conn.settings.members.object, expected_options(conn, canonical)
    shown = ", ".join(json.dumps(m, ensure_ascii=False) for m in missing)
    return (
        f"{len(missing)} of the {len(wanted)} values a push can write are not options of this {meta.get('type')} "
        f"field: an administrator must add them in the admin console (object management → {obj} → field "
        f"{label} ({api}) → options), in this order: {shown}, giving each option a label (or value) equal to the "
        f"text shown, or map the values to existing options with option_map.{canonical}. The OpenAPI cannot add "
        "options, so check --create-fields cannot either; until they exist, a push of one of these values is "
        "refused for that customer (retryable, naming the field and the value)"
    )


def create_hint(conn: FxiaokeConnector, canonical: str) -> str:
    kind = COMPATIBLE[canonical][0]
    wanted = expected_options(conn, canonical)
    with_options = f" with options {', '.join(wanted)}" if wanted else ""
    return (
        f"an administrator must create it in the admin console (object management → {conn.settings.members.object} "
        f"→ fields; the OpenAPI cannot create fields): a custom field of type {KIND_NAMES[kind]}{with_options}; "
        f"then set push_fields.{canonical} to its api name (ends with __c)"
    )


def field_check(conn: FxiaokeConnector, canonical: str, api: str, meta: dict[str, Any] | None) -> CheckResult:
    obj = conn.settings.members.object
    name = f"field {api} ({canonical})"
    if meta is None:
        return CheckResult(name, False, f"missing on {obj}: {create_hint(conn, canonical)}")
    kind = meta.get("type")
    if kind not in COMPATIBLE[canonical]:
        allowed = " or ".join(COMPATIBLE[canonical])
        return CheckResult(name, False, f"is {kind}, needs {allowed}: {create_hint(conn, canonical)}")
    if meta.get("is_active") is False:
        return CheckResult(name, False, "is disabled: enable it in the admin console")
    if kind in ("select_one", "select_many"):
        missing = [g for g in expected_options(conn, canonical) if mapping.option_value(meta, g) is None]
        if missing:
            return CheckResult(name, False, missing_options_detail(conn, canonical, meta, missing))
        have = ", ".join(f"{o.get('label')}={o.get('value')}" for o in mapping.options(meta))
        return CheckResult(name, True, f"{kind}; options {have}")
    return CheckResult(name, True, str(kind))


def _read(conn: FxiaokeConnector, obj: str, operator: str) -> CheckResult:
    try:
        conn.client.query(obj, fields=["_id"], filters=[], limit=1)
        return CheckResult(f"read {obj}", True, f"as employee {operator}")
    except ConnectorError as exc:  # a missing permission says what to grant (PermissionRefused)
        return CheckResult(f"read {obj}", False, str(exc))


def _source_fields(conn: FxiaokeConnector, obj: str, names: list[str | None], setting: str) -> list[CheckResult]:
    try:
        describe = conn.describe(obj)
    except ConnectorError as exc:
        return [CheckResult(f"describe {obj}", False, str(exc))]
    missing = [n for n in names if n and n not in describe]
    detail = f"no field(s) {', '.join(missing)} on {obj}: fix {setting} (api names are in the object's describe)"
    return [CheckResult(f"{obj} fields", not missing, detail if missing else f"{len(describe)} fields")]


def check(conn: FxiaokeConnector) -> list[CheckResult]:
    s = conn.settings
    try:
        token = conn.client.tokens.get()
        operator = conn.client.tokens.operator(token)
    except ConnectorError as exc:
        return [CheckResult("credentials", False, str(exc))]
    results = [CheckResult("credentials", True, f"{s.auth_style} token for {token.org} at {s.base_url}")]
    results += [_read(conn, s.members.object, operator), _read(conn, s.orders.object, operator)]
    m, o = s.members, s.orders
    results += _source_fields(conn, m.object, [m.name_field, m.first_name_field, m.email_field, m.phone_field,
                                               *m.attributes], "[connectors.NAME.members]")  # fmt: skip
    results += _source_fields(conn, o.object, [o.customer_field, o.amount_field, o.time_field, o.status_field,
                                               o.currency_field], "[connectors.NAME.orders]")  # fmt: skip
    try:
        describe = conn.describe(m.object)
    except ConnectorError:
        return results
    pushed = s.push_fields.mapping()
    if not pushed:
        results.append(CheckResult("push fields", True, "none configured: grades are not written back"))
    for canonical, api in pushed.items():
        results.append(field_check(conn, canonical, api, describe.get(api)))
    left = conn.client.budget.left()
    if left is not None:
        results.append(CheckResult("daily budget", left > 0, f"{left} of {s.daily_budget} calls left today"))
    return results
