"""Fixtures for the Fxiaoke connector tests: a fake tenant and connectors wired to it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "fxiaoke"
if str(PLUGIN_DIR) not in sys.path:  # until the package is installed with its entry point
    sys.path.insert(0, str(PLUGIN_DIR))

from crmsync_fxiaoke.connector import FxiaokeConnector  # noqa: E402
from crmsync_fxiaoke.settings import FxiaokeSettings  # noqa: E402

from crmsync.connector import ConnectorContext  # noqa: E402
from crmsync.policy import Policy  # noqa: E402
from crmsync.policy.stages import push_values  # noqa: E402

from .fake import APP_ID, APP_SECRET, PERMANENT_CODE, USER_ID, FakeFxiaoke, account_describe, order_describe  # noqa: E402

TIER = "field_Tier1__c"
POINTS = "field_Pts01__c"
TAGS = "field_Tags01__c"
RFM = "field_Rfm01__c"
STAGE = "field_Stage__c"
PUSH_FIELDS = {"tier": TIER, "points": POINTS, "tags": TAGS, "rfm_segment": RFM, "lifecycle": STAGE}
LIFECYCLE = ["potential", "new", "returning", "mature", "loyal", "dormant", "churned"]
POLICY = Policy.model_validate(
    {
        "tiers": [{"name": "Gold", "condition": "spend_365d >= 1000"},
                  {"name": "Silver", "condition": "spend_365d >= 200"}, {"name": "Bronze"}],
        "tags": {"vip": "tier = 'Gold'", "at_risk_vip": "tier = 'Gold' and days_since_last_order > 90"},
    }
)  # fmt: skip
"""The policy whose values the tests' contexts carry (``push_values``)."""


def custom_fields() -> dict[str, dict[str, Any]]:
    tiers = [{"label": t, "value": f"opt_{t.lower()}"} for t in ("Bronze", "Silver", "Gold")]
    return {
        TIER: {"type": "select_one", "label": "会员等级", "options": tiers},
        POINTS: {"type": "number", "label": "积分", "decimal_places": 0},
        TAGS: {"type": "select_many", "label": "标签",
               "options": [{"label": t, "value": f"tag_{i}"} for i, t in enumerate(["at_risk_vip", "newsletter",
                                                                                  "new", "vip"])]},
        RFM: {"type": "text", "label": "RFM"},
        STAGE: {"type": "select_one", "label": "生命周期", "options": [{"label": s, "value": f"stage_{s}"}
                                                                    for s in LIFECYCLE]},
    }  # fmt: skip


def settings_table(**overrides: Any) -> dict[str, Any]:
    return {
        "app_id": APP_ID,
        "app_secret": APP_SECRET,
        "permanent_code": PERMANENT_CODE,
        "user_id": USER_ID,
        "push_fields": PUSH_FIELDS,
        "tier_names": ["Bronze", "Silver", "Gold"],
        "orders": {"status_map": {"7": "paid", "6": "pending"}, "currency": "CNY"},
    } | overrides


def make_settings(**overrides: Any) -> FxiaokeSettings:
    return FxiaokeSettings.model_validate(settings_table(**overrides))


@pytest.fixture
def fake() -> FakeFxiaoke:
    f = FakeFxiaoke()
    f.describes["AccountObj"] = account_describe(**custom_fields())
    f.describes["SalesOrderObj"] = order_describe()
    return f


def make_context(policy: Policy = POLICY, **kwargs: Any) -> ConnectorContext:
    return ConnectorContext(name="fx", base_currency="CNY", push_values=push_values(policy), **kwargs)


@pytest.fixture
def context() -> ConnectorContext:
    return make_context()


@pytest.fixture
def connect(fake: FakeFxiaoke, context: ConnectorContext) -> Callable[..., FxiaokeConnector]:
    def build(ctx: ConnectorContext | None = None, **overrides: Any) -> FxiaokeConnector:
        return FxiaokeConnector(
            make_settings(**overrides),
            ctx or context,
            transport=fake.transport,
            sleep=fake.sleep,
            clock=lambda: fake.now,
            monotonic=lambda: fake.now,
        )

    return build
