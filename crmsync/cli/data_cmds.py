"""``crmsync forget`` (erase people's local data), ``history`` (what was pushed for a member), ``rejects`` (rows not
graded) and ``retry`` (push given-up changes again)."""

from __future__ import annotations

import getpass
import logging
from operator import itemgetter
from typing import Any

import click

from crmsync.cli import AppContext, json_option
from crmsync.cli.render import console, print_json, show_rows
from crmsync.connector import Connector
from crmsync.errors import ConfigError
from crmsync.models import Member

log = logging.getLogger("crmsync.cli")


@click.command()
@click.argument("members", nargs=-1, required=True, metavar="MEMBER...")
@click.option("--reason", default="erasure request", show_default=True, help="Kept in the audit entry.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def forget(app: AppContext, members: tuple[str, ...], reason: str, yes: bool, as_json: bool) -> int:
    """Erase each MEMBER's local data and never grade them again.

    Records, orders, activities, points, profile, push history and quarantined rows naming the member go; the store
    file is rewritten so that none of their bytes remain, and connectors remove the member from the files they
    write themselves (generic_csv: its rejects and output files). The CRM and the source files are not changed. An
    audit entry without personal data (one-way hashes of the id and email) is kept in the store and in the erasure
    list beside it, so a restored or rebuilt store keeps them forgotten. A member already forgotten is scrubbed again
    (store file and connectors' files). --json prints one object per member (one member: the object alone).
    """
    from crmsync.store.erasure import is_erased, known, stored_member

    source = app.settings.sync.members
    with app.store() as store:
        already = {m for m in members if is_erased(store.con, source, m)}
        for member in members:
            if member not in already and not known(store.con, source, member):
                raise ConfigError(f"no member with id {member!r} in connector {source!r}")
        if not yes and not as_json:
            click.confirm(f"Erase every local record of {len(members)} member(s): {', '.join(members)}?", abort=True)
        people = [stored_member(store.con, source, m) for m in members]
        counts = store.forget(source, members, actor=getpass.getuser(), reason=reason)
        scrubbed = _erase_from_connectors(app, store, people)
    docs = [
        {"member_id": m, "erased": counts[m], "connector_rows": scrubbed[m], "already_forgotten": m in already}
        for m in members
    ]
    if as_json:
        print_json(docs[0] if len(docs) == 1 else docs)
        return 0
    for doc in docs:
        parts = [f"{n} {t}" for t, n in doc["erased"].items() if n]
        parts += [f"{n} rows of connector {c}" for c, n in doc["connector_rows"].items() if n]
        state = "was already forgotten" if doc["already_forgotten"] else "erased"
        console().print(
            f"member {doc['member_id']} {state}: " + (", ".join(parts) or "nothing was left") + "; audit entry kept"
        )
    console().print(f"the store file was rewritten: {app.settings.store.path}")
    return 0


def _erase_from_connectors(app: AppContext, store: Any, people: list[Member]) -> dict[str, dict[str, int]]:
    """Ask each connector that keeps files of its own (it implements ``Connector.erase``) to remove the members; the
    rows removed per member and connector. One whose secrets are not set is not built: a warning names it."""
    from crmsync.engine import Engine

    removed: dict[str, dict[str, int]] = {p.external_id: {} for p in people}
    with Engine(app.settings, app.host, store) as engine:
        for name, table in app.settings.connectors.items():
            spec = app.host.connector_spec(str(table["plugin"]))
            factory = spec.factory if spec is not None else None
            if isinstance(factory, type) and factory.erase is Connector.erase:
                continue  # writes no file of its own
            if name in app.settings.missing_secrets:
                log.warning("connector %s was not asked to erase the members: its secrets are not set", name)
                continue
            conn = engine.connector(name)
            if type(conn).erase is not Connector.erase:
                for person in people:
                    removed[person.external_id][name] = conn.erase(person)
    return removed


@click.command()
@click.argument("member")
@json_option
@click.pass_obj
def history(app: AppContext, member: str, as_json: bool) -> int:
    """List every value pushed for MEMBER: run, target, field, previous and new value, reason."""
    from crmsync.store.outbox import push_history

    with app.store(read_only=True) as store:
        entries = push_history(store.con, member)
    columns = {
        "pushed at": lambda e: f"{e['pushed_at']:%Y-%m-%d %H:%M}",
        "run": itemgetter("run_id"),
        **{name: itemgetter(name) for name in ("target", "field", "previous", "new", "reason")},
    }
    show_rows(entries, columns, as_json=as_json, empty=f"nothing was ever pushed for member {member}")
    return 0


@click.command()
@json_option
@click.option("--all", "show_all", is_flag=True, help="Include entries already resolved by a later pull.")
@click.pass_obj
def rejects(app: AppContext, as_json: bool, show_all: bool) -> int:
    """List source rows that were not graded: quarantined records (where they are, which field, why; a fixed record
    leaves on the next pull) and unmatched orders and activities (kept, graded once their member appears)."""
    from crmsync.store.matching import unmatched_rows
    from crmsync.store.quarantine import entries as quarantined

    with app.store(read_only=True) as store:
        entries = [{"kind": "quarantined", **e} for e in quarantined(store.con, include_resolved=show_all)]
        for table in ("orders", "activities"):
            rows = unmatched_rows(store.con, app.member_match, table)
            entries += [{"kind": "unmatched", **r, "first_run": None, "resolved": False} for r in rows]
    columns = {
        **{name: itemgetter(name) for name in ("kind", "connector", "stream")},
        "where": itemgetter("locator"),
        "field": lambda e: e["field"] or "",
        "reason": itemgetter("reason"),
        "since run": lambda e: e["first_run"] or e["last_run"] or "",
        "resolved": lambda e: "yes" if e["resolved"] else "",
    }
    show_rows(entries, columns, as_json=as_json, empty="no record is in quarantine and every order has its member")
    return 0


@click.command()
@click.argument("target", required=False)
@click.option("--member", metavar="ID", help="Only this member's change.")
@click.option("--list", "list_", is_flag=True, help="List the given-up changes; requeue nothing.")
@json_option
@click.pass_obj
def retry(app: AppContext, target: str | None, member: str | None, list_: bool, as_json: bool) -> int:
    """Push given-up changes again: requeue them, with a fresh set of attempts, for the next sync.

    A change is given up after sync.max_attempts runs refused it, or at once when the target said retrying cannot
    help (the record was deleted there). TARGET is a connector of sync.push (default: every one). The next sync
    pushes the requeued changes and reports them as retried.
    """
    from crmsync.store.outbox import BY_HAND, Outbox

    push = list(app.settings.sync.push)
    if target is not None and target not in push:
        raise ConfigError(f"retry: {target!r} is not a push target (sync.push: {', '.join(push) or 'none'})")
    targets = [target] if target else push
    with app.store(read_only=list_) as store:
        if list_:
            rows = [row for t in targets for row in Outbox(store, t).given_up(member)]
            columns = {name: itemgetter(name) for name in ("target", "member_id", "attempts", "field", "reason")}
            show_rows(rows, columns, as_json=as_json, empty="no change is given up")
            return 0
        requeued = {t: Outbox(store, t).requeue(BY_HAND, member_id=member) for t in targets}
    if as_json:
        print_json({"requeued": requeued})
        return 0
    for t, members in requeued.items():
        shown = ", ".join(members[:20]) + (f" and {len(members) - 20} more" if len(members) > 20 else "")
        console().print(f"{t}: {len(members)} given-up change(s) requeued" + (f": {shown}" if members else ""))
    if any(requeued.values()):
        console().print("the next 'crmsync sync' pushes them")
    return 0


COMMANDS = [forget, history, rejects, retry]
