"""The run report: what a run did, for people (a table) and for machines (``--json``).

It carries counts, member ids and reasons, never personal data (emails, names) or secrets. A run ends in a
:class:`RunStatus`; a failed one carries a :class:`RunError` saying what kind of error it was, the exit code it
gives, when to try again (``retry_after``) and what to do (``hint``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, model_validator

from crmsync.errors import UNEXPECTED, CrmsyncError, ExitCode, RetryableError, describe_unexpected

if TYPE_CHECKING:
    from collections.abc import Sequence

    from crmsync.connector import Batch, ProfileChange, Rejection


class RunStatus(StrEnum):
    """How a run ended (``running`` while it runs)."""

    RUNNING = "running"
    OK = "ok"
    """Done; every record was handled."""
    REJECTED = "rejected"
    """Done, but some records were rejected (source rows quarantined, or pushes refused)."""
    FAILED = "failed"
    """The run stopped on an error (see :attr:`RunReport.error`); the next run resumes."""
    INTERRUPTED = "interrupted"
    """The process was killed; a later run found it and resumed its work."""


class RunError(BaseModel):
    """Why a run failed."""

    kind: str
    """The error class (``RetryableError``, ``AuthError``, ``ConfigError``…, see :mod:`crmsync.errors`),
    ``unexpected`` for an error crmsync did not raise on purpose, ``interrupted`` for a killed run."""
    message: str
    exit_code: ExitCode = ExitCode.FAILED
    retry_after: float | None = None
    """Seconds after which the failed call may succeed, when the system said (``Retry-After``)."""
    hint: str | None = None

    @classmethod
    def of(cls, exc: BaseException) -> RunError:
        if isinstance(exc, CrmsyncError):
            retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
            return cls(
                kind=type(exc).__name__,
                message=exc.message,
                exit_code=exc.exit_code,
                retry_after=retry_after,
                hint=exc.hint,
            )
        return cls(kind=UNEXPECTED, message=describe_unexpected(exc))

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


INTERRUPTED = RunError(kind="interrupted", message="the run was interrupted; a later run resumed its work")


class StreamCounts(BaseModel):
    pulled: int = 0
    deleted: int = 0
    rejected: int = 0
    batches: int = 0

    def add(self, batch: Batch, rejects: Sequence[Rejection]) -> int:
        """Count a stored batch (``rejects``: its rejections, the connector's and the store's, less those naming an
        erased member); return its number of rows."""
        rows = len(batch.records) + (batch.table.num_rows if batch.table is not None else 0)
        own = {id(r) for r in batch.rejects}
        self.batches += 1
        self.pulled += rows - sum(id(r) not in own for r in rejects)
        self.deleted += len(batch.deleted)
        self.rejected += len(rejects)
        return rows


class RejectedItem(BaseModel):
    """A record that was quarantined (source) or refused by a push target."""

    connector: str
    stream: str
    locator: str
    field: str | None = None
    reason: str

    @classmethod
    def of(cls, connector: str, stream: str, rej: Rejection) -> RejectedItem:
        return cls(connector=connector, stream=str(stream), locator=rej.locator, field=rej.field, reason=rej.reason)


class RunReport(BaseModel):
    run_id: str
    command: str = "sync"
    status: RunStatus = RunStatus.RUNNING
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
    days_decided: int = 0
    """Past days whose tier decisions the run took before grading its own time (a daily sync: one; after a gap,
    one per day on which a tier could change)."""
    profiles_changed: int = 0
    tier_distribution: dict[str, int] = Field(default_factory=dict)
    pushed: dict[str, int] = Field(default_factory=dict)
    """target connector -> records accepted."""
    push_rejected: dict[str, int] = Field(default_factory=dict)
    dead: dict[str, int] = Field(default_factory=dict)
    """target -> changes given up (after ``sync.max_attempts`` runs refused them, or at once when retrying cannot
    help); ``crmsync retry`` requeues them."""
    retried: dict[str, dict[str, int]] = Field(default_factory=dict)
    """target -> why -> changes this run pushed again: ``refused_before`` (refused by an earlier run), ``by_hand``
    (``crmsync retry``), ``policy_changed``, ``settings_changed`` (the target's settings), ``fields_changed`` (the
    target's field metadata): the last three were given up and got a fresh set of attempts."""
    pending: dict[str, int] = Field(default_factory=dict)
    """target -> changes still in the outbox (dry run, or waiting for retry)."""
    api_calls: dict[str, dict[str, int]] = Field(default_factory=dict)
    rejected: list[RejectedItem] = Field(default_factory=list)
    rejected_total: int = 0
    quarantined: int = 0
    """Source records still in quarantine after this run (from this or earlier runs), waiting for a fix."""
    error: RunError | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def start(cls, command: str, at: datetime, *, dry_run: bool = False) -> RunReport:
        """The report of a run starting ``at``, with a new run id (``20260101T000000Z-1a2b3c``)."""
        run_id = at.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        return cls(run_id=run_id, command=command, started_at=at, dry_run=dry_run)

    @model_validator(mode="before")
    @classmethod
    def _legacy_error(cls, data: Any) -> Any:
        """Reports stored by earlier versions hold the error as its message and its exit code in ``extra``."""
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            code = (data.get("extra") or {}).get("exit_code", ExitCode.FAILED)
            data = {**data, "error": {"kind": "error", "message": data["error"], "exit_code": code}}
        return data

    @property
    def exit_code(self) -> ExitCode:
        """The exit code of the run: the error's for a failed run (2 for credentials or configuration, else 3)."""
        if self.status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
            return self.error.exit_code if self.error else ExitCode.FAILED
        if self.status == RunStatus.REJECTED:
            return ExitCode.REJECTED
        return ExitCode.OK

    def add_rejected(self, item: RejectedItem, *, keep: int = 200) -> None:
        """Count a rejection; keep the first ``keep`` in the report (all are in the store)."""
        self.rejected_total += 1
        if len(self.rejected) < keep:
            self.rejected.append(item)

    def done(self) -> None:
        """The run finished: ``ok``, or ``rejected`` when some records were rejected."""
        self.status = RunStatus.REJECTED if self.rejected_total else RunStatus.OK

    def fail(self, exc: BaseException) -> None:
        self.status, self.error = RunStatus.FAILED, RunError.of(exc)


@dataclass
class PlanEntry:
    """A change a dry run would push: a member's fields that differ from what the target holds."""

    target: str
    member_id: str
    changed: dict[str, tuple[Any, Any]]
    """field -> (previous, new)."""

    @classmethod
    def of(cls, target: str, change: ProfileChange) -> PlanEntry:
        return cls(target, change.member_id, {k: (change.previous.get(k), change.values[k]) for k in change.changed})


@dataclass
class RunResult:
    """What a run returns: its report, and for a dry run the changes a push would make."""

    report: RunReport
    plan: list[PlanEntry] = field(default_factory=list)
