"""The pandas script a competent analyst would write to grade customers from the same CSV exports as crmsync.

It implements the benchmark policy (``bench/policy.toml``) by hand: tiers over a 365-day window (an order placed
exactly 365 days before the evaluation time is outside), the points balance (one point per whole euro of each
paid order, rounded down per order, plus 20 per review and 50 per referral), RFM quintiles with crmsync's tie
rule (``1 + floor(5 * strictly_worse / n)`` among members with a paid order), the standard segment map, the
default lifecycle thresholds and two tags. Bad rows are dropped the way crmsync quarantines them: a row with a
bad date, amount, status, email, id, column count or undecodable bytes (in any cell) drops its whole order; a
short row is caught by what it lacks (an order row its amount), since pandas reads missing cells as empty. Money
is summed in integer cents, so no float rounding decides a tier.

    python bench/baseline_pandas.py --data DIR --as-of 2026-11-01T00:00:00+00:00 --out profiles.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import rules as policy


def read(path: Path, usecols: list[str]) -> pd.DataFrame:
    """``usecols`` of ``path`` as text, and ``bad_row``: a cell beyond the header's, or undecodable bytes in any.

    The file is read with one column more than its header, which only a row with a cell too many fills; the
    cells a short row lacks read as empty (such a row is caught by the empty cell it needs, such as an amount).
    """
    header = list(pd.read_csv(path, nrows=0, encoding_errors="replace").columns)
    names = [*header, policy.EXTRA]
    df = pd.read_csv(
        path, dtype=str, header=None, skiprows=1, names=names, keep_default_na=False, encoding_errors="replace"
    )
    bad = df[policy.EXTRA] != ""
    for col in header:
        bad |= df[col].str.contains(policy.BAD, regex=False)
    return df[usecols].assign(bad_row=bad)


def load_members(path: Path) -> pd.DataFrame:
    m = read(path, ["customer_id", "email"])
    m["customer_id"] = m["customer_id"].str.strip()
    m["email"] = m["email"].str.strip().str.lower()
    ok = (m["customer_id"] != "") & ~m["bad_row"]
    ok &= (m["email"] == "") | m["email"].str.match(policy.EMAIL)
    m = m[ok]
    return m[~m["customer_id"].duplicated(keep="first")].reset_index(drop=True)


def load_orders(path: Path, members: pd.DataFrame) -> pd.DataFrame:
    cols = ["order_id", "customer_id", "customer_email", "order_date", "status", "currency", "line_amount", "sku"]
    o = read(path, cols)
    o = o[o["order_id"] != ""]
    bad = o["bad_row"].copy()
    cents = pd.to_numeric(o["line_amount"].str.replace(",", "", regex=False), errors="coerce")
    bad |= cents.isna() | ~o["line_amount"].str.match(policy.AMOUNT)
    o["cents"] = (cents.fillna(0) * 100).round().astype("int64")
    # order-level values: the first non-empty one of the order's rows
    for col in policy.ORDER_LEVEL:
        o[col] = o[col].replace("", np.nan)
    g = o.groupby("order_id", sort=False)
    orders = g[list(policy.ORDER_LEVEL)].first()
    orders["cents"] = g["cents"].sum()
    orders["bad"] = bad.groupby(o["order_id"], sort=False).any()
    orders["placed_at"] = pd.to_datetime(orders["order_date"], format="ISO8601", errors="coerce", utc=True)
    orders["status"] = orders["status"].fillna(policy.PAID).str.lower().map(policy.STATUSES)
    email = orders["customer_email"].str.lower()
    orders["bad"] |= orders["placed_at"].isna() | orders["status"].isna()
    orders["bad"] |= email.notna() & ~email.fillna("").str.match(policy.EMAIL)
    orders["bad"] |= orders["customer_id"].isna() & email.isna()
    orders["bad"] |= orders["currency"].fillna(policy.CURRENCY).str.upper() != policy.CURRENCY
    orders = orders[~orders["bad"]]
    # find the member: by id, else by email
    ids = pd.Index(members["customer_id"])
    by_email = members[members["email"] != ""].groupby("email")["customer_id"].min()
    member = orders["customer_id"].where(orders["customer_id"].isin(ids))
    member = member.fillna(email.reindex(orders.index).map(by_email))
    orders = orders.assign(member_id=member)
    return orders.loc[orders["member_id"].notna(), ["member_id", "placed_at", "status", "cents"]]


def load_activities(path: Path, members: pd.DataFrame) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame({"member_id": [], "kind": [], "occurred_at": []})
    a = read(path, ["customer_id", "kind", "occurred_at"])
    a["occurred_at"] = pd.to_datetime(a["occurred_at"], format="ISO8601", errors="coerce", utc=True)
    a = a[a["occurred_at"].notna() & ~a["bad_row"] & a["customer_id"].isin(members["customer_id"])]
    return a.drop(columns="bad_row").rename(columns={"customer_id": "member_id"})


def grade(members: pd.DataFrame, orders: pd.DataFrame, acts: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    orders = orders[orders["placed_at"] <= as_of]
    acts = acts[acts["occurred_at"] <= as_of]
    paid = orders[orders["status"] == policy.PAID]
    recent = paid[paid["placed_at"] > as_of - pd.Timedelta(days=policy.WINDOW_DAYS)]
    g = paid.groupby("member_id")
    out = pd.DataFrame(index=pd.Index(members["customer_id"], name="member_id"))
    out["spend"] = g["cents"].sum()
    out["orders"] = g.size()
    out["first"] = g["placed_at"].min()
    out["last"] = g["placed_at"].max()
    out["spend_365"] = recent.groupby("member_id")["cents"].sum()
    out["orders_365"] = recent.groupby("member_id").size()
    out = out.fillna({"spend": 0, "orders": 0, "spend_365": 0, "orders_365": 0})
    secs = 86_400
    out["since_last"] = np.floor((as_of - out["last"]).dt.total_seconds() / secs)
    out["since_first"] = np.floor((as_of - out["first"]).dt.total_seconds() / secs)

    # points: floor per paid order, plus activity points
    order_points = (np.sign(paid["cents"]) * (paid["cents"].abs() // 100)).groupby(paid["member_id"]).sum()
    act_points = acts["kind"].map(policy.ACTIVITY_POINTS).dropna().groupby(acts["member_id"]).sum()
    out["points"] = order_points.reindex(out.index, fill_value=0) + act_points.reindex(out.index, fill_value=0)

    # RFM among buyers: 1 + floor(5 * strictly_worse / n)
    buyers = out[out["orders"] > 0]
    n = len(buyers)
    for name, col, ascending in (("r", "since_last", False), ("f", "orders", True), ("m", "spend", True)):
        worse = buyers[col].rank(method="min", ascending=ascending) - 1
        out["rfm_" + name] = (1 + (5 * worse) // n).astype("Int64")
    fm = (out["rfm_f"] + out["rfm_m"] + 1) // 2
    seg = pd.Series([None] * len(out), index=out.index, dtype=object)
    has = out["rfm_r"].notna()
    seg[has] = [policy.SEGMENTS[r][f - 1] for r, f in zip(out.loc[has, "rfm_r"], fm[has], strict=True)]
    out["rfm_segment"] = seg

    # lifecycle: first stage that applies
    life = np.select(
        [
            out["orders"] == 0,
            out["since_last"] >= policy.CHURNED_DAYS,
            out["since_last"] >= policy.DORMANT_DAYS,
            (out["orders"] >= policy.LOYAL[0]) & (out["since_first"] >= policy.LOYAL[1]),
            out["orders"] >= policy.MATURE,
            out["orders"] >= policy.RETURNING,
        ],
        ["potential", "churned", "dormant", "loyal", "mature", "returning"],
        "new",
    )
    out["lifecycle"] = life

    tier = np.where(
        (out["spend_365"] >= policy.SILVER[1]) | (out["orders"] >= policy.SILVER[2]), policy.SILVER[0], policy.LOWEST
    )
    for name, spend, count in reversed(policy.TIERS):
        tier = np.where((out["spend_365"] >= spend) & (out["orders_365"] >= count), name, tier)
    out["tier"] = tier

    vip = out["tier"].isin(policy.VIP_TIERS) & (out["since_last"] > policy.VIP_QUIET_DAYS)
    big = out["spend"] >= policy.BIG_SPENDER
    out["tags"] = np.where(vip & big, "at_risk_vip|big_spender", np.where(vip, "at_risk_vip", ""))
    out.loc[big & ~vip, "tags"] = "big_spender"
    result = out[["tier", "points", "tags", "rfm_segment", "lifecycle"]].reset_index()
    result["points"] = result["points"].astype("int64")
    return result.sort_values("member_id")


def main(argv: list[str] | None = None) -> int:
    data, when, out = policy.arguments(__doc__ or "", argv)
    members = load_members(data / "customers.csv")
    orders = pd.concat([load_orders(p, members) for p in sorted(data.glob("orders*.csv"))])
    orders = orders[~orders.index.duplicated(keep="last")]  # a later export replaces an order
    acts = load_activities(data / "activities.csv", members)
    profiles = grade(members, orders, acts, pd.Timestamp(when))
    profiles.to_csv(out, index=False)
    print(f"{out}: {len(profiles)} profiles", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
