"""Every hook a crmsync plugin can implement. All names start with ``crmsync_``.

A plugin is a module (or object) with functions decorated by ``crmsync.hookimpl``, registered through the
``crmsync`` entry-point group::

    # pyproject.toml of crmsync-hubspot
    [project.entry-points.crmsync]
    hubspot = "crmsync_hubspot"

Implementations may accept any subset of a hook's arguments (pluggy passes only those they name), so hooks
grow by adding arguments without breaking existing plugins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from crmsync.models import Profile
    from crmsync.report import RunReport
    from crmsync.specs import ConnectorSpec, MetricSpec, TagAdjustment

hookspec = pluggy.HookspecMarker("crmsync")
hookimpl = pluggy.HookimplMarker("crmsync")

# --------------------------------------------------------------------------------------------------------
# Registration: called when the plugin manager is built; each returns typed records.
# --------------------------------------------------------------------------------------------------------


@hookspec
def crmsync_connectors() -> Iterable[ConnectorSpec]:
    """Register connector types.

    Returns:
        Any number of :class:`crmsync.ConnectorSpec`. Two plugins registering the same name is a
        :class:`crmsync.PluginError` naming both.

    Example::

        @crmsync.hookimpl
        def crmsync_connectors():
            yield crmsync.ConnectorSpec(
                name="hubspot",
                settings_model=HubSpotSettings,
                factory=HubSpotConnector,
                capabilities={crmsync.Capability.PULL_MEMBERS, crmsync.Capability.PUSH_PROFILES},
            )
    """


@hookspec
def crmsync_metrics() -> Iterable[MetricSpec]:
    """Register metrics that policy conditions can name, computed in bulk by the store's SQL engine.

    Returns:
        Any number of :class:`crmsync.MetricSpec`. A name equal to a built-in metric is refused.

    Example::

        @crmsync.hookimpl
        def crmsync_metrics():
            yield crmsync.MetricSpec(
                name="weekend_orders",
                sql="count(*) FILTER (WHERE dayofweek(placed_at) IN (0, 6))",
            )
    """


@hookspec
def crmsync_commands() -> Iterable[click.Command]:
    """Add commands to the ``crmsync`` command line. They are added after the built-ins; a name clash
    with a built-in or another plugin's command is a :class:`crmsync.PluginError`.

    Example::

        @crmsync.hookimpl
        def crmsync_commands():
            @click.command()
            def hello():
                click.echo("hello from my plugin")

            yield hello
    """


# --------------------------------------------------------------------------------------------------------
# Grading: called once per run with all computed profiles (a batch, never once per member).
# --------------------------------------------------------------------------------------------------------


@hookspec
def crmsync_adjust_profiles(profiles: Sequence[Profile]) -> Iterable[TagAdjustment] | None:
    """Add or remove tags on computed profiles before they are compared with what was pushed.

    Called once per run with every profile that was (re)computed: the members whose grades may have changed, and
    those whose stored tags a hook changed before (the others keep what they have). Return adjustments only for
    the members you change. Tags you add are treated like policy tags (pushed, explained as ``plugin:NAME``).

    Args:
        profiles: the computed profiles, read-only.

    Example::

        @crmsync.hookimpl
        def crmsync_adjust_profiles(profiles):
            for p in profiles:
                if p.tier == "Gold" and p.lifecycle == "dormant":
                    yield crmsync.TagAdjustment(p.member_id, add=frozenset({"call_back"}))
    """


# --------------------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------------------


@hookspec
def crmsync_run_finished(report: RunReport) -> None:
    """Called when a ``sync`` run ends, successfully or not, with its final report.

    Use it to notify (chat, e-mail, metrics). ``report.status`` is ``ok``, ``rejected`` or ``failed``;
    ``report.exit_code`` is the command's exit code, and a failed run's ``report.error`` gives the error's
    ``kind``, ``message``, ``exit_code``, ``retry_after`` and ``hint``. Exceptions raised here are logged and do
    not change the run's outcome. The report carries member ids and counts, never personal data or secrets.

    Example::

        @crmsync.hookimpl
        def crmsync_run_finished(report):
            if report.status != "ok":
                send_alert(f"crmsync run {report.run_id}: {report.status}")
    """
