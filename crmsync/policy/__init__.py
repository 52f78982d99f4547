"""Grading policy: model, condition language, compilation to SQL.

Modules: ``model`` (the ``[policy]`` table), ``expr`` (condition language), ``metrics`` (metric names and their
SQL), ``points`` (ledger), ``stages`` (RFM, lifecycle, tiers, tags), ``compiled`` (compile and grade),
``overrides`` (manual tier locks), ``explain``, ``preview`` (preview, backtest, chart), ``render`` (tables).
"""

from crmsync.policy.compiled import CompiledPolicy, compile_policy
from crmsync.policy.ddl import POLICY_DDL
from crmsync.policy.explain import Explanation, Grade
from crmsync.policy.model import Policy, TierRule
from crmsync.policy.overrides import Override, audit_log, clear_override, list_overrides, set_override

__all__ = [
    "POLICY_DDL",
    "CompiledPolicy",
    "Explanation",
    "Grade",
    "Override",
    "Policy",
    "TierRule",
    "audit_log",
    "clear_override",
    "compile_policy",
    "list_overrides",
    "set_override",
]
