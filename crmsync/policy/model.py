"""The grading policy as configured in the ``[policy]`` table (validated on load).

Shape of the table (every key optional; see ``docs/policy.md`` for the reference)::

    [policy.metrics]            which orders count, declared windows
    [[policy.tiers]]            ordered levels, highest first; the last one is the default
    [policy.qualification]      rolling windows, or calendar / anniversary periods a tier is held for
    [policy.downgrade]          grace period and maximum drop per day (or per period)
    [policy.points]             earning, multipliers, expiry, redemptions, qualifying points, overdraft, bonuses
    [policy.rfm]                method, bins, analysis window and segment map
    [policy.lifecycle]          stage thresholds
    [policy.tags]               tag name = condition
    [policy.costs]              the period of the tiers' benefit cost, the value of a point
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crmsync.policy.names import tag_name_problem


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
    cost: Decimal | None = Field(
        None, ge=0, description="benefit cost per member per costs.period (base currency), for previews and backtests"
    )
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
    entry_bonus: int = Field(
        0, ge=0, description="points credited when a member enters this tier (once, see points.entry_bonus_on_reentry)"
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
    expiry: Literal["rolling", "end_of_year"] | None = Field(
        None,
        description="rolling: expiry_days after earning (the default when expiry_days is set); end_of_year: at the "
        "end of the calendar year (in sync.timezone) expiry_years after the year earned",
    )
    expiry_years: int = Field(1, ge=0, le=100, description="with expiry = 'end_of_year': 0 = the year earned, 1 = next")
    allow_negative: bool = Field(
        False, description="let spending take more than the balance (false: it takes at most the balance)"
    )
    non_qualifying_kinds: list[str] = Field(
        default_factory=list, description="activity kinds whose points are spendable but do not count as qualifying"
    )
    non_qualifying_sources: list[str] = Field(
        default_factory=list,
        description="connectors whose orders and activities earn spendable but not qualifying points",
    )
    qualifying_multiplier: bool = Field(
        False, description="qualifying points include the tier's points_multiplier (false: base points)"
    )
    entry_bonus_on_reentry: bool = Field(
        False, description="a tier's entry_bonus is credited again when a member enters the tier again"
    )

    @model_validator(mode="after")
    def _expiry(self) -> PointsSettings:
        if self.expiry == "rolling" and self.expiry_days is None:
            raise ValueError("expiry = 'rolling' needs expiry_days")
        if self.expiry == "end_of_year" and self.expiry_days is not None:
            raise ValueError("expiry = 'end_of_year' takes expiry_years, not expiry_days")
        if self.expiry_years != 1 and self.expiry != "end_of_year":
            raise ValueError("expiry_years applies to expiry = 'end_of_year'")
        return self


class RfmSegment(_Strict):
    name: str = Field(min_length=1)
    condition: str = Field(description="expression over rfm_r, rfm_f, rfm_m, rfm_fm (and metrics)")


class RfmSettings(_Strict):
    """Recency, frequency and monetary scores over the members with orders (see :mod:`crmsync.policy.rfm`)."""

    bins: int = Field(5, ge=2, le=10, description="scores 1..bins with method = 'quantile'")
    segments: list[RfmSegment] | Literal["standard", "classic8"] | None = Field(
        None,
        description="ordered segment map, first match wins; 'standard' (or absent) = the 11-segment map, "
        "'classic8' = the 8 segments high/low on R, F, M (重要价值客户...)",
    )
    method: Literal["quantile", "mean", "median"] | None = Field(
        None,
        description="quantile: scores 1..bins; mean, median: 2 when better than the mean (median) of the members "
        "scored, else 1. Default: mean with segments = 'classic8', else quantile",
    )
    window_days: int | None = Field(
        None, ge=1, description="score only members with an order in the last N days, on those orders"
    )
    names: Literal["en", "zh"] = Field("en", description="names of the classic8 segments: English or Chinese")
    f_ties: Literal["quantile", "consecutive"] = Field(
        "quantile", description="consecutive: a frequency score is at most one above that of the next lower count"
    )
    monetary: Literal["spend", "spend_net"] = Field("spend", description="monetary value: spend or net of refunds")


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


class CostSettings(_Strict):
    """The units of the programme's cost in previews, backtests and reports."""

    period: Literal["day", "week", "month", "quarter", "year"] = Field(
        "month", description="the period a tier's cost is for: its cost per member per period"
    )
    point_value: Decimal | None = Field(
        None, ge=0, description="base-currency value of one point: the outstanding points' liability in money"
    )


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
    costs: CostSettings = Field(default_factory=CostSettings)

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
        problems = [p for p in map(tag_name_problem, v) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _benefit_tag_names(self) -> Policy:
        if not self.benefit_tags:
            return self
        problems = [
            f"tiers[{i}].benefits: benefit tag {problem}"
            for i, tier in enumerate(self.tiers)
            for b in tier.benefits
            if (problem := tag_name_problem(self.benefit_tag_prefix + b))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self
