"""Generate realistic, deterministic customer/order/activity CSV exports for demos, tests and benchmarks.

The data has the shape real shops see: spend per order is lognormal (heavy-tailed), purchase frequency per
customer is heavy-tailed too (many one-time buyers, a few very loyal ones, some who never buy), customers
go quiet after a while (a long dormant tail), sales peak in November and December, about 3% of orders are
refunded and some cancelled. Orders may be written one row per line item (order-level values on the first
row only, as shops export them), and a few deliberately bad rows can be mixed in, one of each kind in turn.

Only the standard library is used and rows are written as they are generated, so ten million order rows
need little memory. The same arguments and seed always give the same files::

    python bench/generate.py --customers 3000 --orders 30000 --out examples/quickstart \\
        --line-items --activities 600 --bad-rows 5 --seed 7
"""

from __future__ import annotations

import argparse
import bisect
import csv
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

WESTERN_FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Lena", "Max"]
WESTERN_FIRST += ["Mia", "Noah", "Olivia", "Paul", "Sofia", "Tom", "Lea", "Elias", "Nora", "Leon", "Maya", "Finn"]
WESTERN_LAST = ["Smith", "Miller", "Schmidt", "Meyer", "Martin", "Bernard", "Rossi", "Garcia", "Jensen", "Novak"]
WESTERN_LAST += ["Weber", "Wagner", "Becker", "Hoffmann", "Dubois", "Moreau", "Brown", "Wilson", "Taylor", "Klein"]
CHINESE_FIRST = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "霞"]
CHINESE_LAST = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭"]
CITIES = ["Berlin", "Hamburg", "Paris", "Lyon", "Amsterdam", "Vienna", "Milan", "Madrid", "London", "Zurich"]
CHINESE_CITIES = ["上海", "北京", "深圳", "广州", "杭州", "成都"]
SKUS = [f"SKU-{i:04d}" for i in range(1, 401)]
ACTIVITY_KINDS = [("login", 0.55, ""), ("review", 0.2, "50"), ("newsletter_click", 0.15, ""), ("referral", 0.1, "200")]
BAD_KINDS = ("bad_date", "bad_amount", "missing_id", "bad_email", "unknown_status", "column_count", "undecodable")

CUSTOMER_COLUMNS = ["customer_id", "email", "first_name", "last_name", "phone", "created_at", "city"]
ORDER_COLUMNS = ["order_id", "customer_id", "customer_email", "order_date", "status", "currency", "line_amount", "sku"]
ACTIVITY_COLUMNS = ["activity_id", "customer_id", "kind", "occurred_at", "points"]


@dataclass(slots=True)
class Customer:
    cid: str
    email: str
    start: int
    """First day (index from the start date) the customer can buy."""
    end: int
    """Last day the customer buys before going quiet."""
    currency: str


def season(day: date) -> float:
    """Relative daily demand: a November/December peak, a summer dip, busier weekends."""
    doy = day.timetuple().tm_yday
    weight = 1.0 + 0.25 * math.cos(2 * math.pi * (doy - 15) / 365)  # winter high, summer low
    if day.month == 11 and day.day >= 11:
        weight += 1.2
    elif day.month == 12 and day.day <= 20:
        weight += 0.8
    if day.weekday() >= 5:
        weight += 0.2
    return weight


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.end = date.fromisoformat(args.end)
        self.start = self.end - timedelta(days=args.days)
        self.currencies = [c.strip().upper() for c in args.currencies.split(",") if c.strip()]
        self.customers: list[Customer] = []
        self.cum_weights: list[float] = []

    # ------------------------------------------------------------------ customers
    def write_customers(self, writer: csv.writer) -> None:  # type: ignore[valid-type]
        rng, days = self.rng, self.args.days
        total = 0.0
        for i in range(1, self.args.customers + 1):
            chinese = rng.random() < 0.25
            if chinese:
                first, last = rng.choice(CHINESE_FIRST), rng.choice(CHINESE_LAST)
                email = f"user{i}@example.cn"
                phone = f"+86 13{rng.randrange(10**9):09d}"
                city = rng.choice(CHINESE_CITIES)
            else:
                first, last = rng.choice(WESTERN_FIRST), rng.choice(WESTERN_LAST)
                email = f"{first}.{last}{i}@example.com".lower()
                phone = f"+49 15{rng.randrange(10**8):08d}"
                city = rng.choice(CITIES)
            if rng.random() < 0.04:
                email = ""
            if rng.random() < 0.3:
                phone = ""
            created = rng.randrange(-365, days)  # a third signed up before the window
            quiet_after = int(rng.expovariate(1 / 300))
            cid = f"C{i:07d}"
            currency = self.currencies[0] if rng.random() < 0.85 else rng.choice(self.currencies)
            self.customers.append(Customer(cid, email, max(created, 0), min(created + quiet_after, days - 1), currency))
            # purchase propensity: heavy-tailed; about one in six never buys
            weight = 0.0 if rng.random() < 0.17 else rng.lognormvariate(0, 1.3)
            total += weight
            self.cum_weights.append(total)
            when = datetime.combine(self.start + timedelta(days=created), datetime.min.time())
            when += timedelta(seconds=rng.randrange(86_400))
            writer.writerow([cid, email, first, last, phone, when.strftime("%Y-%m-%d %H:%M:%S"), city])

    def pick_customer(self, day: int) -> Customer:
        rng = self.rng
        total = self.cum_weights[-1]
        if total <= 0:  # nobody buys: fall back to anyone
            return self.customers[day % len(self.customers)]
        for _ in range(8):  # retry a few times to find someone active that day
            c = self.customers[bisect.bisect_right(self.cum_weights, rng.random() * total)]
            if c.start <= day <= c.end:
                return c
        return c

    # ------------------------------------------------------------------ orders
    def day_counts(self, orders: int) -> Iterator[tuple[int, int]]:
        days = self.args.days
        weights = [season(self.start + timedelta(days=d)) * (1 + 0.6 * d / days) for d in range(days)]  # + growth
        scale = orders / sum(weights)
        carry = 0.0
        for d, w in enumerate(weights):
            carry += w * scale
            n = int(carry)
            carry -= n
            yield d, n

    def order_rows(self) -> Iterator[list[str]]:
        rng, args = self.rng, self.args
        mean_lines = 1 + sum(math.exp(-k / 1.2) for k in range(1, 8)) if args.line_items else 1.0
        bad_every = max(1, int(args.orders / mean_lines / (args.bad_rows + 1))) if args.bad_rows else 0
        bad_done = 0
        seq = 100_000
        for day, n in self.day_counts(int(args.orders / mean_lines)):
            base = datetime.combine(self.start + timedelta(days=day), datetime.min.time())
            for _ in range(n):
                seq += 1
                c = self.pick_customer(day)
                when = (base + timedelta(seconds=rng.randrange(86_400))).strftime("%Y-%m-%d %H:%M:%S")
                roll = rng.random()
                status = "paid"
                if roll < 0.03:
                    status = "refunded"
                elif roll < 0.045:
                    status = "cancelled"
                elif roll < 0.05 and day > args.days - 10:
                    status = "pending"
                total = rng.lognormvariate(3.7, 0.85)
                lines = 1 + (min(int(rng.expovariate(1 / 1.2)), 7) if args.line_items else 0)
                guest = c.email and rng.random() < 0.06
                first = [f"O{seq}", "" if guest else c.cid, c.email if guest else "", when, status, c.currency]
                parts = [rng.random() + 0.2 for _ in range(lines)]
                scale = total / sum(parts)
                for k, part in enumerate(parts):
                    head = first if k == 0 else [f"O{seq}", "", "", "", "", ""]
                    yield [*head, f"{part * scale:.2f}", rng.choice(SKUS)]
                if bad_every and bad_done < args.bad_rows and seq % bad_every == 0:
                    seq += 1
                    yield self.bad_row(BAD_KINDS[bad_done % len(BAD_KINDS)], f"O{seq}", c, when)
                    bad_done += 1
        c = self.customers[0]
        when = datetime.combine(self.end - timedelta(days=1), datetime.min.time()).strftime("%Y-%m-%d %H:%M:%S")
        while bad_done < args.bad_rows:  # too few orders to spread them: put the rest at the end
            seq += 1
            yield self.bad_row(BAD_KINDS[bad_done % len(BAD_KINDS)], f"O{seq}", c, when)
            bad_done += 1

    def bad_row(self, kind: str, oid: str, c: Customer, when: str) -> list[str]:
        row = [oid, c.cid, "", when, "paid", c.currency, "19.90", "SKU-0001"]
        if kind == "bad_date":
            row[3] = "31/02/2025 25:61"
        elif kind == "bad_amount":
            row[6] = "12,34.5x"
        elif kind == "missing_id":
            row[0] = ""
        elif kind == "bad_email":
            row[1], row[2] = "", "not-an-email"
        elif kind == "unknown_status":
            row[4] = "lost_in_transit"
        elif kind == "column_count":
            row = row[:5]
        elif kind == "undecodable":
            row[7] = "SKU-\udcff\udcfe"  # written as the raw bytes 0xFF 0xFE: invalid in UTF-8 and GB18030
        return row

    # ------------------------------------------------------------------ activities
    def activity_rows(self) -> Iterator[list[str]]:
        rng, days = self.rng, self.args.days
        kinds = [k for k, _, _ in ACTIVITY_KINDS]
        cum = [sum(w for _, w, _ in ACTIVITY_KINDS[: i + 1]) for i in range(len(ACTIVITY_KINDS))]
        points = {k: p for k, _, p in ACTIVITY_KINDS}
        for i in range(1, self.args.activities + 1):
            day = rng.randrange(days)
            c = self.pick_customer(day)
            kind = kinds[bisect.bisect_left(cum, rng.random() * cum[-1])]
            when = datetime.combine(self.start + timedelta(days=day), datetime.min.time())
            when += timedelta(seconds=rng.randrange(86_400))
            yield [f"A{i:08d}", c.cid, kind, when.strftime("%Y-%m-%d %H:%M:%S"), points[kind]]


def _open(path: Path, encoding: str) -> tuple[object, csv.writer]:  # type: ignore[valid-type]
    fh = path.open("w", encoding=encoding, errors="surrogateescape", newline="")
    return fh, csv.writer(fh, lineterminator="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--orders", type=int, required=True, help="order rows to write (about)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--line-items", action="store_true", help="one row per line item")
    parser.add_argument("--bad-rows", type=int, default=0, help="deliberately bad order rows, one kind after another")
    parser.add_argument("--activities", type=int, default=0)
    parser.add_argument("--encoding", default="utf-8", help="utf-8, utf-8-sig, gb18030 or gbk")
    parser.add_argument("--currencies", default="EUR", help="comma-separated; the first is the most common")
    parser.add_argument("--end", default="2026-11-01", help="orders fall in the --days before this date")
    parser.add_argument("--days", type=int, default=730)
    args = parser.parse_args(argv)
    if args.customers < 1 or args.orders < 0 or args.days < 1:
        parser.error("--customers must be positive, --orders not negative, --days positive")
    args.out.mkdir(parents=True, exist_ok=True)
    gen = Generator(args)
    counts = {}
    fh, writer = _open(args.out / "customers.csv", args.encoding)
    with fh:  # type: ignore[attr-defined]
        writer.writerow(CUSTOMER_COLUMNS)
        gen.write_customers(writer)
    counts["customers.csv"] = args.customers
    fh, writer = _open(args.out / "orders.csv", args.encoding)
    with fh:  # type: ignore[attr-defined]
        writer.writerow(ORDER_COLUMNS)
        n = 0
        for n, row in enumerate(gen.order_rows(), 1):  # noqa: B007
            writer.writerow(row)
    counts["orders.csv"] = n
    if args.activities:
        fh, writer = _open(args.out / "activities.csv", args.encoding)
        with fh:  # type: ignore[attr-defined]
            writer.writerow(ACTIVITY_COLUMNS)
            writer.writerows(gen.activity_rows())
        counts["activities.csv"] = args.activities
    for name, rows in counts.items():
        print(f"{args.out / name}: {rows} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
