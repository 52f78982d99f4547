"""What the baseline scripts share: the benchmark policy (``bench/policy.toml``) written out by hand, the rules for
bad rows, and their command line (``--data DIR --as-of ... --out profiles.csv``).

Money is in integer cents and time spans in days.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

PAID = "paid"
STATUSES = {
    "paid": "paid", "completed": "paid", "complete": "paid", "fulfilled": "paid", "shipped": "paid",
    "delivered": "paid", "refunded": "refunded", "cancelled": "cancelled", "canceled": "cancelled",
    "voided": "cancelled", "pending": "pending", "processing": "pending", "on-hold": "pending", "unpaid": "pending",
}  # fmt: skip
"""Order statuses (lower case) and what they mean; an order without one is paid, any other is bad."""
CURRENCY = "EUR"
"""An order without a currency is in euros; an order in any other is dropped."""
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
AMOUNT = r"^-?[0-9]+(\.[0-9]{1,2})?$"
"""A line amount: plain digits with at most two decimals."""
BAD = "\ufffd"
"""What an undecodable byte reads as (``encoding_errors='replace'``, ``utf8-lossy``)."""
EXTRA = "\x00extra"
"""The name of the column read beyond the header's, which only a row with a cell too many fills."""
ORDER_LEVEL = ("customer_id", "customer_email", "order_date", "status", "currency")
"""Order-level values: each order takes the first non-empty one of its rows, in file order."""

WINDOW_DAYS = 365
"""Tiers count paid orders placed after ``as_of - 365 days`` (one placed exactly then is outside)."""
TIERS = (("Platinum", 150_000, 6), ("Gold", 60_000, 3))
"""Highest first: (tier, spend in the window >= cents, orders in the window >=)."""
SILVER = ("Silver", 15_000, 4)
"""(tier, spend in the window >= cents, *or* lifetime paid orders >=); below it every member is Bronze."""
LOWEST = "Bronze"
ACTIVITY_POINTS = {"review": 20, "referral": 50}
"""Points per activity; paid orders give one point per whole euro, rounded towards zero per order."""
CHURNED_DAYS, DORMANT_DAYS = 365, 180
LOYAL = (20, 365)
"""Lifecycle ``loyal``: at least 20 paid orders, the first at least 365 days ago."""
MATURE, RETURNING = 10, 2
VIP_TIERS, VIP_QUIET_DAYS = ("Platinum", "Gold"), 90
"""Tag ``at_risk_vip``: a VIP tier and no paid order for more than 90 days."""
BIG_SPENDER = 200_000
"""Tag ``big_spender``: lifetime paid spend of at least 2,000 euros."""
SEGMENTS = {  # (R, FM) -> segment; the standard map
    5: ["New", "Potential Loyalist", "Loyal", "Champions", "Champions"],
    4: ["Promising", "Potential Loyalist", "Loyal", "Champions", "Champions"],
    3: ["About to Sleep", "Need Attention", "Need Attention", "Loyal", "Loyal"],
    2: ["Hibernating", "About to Sleep", "At Risk", "At Risk", "Can't Lose Them"],
    1: ["Lost", "Hibernating", "At Risk", "Can't Lose Them", "Can't Lose Them"],
}
SEGMENT_OF = {10 * r + fm: name for r, names in SEGMENTS.items() for fm, name in enumerate(names, 1)}
"""The segment of ``10 * R + FM`` (R and FM from 1 to 5; FM is ``(F + M + 1) // 2``)."""


def arguments(doc: str, argv: list[str] | None) -> tuple[Path, datetime, Path]:
    """The command line of a baseline: (data folder, evaluation time in UTC, profiles file)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with customers.csv, orders*.csv...")
    parser.add_argument("--as-of", required=True, help="evaluation time, ISO 8601 with offset")
    parser.add_argument("--out", type=Path, required=True, help="the profiles file to write")
    args = parser.parse_args(argv)
    try:
        as_of = datetime.fromisoformat(args.as_of)
    except ValueError:
        parser.error(f"--as-of is not an ISO 8601 time: {args.as_of!r}")
    if as_of.tzinfo is None:
        parser.error("--as-of needs an offset, e.g. 2026-11-01T00:00:00+00:00")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return args.data, as_of.astimezone(UTC), args.out
