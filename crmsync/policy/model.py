"""The grading policy as configured in the ``[policy]`` table (validated on load)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class TierRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    condition: str | None = Field(None, description="expression over metrics; the last tier has none")
    benefits: list[str] = Field(default_factory=list)
    cost: Decimal | None = Field(None, ge=0, description="cost per member per year, for previews")


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tiers: list[TierRule] = Field(default_factory=lambda: [TierRule(name="Member")])
