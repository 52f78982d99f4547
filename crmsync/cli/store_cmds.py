"""``crmsync store check|backup|restore|rebuild``: the store file as a whole, and the way out when it is damaged."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from crmsync.cli import AppContext, json_option
from crmsync.cli.render import console, print_json
from crmsync.errors import ConfigError, ExitCode


@click.group("store")
def store_group() -> None:
    """Check, back up, restore or rebuild the store file.

    \b
    crmsync store check                        read every table; say what is damaged
    crmsync store backup /backups/crm.duckdb   copy the store (read-only, beside other readers)
    crmsync store restore /backups/crm.duckdb  put a backup back (forgotten members stay forgotten)
    crmsync store rebuild                      start a new store; the next sync pulls every source again
    """


@store_group.command("check")
@json_option
@click.pass_obj
def check(app: AppContext, as_json: bool) -> int:
    """Read every table of the store and say what is damaged, how the erasure list stands, which backups there are.

    Exits with 0 when the store is sound, 3 when it is damaged (then restore a backup or rebuild it).
    """
    from crmsync.store import recovery

    options = app.store_options()
    limits = {k: options[k] for k in ("memory_limit", "threads") if options[k]}
    findings = recovery.check(Path(app.settings.store.path), limits, wait=options["wait"])
    ok = all(f.ok for f in findings)
    if as_json:
        print_json({"ok": ok, "checks": [f.__dict__ for f in findings]})
    else:
        t = Table("", "check", "detail")
        for f in findings:
            t.add_row("[green]ok[/green]" if f.ok else "[red]FAIL[/red]", f.name, f.detail)
        console().print(t)
        console().print("the store is sound" if ok else _WAY_OUT)
    return int(ExitCode.OK if ok else ExitCode.FAILED)


_WAY_OUT = (
    "the store is damaged: 'crmsync store restore FILE' puts a backup back, 'crmsync store rebuild' starts a new "
    "store that the next sync fills from the sources (the erasure list is kept either way)"
)


@store_group.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
@json_option
@click.pass_obj
def backup(app: AppContext, path: Path, as_json: bool) -> int:
    """Copy the store to PATH (a new file, or a folder to put it in), read-only, beside other readers.

    The copy holds the store's live rows (nothing already deleted); a damaged store fails the copy instead of being
    carried into it. Restore it with 'crmsync store restore PATH'.
    """
    from crmsync.store.files import stamp

    source = Path(app.settings.store.path)
    dest = path / f"{source.stem}-{stamp()}.duckdb" if path.is_dir() else path
    if dest.exists():
        raise ConfigError(f"store backup: {dest} exists; name a new file (or a folder)")
    with app.store(read_only=True) as store:
        store.backup(dest)
    if as_json:
        print_json({"backup": str(dest), "bytes": dest.stat().st_size})
    else:
        console().print(f"the store was copied to {dest} ({dest.stat().st_size:,} bytes)")
    return 0


@store_group.command("restore")
@click.argument("backup", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def restore(app: AppContext, backup: Path, yes: bool) -> int:
    """Put a copy of the backup BACKUP in place of the store (the store's file is set aside, not deleted).

    The backup is read whole first; a damaged one is refused. A backup of an earlier version is upgraded, and every
    member forgotten since the backup was taken is erased from it again (the erasure list lives beside the store).
    The next sync resumes from the backup's cursors.
    """
    from crmsync.store import Store

    target = Path(app.settings.store.path)
    if not yes:
        click.confirm(f"Replace the store {target} with a copy of {backup}?", abort=True)
    aside = Store.restore(target, backup, **app.store_options())
    console().print(f"the store {target} now holds a copy of {backup}")
    if aside is not None:
        console().print(f"the file it replaced is kept as {aside}; delete it when it is no longer needed")
    return 0


@store_group.command("rebuild")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def rebuild(app: AppContext, yes: bool, as_json: bool) -> int:
    """Start a new store: the next sync pulls every source again, grades, and pushes what differs.

    The store's file is set aside (not deleted). What the sources cannot give again is salvaged from it, table by
    table where it still reads: what was pushed and its audit, the run history, tier locks and their audit, held
    tiers and the points ledger. The erasure list beside the store is kept, so forgotten members stay forgotten.
    """
    from crmsync.store import Store

    target = Path(app.settings.store.path)
    if not yes and not as_json:
        click.confirm(f"Set the store {target} aside and start a new one?", abort=True)
    done = Store.rebuild(target, **app.store_options())
    if as_json:
        print_json({"set_aside": str(done.set_aside) if done.set_aside else None, **_summary(done)})
        return 0
    out = console()
    if done.set_aside is not None:
        out.print(f"the old store file is kept as {done.set_aside}; delete it when it is no longer needed")
    for name, rows in done.salvaged.items():
        out.print(f"salvaged {name}: {rows:,} rows")
    for name, why in done.lost.items():
        out.print(f"[red]lost[/red] {name}: {why}")
    out.print(f"erasure list: {done.erasures} member(s) stay forgotten")
    out.print("the next 'crmsync sync' pulls every source again and pushes what differs from what was pushed")
    return 0


def _summary(done: object) -> dict[str, object]:
    return {k: getattr(done, k) for k in ("salvaged", "lost", "erasures")}


COMMANDS = [store_group]
