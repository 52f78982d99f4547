"""How a grading runs: which history it reads, what it writes, where the grades go.

Every caller of :meth:`crmsync.policy.CompiledPolicy.run` names one of the presets of :class:`GradingMode`:

========= ========================================================================================================
SYNC      what a sync pushes: held tiers, grace periods and locks apply; every day not decided yet is decided
          (the held tiers, points ledger and metrics are stored); expired locks are removed; only members whose
          inputs changed or came due are recomputed
SYNC_FULL as ``SYNC``, every member recomputed
EXPLAIN   as a sync would grade now, writing nothing (days not decided yet are decided in temporary copies)
PREVIEW   as ``EXPLAIN``: held tiers, grace periods and locks apply as a sync would apply them; writes nothing
BACKTEST  with a simulated tier history kept in temporary tables, decided day by day as a sync would (grace periods
          and maximum drops; no locks)
========= ========================================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from crmsync.policy.ddl import BONUS_TABLE, CACHE_META, CACHE_TABLE, CLOCK_TABLE, LEDGER_TABLE, STATE_TABLE


@dataclass(frozen=True)
class PolicyTables:
    """Where a grading keeps held tiers, the last decided day, the points ledger, the stored metrics and the
    tier-entry bonuses granted: the store's tables, or temporary ones (:meth:`temp`) that a backtest or an
    explanation fills without touching the store."""

    state: str = STATE_TABLE
    clock: str = CLOCK_TABLE
    ledger: str = LEDGER_TABLE
    cache: str = CACHE_TABLE
    cache_meta: str = CACHE_META
    bonus: str = BONUS_TABLE
    temporary: bool = False

    @classmethod
    def temp(cls, prefix: str) -> PolicyTables:
        """Temporary tables named ``PREFIX_state``, ``PREFIX_clock``…"""
        names = ("state", "clock", "ledger", "cache", "cache_meta", "bonus")
        return cls(*(f"{prefix}_{n}" for n in names), temporary=True)


@dataclass(frozen=True)
class GradingMode:
    """One way of grading; use the presets (``GradingMode.SYNC``…) rather than building your own.

    Attributes:
        out: the temporary table the grades go to.
        stateful: read the held tiers (``tables.state``, else ``profiles``) and locks; otherwise every member simply
            gets the tier it qualifies for.
        write_state: decide every day before the evaluation day that is not decided yet, storing the tiers held at
            each day's end in ``tables.state`` (see :mod:`crmsync.policy.catchup`).
        write_ledger: store the points ledger and the members' metrics just derived.
        expire_locks: remove and audit locks that have ended.
        tables: where held tiers, the last decided day, the ledger and the metrics are kept (temporary tables in
            backtests), and the tier-entry bonuses granted (written with ``write_state``).
        use_profiles: fall back to ``profiles`` for members without state, in a store whose days were never decided
            (graded by an earlier version of crmsync, which kept no decided days).
        use_locks: apply manual tier locks.
        incremental: recompute the metrics and points of just the members whose inputs changed or came due since
            the last grading (when the stored metrics can be reused; else every member).
        changed_only: put in ``out`` only the members recomputed or whose grade differs from ``profiles`` (when
            the stored metrics were reused; else every member).
    """

    out: str
    stateful: bool
    write_state: bool = False
    write_ledger: bool = False
    expire_locks: bool = False
    tables: PolicyTables = PolicyTables()
    use_profiles: bool = True
    use_locks: bool = True
    incremental: bool = False
    changed_only: bool = False

    SYNC: ClassVar[GradingMode]
    SYNC_FULL: ClassVar[GradingMode]
    EXPLAIN: ClassVar[GradingMode]
    PREVIEW: ClassVar[GradingMode]
    BACKTEST: ClassVar[GradingMode]

    def __post_init__(self) -> None:
        if self.write_state and not self.stateful:
            raise ValueError("write_state needs stateful: only a grading that reads held tiers can store them")
        if self.incremental and not self.write_ledger:
            raise ValueError("incremental needs write_ledger: the stored metrics are what it reuses")
        if self.changed_only and not (self.incremental and self.use_profiles):
            raise ValueError("changed_only needs incremental and use_profiles: it compares with the stored profiles")
        if self.expire_locks and not (self.stateful and self.use_locks):
            raise ValueError("expire_locks needs stateful and use_locks")
        if self.write_state and not self.write_ledger:
            raise ValueError("write_state needs write_ledger: a decided day keeps the points its tiers earned")

    @property
    def state_table(self) -> str:
        """Where held tiers are read and written."""
        return self.tables.state

    @property
    def bonus_table(self) -> str:
        """Where tier-entry bonuses are read and, with ``write_state``, written."""
        return self.tables.bonus


GradingMode.SYNC = GradingMode(
    out="graded",
    stateful=True,
    write_state=True,
    write_ledger=True,
    expire_locks=True,
    incremental=True,
    changed_only=True,
)
GradingMode.SYNC_FULL = replace(GradingMode.SYNC, incremental=False, changed_only=False)
GradingMode.EXPLAIN = GradingMode(out="_pol_explain", stateful=True)
GradingMode.PREVIEW = replace(GradingMode.EXPLAIN, out="_pol_preview")
GradingMode.BACKTEST = GradingMode(
    out="_pol_bt",
    stateful=True,
    write_state=True,
    write_ledger=True,
    incremental=True,
    tables=PolicyTables.temp("_pol_bt"),
    use_profiles=False,
    use_locks=False,
)
