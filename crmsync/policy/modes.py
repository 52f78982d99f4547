"""How a grading runs: which history it reads, what it writes, where the grades go.

Every caller of :meth:`crmsync.policy.CompiledPolicy.run` names one of the presets of :class:`GradingMode`:

========= ========================================================================================================
SYNC      what a sync pushes: held tiers, grace periods and locks apply; the held tiers, points ledger and metrics
          are stored; expired locks are removed; only members whose inputs changed or came due are recomputed
SYNC_FULL as ``SYNC``, every member recomputed
EXPLAIN   as a sync would grade now, writing nothing
PREVIEW   as ``EXPLAIN``: held tiers, grace periods and locks apply as a sync would apply them; writes nothing
BACKTEST  with a simulated tier history kept in a temporary table (grace periods and maximum drops; no locks)
========= ========================================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from crmsync.policy.ddl import BONUS_TABLE, STATE_TABLE


@dataclass(frozen=True)
class GradingMode:
    """One way of grading; use the presets (``GradingMode.SYNC``…) rather than building your own.

    Attributes:
        out: the temporary table the grades go to.
        stateful: read the held tiers (``state_table``, else ``profiles``) and locks; otherwise every member simply
            gets the tier it qualifies for.
        write_state: store the tiers just decided in ``state_table``.
        write_ledger: store the points ledger and the members' metrics just derived.
        expire_locks: remove and audit locks that have ended.
        state_table: where held tiers are read and written (a temporary table in backtests).
        bonus_table: where tier-entry bonuses are read and, with ``write_state``, written (idem).
        use_profiles: fall back to ``profiles`` for members without state.
        use_locks: apply manual tier locks.
        incremental: recompute the metrics and points of just the members whose inputs changed or came due since
            the last grading, and put in ``out`` only the members among them or whose grade differs from
            ``profiles`` (when the stored metrics can be reused; else every member).
    """

    out: str
    stateful: bool
    write_state: bool = False
    write_ledger: bool = False
    expire_locks: bool = False
    state_table: str = STATE_TABLE
    bonus_table: str = BONUS_TABLE
    use_profiles: bool = True
    use_locks: bool = True
    incremental: bool = False

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
        if self.expire_locks and not (self.stateful and self.use_locks):
            raise ValueError("expire_locks needs stateful and use_locks")


GradingMode.SYNC = GradingMode(
    out="graded", stateful=True, write_state=True, write_ledger=True, expire_locks=True, incremental=True
)
GradingMode.SYNC_FULL = replace(GradingMode.SYNC, incremental=False)
GradingMode.EXPLAIN = GradingMode(out="_pol_explain", stateful=True)
GradingMode.PREVIEW = replace(GradingMode.EXPLAIN, out="_pol_preview")
GradingMode.BACKTEST = GradingMode(
    out="_pol_bt",
    stateful=True,
    write_state=True,
    state_table="_pol_bt_state",
    bonus_table="_pol_bt_bonus",
    use_profiles=False,
    use_locks=False,
)
