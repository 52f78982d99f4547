"""``crmsync forget`` (erase a person's local data) and ``crmsync history`` (what was pushed for a member)."""

from __future__ import annotations

import getpass
from operator import itemgetter

import click

from crmsync.cli import AppContext, json_option
from crmsync.cli.render import console, print_json, show_rows
from crmsync.errors import ConfigError


@click.command()
@click.argument("member")
@click.option("--reason", default="erasure request", show_default=True, help="Kept in the audit entry.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def forget(app: AppContext, member: str, reason: str, yes: bool, as_json: bool) -> int:
    """Erase MEMBER's records, points, profile and push history from the store, and never grade them again.

    The CRM itself is not changed. An audit entry without personal data (a one-way hash of the id) is kept.
    """
    from crmsync.store.erasure import forget_member
    from crmsync.store.profiles import member_exists

    source = app.settings.sync.members
    with app.store() as store:
        if not member_exists(store.con, member, source=source, deleted=True):
            raise ConfigError(f"no member with id {member!r} in connector {source!r}")
        if not yes and not as_json:
            click.confirm(f"Erase every local record of member {member}?", abort=True)
        with store.transaction() as con:
            counts = forget_member(con, source, member, actor=getpass.getuser(), reason=reason)
    if as_json:
        print_json({"member_id": member, "erased": counts})
    else:
        console().print(
            f"member {member} erased: " + ", ".join(f"{n} {t}" for t, n in counts.items() if n) + "; audit entry kept"
        )
    return 0


@click.command()
@click.argument("member")
@json_option
@click.pass_obj
def history(app: AppContext, member: str, as_json: bool) -> int:
    """List every value pushed for MEMBER: run, target, field, previous and new value, reason."""
    from crmsync.store.outbox import push_history

    with app.store() as store:
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
    """List quarantined source records: where they are, which field, why. Fixed records leave on the next pull."""
    from crmsync.store.quarantine import entries as quarantined

    with app.store() as store:
        entries = quarantined(store.con, include_resolved=show_all)
    columns = {
        **{name: itemgetter(name) for name in ("connector", "stream")},
        "where": itemgetter("locator"),
        "field": lambda e: e["field"] or "",
        "reason": itemgetter("reason"),
        "since run": itemgetter("first_run"),
        "resolved": lambda e: "yes" if e["resolved"] else "",
    }
    show_rows(entries, columns, as_json=as_json, empty="no record is in quarantine")
    return 0


COMMANDS = [forget, history, rejects]
