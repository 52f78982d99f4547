"""Seeded bugs in copies of the plugin guide's connector (``crmsync_hublike/connector.py``), one per copy.

Each :class:`Mutant` replaces text of the connector (every ``old`` must occur exactly once) with a realistic bug an
author could write. ``caught`` is the kit's verdict today, checked by running the whole kit on the copy (see
``test_heldout.py``); ``first`` is the verdict when its family was written and first measured, where the kit has
changed it since; bugs the kit cannot see say why in ``note``.

Five families, each written in full before it was measured:

============  =====  ==================  ====  ==============================================================
family        bugs   caught when first   now   the kit changes it led to
============  =====  ==================  ====  ==============================================================
``MUTANTS``   36     31 (86%)            36    every order status seeded; cleared grades checked
``FRESH``     19     17 (89%)            19    missing dates served; deletions across pages
``LATER``     15     13 (87%)            15    settings at the top of their range
``LAST``      15     12 (80%)            15    changes committed late; values left out; the cost of cursors
``UNSEEN``    25     16 (64%)            16    none
all           110    89 (81%)            101 (92%)
============  =====  ==================  ====  ==============================================================

(``FRESH``: a copy that does not import, which fails the run, counts as caught. The kit changes ``LAST`` led to
were made for the misses of every earlier family: changes committed late, values invented for optional fields the
double always filled, and a cursor written after every page however large.)

What the kit still misses (``UNSEEN``): a setting whose smaller values are never tried, a batch sent again after
per-record refusals, a 401 tried twice, a naive time read in the machine's zone (UTC where the kit runs), deletion
times shifted alike, a token logged in part, changes sorted in place while already sorted, a lower-case currency
(harmless: the model upper-cases it) and a made-up exchange rate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    patches: tuple[tuple[str, str], ...]
    caught: bool = True
    note: str = ""
    first: bool | None = None
    """The verdict when the family was first measured, where it differs from ``caught``."""

    def apply(self, source: str) -> str:
        for old, new in self.patches:
            if source.count(old) != 1:
                raise ValueError(f"{self.name}: {old!r} occurs {source.count(old)} times in the connector")
            source = source.replace(old, new)
        return source


def m(
    name: str,
    bug: str,
    old: str,
    new: str,
    *more: tuple[str, str],
    caught: bool = True,
    note: str = "",
    first: bool | None = None,
) -> Mutant:
    return Mutant(name, bug, ((old, new), *more), caught, note, first)


MUTANTS: list[Mutant] = [
    # -- paging and cursors
    m("after_never_sent", "paging", 'json={**body, "after": after}', "json=body"),
    m(
        "stops_after_the_first_page",
        "paging",
        'pages.advance(answer.get("paging", {}).get("next", {}).get("after"),',
        "pages.advance(None,",
    ),
    m(
        "no_overlap_and_greater_than",
        "paging ties",
        "self.changed(stream, mark.since(self.overlap))",
        "self.changed(stream, mark.at)",
        ('"operator": "GTE"', '"operator": "GT"'),
    ),
    m(
        "noted_before_the_delivered_test",
        "cursor",
        """                    if mark.delivered(row["id"], when):
                        continue  # read again through the overlap window
                    mark.note(row["id"], when)""",
        """                    mark.note(row["id"], when)
                    if mark.delivered(row["id"], when):
                        continue  # read again through the overlap window""",
    ),
    m(
        "prunes_without_the_overlap",
        "cursor",
        "            mark.prune(self.overlap)\n            read +=",
        "            mark.prune(timedelta(0))\n            read +=",
    ),
    m(
        "cursor_forgets_the_archived_watermark",
        "cursor",
        'lambda c: {"records": c.records.to_json(), "archived": c.archived.to_json()}',
        'lambda c: {"records": c.records.to_json()}',
    ),
    m("filter_in_epoch_seconds", "cursor", "str(int(since.timestamp() * 1000))", "str(int(since.timestamp()))"),
    # -- values
    m(
        "z_stripped_from_update_times",
        "time zones",
        "when = parse_time(value, field, self.context.timezone)",
        'when = parse_time(value.rstrip("Z") if isinstance(value, str) else value, field, self.context.timezone)',
    ),
    m(
        "closedate_parsed_without_its_z",
        "time zones",
        'placed_at=self.time(p.get("closedate"), "closedate"),',
        'placed_at=aware(datetime.strptime(p["closedate"], "%Y-%m-%dT%H:%M:%S.%fZ"), self.context.timezone),',
        ("from crmsync.helpers import parse_decimal,", "from crmsync.helpers import aware, parse_decimal,"),
    ),
    m(
        "amount_through_decimal",
        "bad row dropped",
        'amount = parse_decimal(p.get("amount"), "amount")',
        'amount = Decimal(p["amount"])',
        ("from typing import Any\n", "from decimal import Decimal\nfrom typing import Any\n"),
    ),
    m(
        "amount_through_float",
        "money",
        'amount = parse_decimal(p.get("amount"), "amount")',
        'amount = float(p.get("amount") or 0)',
    ),
    m(
        "every_deal_in_the_base_currency",
        "currency",
        'currency=p.get("deal_currency_code") or self.context.base_currency',
        "currency=self.context.base_currency",
    ),
    m("currency_from_the_wrong_property", "currency", 'p.get("deal_currency_code")', 'p.get("currency")'),
    m(
        "unknown_stage_counted_as_paid",
        "values",
        'STAGES.get(p.get("dealstage"), "pending")',
        'STAGES.get(p.get("dealstage"), "paid")',
        first=False,
        note="every seeded deal is paid or refunded, both mapped: no deal has an unmapped stage",
    ),
    m("refunds_not_mapped", "values", '"refunded": "refunded", ', ""),
    m(
        "contact_from_the_wrong_property",
        "values",
        'member_external_id=p.get("contact_id")',
        'member_external_id=p.get("hs_object_id")',
    ),
    m(
        "missing_closedate_becomes_now",
        "values",
        'placed_at=self.time(p.get("closedate"), "closedate"),',
        'placed_at=parse_time(p.get("closedate"), "closedate", self.context.timezone) or datetime.now(UTC),',
        ("from datetime import datetime, timedelta", "from datetime import UTC, datetime, timedelta"),
        first=False,
        note="every seeded deal has a close date",
    ),
    # -- unreadable rows
    m(
        "only_key_errors_caught",
        "bad row dropped",
        "except (KeyError, ValueError) as exc:  # BadValue",
        "except KeyError as exc:  # BadValue",
    ),
    m(
        "unreadable_rows_logged_and_dropped",
        "bad row dropped",
        'rejects.append(reject(stream, f"{OBJECT[stream]} {rid}", exc, record_id=rid, raw=row))',
        'self.context.logger.warning("%s: skipped %s: %s", self.name, rid, exc)',
    ),
    m(
        "rejection_without_the_record_id",
        "bad row dropped",
        "exc, record_id=rid, raw=row))",
        "exc, record_id=None, raw=row))",
    ),
    # -- pushes
    m(
        "errors_of_a_207_ignored",
        "write answers",
        'refused = {i: e for e in answer.get("errors", []) for i in e.get("context", {}).get("id", [])}',
        "refused: dict[str, Any] = {}",
    ),
    m(
        "complete_read_as_all_written",
        "write answers",
        "ok = c.member_id in done",
        'ok = answer.get("status") == "COMPLETE"',
    ),
    m("a_207_refused_whole", "write answers", "ok=(200, 207)", "ok=(200,)"),
    m("tags_joined_with_commas", "values written", 'return ";".join(value)', 'return ",".join(value)'),
    m(
        "none_written_as_text",
        "values written",
        'return "" if value is None else str(value)',
        "return str(value)",
        first=False,
        note="the kit pushes cleared grades only to see that push() leaves them unchanged, not what it writes",
    ),
    m("batch_larger_than_the_api_accepts", "batch size", "push_batch_size = 100", "push_batch_size = 200"),
    m(
        "write_retried_on_any_error",
        "push retried on 4xx",
        'answer = self.call("POST", "/crm/v3/objects/contacts/batch/update", ok=(200, 207), json={"inputs": inputs})',
        """for attempt in range(3):
            try:
                answer = self.call("POST", "/crm/v3/objects/contacts/batch/update", ok=(200, 207),
                                   json={"inputs": inputs})
                break
            except crmsync.ConnectorError:
                if attempt == 2:
                    raise""",
    ),
    m(
        "tags_joined_in_the_change",
        "input changed by push",
        "        inputs = [",
        """        for c in changes:
            if "tags" in c.values:
                c.values["tags"] = ";".join(c.values["tags"])
        inputs = [""",
    ),
    m(
        "check_only_pings",
        "check",
        'return [CheckResult(f"contact property {name}", name in have,',
        'return [CheckResult(f"contact property {name}", True,',
    ),
    # -- errors and secrets
    m(
        "refused_token_read_as_nothing",
        "refused credentials",
        '            raise crmsync.AuthError(where, connector=self.name, hint="check access_token and its scopes")',
        '            return {"results": []}',
    ),
    m(
        "forbidden_raised_as_fatal",
        "refused credentials",
        "if response.status_code in (401, 403):",
        "if response.status_code == 401:",
    ),
    m(
        "token_logged_at_start",
        "token logged",
        "        token = settings.access_token.get_secret_value()\n",
        "        token = settings.access_token.get_secret_value()\n"
        '        context.logger.debug("%s: using token %s", context.name, token)\n',
    ),
    m(
        "token_in_the_repr",
        "token logged",
        'return safe_repr(self, ["name"], ["access_token"])',
        'return f"<HublikeConnector {self.name} {self.settings.access_token.get_secret_value()}>"',
    ),
    # -- deletions and settings
    m("archived_never_read", "deletions", "deleted=self.archived(stream, state.archived)", "deleted=[]"),
    m(
        "page_size_above_the_api_limit",
        "settings",
        "page_size: int = Field(100, ge=1, le=100)",
        "page_size: int = Field(100, ge=1, le=500)",
        first=False,
        note="the kit reads with the double's page size (3); it does not try the bounds of each setting",
    ),
    m(
        "no_overlap_by_default",
        "cursor",
        "overlap_seconds: int = Field(60, ge=0,",
        "overlap_seconds: int = Field(0, ge=0,",
        first=False,
        note="the double committed no record late: a window of 0 lost nothing against it",
    ),
]

FRESH: list[Mutant] = [
    m(
        "codec_version_raised_without_a_reader",
        "cursor",
        'CODEC = CursorCodec(\n    "hublike",\n    1,',
        'CODEC = CursorCodec(\n    "hublike",\n    2,',
    ),
    m(
        "watermark_from_the_creation_time",
        "cursor",
        'when = self.time(row.get("updatedAt"), "updatedAt")',
        'when = self.time(row["properties"].get("createdate"), "createdate")',
    ),
    m("results_under_the_wrong_key", "paging", 'yield answer["results"]', 'yield answer.get("data", [])'),
    m(
        "amounts_rounded",
        "money",
        'member_external_id=p.get("contact_id"), amount=amount,',
        'member_external_id=p.get("contact_id"), amount=amount.quantize(Decimal("1")),',
        ("from typing import Any\n", "from decimal import Decimal\nfrom typing import Any\n"),
    ),
    m(
        "first_and_last_name_swapped",
        "values",
        'first_name=p.get("firstname"), last_name=p.get("lastname")',
        'first_name=p.get("lastname"), last_name=p.get("firstname")',
    ),
    m("email_not_read", "values", 'email=p.get("email")', "email=None"),
    m(
        "update_time_not_kept",
        "values",
        '"external_id": row["id"], "updated_at": updated}',
        '"external_id": row["id"]}',
    ),
    m(
        "only_the_tier_pushed",
        "values written",
        "{PROPERTIES[k]: text(v) for k, v in c.values.items()}",
        '{PROPERTIES[k]: text(v) for k, v in c.values.items() if k == "tier"}',
    ),
    m(
        "previous_values_pushed",
        "values written",
        "{PROPERTIES[k]: text(v) for k, v in c.values.items()}",
        "{PROPERTIES[k]: text(v) for k, v in c.previous.items()}",
    ),
    m(
        "results_paired_by_position",
        "write answers",
        'done = {r["id"] for r in answer.get("results", [])}',
        'done = {c.member_id for c, _ in zip(changes, answer.get("results", []), strict=False)}',
    ),
    m(
        "check_silent_on_errors",
        "refused credentials",
        '        have = {p["name"] for p in self.call("GET", "/crm/v3/properties/contacts")["results"]}',
        """        try:
            have = {p["name"] for p in self.call("GET", "/crm/v3/properties/contacts")["results"]}
        except crmsync.ConnectorError:
            return []""",
    ),
    m(
        "refused_token_as_refused_records",
        "refused credentials",
        "        results = []\n        for c in changes:  # one result",
        "        results: list[RecordResult] = []\n        for c in changes:  # one result",
        (
            '        answer = self.call("POST", "/crm/v3/objects/contacts/batch/update", ok=(200, 207), '
            'json={"inputs": inputs})',
            """        try:
            answer = self.call("POST", "/crm/v3/objects/contacts/batch/update", ok=(200, 207),
                               json={"inputs": inputs})
        except crmsync.AuthError as exc:
            return [RecordResult(c.member_id, False, exc.message) for c in changes]""",
        ),
    ),
    m(
        "conflict_retried_once",
        "push retried on 4xx",
        "        response = self.client.request(method, path, **kwargs)  # 429",
        """        response = self.client.request(method, path, **kwargs)
        if response.status_code == 409:  # a conflict: somebody else was writing, try again
            response = self.client.request(method, path, **kwargs)  # 429""",
    ),
    m(
        "cursor_with_every_page_however_large",
        "cursor",
        "due = mark.checkpoint_due(read)",
        "due = True",
        first=False,
        note="writing a cursor of 20,000 versions after every page is quadratic; the kit's clusters were 25 records",
    ),
    m(
        "only_the_first_page_of_archived_records",
        "deletions",
        '                    mark.note(row["id"], when)\n        mark.prune(self.overlap)\n        return gone',
        '                    mark.note(row["id"], when)\n            break\n        mark.prune(self.overlap)\n'
        "        return gone",
        first=False,
        note="the kit deletes two records: one page of archived records",
    ),
    m("property_name_misspelt", "values written", '"lifecycle": "lifecycle_stage"', '"lifecycle": "lifecyle_stage"'),
    m(
        "check_does_not_name_the_property",
        "check",
        'CheckResult(f"contact property {name}", name in have, "" if name in have else f"create {name}")',
        'CheckResult("contact properties", name in have, "" if name in have else "a property is missing")',
    ),
    m("batch_one_larger_than_the_api_accepts", "batch size", "push_batch_size = 100", "push_batch_size = 101"),
    m(
        "deal_deletions_read_from_contacts",
        "deletions",
        '        path = f"/crm/v3/objects/{OBJECT[stream]}"\n        params = {"archived"',
        '        path = "/crm/v3/objects/contacts"\n        params = {"archived"',
    ),
]
"""Written after the kit gained every order status and the cleared-grades check, and measured once as they stand."""

LATER: list[Mutant] = [
    m(
        "amount_from_the_wrong_property",
        "values",
        'parse_decimal(p.get("amount"), "amount")',
        'parse_decimal(p.get("hs_amount"), "amount")',
    ),
    m(
        "every_pull_from_the_start",
        "cursor",
        "self.changed(stream, mark.since(self.overlap))",
        "self.changed(stream, None)",
    ),
    m(
        "rejections_not_yielded",
        "bad row dropped",
        "yield Batch(stream, records, rejects=rejects, cursor=",
        "yield Batch(stream, records, cursor=",
    ),
    m(
        "twice_the_page_size_asked",
        "settings",
        '"limit": self.settings.page_size, "sorts"',
        '"limit": self.settings.page_size * 2, "sorts"',
        first=False,
        note="the kit's page size is 3: 6 is accepted; the default of 100 would ask for 200, which the API refuses",
    ),
    m(
        "grades_written_to_deals",
        "values written",
        '"/crm/v3/objects/contacts/batch/update"',
        '"/crm/v3/objects/deals/batch/update"',
    ),
    m("properties_of_deals_checked", "check", '"/crm/v3/properties/contacts"', '"/crm/v3/properties/deals"'),
    m("refunds_read_as_cancellations", "values", '"refunded": "refunded", ', '"refunded": "cancelled", '),
    m(
        "points_written_as_decimals",
        "values written",
        '    return "" if value is None else str(value)',
        "    if isinstance(value, int):\n        return str(float(value))\n"
        '    return "" if value is None else str(value)',
    ),
    m(
        "empty_tags_written_as_a_list",
        "values written",
        "if isinstance(value, list):",
        "if isinstance(value, list) and value:",
    ),
    m(
        "records_appended_twice",
        "paging",
        "                    records.append(self.record(stream, row, when))\n",
        "                    records.append(self.record(stream, row, when))\n"
        "                    records.append(self.record(stream, row, when))\n",
    ),
    m(
        "overlap_added_not_subtracted",
        "paging ties",
        "self.changed(stream, mark.since(self.overlap))",
        "self.changed(stream, mark.since(-self.overlap))",
    ),
    m(
        "deals_without_currency_in_dollars",
        "currency",
        "or self.context.base_currency,\n                     placed_at",
        'or "USD",\n                     placed_at',
        first=False,
        note="every seeded deal named its currency",
    ),
    m(
        "creation_time_from_the_update",
        "values",
        'created_at=parse_time(p.get("createdate"), "createdate", self.context.timezone)',
        "created_at=updated",
    ),
    m(
        "results_only_for_answered_records",
        "write answers",
        "        for c in changes:  # one result per change",
        "        changes = [c for c in changes if c.member_id in done or c.member_id in refused]\n"
        "        for c in changes:  # one result per change",
    ),
    m(
        "refused_token_logged",
        "token logged",
        "        if response.status_code in (401, 403):\n",
        "        if response.status_code in (401, 403):\n"
        '            self.context.logger.warning("token %s refused", self.settings.access_token.get_secret_value())\n',
    ),
]
"""Written after the kit gained missing dates and deletions across pages, and measured once as they stand."""

LAST: list[Mutant] = [
    m(
        "contact_ids_read_as_numbers",
        "values",
        'member_external_id=p.get("contact_id")',
        'member_external_id=str(int(p["contact_id"]))',
    ),
    m(
        "deleted_ids_with_the_object_name",
        "deletions",
        'gone.append(row["id"])',
        "gone.append(f\"{OBJECT[stream]}/{row['id']}\")",
    ),
    m("cursor_never_read", "cursor", "state = CODEC.loads(cursor)", "state = CODEC.loads(None)"),
    m(
        "overlap_in_milliseconds",
        "cursor",
        "timedelta(seconds=settings.overlap_seconds)",
        "timedelta(milliseconds=settings.overlap_seconds)",
        first=False,
        note="the double committed no record late, so a window of 60 ms lost nothing against it",
    ),
    m(
        "results_under_a_misspelt_key",
        "write answers",
        'done = {r["id"] for r in answer.get("results", [])}',
        'done = {r["id"] for r in answer.get("result", [])}',
    ),
    m(
        "error_ids_read_as_one",
        "write answers",
        'for i in e.get("context", {}).get("id", [])}',
        'for i in [e.get("context", {}).get("id")]}',
    ),
    m(
        "refusal_reason_dropped",
        "write answers",
        'RecordResult(c.member_id, False, error.get("message"), field)',
        "RecordResult(c.member_id, False, None, field)",
    ),
    m(
        "creation_time_invented",
        "values",
        'created_at=parse_time(p.get("createdate"), "createdate", self.context.timezone))',
        'created_at=parse_time(p.get("createdate"), "createdate", self.context.timezone) or datetime.now(UTC))',
        ("from datetime import datetime, timedelta", "from datetime import UTC, datetime, timedelta"),
        first=False,
        note="every seeded contact had a creation date; the kit blanked dates of orders and activities only",
    ),
    m(
        "check_raises_on_a_missing_property",
        "check",
        '        return [CheckResult(f"contact property {name}"',
        "        if missing := set(PROPERTIES.values()) - have:\n"
        '            raise crmsync.FatalAPIError(f"missing properties {sorted(missing)}")\n'
        '        return [CheckResult(f"contact property {name}"',
    ),
    m(
        "deals_object_misnamed",
        "paging",
        'OBJECT = {Stream.MEMBERS: "contacts", Stream.ORDERS: "deals"}',
        'OBJECT = {Stream.MEMBERS: "contacts", Stream.ORDERS: "deal"}',
    ),
    m("last_record_of_each_page_dropped", "paging", 'yield answer["results"]', 'yield answer["results"][:-1]'),
    m(
        "contact_from_associations",
        "values",
        'member_external_id=p.get("contact_id")',
        'member_external_id=((row.get("associations") or {}).get("contacts") or [{}])[0].get("id")',
    ),
    m(
        "refunds_as_negative_amounts",
        "money",
        '            raise BadValue("amount", "missing")\n',
        '            raise BadValue("amount", "missing")\n'
        '        if p.get("dealstage") == "refunded":\n'
        "            amount = -amount\n",
    ),
    m(
        "token_without_its_scheme",
        "refused credentials",
        'headers={"Authorization": f"Bearer {token}"})',
        'headers={"Authorization": token})',
    ),
    m(
        "archive_times_in_the_records_watermark",
        "cursor",
        "deleted=self.archived(stream, state.archived)",
        "deleted=self.archived(stream, state.records)",
        first=False,
        note="deletions then move the records' watermark: only a change committed late, which the double never "
        "made, is lost",
    ),
]
"""Written after the kit gained the settings-range check, and measured once as they stand."""

UNSEEN: list[Mutant] = [
    # -- paging and ties
    m(
        "after_from_the_last_result_id",
        "paging",
        'pages.advance(answer.get("paging", {}).get("next", {}).get("after"),',
        'pages.advance(answer["results"][-1]["id"] if answer.get("paging") else None,',
    ),
    m(
        "newest_first",
        "paging ties",
        '"direction": "ASCENDING"}]',
        '"direction": "DESCENDING"}]',
    ),
    m(
        "page_size_setting_ignored",
        "settings",
        '"limit": self.settings.page_size, "sorts"',
        '"limit": 100, "sorts"',
        caught=False,
        note="the kit never sets a page size below the default: at 100 a page every pull it makes fits one page",
    ),
    m(
        "delivered_tested_by_id_alone",
        "paging ties",
        'if mark.delivered(row["id"], when):',
        'if row["id"] in mark.seen:',
    ),
    m(
        "checkpoint_counter_never_reset",
        "cursor",
        "read = 0 if due else read",
        "read = read",
    ),
    # -- write answers
    m(
        "errors_paired_by_position",
        "write answers",
        'refused = {i: e for e in answer.get("errors", []) for i in e.get("context", {}).get("id", [])}',
        'refused = {changes[n].member_id: e for n, e in enumerate(answer.get("errors", []))}',
    ),
    m(
        "one_error_fails_the_batch",
        "write answers",
        "ok = c.member_id in done",
        'ok = c.member_id in done and not answer.get("errors")',
    ),
    m(
        "written_unless_refused",
        "write answers",
        'done = {r["id"] for r in answer.get("results", [])}',
        'done = {i["id"] for i in inputs}',
    ),
    # -- unreadable rows
    m(
        "unreadable_amount_read_as_zero",
        "bad row dropped",
        'amount = parse_decimal(p.get("amount"), "amount")',
        'amount = parse_decimal(p.get("amount") if str(p.get("amount")).replace(".", "").isdigit() else "0", "amount")',
    ),
    m(
        "rejections_of_a_page_without_records_lost",
        "bad row dropped",
        "yield Batch(stream, records, rejects=rejects, cursor=",
        "yield Batch(stream, records, rejects=rejects if records else [], cursor=",
    ),
    # -- refused credentials
    m(
        "forbidden_and_missing_read_as_no_objects",
        "refused credentials",
        "        if response.status_code in (401, 403):\n",
        "        if response.status_code in (403, 404):  # the object type is not enabled for this account\n"
        '            return {"results": []}\n'
        "        if response.status_code in (401, 403):\n",
    ),
    m(
        "refused_token_tried_again",
        "refused credentials",
        "        response = self.client.request(method, path, **kwargs)  # 429",
        "        response = self.client.request(method, path, **kwargs)\n"
        "        if response.status_code == 401:  # a token that just expired: once more\n"
        "            response = self.client.request(method, path, **kwargs)  # 429",
        caught=False,
        note="the kit checks that a 401 ends in AuthError, not that it was sent only once",
    ),
    # -- push retries
    m(
        "batch_sent_again_when_records_are_refused",
        "push retried on 4xx",
        '        done = {r["id"] for r in answer.get("results", [])}',
        '        if answer.get("errors"):  # a second try often goes through\n'
        '            answer = self.call("POST", "/crm/v3/objects/contacts/batch/update", ok=(200, 207), '
        'json={"inputs": inputs})\n'
        '        done = {r["id"] for r in answer.get("results", [])}',
        caught=False,
        note="the kit does not count write calls after a per-record refusal; sending the batch again writes "
        "the same values twice, harmlessly against the double",
    ),
    # -- time zones
    m(
        "search_filter_from_a_naive_time",
        "time zones",
        "str(int(since.timestamp() * 1000))",
        "str(int(since.replace(tzinfo=None).timestamp() * 1000))",
        caught=False,
        note="a naive datetime's timestamp() reads it in the machine's zone, which is UTC where the kit runs",
    ),
    m(
        "close_date_read_as_a_day",
        "time zones",
        'placed_at=self.time(p.get("closedate"), "closedate"),',
        'placed_at=self.time((p.get("closedate") or "")[:10] or None, "closedate"),',
    ),
    m(
        "archive_times_read_in_the_local_zone",
        "time zones",
        'when = self.time(row.get("archivedAt"), "archivedAt")',
        'when = self.time(str(row.get("archivedAt")).rstrip("Z"), "archivedAt")',
        caught=False,
        note="archive times are only compared with each other: shifted alike, they lose no deletion",
    ),
    # -- secrets
    m(
        "headers_logged_at_start",
        "token logged",
        "    def __repr__(self) -> str:",
        '        context.logger.debug("%s: client headers %s", context.name, dict(self.client.headers))\n\n'
        "    def __repr__(self) -> str:",
    ),
    m(
        "token_prefix_logged",
        "token logged",
        "        token = settings.access_token.get_secret_value()\n",
        "        token = settings.access_token.get_secret_value()\n"
        '        context.logger.info("%s: token %s...", context.name, token[:12])\n',
        caught=False,
        note="the secrets check looks for the whole token; a 12-character prefix of it is not found",
    ),
    # -- input
    m(
        "changes_sorted_in_place",
        "input changed by push",
        "        inputs = [",
        "        if isinstance(changes, list):\n"
        "            changes.sort(key=lambda c: c.member_id)  # stable batches\n"
        "        inputs = [",
        caught=False,
        note="the kit's changes come sorted by member id, so sorting them in place changes nothing",
    ),
    # -- currencies
    m(
        "currency_lower_case",
        "currency",
        'currency=p.get("deal_currency_code") or self.context.base_currency',
        'currency=(p.get("deal_currency_code") or self.context.base_currency).lower()',
        caught=False,
        note="harmless: crmsync.Order upper-cases a currency code, so there is nothing to catch",
    ),
    m(
        "every_rate_one",
        "currency",
        'placed_at=self.time(p.get("closedate"), "closedate"),',
        'placed_at=self.time(p.get("closedate"), "closedate"), exchange_rate=parse_decimal("1", "rate"),',
        caught=False,
        note="the kit does not compare exchange_rate (no seeded deal has one), so a made-up rate of 1 passes",
    ),
    # -- changes committed late
    m(
        "search_from_the_watermark_itself",
        "late commit",
        "self.changed(stream, mark.since(self.overlap))",
        "self.changed(stream, mark.at)",
    ),
    m(
        "read_completed_at_the_local_clock",
        "late commit",
        "mark.complete(None, self.overlap)",
        "mark.complete(datetime.now(UTC), self.overlap)",
        ("from datetime import datetime, timedelta", "from datetime import UTC, datetime, timedelta"),
    ),
    # -- values invented
    m(
        "missing_last_name_as_unknown",
        "invented value",
        'last_name=p.get("lastname")',
        'last_name=p.get("lastname") or "Unknown"',
    ),
    m(
        "creation_date_from_the_update",
        "invented value",
        'created_at=parse_time(p.get("createdate"), "createdate", self.context.timezone)',
        'created_at=parse_time(p.get("createdate") or row.get("updatedAt"), "createdate", self.context.timezone)',
    ),
]
"""Written after the kit gained late commits, values left out and the cursor-cost check, across every class of the
issue, and measured once as they stand."""

ALL = MUTANTS + FRESH + LATER + LAST + UNSEEN
