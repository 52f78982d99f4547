"""Grading policy: model, condition language, compilation to SQL.

Modules: ``model`` (the ``[policy]`` table), ``names`` (what a tag name may hold), ``expr`` (condition language),
``metrics`` (metric names and their SQL), ``points`` (ledger), ``balance`` (expiry, no overdraft, qualifying
points), ``bonus`` (tier-entry bonuses), ``rfm`` (RFM scores and segment maps), ``stages`` (segments, lifecycle,
tiers, tags), ``compiled`` (compile and grade), ``modes`` (how a grading runs), ``overrides`` (manual tier locks),
``explain``, ``preview`` (preview, backtest, chart), ``ddl`` (the policy's tables in the store). The command line
renders the results (:mod:`crmsync.cli.policy_view`).
"""

from crmsync.policy.compiled import CompiledPolicy, Grading, compile_policy
from crmsync.policy.ddl import POLICY_DDL, STORE_EXTENSION
from crmsync.policy.explain import Explanation, Grade, explain
from crmsync.policy.model import Policy, TierRule
from crmsync.policy.modes import GradingMode
from crmsync.policy.overrides import Override, audit_log, clear_override, list_overrides, set_override
from crmsync.policy.preview import BacktestPeriod, PreviewResult, backtest, preview, write_chart

__all__ = [
    "POLICY_DDL",
    "STORE_EXTENSION",
    "BacktestPeriod",
    "CompiledPolicy",
    "Explanation",
    "Grade",
    "Grading",
    "GradingMode",
    "Override",
    "Policy",
    "PreviewResult",
    "TierRule",
    "audit_log",
    "backtest",
    "clear_override",
    "compile_policy",
    "explain",
    "list_overrides",
    "preview",
    "set_override",
    "write_chart",
]
