"""The same grades as ``baseline_pandas.py``, written by a strong engineer with polars' lazy API.

One lazy plan from the CSV exports to the profiles file, run by polars' streaming engine: ``scan_csv`` of every
file with all columns as strings (nothing inferred), line items grouped into orders, bad orders dropped, orders
matched to members by id and then by email, the members' figures, RFM ranks, lifecycle, tier and tags, written
with ``sink_csv``. It implements the benchmark policy (``bench/policy.toml``) and the pandas script's rules: a row
with a bad date, amount, status, email, id, column count or undecodable bytes (in any cell) drops its whole order;
order-level values come from the first row of the order that has them; money is summed in integer cents. A row
with a cell beyond the header's fills an extra column and is bad; polars, like pandas, reads the cells a short
row lacks as empty, so a short row is caught by what it lacks (an order row its amount).

    python bench/baseline_polars.py --data DIR --as-of 2026-11-01T00:00:00+00:00 --out profiles.csv
"""

from __future__ import annotations

import csv
import sys
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import rules as policy

DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d",
)
"""ISO 8601: date and time (space or ``T``, optional fraction, optional ``Z`` or offset), or a date alone."""
DAY_US = 86_400_000_000


def scan(path: Path) -> pl.LazyFrame:
    """Every column of ``path`` as a string, and ``bad_row``: a cell too many or undecodable bytes in any cell.

    Empty cells (quoted or not) and the cells a short row lacks are null. The file is read with one column more
    than its header, which only a row with a cell too many fills.
    """
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        header = next(csv.reader(fh))
    schema = dict.fromkeys([*header, policy.EXTRA], pl.String)
    frame = pl.scan_csv(
        path, has_header=False, skip_rows=1, schema=schema, missing_columns="insert", truncate_ragged_lines=True,
        encoding="utf8-lossy", null_values=[""],
    )  # fmt: skip
    undecodable = pl.any_horizontal(pl.col(header).str.contains(policy.BAD, literal=True)).fill_null(False)
    return frame.with_columns((undecodable | pl.col(policy.EXTRA).is_not_null()).alias("bad_row")).drop(policy.EXTRA)


def with_time(frame: pl.LazyFrame, text: str, name: str) -> pl.LazyFrame:
    """``frame`` with ``name``: the ISO 8601 cell ``text`` as a UTC time (naive values are UTC), null if unreadable.

    The export's own format is read first; only the rows it cannot read try the other forms, so the common case
    costs one parse.
    """
    col = pl.col(text)
    first = frame.with_columns(col.str.to_datetime(DATE_FORMATS[0], time_zone="UTC", strict=False).alias(name))
    retry = pl.col(name).is_null() & col.is_not_null()
    other = pl.coalesce(col.str.to_datetime(f, time_zone="UTC", strict=False) for f in DATE_FORMATS[1:])
    return pl.concat([first.filter(~retry), first.filter(retry).with_columns(other.alias(name))])


def load_members(path: Path) -> pl.LazyFrame:
    m = scan(path).select(
        pl.col("customer_id").str.strip_chars().alias("member_id"),
        pl.col("email").str.strip_chars().str.to_lowercase().fill_null("").alias("email"),
        "bad_row",
    )
    ok = (pl.col("member_id") != "") & ~pl.col("bad_row")
    ok &= (pl.col("email") == "") | pl.col("email").str.contains(policy.EMAIL)
    return m.filter(ok.fill_null(False)).unique("member_id", keep="first", maintain_order=True).drop("bad_row")


def group_orders(path: Path) -> pl.LazyFrame:
    """One row per order of one file: its order-level values, amount in cents and whether a row of it is bad."""
    rows = scan(path).filter(pl.col("order_id").is_not_null())
    amount = pl.col("line_amount")
    bad_row = pl.col("bad_row") | ~amount.str.contains(policy.AMOUNT).fill_null(False)
    return (
        rows.select(
            "order_id",
            *policy.ORDER_LEVEL,
            amount.cast(pl.Decimal(18, 2), strict=False).alias("amount"),
            bad_row.alias("bad"),
        )
        .group_by("order_id")
        .agg(
            *(pl.col(c).drop_nulls().first() for c in policy.ORDER_LEVEL),  # twice as fast as ignore_nulls
            pl.col("amount").sum(),
            pl.col("bad").any(),
        )
    )


def load_orders(path: Path, file_no: int, members: pl.LazyFrame) -> pl.LazyFrame:
    """The good orders of one file with their member (by customer id, else by email)."""
    email = pl.col("customer_email").str.to_lowercase()
    status = pl.col("status").fill_null(policy.PAID).str.to_lowercase().replace_strict(policy.STATUSES, default=None)
    orders = with_time(group_orders(path), "order_date", "placed_at").with_columns(status, email)
    bad = pl.col("bad") | pl.col("placed_at").is_null() | pl.col("status").is_null() | pl.col("amount").is_null()
    bad |= email.is_not_null() & ~email.str.contains(policy.EMAIL).fill_null(False)
    bad |= pl.col("customer_id").is_null() & email.is_null()
    bad |= pl.col("currency").fill_null(policy.CURRENCY).str.to_uppercase() != policy.CURRENCY
    by_id = members.select(pl.col("member_id").alias("customer_id"), pl.col("member_id").alias("by_id"))
    by_email = members.filter(pl.col("email") != "").group_by("email").agg(pl.col("member_id").min().alias("by_mail"))
    return (
        orders.filter(~bad)
        .join(by_id, on="customer_id", how="left")
        .join(by_email, left_on="customer_email", right_on="email", how="left")
        .select(
            "order_id",
            pl.coalesce("by_id", "by_mail").alias("member_id"),
            "placed_at",
            "status",
            (pl.col("amount") * 100).cast(pl.Int64).alias("cents"),
            pl.lit(file_no).alias("file_no"),
        )
        .filter(pl.col("member_id").is_not_null())
    )


def all_orders(paths: list[Path], members: pl.LazyFrame) -> pl.LazyFrame:
    """Orders of every export in name order; a later export replaces an order."""
    frames = [load_orders(p, n, members) for n, p in enumerate(paths)]
    if len(frames) == 1:
        return frames[0]
    last = pl.col("file_no") == pl.col("file_no").max().over("order_id")
    return pl.concat(frames).filter(last)


def load_activities(path: Path, members: pl.LazyFrame) -> pl.LazyFrame:
    if not path.exists():
        return pl.LazyFrame(schema={"member_id": pl.String, "kind": pl.String, "occurred_at": pl.Datetime("us", "UTC")})
    acts = scan(path).filter(~pl.col("bad_row")).select(pl.col("customer_id").alias("member_id"), "kind", "occurred_at")
    acts = with_time(acts, "occurred_at", "at").filter(pl.col("at").is_not_null())
    return acts.select("member_id", "kind", pl.col("at").alias("occurred_at")).join(
        members.select("member_id"), on="member_id", how="semi"
    )


def figures(orders: pl.LazyFrame, acts: pl.LazyFrame, as_of: datetime) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Per member: paid spend and order counts (lifetime and last 365 days), first/last order, points."""
    paid = orders.filter((pl.col("placed_at") <= as_of) & (pl.col("status") == policy.PAID))
    recent = pl.col("placed_at") > as_of - timedelta(days=policy.WINDOW_DAYS)
    cents = pl.col("cents")
    per_member = paid.group_by("member_id").agg(
        cents.sum().alias("spend"),
        pl.len().alias("orders"),
        pl.col("placed_at").min().alias("first"),
        pl.col("placed_at").max().alias("last"),
        cents.filter(recent).sum().alias("spend_365"),
        recent.sum().alias("orders_365"),
        (cents.sign() * (cents.abs() // 100)).sum().alias("order_points"),  # floor per order, towards zero
    )
    act_points = (
        acts.filter(pl.col("occurred_at") <= as_of)
        .group_by("member_id")
        .agg(pl.col("kind").replace_strict(policy.ACTIVITY_POINTS, default=0, return_dtype=pl.Int64).sum().alias("act"))
    )
    return per_member, act_points


def rfm_segment() -> pl.Expr:
    """RFM scores among members with a paid order, ``1 + floor(5 * strictly_worse / n)``, and the segment."""
    buyer = pl.col("orders") > 0
    n = buyer.sum()

    def score(col: str, descending: bool) -> pl.Expr:
        worse = pl.when(buyer).then(pl.col(col)).rank("min", descending=descending) - 1
        return 1 + (5 * worse) // n

    r, f, m = score("since_last", True), score("orders", False), score("spend", False)
    key = 10 * r + (f + m + 1) // 2
    return key.replace_strict(policy.SEGMENT_OF, default=None, return_dtype=pl.String).alias("rfm_segment")


def grade(members: pl.LazyFrame, orders: pl.LazyFrame, acts: pl.LazyFrame, as_of: datetime) -> pl.LazyFrame:
    per_member, act_points = figures(orders, acts, as_of)
    counts = ("spend", "orders", "spend_365", "orders_365", "order_points", "act")
    out = (
        members.select("member_id")
        .join(per_member, on="member_id", how="left")
        .join(act_points, on="member_id", how="left")
        .with_columns(pl.col(counts).fill_null(0))
        .with_columns(
            ((pl.lit(as_of) - pl.col("last")).dt.total_microseconds() // DAY_US).alias("since_last"),
            ((pl.lit(as_of) - pl.col("first")).dt.total_microseconds() // DAY_US).alias("since_first"),
            (pl.col("order_points") + pl.col("act")).alias("points"),
        )
    )
    o, last, spend_365, orders_365 = pl.col("orders"), pl.col("since_last"), pl.col("spend_365"), pl.col("orders_365")
    lifecycle = (
        pl.when(o == 0).then(pl.lit("potential"))
        .when(last >= policy.CHURNED_DAYS).then(pl.lit("churned"))
        .when(last >= policy.DORMANT_DAYS).then(pl.lit("dormant"))
        .when((o >= policy.LOYAL[0]) & (pl.col("since_first") >= policy.LOYAL[1])).then(pl.lit("loyal"))
        .when(o >= policy.MATURE).then(pl.lit("mature"))
        .when(o >= policy.RETURNING).then(pl.lit("returning"))
        .otherwise(pl.lit("new"))
    )  # fmt: skip
    tier = (
        pl.when((spend_365 >= policy.SILVER[1]) | (o >= policy.SILVER[2]))
        .then(pl.lit(policy.SILVER[0]))
        .otherwise(pl.lit(policy.LOWEST))
    )
    for name, spend, count in reversed(policy.TIERS):  # the highest tier that applies
        tier = pl.when((spend_365 >= spend) & (orders_365 >= count)).then(pl.lit(name)).otherwise(tier)
    out = out.with_columns(rfm_segment(), lifecycle.alias("lifecycle"), tier.alias("tier"))
    vip = pl.col("tier").is_in(policy.VIP_TIERS) & (last > policy.VIP_QUIET_DAYS).fill_null(False)
    big = pl.col("spend") >= policy.BIG_SPENDER
    tags = [pl.when(vip).then(pl.lit("at_risk_vip")), pl.when(big).then(pl.lit("big_spender"))]
    out = out.with_columns(pl.concat_str(tags, separator="|", ignore_nulls=True).alias("tags"))
    return out.select("member_id", "tier", "points", "tags", "rfm_segment", "lifecycle").sort("member_id")


def plan(data: Path, as_of: datetime) -> pl.LazyFrame:
    """The whole computation as one lazy plan (nothing is read until it is run)."""
    members = load_members(data / "customers.csv")
    orders = all_orders(sorted(data.glob("orders*.csv")), members)
    acts = load_activities(data / "activities.csv", members)
    return grade(members, orders, acts, as_of)


def main(argv: list[str] | None = None) -> int:
    data, as_of, out = policy.arguments(__doc__ or "", argv)
    plan(data, as_of).sink_csv(out, engine="streaming")
    print(f"{out}: written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
