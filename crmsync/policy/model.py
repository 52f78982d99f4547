"""The grading policy as configured in the ``[policy]`` table (validated on load).

Shape of the table (every key optional; see ``docs/policy.md`` for the reference)::

    [policy.metrics]            which orders count, declared windows
    [[policy.tiers]]            ordered levels, highest first; the last one is the default
    [policy.qualification]      rolling windows, or calendar / anniversary periods a tier is held for
    [policy.downgrade]          grace period and maximum drop per day (or per period)
    [policy.points]             earning, multipliers, expiry, redemptions
    [policy.rfm]                bins and segment map
    [policy.lifecycle]          stage thresholds
    [policy.tags]               tag name = condition
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierRule(_Strict):
    """One level. Tiers are listed highest first; a member gets the first tier whose condition holds."""

    name: str = Field(min_length=1, description="the tier name pushed to the CRM, e.g. 'Gold'")
    condition: str | None = Field(
        None,
        description='expression over metrics, e.g. "spend_365d >= 2000 and orders_365d >= 3"; '
        "the last (default) tier has none",
    )
    benefits: list[str] = Field(default_factory=list, description="free-form labels; may become tags")
    cost: Decimal | None = Field(None, ge=0, description="benefit cost per member (per evaluation), for previews")
    points_multiplier: Decimal = Field(
        Decimal(1), ge=0, description="multiplier applied to points earned while a member holds this tier"
    )
    keep_condition: str | None = Field(
        None,
        description="easier condition under which a member who holds this tier (or a higher one) keeps it, "
        'e.g. "spend_365d >= 1500"; the entry condition keeps it too',
    )
    grace_days: int | None = Field(
        None,
        ge=0,
        description="days this tier is kept after the member stops qualifying for it; overrides "
        "[policy.downgrade] grace_days (0: a paid tier ends the day it lapses)",
    )
    max_levels: int | None = Field(
        None,
        ge=1,
        description="most levels a member drops from this tier at once; overrides [policy.downgrade] max_levels "
        "(a paid tier that lapses may drop straight to the tier the member qualifies for)",
    )


class MetricsSettings(_Strict):
    """Which orders count, and which rolling windows exist."""

    order_statuses: list[Literal["paid", "refunded", "cancelled", "pending"]] = Field(
        default_factory=lambda: ["paid"],
        description="order statuses that count as successful orders; add 'refunded' to count refunds",
    )
    windows: list[int] | None = Field(
        None,
        description="rolling windows in days (e.g. [30, 90, 365]); when set, only these windows may be named "
        "(spend_365d...); when absent, windows are discovered from the names that conditions use",
    )

    @field_validator("windows")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(d <= 0 for d in v):
            raise ValueError("windows are positive numbers of days")
        return v


class DowngradeSettings(_Strict):
    """Upgrades apply at once; downgrades are decided per day (or per qualification period) after a grace period."""

    grace_days: int = Field(
        0, ge=0, description="days (in sync.timezone) a member must fail to qualify for the held tier before dropping"
    )
    max_levels: int = Field(
        1, ge=1, description="most levels a member drops in one day (with a qualification period: in one period)"
    )


class QualificationSettings(_Strict):
    """The period a tier is earned and held for: rolling windows, or calendar or anniversary periods."""

    period: Literal["rolling", "calendar_year", "calendar_month", "anniversary"] = Field(
        "rolling",
        description="rolling: downgrades are decided every day; a period: a tier is held until the period ends and "
        "downgrades are decided on the first day of the next period",
    )
    anniversary_attribute: str | None = Field(
        None,
        min_length=1,
        description="member attribute holding the date anniversary periods start from (default: the first order)",
    )

    @model_validator(mode="after")
    def _anchor(self) -> QualificationSettings:
        if self.anniversary_attribute is not None and self.period != "anniversary":
            raise ValueError("anniversary_attribute needs period = 'anniversary'")
        return self


class PointsSettings(_Strict):
    """Points earned from orders and activities, kept as a ledger."""

    per_currency_unit: Decimal = Field(
        Decimal(0), ge=0, description="points per unit of base currency spent (0 = orders earn nothing)"
    )
    rounding: Literal["floor", "ceil", "half_up", "half_even"] = Field(
        "floor", description="how each order's points are rounded to whole points"
    )
    activities: dict[str, Decimal] = Field(
        default_factory=dict, description="points per activity of a kind, e.g. {login = 1, review = 20}"
    )
    source_points_kinds: list[str] = Field(
        default_factory=list, description="activity kinds whose points are reported by the source (points column)"
    )
    redemption_kinds: list[str] = Field(
        default_factory=list,
        description="activity kinds that report redeemed points (their points column, as a positive number)",
    )
    expiry_days: int | None = Field(None, ge=1, description="earned points expire this many days after earning")
    imported_orders: Literal["base", "tier_at_order"] = Field(
        "base",
        description="base: orders placed before the first sync earn without a tier multiplier (1x); tier_at_order: "
        "the first sync replays the tiers day by day from the first order, so each earns the multiplier of the tier "
        "held when it was placed",
    )


class RfmSegment(_Strict):
    name: str = Field(min_length=1)
    condition: str = Field(description="expression over rfm_r, rfm_f, rfm_m, rfm_fm (and metrics)")


class RfmSettings(_Strict):
    """Recency, frequency and monetary scores 1..bins by quantile over members with orders."""

    bins: int = Field(5, ge=2, le=10)
    segments: list[RfmSegment] | None = Field(
        None, description="ordered segment map, first match wins; absent = the standard 11-segment map"
    )


class LifecycleSettings(_Strict):
    """Thresholds of the lifecycle stages (first stage that applies, in this order):
    potential (no order), churned, dormant, loyal, mature, returning, new."""

    returning_orders: int = Field(2, ge=2, description="orders that make a member 'returning'")
    mature_orders: int = Field(10, ge=2, description="orders that make a member 'mature'")
    loyal_orders: int = Field(20, ge=2, description="orders that make a member 'loyal'...")
    loyal_min_days: int = Field(365, ge=0, description="...together with this many days since the first order")
    dormant_days: int = Field(180, ge=1, description="days without an order that make a member 'dormant'")
    churned_days: int = Field(365, ge=1, description="days without an order that make a member 'churned'")

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleSettings:
        if self.churned_days <= self.dormant_days:
            raise ValueError("churned_days must be greater than dormant_days")
        if not self.returning_orders <= self.mature_orders <= self.loyal_orders:
            raise ValueError("returning_orders <= mature_orders <= loyal_orders is required")
        return self


class Policy(_Strict):
    """The ``[policy]`` table."""

    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tiers: list[TierRule] = Field(
        default_factory=lambda: [TierRule(name="Member")], description="ordered levels, highest first"
    )
    qualification: QualificationSettings = Field(default_factory=QualificationSettings)
    downgrade: DowngradeSettings = Field(default_factory=DowngradeSettings)
    points: PointsSettings = Field(default_factory=PointsSettings)
    rfm: RfmSettings = Field(default_factory=RfmSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    tags: dict[str, str] = Field(default_factory=dict, description="tag name = condition")
    benefit_tags: bool = Field(False, description="add each benefit of a member's tier as a tag")
    benefit_tag_prefix: str = Field("", description="prefix of tags made from benefits, e.g. 'benefit_'")

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: list[TierRule]) -> list[TierRule]:
        if not v:
            raise ValueError("at least one tier is required (the last one is the default)")
        names = [t.name for t in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tier names must be unique (repeated: {', '.join(dupes)})")
        for i, tier in enumerate(v[:-1]):
            if not (tier.condition or "").strip():
                raise ValueError(f"tiers[{i}] ({tier.name}): only the last (default) tier may omit its condition")
        last = v[-1]
        if (last.condition or "").strip() and len(v) > 1:
            raise ValueError(f"tiers[{len(v) - 1}] ({last.name}): the last tier is the default and takes no condition")
        if last.keep_condition is not None or last.grace_days is not None or last.max_levels is not None:
            raise ValueError(
                f"tiers[{len(v) - 1}] ({last.name}): the default tier is never lost; it takes no keep_condition, "
                "grace_days or max_levels"
            )
        return v

    @field_validator("tags")
    @classmethod
    def _tag_names(cls, v: dict[str, str]) -> dict[str, str]:
        import re

        bad = [k for k in v if not re.match(_NAME_PATTERN, k)]
        if bad:
            raise ValueError(f"tag names are lower-case letters, digits and underscores (bad: {', '.join(bad)})")
        return v
