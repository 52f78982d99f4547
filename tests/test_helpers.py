"""crmsync.helpers: value parsing that names the field, versioned cursors, loop-proof paging, and a watermark that
delivers each version once and stays linear when many records share one timestamp."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from crmsync import FatalAPIError, Member, Stream
from crmsync.helpers import (
    BadValue,
    CursorCodec,
    Paginator,
    SecureUrl,
    Watermark,
    parse_decimal,
    parse_time,
    reject,
)

ZONES = ["UTC", "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Chatham", "Europe/Berlin"]
moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


# ------------------------------------------------------------------ parse_time


@given(moment=moments, zone=st.sampled_from(ZONES), offset_minutes=st.integers(-14 * 60, 14 * 60))
def test_parse_time_keeps_offsets_and_reads_naive_values_in_the_zone(moment, zone, offset_minutes):
    moment = moment.replace(microsecond=0)
    offset = timezone(timedelta(minutes=offset_minutes))
    assert parse_time(moment.astimezone(offset).isoformat(), "f", zone) == moment
    assert parse_time(moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "f", zone) == moment  # "Z" is UTC, never the zone
    assert parse_time(moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "f", zone) == moment
    local = moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    parsed = parse_time(local.isoformat(), "f", zone)
    assert parsed is not None and parsed.tzinfo is not None
    assert parsed.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == local
    assert parse_time(str(int(moment.timestamp() * 1000)), "f", zone, epoch="ms") == moment
    assert parse_time(int(moment.timestamp()), "f", zone, epoch="s") == moment


@pytest.mark.parametrize("text", ["31/02/2024", "yesterday", "2024-13-01T00:00:00", "1700000000000", "12:30"])
def test_parse_time_names_the_field_of_a_value_it_cannot_read(text):
    with pytest.raises(BadValue) as caught:
        parse_time(text, "closedate", "Asia/Kolkata")
    assert caught.value.field == "closedate" and repr(text) in caught.value.reason


def test_parse_time_of_nothing_is_none_and_a_bare_date_is_midnight_in_the_zone():
    assert parse_time(None, "f") is None and parse_time("", "f") is None
    assert parse_time("2024-03-01", "f", "Asia/Kolkata") == datetime(2024, 2, 29, 18, 30, tzinfo=UTC)


# ------------------------------------------------------------------ parse_decimal and reject


@given(number=st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12))
def test_parse_decimal_reads_text_exactly(number):
    assert parse_decimal(str(number), "amount") == number
    assert parse_decimal(f"  {number} ", "amount") == number


@given(value=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_a_float_is_read_from_its_shortest_repr(value):
    assert parse_decimal(value, "amount") == Decimal(repr(value))


@pytest.mark.parametrize("value", ["12,34.5x", "NaN", "Infinity", "-inf", "abc", True])
def test_parse_decimal_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(BadValue) as caught:
        parse_decimal(value, "total", what="an amount")
    assert caught.value.field == "total" and caught.value.reason.startswith("not an amount")


def test_reject_names_the_field_from_each_kind_of_mapping_error():
    raw = {"id": "7", "email": "nope"}
    bad = reject(Stream.ORDERS, "deals 7", BadValue("amount", "not a number: 'x'"), record_id="7", raw=raw)
    assert (bad.field, bad.reason, bad.record_id, dict(bad.raw or {})) == ("amount", "not a number: 'x'", "7", raw)
    with pytest.raises(ValidationError) as caught:
        Member(source="s", external_id="7", email="nope")
    invalid = reject(Stream.MEMBERS, "contacts 7", caught.value, record_id="7")
    assert invalid.field == "email" and "not an email address" in invalid.reason
    missing = reject(Stream.MEMBERS, "contacts ?", KeyError("id"))
    assert (missing.field, missing.reason) == ("id", "missing")
    assert str(missing) == "contacts ? field 'id': missing"


class _Url(BaseModel):
    base_url: SecureUrl


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.hubapi.com/", True),
        ("http://localhost:8080/api", True),
        ("http://127.0.0.1:9000", True),
        ("http://[::1]:9000", True),
        ("http://api.example.com", False),
        ("ftp://api.example.com", False),
        ("api.example.com", False),
    ],
)
def test_secure_url_allows_https_and_loopback_http_only(url, ok):
    if ok:
        assert _Url(base_url=url).base_url == url.rstrip("/")
    else:
        with pytest.raises(ValidationError, match="must use https"):
            _Url(base_url=url)


# ------------------------------------------------------------------ CursorCodec


def _codec() -> CursorCodec[Watermark[datetime]]:
    def old(data):  # version 1 kept only the newest time
        return Watermark(datetime.fromisoformat(data["at"]))

    return CursorCodec("Acme", 2, Watermark.to_json, {1: old, 2: Watermark.from_json}, Watermark)


@given(times=st.lists(moments, max_size=30), overlap=st.integers(0, 3600))
def test_codec_round_trips_a_watermark(times, overlap):
    mark: Watermark[datetime] = Watermark()
    for i, when in enumerate(times):
        mark.note(f"r{i % 7}", when)
    mark.prune(timedelta(seconds=overlap))
    codec = _codec()
    back = codec.loads(codec.dumps(mark))
    assert (back.at, back.checked, back.seen) == (mark.at, mark.checked, mark.seen)
    assert json.loads(codec.dumps(mark))["v"] == 2


def test_codec_reads_older_versions_and_refuses_unknown_ones():
    codec = _codec()
    assert codec.loads(None).at is None and codec.loads("").seen == {}
    assert codec.loads('{"v": 1, "at": "2024-03-01T10:00:00+00:00"}').at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    for text, why in [
        ('{"v": 3}', "unknown cursor version 3 (written by a newer release)"),
        ('{"at": null}', "unknown cursor version None"),
        ("[1, 2]", "not a JSON object"),
        ("2024-03-01T10:00:00Z", "Extra data"),
        ("incremental", "Expecting value"),
        ('{"v": 2, "at": "yesterday"}', "Invalid isoformat"),
    ]:
        with pytest.raises(FatalAPIError) as caught:
            codec.loads(text)
        assert "stored Acme cursor cannot be read" in caught.value.message and why in caught.value.message
        assert "reset the stream's cursor" in caught.value.message
    with pytest.raises(ValueError, match="no reader for the version it writes"):
        CursorCodec("Acme", 3, Watermark.to_json, {1: Watermark.from_json}, Watermark)


# ------------------------------------------------------------------ Paginator


@given(pages=st.integers(1, 40))
def test_paginator_hands_out_every_page_once(pages):
    seen = []
    paginator: Paginator[str] = Paginator("GET /contacts")
    for after in paginator:
        n = 0 if after is None else int(after)
        seen.append(n)
        paginator.advance(str(n + 1) if n + 1 < pages else None, [f"c{n}"])
    assert seen == list(range(pages)) and paginator.pages == pages and paginator.finished


@given(pages=st.integers(2, 30), back=st.integers(0, 29))
def test_paginator_refuses_a_next_position_read_before(pages, back):
    paginator: Paginator[int] = Paginator("GET /contacts", start=0)
    with pytest.raises(FatalAPIError, match="names a next page that was read already"):
        for n in paginator:
            assert n is not None
            nxt = n + 1 if n + 1 < pages else min(back, n)  # the last page points back
            paginator.advance(nxt, [f"c{n}"])


def test_paginator_refuses_a_page_that_repeats_the_one_before():
    paginator: Paginator[str] = Paginator("GET /contacts")
    answers = iter([("a", ["1", "2"]), ("b", ["3", "4"]), ("c", ["3", "4"])])  # the API ignores "after=b"
    with pytest.raises(FatalAPIError, match="page 3 repeats the records of the page before it"):
        for _ in paginator:
            paginator.advance(*next(answers))


def test_a_loop_that_forgets_to_advance_is_stopped():
    paginator: Paginator[str] = Paginator("GET /contacts")
    with pytest.raises(RuntimeError, match="advance"):
        for _ in paginator:
            pass


# ------------------------------------------------------------------ Watermark


def _pull(mark: Watermark[int], rows: dict[str, int], overlap: int, page: int) -> list[str]:
    """Read every row changed since the watermark's window, oldest first, in pages; deliver the new versions."""
    since = mark.since(overlap)
    window = sorted((t, rid) for rid, t in rows.items() if since is None or t >= since)
    out = []
    for start in range(0, len(window), page):
        for t, rid in window[start : start + page]:
            if not mark.delivered(rid, t):
                mark.note(rid, t)
                out.append(rid)
        mark.prune(overlap)
    mark.complete(None, overlap)
    return out


WAITS = [0, 1, 29, 30, 31, 60, 90]
"""Seconds between steps: around the overlap of 30 on purpose."""


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["seed", "mass", "edit", "pull"]), st.integers(0, 60), st.sampled_from(WAITS)),
        min_size=2,
        max_size=14,
    ),
    page=st.sampled_from([1, 3, 50]),
)
@example(steps=[("seed", 2, 0), ("seed", 1, 30), ("pull", 0, 0), ("pull", 0, 0)], page=1)  # a version on the floor
@example(steps=[("seed", 5, 0), ("pull", 0, 0), ("mass", 4, 0), ("pull", 0, 0)], page=2)  # a second update, same time
def test_each_version_is_delivered_exactly_once(steps, page):
    """Seeds and mass updates give many records one time; edits may land inside the overlap of the watermark."""
    overlap, now = 30, 1_000
    rows: dict[str, int] = {}
    mark: Watermark[int] = Watermark()
    delivered: set[tuple[str, int]] = set()
    for op, n, wait in [*steps, ("pull", 0, 0)]:
        now += wait
        if op == "seed":
            rows.update({f"r{len(rows) + i}": now for i in range(n)})
        elif op == "mass" and rows:
            rows.update(dict.fromkeys(list(rows)[: n + 1], now))
        elif op == "edit" and rows:
            rows[list(rows)[n % len(rows)]] = now
        elif op == "pull":
            got = _pull(mark, rows, overlap, page)
            assert len(got) == len(set(got))
            assert {(rid, rows[rid]) for rid in got} == set(rows.items()) - delivered
            delivered |= set(rows.items())


def test_a_mass_update_of_fifty_thousand_stays_linear():
    """50,000 records of one time in pages of 200: the heap never outgrows what is remembered, and the cursors
    handed over at checkpoints sum to a small multiple of the records (doubling sizes), not records x pages."""
    mark: Watermark[int] = Watermark()
    overlap, n, page = 60_000, 50_000, 200
    written = rows_since = checkpoints = 0
    for start in range(0, n, page):
        for i in range(start, start + page):
            mark.note(f"r{i}", 1_700_000_000_000)
        mark.prune(overlap)
        rows_since += page
        assert len(mark._heap) == len(mark.seen)
        if mark.checkpoint_due(rows_since):
            written, rows_since, checkpoints = written + len(mark.seen), 0, checkpoints + 1
    assert len(mark.seen) == n
    assert written <= 3 * n + 2000 * 2000 // page and checkpoints <= 2000 // page + 8


def test_versions_leave_the_window_and_a_settled_read_starts_at_the_watermark():
    mark: Watermark[datetime] = Watermark()
    t0 = datetime(2025, 7, 1, 9, tzinfo=UTC)
    overlap = timedelta(seconds=60)
    order = list(range(1000))
    random.Random(7).shuffle(order)
    for i in order:
        mark.note(f"r{i}", t0 + timedelta(seconds=i))
    mark.prune(overlap)
    newest = t0 + timedelta(seconds=999)
    assert mark.at == newest and set(mark.seen) == {f"r{i}" for i in range(939, 1000)}
    assert mark.since(overlap) == newest - overlap
    mark.complete(newest + timedelta(seconds=600), overlap)
    assert mark.since(overlap) == newest and set(mark.seen) == {"r999"}
    mark.cap(t0)
    assert mark.at == t0
