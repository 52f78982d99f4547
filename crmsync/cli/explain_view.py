"""Rendering of ``crmsync explain``: the stored profile plus the policy's explanation of each grade."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from crmsync.cli import AppContext
from crmsync.cli.render import console, print_json
from crmsync.errors import ConfigError, ExitCode


def explain_member(app: AppContext, member: str, as_json: bool) -> int:
    from crmsync.engine import Engine

    with app.store() as store:
        cur = store.con.execute("SELECT * FROM profiles WHERE member_id = ?", [member])
        row = cur.fetchone()
        if row is None:
            raise ConfigError(f"no graded member with id {member!r} (run 'crmsync sync' first, or check the id)")
        profile: dict[str, Any] = dict(zip([d[0] for d in cur.description], row, strict=True))
        engine = Engine(app.settings, app.host, store)
        explanation = None
        explain = getattr(engine.policy, "explain", None)
        if explain is not None:
            explanation = explain(store.con, member, profile.get("computed_at") or datetime.now(UTC))
    reasons = profile.get("reasons")
    profile["reasons"] = json.loads(reasons) if isinstance(reasons, str) else (reasons or {})
    detail = explanation.model_dump(mode="json") if hasattr(explanation, "model_dump") else explanation
    if as_json:
        print_json({"profile": profile, "explanation": detail})
        return int(ExitCode.OK)
    out = console()
    out.print(f"[bold]member {member}[/bold]  (computed {profile.get('computed_at')})")
    t = Table("grade", "value", "why")
    for key in ("tier", "points", "rfm_segment", "lifecycle", "tags"):
        value = profile.get(key)
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        t.add_row(key, str(value), str(profile["reasons"].get(key, "")))
    out.print(t)
    if hasattr(explanation, "render"):
        explanation.render(out)
    return int(ExitCode.OK)
