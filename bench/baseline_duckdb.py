"""The same grades as ``baseline_pandas.py``, written by a strong engineer as one DuckDB SQL script.

The script (:data:`SCRIPT`) reads the CSV exports with ``read_csv`` and explicit column types (every column
``VARCHAR``, nothing sniffed), groups line items into orders, drops bad orders, matches orders to members by id and
then by email, grades every member and writes the profiles with ``COPY``. It implements the benchmark policy
(``bench/policy.toml``) and the pandas script's rules: a row with a bad date, amount, status, email, id, column
count or undecodable bytes drops its whole order; order-level values come from the first row of the order that has
them; money is summed in integer cents. DuckDB itself sets aside rows with the wrong number of cells or bytes that
are not UTF-8 (``store_rejects``); the script reads the order id of each from the rejected line and drops that
order. This module only fills in the file names and the evaluation time and runs the script.

    python bench/baseline_duckdb.py --data DIR --as-of 2026-11-01T00:00:00+00:00 --out profiles.csv
"""

from __future__ import annotations

import csv
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import rules
from rules import ACTIVITY_POINTS, EMAIL, ORDER_LEVEL, SEGMENT_OF, SILVER, STATUSES, TIERS, arguments

SCRIPT = r"""
SET TimeZone = 'UTC';
SET enable_progress_bar = false;
SET VARIABLE as_of = {as_of}::TIMESTAMPTZ;
-- DuckDB checks a cell for UTF-8 only where a query reads it: every cell of every file is read (customers and
-- activities are kept whole; the order query counts the cells it does not otherwise use), so a row with
-- undecodable bytes in any cell is set aside (store_rejects) like a row with the wrong number of cells.
CREATE TEMP TABLE customer_rows AS SELECT *, row_number() OVER () AS n FROM {members_csv};
CREATE TEMP TABLE activity_rows AS SELECT * FROM {activities_csv};

CREATE TEMP TABLE members AS   -- the first row of a duplicated id
SELECT member_id, coalesce(email, '') AS email
FROM (SELECT trim(customer_id, {ws}) AS member_id, lower(trim(email, {ws})) AS email, n FROM customer_rows)
WHERE member_id <> '' AND (email IS NULL OR email = '' OR regexp_matches(email, {email_re}))
QUALIFY row_number() OVER (PARTITION BY member_id ORDER BY n) = 1;

CREATE TEMP TABLE activities AS
SELECT customer_id AS member_id, kind, try_cast(occurred_at AS TIMESTAMPTZ) AS occurred_at FROM activity_rows;

-- one row per order and export file: the first non-empty order-level values, the amount, whether a row is bad
CREATE TEMP TABLE file_orders AS
{file_orders};

-- orders of rows DuckDB set aside (wrong number of cells, undecodable bytes): the order id read from the line
CREATE TEMP TABLE rejected AS
SELECT DISTINCT s.file_path, trim(regexp_extract(e.csv_line, {id_re}, 1), '"') AS order_id
FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id);

CREATE TEMP TABLE orders AS
WITH checked AS (
    SELECT f.*, try_cast(order_date AS TIMESTAMPTZ) AS placed_at, lower(customer_email) AS email,
        CASE lower(coalesce(status, {paid})) {status_case} END AS state
    FROM file_orders f
    WHERE NOT bad AND NOT EXISTS (SELECT 1 FROM rejected r WHERE r.file_path = f.file_path AND r.order_id = f.order_id)
),
good AS (
    SELECT * FROM checked
    WHERE placed_at IS NOT NULL AND state IS NOT NULL AND amount IS NOT NULL
        AND (email IS NULL OR regexp_matches(email, {email_re}))
        AND (customer_id IS NOT NULL OR email IS NOT NULL)
        AND upper(coalesce(currency, {currency})) = {currency}
),
by_email AS (SELECT email, min(member_id) AS member_id FROM members WHERE email <> '' GROUP BY email)
SELECT g.order_id, coalesce(m.member_id, e.member_id) AS member_id, g.placed_at, g.state,
    CAST(g.amount * 100 AS BIGINT) AS cents
FROM good g
LEFT JOIN members m ON m.member_id = g.customer_id
LEFT JOIN by_email e ON e.email = g.email
WHERE coalesce(m.member_id, e.member_id) IS NOT NULL
{latest};

CREATE TEMP TABLE figures AS
WITH paid AS (
    SELECT *, placed_at > getvariable('as_of') - INTERVAL {window_days} DAY AS recent
    FROM orders WHERE state = {paid} AND placed_at <= getvariable('as_of')
),
per_member AS (
    SELECT member_id, sum(cents) AS spend, count(*) AS orders, min(placed_at) AS first, max(placed_at) AS last,
        coalesce(sum(cents) FILTER (WHERE recent), 0) AS spend_365, count(*) FILTER (WHERE recent) AS orders_365,
        sum(sign(cents) * (abs(cents) // 100)) AS order_points   -- floor per order, towards zero
    FROM paid GROUP BY member_id
),
activity_points AS (
    SELECT member_id, sum(CASE kind {activity_case} ELSE 0 END) AS points
    FROM activities
    WHERE occurred_at <= getvariable('as_of') AND member_id IN (SELECT member_id FROM members)
    GROUP BY member_id
)
SELECT m.member_id, coalesce(p.spend, 0) AS spend, coalesce(p.orders, 0) AS orders,
    coalesce(p.spend_365, 0) AS spend_365, coalesce(p.orders_365, 0) AS orders_365,
    (epoch_us(getvariable('as_of')) - epoch_us(p.last)) // 86400000000 AS since_last,
    (epoch_us(getvariable('as_of')) - epoch_us(p.first)) // 86400000000 AS since_first,
    CAST(coalesce(p.order_points, 0) + coalesce(a.points, 0) AS BIGINT) AS points
FROM members m
LEFT JOIN per_member p USING (member_id)
LEFT JOIN activity_points a USING (member_id);

-- RFM among members with a paid order: 1 + floor(5 * strictly_worse / n)
CREATE TEMP TABLE rfm AS
WITH buyers AS (SELECT * FROM figures WHERE orders > 0),
ranked AS (
    SELECT member_id,
        1 + 5 * (rank() OVER (ORDER BY since_last DESC) - 1) // count(*) OVER () AS r,
        1 + 5 * (rank() OVER (ORDER BY orders) - 1) // count(*) OVER () AS f,
        1 + 5 * (rank() OVER (ORDER BY spend) - 1) // count(*) OVER () AS m
    FROM buyers
)
SELECT member_id, CASE 10 * r + (f + m + 1) // 2 {segment_case} END AS rfm_segment FROM ranked;

COPY (
    WITH graded AS (
        SELECT f.*, r.rfm_segment,
            CASE {tier_case} END AS tier,
            CASE
                WHEN orders = 0 THEN 'potential'
                WHEN since_last >= {churned} THEN 'churned'
                WHEN since_last >= {dormant} THEN 'dormant'
                WHEN orders >= {loyal_orders} AND since_first >= {loyal_days} THEN 'loyal'
                WHEN orders >= {mature} THEN 'mature'
                WHEN orders >= {returning} THEN 'returning'
                ELSE 'new'
            END AS lifecycle
        FROM figures f LEFT JOIN rfm r USING (member_id)
    )
    SELECT member_id, tier, points,
        concat_ws('|',
            CASE WHEN tier IN {vip_tiers} AND since_last > {vip_quiet} THEN 'at_risk_vip' END,
            CASE WHEN spend >= {big_spender} THEN 'big_spender' END) AS tags,
        rfm_segment, lifecycle
    FROM graded
    ORDER BY member_id
) TO {out} (HEADER, DELIMITER ',');
"""

FILE_ORDERS = """SELECT {path} AS file_path, {file_no} AS file_no, order_id,
    {firsts},
    sum(try_cast(line_amount AS DECIMAL(18, 2))) AS amount,
    bool_or(NOT coalesce(regexp_matches(line_amount, {amount_re}), false)) AS bad{cells}
FROM (SELECT *, row_number() OVER () AS n FROM {csv})
WHERE order_id IS NOT NULL
GROUP BY order_id"""
WS = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"
"""The whitespace ``trim`` removes around ids and emails, as SQL."""


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        return next(csv.reader(fh))


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_csv(path: Path) -> str:
    """``read_csv`` of ``path`` with its header's columns, all ``VARCHAR``; bad rows are set aside, not fatal."""
    columns = "{" + ", ".join(f"{lit(c)}: 'VARCHAR'" for c in header(path)) + "}"
    return (
        f"read_csv({lit(str(path))}, header = true, auto_detect = false, columns = {columns}, delim = ',', "
        "quote = '\"', escape = '\"', strict_mode = true, null_padding = false, store_rejects = true)"
    )


def id_pattern(path: Path, column: str) -> str:
    """A regular expression whose first group is the cell of ``column`` in a raw CSV line of ``path``."""
    k = header(path).index(column)
    cell = r'("(?:[^"]|"")*"|[^,]*)'
    return "^" + (r'(?:"(?:[^"]|"")*"|[^,]*),' * k) + cell


def unused(path: Path) -> str:
    """SQL aggregates that read the columns of an orders file the script has no use for (so DuckDB checks them)."""
    used = {"order_id", "line_amount", *ORDER_LEVEL}
    return "".join(f",\n    count({ident(c)}) AS {ident(c + ' cells')}" for c in header(path) if c not in used)


def script(data: Path, as_of: datetime, out: Path) -> str:
    """The SQL script for the exports in ``data``: profiles as of ``as_of`` written to ``out``."""
    orders = sorted(data.glob("orders*.csv"))
    firsts = ",\n    ".join(f"arg_min({c}, n) FILTER (WHERE {c} IS NOT NULL) AS {c}" for c in ORDER_LEVEL)
    file_orders = "\nUNION ALL\n".join(
        FILE_ORDERS.format(
            path=lit(str(p)), file_no=i, firsts=firsts, amount_re=lit(rules.AMOUNT), cells=unused(p), csv=read_csv(p)
        )
        for i, p in enumerate(orders)
    )
    activities = data / "activities.csv"
    acts = (
        read_csv(activities)
        if activities.exists()
        else "(SELECT NULL AS customer_id, NULL AS kind, NULL AS occurred_at WHERE false)"
    )
    return SCRIPT.format(
        as_of=lit(as_of.isoformat()),
        ws=WS,
        email_re=lit(EMAIL),
        members_csv=read_csv(data / "customers.csv"),
        file_orders=file_orders,
        activities_csv=acts,
        id_re=lit(id_pattern(orders[0], "order_id")) if orders else "''",
        latest="QUALIFY g.file_no = max(g.file_no) OVER (PARTITION BY g.order_id)" if len(orders) > 1 else "",
        out=lit(str(out)),
        **policy(),
    )


def policy() -> dict[str, str]:
    """The benchmark policy's values (``rules``) as SQL, by the name the script uses."""
    tiers = [f"WHEN spend_365 >= {spend} AND orders_365 >= {count} THEN {lit(name)}" for name, spend, count in TIERS]
    tiers.append(f"WHEN spend_365 >= {SILVER[1]} OR orders >= {SILVER[2]} THEN {lit(SILVER[0])}")
    return {
        "paid": lit(rules.PAID),
        "currency": lit(rules.CURRENCY),
        "window_days": str(rules.WINDOW_DAYS),
        "status_case": " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in STATUSES.items()),
        "activity_case": " ".join(f"WHEN {lit(k)} THEN {v}" for k, v in ACTIVITY_POINTS.items()),
        "segment_case": " ".join(f"WHEN {key} THEN {lit(name)}" for key, name in SEGMENT_OF.items()),
        "tier_case": " ".join(tiers) + f" ELSE {lit(rules.LOWEST)}",
        "churned": str(rules.CHURNED_DAYS),
        "dormant": str(rules.DORMANT_DAYS),
        "loyal_orders": str(rules.LOYAL[0]),
        "loyal_days": str(rules.LOYAL[1]),
        "mature": str(rules.MATURE),
        "returning": str(rules.RETURNING),
        "vip_tiers": "(" + ", ".join(map(lit, rules.VIP_TIERS)) + ")",
        "vip_quiet": str(rules.VIP_QUIET_DAYS),
        "big_spender": str(rules.BIG_SPENDER),
    }


def main(argv: list[str] | None = None) -> int:
    data, as_of, out = arguments(__doc__ or "", argv)
    with duckdb.connect() as con:
        con.execute(script(data, as_of, out))
    print(f"{out}: written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
