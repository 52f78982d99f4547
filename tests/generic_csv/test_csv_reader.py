"""Reading members, orders and activities: bad rows, line items, member resolution, dates, statuses."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from crmsync.connector import Stream
from crmsync.errors import ConfigError
from crmsync.models import Activity, Member, Order, OrderStatus
from tests.generic_csv.conftest import ORDER_COLUMNS
from tests.generic_csv.csv_support import pull

ORDERS_HEADER = "order_id,customer_id,customer_email,order_date,status,currency,line_amount,sku"


def orders_connector(make_connector, write_csv, body: str, **extra):
    write_csv("orders.csv", ORDERS_HEADER + "\n" + body)
    return make_connector(orders_path="orders.csv", orders_columns=ORDER_COLUMNS, **extra)


# ---------------------------------------------------------------------------------------------- bad rows
BAD_ORDER_ROWS = [
    ("o1,c1,,31/02/2025,paid,EUR,5,a", "placed_at", "not a date/time"),
    ("o1,c1,,2025-01-02,paid,EUR,12x,a", "amount", "not an amount"),
    (",c1,,2025-01-02,paid,EUR,5,a", "external_id", "missing order id"),
    ("o1,,not-an-email,2025-01-02,paid,EUR,5,a", "member_email", "not an email address"),
    ("o1,c1,,2025-01-02,lost,EUR,5,a", "status", "unknown status 'lost'"),
    ("o1,c1,,2025-01-02,paid,EUR", None, "expected 8 columns, found 6"),
    ("o1,c1,,2025-01-02,paid,EURO,5,a", "currency", "not an ISO 4217 currency code"),
    ("o1,c1,,2025-01-02,paid,EUR,,a", "amount", "missing amount"),
    ("o1,c1,,2025-01-02,paid,EUR,1.00001,a", "amount", "more than 4 decimal places"),
    ("o1,c1,,2025-01-02,paid,EUR,NaN,a", "amount", "not an amount"),
]


@pytest.mark.parametrize(("row", "field", "reason"), BAD_ORDER_ROWS)
def test_bad_order_row_is_rejected_with_locator_field_and_raw(make_connector, write_csv, row, field, reason):
    body = "\n".join(["ok1,c9,,2025-01-01,paid,EUR,3,z", row, "ok2,c9,,2025-01-03,paid,EUR,4,z"])
    connector = orders_connector(make_connector, write_csv, body)
    got = pull(connector, Stream.ORDERS)

    assert sorted(got.by_id()) == ["ok1", "ok2"]  # the run goes on around the bad row
    [rejection] = got.rejects
    assert rejection.locator == "orders.csv:3"
    assert rejection.field == field
    assert reason in rejection.reason
    assert rejection.stream is Stream.ORDERS
    assert rejection.raw is not None and rejection.raw["order_id"] == row.split(",")[0]


def test_rejects_are_appended_to_the_rejects_csv(make_connector, write_csv, tmp_path):
    connector = orders_connector(
        make_connector, write_csv, "o1,c1,,bad,paid,EUR,5,a\no2,c1,,2025-01-02,paid,EUR,=1+2,a", output_path="out/p.csv"
    )
    pull(connector, Stream.ORDERS)
    pull(connector, Stream.ORDERS)  # a second full read appends again

    with (tmp_path / "out" / "p.rejects.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["file"], r["line"], r["field"], r["record_id"]) for r in rows] == [
        ("orders.csv", "2", "placed_at", "o1"),
        ("orders.csv", "3", "amount", "o2"),
    ] * 2
    assert '"order_date": "bad"' in rows[0]["raw"]
    assert rows[1]["reason"].startswith("not an amount")
    assert rows[1]["raw"].startswith("{")  # the raw JSON is kept; a formula inside is not at the cell start


def test_bad_member_rows(make_connector, write_csv):
    write_csv(
        "customers.csv",
        """
        customer_id,email,created_at,opt_in
        c1,a@x.com,2025-01-01,yes
        c2,bad-email,2025-01-01,yes
        ,b@x.com,2025-01-01,no
        c3,c@x.com,yesterday,no
        c4,d@x.com,2025-01-01,maybe
        c1,dup@x.com,2025-01-01,no
        c5,e@x.com
        """,
    )
    connector = make_connector(members_path="customers.csv", members_columns={"external_id": "customer_id"})
    got = pull(connector, Stream.MEMBERS)

    assert list(got.by_id()) == ["c1"]
    assert got.by_id()["c1"].opt_in is True
    assert [(r.locator, r.field, r.record_id) for r in got.rejects] == [
        ("customers.csv:3", "email", "c2"),
        ("customers.csv:4", "external_id", None),
        ("customers.csv:5", "created_at", "c3"),
        ("customers.csv:6", "opt_in", "c4"),
        ("customers.csv:7", "external_id", "c1"),
        ("customers.csv:8", None, "c5"),
    ]
    assert "duplicate customer id" in got.rejects[4].reason


def test_bad_activity_rows(make_connector, write_csv):
    write_csv(
        "activities.csv",
        """
        id,customer_id,kind,occurred_at,points
        a1,c1,review,2025-01-01,50
        a2,,review,2025-01-01,50
        a3,c1,,2025-01-01,50
        a4,c1,login,never,
        a5,c1,login,2025-01-01,lots
        """,
    )
    connector = make_connector(
        activities_path="activities.csv", activities_columns={"external_id": "id", "member_external_id": "customer_id"}
    )
    got = pull(connector, Stream.ACTIVITIES)

    [activity] = got.records
    assert isinstance(activity, Activity) and activity.points == Decimal(50) and activity.kind == "review"
    assert [(r.field, r.record_id) for r in got.rejects] == [
        ("member_external_id", "a2"),
        ("kind", "a3"),
        ("occurred_at", "a4"),
        ("points", "a5"),
    ]


def test_activities_without_id_column_get_stable_ids(make_connector, write_csv):
    write_csv(
        "activities.csv", "customer_id,kind,occurred_at,channel\nc1,login,2025-01-01,web\nc1,login,2025-01-02,app"
    )
    connector = make_connector(
        activities_path="activities.csv", activities_columns={"member_external_id": "customer_id"}
    )
    first, second = pull(connector, Stream.ACTIVITIES), pull(connector, Stream.ACTIVITIES)

    ids = [a.external_id for a in first.records]
    assert len(set(ids)) == 2 and ids == [a.external_id for a in second.records]
    assert first.records[0].attributes == {"channel": "web"}


# ---------------------------------------------------------------------------------------------- line items
def test_line_items_are_grouped_even_when_not_adjacent(make_connector, write_csv):
    body = """
        A,c1,,2025-03-01 10:00,paid,USD,10.50,s1
        B,c2,,2025-03-02 11:00,refunded,EUR,7,s2
        A,,,,,,4.25,s3
        C,,c@x.com,2025-03-03,cancelled,,1,s4
        A,c9,,2030-01-01,pending,GBP,0.25,s5
        B,,,,,,3,s6
    """
    connector = orders_connector(make_connector, write_csv, body)
    orders = pull(connector, Stream.ORDERS).by_id()

    a, b, c = orders["A"], orders["B"], orders["C"]
    assert a.amount == Decimal("15.00")
    # order-level values come from the first row of the order, later rows do not override them
    assert (a.member_external_id, a.currency, a.status) == ("c1", "USD", OrderStatus.PAID)
    assert a.placed_at == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert (b.amount, b.status, b.currency) == (Decimal(10), OrderStatus.REFUNDED, "EUR")
    assert (c.member_email, c.member_external_id, c.currency) == ("c@x.com", None, "EUR")  # default currency


def test_order_level_value_missing_on_first_row_is_taken_from_a_later_row(make_connector, write_csv):
    connector = orders_connector(make_connector, write_csv, "A,,,,,,1,s\nA,c1,,2025-01-01,,,2,s")
    order = pull(connector, Stream.ORDERS).by_id()["A"]
    assert (order.member_external_id, order.amount, order.status) == ("c1", Decimal(3), OrderStatus.PAID)


def test_one_bad_line_item_rejects_the_whole_order(make_connector, write_csv):
    body = "A,c1,,2025-01-01,paid,EUR,1,s\nB,c1,,2025-01-01,paid,EUR,1,s\nA,,,,,,x,s"
    connector = orders_connector(make_connector, write_csv, body)
    got = pull(connector, Stream.ORDERS)
    assert list(got.by_id()) == ["B"]  # never a partial sum
    assert [(r.locator, r.record_id, r.field) for r in got.rejects] == [("orders.csv:4", "A", "amount")]


def test_order_without_date_or_customer_is_rejected(make_connector, write_csv):
    connector = orders_connector(make_connector, write_csv, "A,c1,,,paid,EUR,1,s\nB,,,2025-01-01,paid,EUR,1,s")
    got = pull(connector, Stream.ORDERS)
    assert got.records == []
    assert [(r.record_id, r.field, r.reason) for r in got.rejects] == [
        ("A", "placed_at", "missing order date"),
        ("B", "member_external_id", "no customer id or email"),
    ]


def test_order_total_column_is_used_instead_of_summing_lines(make_connector, write_csv):
    write_csv("orders.csv", "order_id,customer_id,order_date,total,line_amount\nA,c1,2025-01-01,99.90,10\nA,,,,20")
    connector = make_connector(
        orders_path="orders.csv",
        orders_columns={
            "external_id": "order_id",
            "member_external_id": "customer_id",
            "placed_at": "order_date",
            "total": "total",
        },
    )
    assert pull(connector, Stream.ORDERS).by_id()["A"].amount == Decimal("99.90")


def test_amount_formats(make_connector, write_csv):
    write_csv("orders.csv", 'order_id,customer_id,order_date,amount\nA,c1,2025-01-01,"1.234,50 €"\nB,c1,2025-01-01,-5')
    connector = make_connector(
        orders_path="orders.csv",
        orders_columns={"external_id": "order_id", "member_external_id": "customer_id", "placed_at": "order_date"},
        decimal_comma=True,
    )
    orders = pull(connector, Stream.ORDERS).by_id()
    assert (orders["A"].amount, orders["B"].amount) == (Decimal("1234.50"), Decimal(-5))


# ---------------------------------------------------------------------------------------------- members
def test_member_resolution_by_id_and_by_email(make_connector, write_csv):
    body = "A,c1,,2025-01-01,paid,EUR,1,s\nB,, Guest@Shop.COM ,2025-01-01,paid,EUR,1,s"
    connector = orders_connector(make_connector, write_csv, body)
    orders = pull(connector, Stream.ORDERS).by_id()
    assert (orders["A"].member_external_id, orders["A"].member_email) == ("c1", None)
    assert (orders["B"].member_external_id, orders["B"].member_email) == (None, "guest@shop.com")


def test_file_with_only_an_email_column_resolves_by_email(make_connector, write_csv):
    write_csv("orders.csv", "order_id,email,date,amount\nA,x@y.com,2025-01-01,3")
    connector = make_connector(
        orders_path="orders.csv",
        orders_columns={"external_id": "order_id", "member_email": "email", "placed_at": "date"},
    )
    assert pull(connector, Stream.ORDERS).by_id()["A"].member_email == "x@y.com"


def test_members_fields_and_attributes(make_connector, write_csv):
    write_csv("customers.csv", "customer_id,Email,first_name,phone,city,vip\nc1, A@X.com ,Ann,+49 1,Berlin,\n")
    connector = make_connector(members_path="customers.csv", members_columns={"external_id": "customer_id"})
    member = pull(connector, Stream.MEMBERS).records[0]
    assert isinstance(member, Member)
    assert (member.email, member.first_name, member.phone) == ("a@x.com", "Ann", "+49 1")  # header case ignored
    assert member.attributes == {"city": "Berlin"}  # empty cells are left out


def test_missing_required_column_is_a_config_error_naming_file_and_column(make_connector, write_csv):
    write_csv("orders.csv", "order_id,customer_id,line_amount\nA,c1,1")
    connector = make_connector(orders_path="orders.csv", orders_columns=ORDER_COLUMNS)
    with pytest.raises(ConfigError) as info:
        pull(connector, Stream.ORDERS)
    message = str(info.value)
    assert "orders.csv" in message and "'order_date'" in message and "placed_at" in message
    assert "'customer_email'" in message  # explicitly mapped columns must exist too


# ---------------------------------------------------------------------------------------------- dates, statuses
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-01 12:00", datetime(2025, 6, 1, 4, tzinfo=UTC)),  # naive: read in Asia/Shanghai (+8)
        ("2025-06-01", datetime(2025, 5, 31, 16, tzinfo=UTC)),
        ("2025-06-01T12:00:00Z", datetime(2025, 6, 1, 12, tzinfo=UTC)),  # an explicit offset wins
        ("2025-06-01T12:00:00+02:00", datetime(2025, 6, 1, 10, tzinfo=UTC)),
        ("01/06/2025 12:00", datetime(2025, 6, 1, 4, tzinfo=UTC)),
        ("2025年06月01日", datetime(2025, 5, 31, 16, tzinfo=UTC)),
    ],
)
def test_date_formats_and_naive_datetimes_in_the_configured_zone(make_connector, write_csv, text, expected):
    connector = orders_connector(
        make_connector,
        write_csv,
        f'A,c1,,"{text}",paid,EUR,1,s',
        timezone="Asia/Shanghai",
        date_formats=["%d/%m/%Y %H:%M", "%Y年%m月%d日"],
    )
    order = pull(connector, Stream.ORDERS).by_id()["A"]
    assert order.placed_at == expected
    assert order.placed_at.tzinfo is UTC


def test_naive_datetime_respects_daylight_saving(make_connector, write_csv):
    connector = orders_connector(
        make_connector,
        write_csv,
        "W,c1,,2025-01-15 12:00,paid,EUR,1,s\nS,c1,,2025-07-15 12:00,paid,EUR,1,s",
        timezone="Europe/Berlin",
    )
    orders = pull(connector, Stream.ORDERS).by_id()
    assert orders["W"].placed_at.hour == 11 and orders["S"].placed_at.hour == 10


def test_status_mapping_defaults_and_configured(make_connector, write_csv):
    body = "\n".join(
        f"{oid},c1,,2025-01-01,{status},EUR,1,s"
        for oid, status in [("A", "Completed"), ("B", "已退款"), ("C", "VOID-X"), ("D", "canceled"), ("E", "awaiting")]
    )
    connector = orders_connector(
        make_connector, write_csv, body, status_map={"void-x": "cancelled", "Awaiting": "pending"}
    )
    statuses = {oid: o.status for oid, o in pull(connector, Stream.ORDERS).by_id().items()}
    assert statuses == {
        "A": OrderStatus.PAID,
        "B": OrderStatus.REFUNDED,
        "C": OrderStatus.CANCELLED,
        "D": OrderStatus.CANCELLED,
        "E": OrderStatus.PENDING,
    }


# ---------------------------------------------------------------------------------------------- model validity
def test_records_built_without_pydantic_are_valid_models(make_connector, write_csv):
    write_csv("customers.csv", "external_id,email,created_at,opt_in,city\nc1,A@x.com,2025-01-01 10:00,1,Rome")
    header = "external_id,member_external_id,placed_at,amount,currency,exchange_rate,updated_at"
    write_csv("orders.csv", header + "\nA,c1,2025-01-01,1.5,usd,0.9,2025-01-02")
    write_csv("activities.csv", "member_email,kind,occurred_at,points\nA@x.com,review,2025-01-01,5")
    connector = make_connector(
        members_path="customers.csv", orders_path="orders.csv", activities_path="activities.csv", timezone="Europe/Rome"
    )
    for stream, model in ((Stream.MEMBERS, Member), (Stream.ORDERS, Order), (Stream.ACTIVITIES, Activity)):
        got = pull(connector, stream)
        assert got.rejects == [] and len(got.records) == 1
        record = got.records[0]
        # the locator says where the record is; it is not part of the record's data (not dumped)
        assert model.model_validate({**record.model_dump(), "locator": record.locator}) == record
        if stream is Stream.ORDERS:
            assert record.locator == "orders.csv:2"


# ---------------------------------------------------------------------------------------------- large files
MIXED_ORDERS = """
    A,c1,,2025-03-01,paid,EUR,1.25,s
    X,c2,,2025-03-01,paid,EUR
    B,c2,,2025-03-02,paid,EUR,2,s
    X,c2,,2025-03-01,paid,EUR,5,s
    ,c3,,2025-03-02,paid,EUR,1,s
    A,,,,,,2.75,s
    C,,c@x.com,2025-03-03,refunded,USD,9,s
    B,,,,,,x,s
    D,c4,,2025-03-04,paid,EUR,4,s
    D,,,,,,1,s
"""


def summary(got):
    orders = sorted((o.external_id, o.amount, o.member_external_id, o.member_email, o.currency) for o in got.records)
    rejects = sorted((r.locator, r.field, r.record_id) for r in got.rejects)
    return orders, rejects


def test_a_bad_row_before_the_good_rows_of_its_order_still_rejects_the_order(make_connector, write_csv):
    got = pull(orders_connector(make_connector, write_csv, MIXED_ORDERS), Stream.ORDERS)
    orders, rejects = summary(got)
    assert [o[0] for o in orders] == ["A", "C", "D"]  # X: its first row is short; B: a bad later line
    # line 2 is blank: it is skipped but still counted, so locators match what an editor shows
    assert set(rejects) == {
        ("orders.csv:4", None, "X"),
        ("orders.csv:7", "external_id", None),
        ("orders.csv:10", "amount", "B"),
    }


@pytest.mark.parametrize("partition_bytes", [40, 200, 10**9])
def test_large_files_are_grouped_in_partitions_with_the_same_result(
    make_connector, write_csv, tmp_path, partition_bytes
):
    direct = summary(pull(orders_connector(make_connector, write_csv, MIXED_ORDERS), Stream.ORDERS))
    spill = tmp_path / "spill"
    spill.mkdir()
    connector = orders_connector(
        make_connector, write_csv, MIXED_ORDERS, group_partition_bytes=partition_bytes, spill_dir="spill"
    )
    got = pull(connector, Stream.ORDERS)

    assert summary(got) == direct
    assert [o.amount for o in sorted(got.records, key=lambda o: o.external_id)] == [4, 9, 5]
    assert list(spill.iterdir()) == []  # partition files are removed


def test_records_are_built_by_the_fast_constructor():
    from crmsync_generic_csv.build import builder

    for model in (Member, Order, Activity):
        assert builder(model) != model.model_construct  # the checked fast path is in use
