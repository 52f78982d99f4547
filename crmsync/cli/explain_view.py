"""``crmsync explain``: the policy's explanation of each grade of one member, with the stored grades."""

from __future__ import annotations

from datetime import datetime

from crmsync.cli import AppContext
from crmsync.cli.render import console, print_json
from crmsync.errors import ConfigError, ExitCode


def explain_member(app: AppContext, member: str, as_json: bool, as_of: datetime) -> int:
    """Explain a member's grades as of ``as_of`` from the store as the last sync left it (read-only, beside other
    readers; the days not decided since are decided in temporary copies)."""
    from crmsync.cli.policy_cmds import _compiled
    from crmsync.cli.policy_view import explanation_table
    from crmsync.policy import explain
    from crmsync.store import profiles

    policy = _compiled(app)
    with app.store(read_only=True) as store:
        if not profiles.member_exists(store.con, member):
            raise ConfigError(f"no member with id {member!r} in the store (run 'crmsync sync' first, or check the id)")
        with store.transaction(rollback=True) as con:
            explanation = explain(policy, con, member, as_of)
        stored = profiles.summary(store.con, member)
    if as_json:
        doc = explanation.as_dict()
        if stored:
            doc["profile"] = stored
        print_json(doc)
        return int(ExitCode.OK)
    console().print(explanation_table(explanation))
    return int(ExitCode.OK)
