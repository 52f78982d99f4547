"""``crmsync check``, ``runs``, ``plugins`` and ``explain``."""

from __future__ import annotations

import click
from rich.table import Table

from crmsync.cli import AppContext, as_of_option, json_option, when
from crmsync.cli.render import console, print_json
from crmsync.connector import Capability, CheckResult
from crmsync.errors import CrmsyncError, ExitCode


@click.command()
@json_option
@click.option("--create-fields", is_flag=True, help="Create missing custom fields where the connector can.")
@click.pass_obj
def check(app: AppContext, as_json: bool, create_fields: bool) -> int:
    """Check the configuration, the policy, credentials and the custom fields pushes need."""
    from crmsync.engine import Engine

    settings = app.crm_settings
    results: list[tuple[str, CheckResult]] = [("config", CheckResult("configuration", True, str(settings.config_path)))]
    with app.store() as store:
        engine = Engine(settings, app.host, store)
        try:
            try:
                _ = engine.policy
                results.append(("policy", CheckResult("policy compiles", True, f"{len(settings.policy.tiers)} tiers")))
            except CrmsyncError as exc:
                results.append(("policy", CheckResult("policy compiles", False, str(exc))))
            for name in settings.connectors:
                try:
                    conn = engine.connector(name)
                    if create_fields and Capability.CREATE_FIELDS in type(conn).capabilities:
                        results.extend((name, r) for r in conn.create_fields())
                    results.extend((name, r) for r in conn.check())
                except CrmsyncError as exc:
                    results.append((name, CheckResult("connector", False, str(exc))))
        finally:
            engine.close()
    ok = all(r.ok for _, r in results)
    if as_json:
        print_json({"ok": ok, "checks": [{"connector": n, **r.__dict__} for n, r in results]})
    else:
        t = Table("", "connector", "check", "detail")
        for name, r in results:
            t.add_row("[green]ok[/green]" if r.ok else "[red]FAIL[/red]", name, r.name, r.detail)
        console().print(t)
        console().print("all checks passed" if ok else "some checks failed: see FAIL lines above")
    return int(ExitCode.OK if ok else ExitCode.CONFIG)


@click.command()
@json_option
@click.option("--limit", default=20, show_default=True, help="How many runs to show, newest first.")
@click.pass_obj
def runs(app: AppContext, as_json: bool, limit: int) -> int:
    """Show the history of runs."""
    from crmsync.store.runs import recent

    with app.store(read_only=True) as store:
        reports = recent(store.con, limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in reports])
        return 0
    t = Table("run", "command", "started", "status", "pulled", "changed", "pushed", "rejected", "seconds")
    for r in reports:
        pulled = sum(c.pulled for s in r.pulled.values() for c in s.values())
        t.add_row(
            r.run_id,
            r.command,
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            r.status,
            str(pulled),
            str(r.profiles_changed),
            str(sum(r.pushed.values())),
            str(r.rejected_total),
            f"{r.duration_s:.1f}",
        )
    console().print(t)
    return 0


@click.command()
@json_option
@click.pass_obj
def plugins(app: AppContext, as_json: bool) -> int:
    """List installed plugins, their versions, status, hooks and connectors."""
    host = app.host
    host.connectors()  # attribute connectors and surface bad specs
    infos = sorted(host.plugins.values(), key=lambda p: p.name)
    if as_json:
        print_json([p.__dict__ for p in infos])
        return 0
    t = Table("plugin", "version", "status", "connectors", "hooks", "error")
    for p in infos:
        status = {"ok": "[green]ok[/green]", "error": "[red]error[/red]"}.get(p.status, p.status)
        hooks = ", ".join(h.removeprefix("crmsync_") for h in p.hooks)
        t.add_row(p.name, p.version or "-", status, ", ".join(p.connectors), hooks, p.error or "")
    console().print(t)
    return 0


@click.command()
@json_option
@click.argument("member")
@as_of_option
@click.pass_obj
def explain(app: AppContext, as_json: bool, member: str, as_of: str | None) -> int:
    """Explain MEMBER's grades (member id in the members source): metric values and the deciding rules."""
    from crmsync.cli.explain_view import explain_member

    return explain_member(app, member, as_json, when(app, as_of))


COMMANDS = [check, plugins, runs, explain]
