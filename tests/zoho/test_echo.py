"""The connector's own writes come back in the next pull (they move ``Modified_Time``): they are read, recognised
by value and not delivered again, while every change by someone else is."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync.connector import ConnectorContext, ProfileChange, Stream

from .conftest import make_settings
from .fake import FakeZoho

VALUES = {"tier": "Gold", "points": 10, "tags": ["loyal"], "rfm_segment": "Champions", "lifecycle": "new"}


def pull(connector, cursor):
    got = []
    for batch in connector.pull(Stream.MEMBERS, cursor):
        got += batch.records
        cursor = batch.cursor or cursor
    return got, cursor


def write_back(fake: FakeZoho, connector, ids) -> None:
    fake.tick(5)  # the write comes a few seconds after the read
    results = connector.push_many([ProfileChange(i, VALUES, {}, frozenset(VALUES)) for i in ids])
    assert all(r.ok for r in results)


def test_own_writes_are_read_back_once_and_not_delivered(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(300)
    connector = connect()
    _, cursor = pull(connector, None)
    write_back(fake, connector, ids)
    assert len({fake.contact(i)["Modified_Time"] for i in ids}) == 1  # the write-back stamped one second
    fake.tick(1800)
    context.api_calls.clear()
    got, cursor = pull(connector, cursor)
    assert got == []
    assert context.api_calls == {"read Contacts": 2, "deleted Contacts": 1}  # the 300 written, read once
    fake.tick(1800)
    context.api_calls.clear()
    got, cursor = pull(connector, cursor)
    assert got == [] and context.api_calls == {"read Contacts": 1, "deleted Contacts": 1}
    assert fake.answers_to("read Contacts")[-1] == 304


def test_an_edit_hidden_behind_the_write_is_delivered(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(5)
    connector = connect()
    _, cursor = pull(connector, None)
    fake.modify("Contacts", ids[2], Email="after.read@example.com")  # between crmsync's read and its write
    write_back(fake, connector, ids)
    assert fake.contact(ids[2])["Modified_By"]["name"] == "Sync User"  # the write now names crmsync's user
    got, _ = pull(connector, cursor)
    assert [(m.external_id, m.email) for m in got] == [(ids[2], "after.read@example.com")]


def test_any_change_by_someone_else_is_delivered(fake: FakeZoho, connect) -> None:
    ids = fake.seed_contacts(4)
    connector = connect()
    _, cursor = pull(connector, None)
    write_back(fake, connector, ids)
    fake.modify("Contacts", ids[0], Description="called back")  # a field crmsync does not read
    fake.mass_update("Contacts", ids[1:3], Lead_Source="Fair")
    got, _ = pull(connector, cursor)
    assert sorted(m.external_id for m in got) == sorted(ids[:3])


def test_without_its_own_user_nothing_counts_as_an_echo(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(3)
    connector = connect()
    _, cursor = pull(connector, None)
    write_back(fake, connector, ids)
    context.state.set("zoho:crm:user", None)  # no write answer named the user (yet)
    got, _ = pull(connector, cursor)
    assert sorted(m.external_id for m in got) == sorted(ids)


def test_a_deleted_and_restored_contact_is_delivered_again(fake: FakeZoho, connect, context) -> None:
    ids = fake.seed_contacts(3)
    connector = connect()
    _, cursor = pull(connector, None)
    record = dict(fake.contact(ids[1]))
    fake.delete("Contacts", ids[1])
    _, cursor = pull(connector, cursor)
    assert ids[1] not in context.state.get("zoho:crm:fingerprints:Contacts")
    fake.records["Contacts"][ids[1]] = record  # restored from the recycle bin by an API write
    fake.stamp("Contacts", [ids[1]], {"name": "Sync User", "id": "4876876000000225013"})
    got, _ = pull(connector, cursor)
    assert [m.external_id for m in got] == [ids[1]]


attributes = st.fixed_dictionaries(
    {
        "Birthday": st.dates(date(1940, 1, 1), date(2010, 1, 1)).map(date.isoformat),
        "Region": st.text("abcXYZ ", min_size=0, max_size=6),
        "Score": st.decimals(-1000, 1000, places=2, allow_nan=False),
        "VIP": st.booleans(),
        "Interests": st.lists(st.sampled_from(["golf", "wine", "art"]), unique=True),
        "Account_Name": st.sampled_from([None, {"name": "Zylker", "id": "4876876000000555001"}]),
    }
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=attributes)
def test_a_first_export_and_a_rest_read_back_agree_on_unchanged_contacts(extra) -> None:
    """Fingerprints of the Bulk Read CSV and the REST JSON of one unchanged contact are equal, whatever its
    extra attributes hold (numbers, booleans, multi-selects, lookups, empty text)."""
    from crmsync_zoho.connector import ZohoConnector

    fake = FakeZoho()
    extra = {k: (Decimal(v) if k == "Score" else v) for k, v in extra.items()}
    ids = [fake.add("Contacts", Email=f"a{i}@example.com", Last_Name="A", **extra) for i in range(3)]
    context = ConnectorContext(name="crm")
    settings_ = make_settings(bulk_threshold=2, member_attributes=list(extra))
    connector = ZohoConnector(settings_, context, transport=fake.transport, sleep=fake.sleep)
    first, cursor = pull(connector, None)  # a first pull exports (CSV)
    assert len(first) == 3 and fake.calls("bulk_read create") == 1
    write_back(fake, connector, ids[:1])
    got, _ = pull(connector, cursor)  # one written: read back on REST (JSON)
    assert got == [] and fake.calls("read Contacts") == 1
