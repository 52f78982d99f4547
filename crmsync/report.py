"""The run report: what a run did, for people (a table) and for machines (``--json``).

It carries counts, member ids and reasons, never personal data (emails, names) or secrets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from crmsync.errors import ExitCode


class StreamCounts(BaseModel):
    pulled: int = 0
    deleted: int = 0
    rejected: int = 0
    batches: int = 0


class RejectedItem(BaseModel):
    """A record that was quarantined (source) or refused by a push target."""

    connector: str
    stream: str
    locator: str
    field: str | None = None
    reason: str


class RunReport(BaseModel):
    run_id: str
    command: str = "sync"
    status: str = "running"
    """``ok``, ``rejected`` (done, some records rejected), ``failed``."""
    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float = 0.0
    dry_run: bool = False
    pulled: dict[str, dict[str, StreamCounts]] = Field(default_factory=dict)
    """connector -> stream -> counts."""
    unmatched_orders: int = 0
    """Orders whose member could not be found (kept in the store, not graded)."""
    unmatched_activities: int = 0
    members_graded: int = 0
    members_recomputed: int = 0
    """Members whose metrics and points were computed again (the others' inputs had not changed)."""
    profiles_changed: int = 0
    tier_distribution: dict[str, int] = Field(default_factory=dict)
    pushed: dict[str, int] = Field(default_factory=dict)
    """target connector -> records accepted."""
    push_rejected: dict[str, int] = Field(default_factory=dict)
    dead: dict[str, int] = Field(default_factory=dict)
    """target -> records given up after the configured number of attempts."""
    pending: dict[str, int] = Field(default_factory=dict)
    """target -> changes still in the outbox (dry run, or waiting for retry)."""
    api_calls: dict[str, dict[str, int]] = Field(default_factory=dict)
    rejected: list[RejectedItem] = Field(default_factory=list)
    rejected_total: int = 0
    quarantined: int = 0
    """Source records still in quarantine after this run (from this or earlier runs), waiting for a fix."""
    error: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def exit_code(self) -> ExitCode:
        if self.status == "failed":
            return ExitCode.FAILED
        if self.status == "rejected":
            return ExitCode.REJECTED
        return ExitCode.OK

    def add_rejected(self, item: RejectedItem, *, keep: int = 200) -> None:
        """Count a rejection; keep the first ``keep`` in the report (all are in the store)."""
        self.rejected_total += 1
        if len(self.rejected) < keep:
            self.rejected.append(item)
