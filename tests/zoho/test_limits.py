"""API limits: exhausted daily credits stop at once with Zoho's reason and when credits come back; a concurrency
429 is retried (``Retry-After`` honoured when sent); 429s are logged without secrets."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from crmsync.connector import ProfileChange, Stream
from crmsync.errors import RetryableError
from crmsync.plugins import PluginHost
from tests.support import run_sync

from .fake import CREDITS_MESSAGE, FakeZoho

VALUES = {"tier": "Gold", "points": 1, "tags": [], "rfm_segment": None, "lifecycle": None}


def credits_answers(fake: FakeZoho) -> list[tuple[str, httpx.Response, str | None]]:
    """Ways Zoho may say "credits exhausted" (its wording and headers are not documented): (case, answer, renewal)."""
    body = {"code": "TOO_MANY_REQUESTS", "details": {}, "message": "Too many requests", "status": "error"}
    return [
        ("message names credits", fake.too_many("credits"), "24-hour"),
        ("message and Retry-After", fake.too_many("credits", retry_after=5400), "come back at"),
        ("header says none left", httpx.Response(429, json=body, headers={"X-API-CREDITS-REMAINING": "0"}), "24-hour"),
        ("details.retry_after", httpx.Response(429, json={**body, "message": "API credits exhausted",
                                                          "details": {"retry_after": 3600}}), "come back at"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(4))
def test_exhausted_credits_stop_at_once_with_zoho_reason(fake: FakeZoho, connect, case: int, caplog) -> None:
    name, answer, renewal = credits_answers(fake)[case]
    (cid,) = fake.seed_contacts(1)
    fake.fail_next("update Contacts", answer)
    with caplog.at_level("INFO", logger="crmsync.connector"), pytest.raises(RetryableError) as info:
        connect().push([ProfileChange(cid, VALUES, {}, frozenset({"tier"}))])
    text = str(info.value)
    assert "daily API credits are exhausted" in text and renewal in text, name
    message = answer.json()["message"]
    assert message in text  # Zoho's own words
    assert "gave up after" not in text and fake.calls("update Contacts") == 1 and fake.sleeps == []
    assert info.value.retry_after and info.value.retry_after > 0
    assert "PUT www.zohoapis.com/crm/v8/Contacts" in text and "Zoho-oauthtoken" not in caplog.text
    assert "credits are exhausted" in caplog.text


def test_a_429_right_after_the_last_credits_is_exhaustion(fake: FakeZoho, connect) -> None:
    """The last answers said few credits remained; a 429 then, even with a bare message, is exhaustion."""
    fake.seed_contacts(450)
    fake.credits_limit = 4  # three pages, then the rerun's read takes the last credit
    fake.credits_answer = lambda: httpx.Response(429, json={"code": "TOO_MANY_REQUESTS", "details": {},
                                                            "message": "...", "status": "error"})  # fmt: skip
    connector = connect()
    cursor = [b.cursor for b in connector.pull(Stream.MEMBERS, None) if b.cursor][-1]
    assert connector.client.limits.remaining == 1  # X-API-CREDITS-REMAINING, sent from half the credits on
    with pytest.raises(RetryableError, match="credits are exhausted"):
        list(connector.pull(Stream.MEMBERS, cursor))
    assert fake.answers_to("read Contacts") == [200, 200, 200, 200]
    assert fake.answers_to("deleted Contacts") == [429] and fake.sleeps == []


@pytest.mark.parametrize("retry_after", [None, 7])
def test_concurrency_429_is_retried(fake: FakeZoho, connect, retry_after: int | None, caplog) -> None:
    (cid,) = fake.seed_contacts(1)
    fake.fail_next("update Contacts", fake.too_many("concurrency", retry_after=retry_after),
                   fake.too_many("concurrency", retry_after=retry_after))  # fmt: skip
    with caplog.at_level("INFO", logger="crmsync.connector"):
        (result,) = connect().push([ProfileChange(cid, VALUES, {}, frozenset({"tier"}))])
    assert result.ok and fake.contact(cid)["Loyalty_Tier"] == "Gold"
    assert fake.answers_to("update Contacts") == [429, 429, 200]
    if retry_after is not None:
        assert fake.sleeps == [7.0, 7.0]
    else:
        assert len(fake.sleeps) == 2 and all(0 < s < 10 for s in fake.sleeps)  # exponential backoff with jitter
    assert caplog.text.count("429 (concurrency)") == 2 and "retried" in caplog.text


def test_concurrency_429s_beyond_max_retries_give_up(fake: FakeZoho, connect) -> None:
    (cid,) = fake.seed_contacts(1)
    fake.fail_next("update Contacts", *[fake.too_many("concurrency") for _ in range(4)])
    with pytest.raises(RetryableError, match="HTTP 429"):
        connect(max_retries=2).push([ProfileChange(cid, VALUES, {}, frozenset({"tier"}))])
    assert fake.calls("update Contacts") == 3


def test_a_sync_stops_at_once_when_credits_run_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the engine and its default client (no transport injected): the run fails with Zoho's reason."""
    from .fake import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN

    fake = FakeZoho()
    fake.seed_contacts(500)
    fake.credits_limit = 3
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__REFRESH_TOKEN", REFRESH_TOKEN)
    path = tmp_path / "crmsync.toml"
    path.write_text(
        textwrap.dedent(f"""
        [store]
        path = "store.duckdb"
        [sync]
        members = "crm"
        push = ["crm"]
        [connectors.crm]
        plugin = "zoho"
        client_id = "{CLIENT_ID}"
        bulk_read = false
        [[policy.tiers]]
        name = "Bronze"
        """)
    )
    host = PluginHost()
    host.load_entrypoints()
    with fake.router:
        report = run_sync(path, host, fake.now + timedelta(days=1)).report
    assert report.status == "failed" and report.exit_code == 3
    message = report.error.message if report.error else ""
    assert CREDITS_MESSAGE in message and re.search(r"by \d{4}-\d\d-\d\dT\d\d:\d\d", message)
    assert fake.answers_to("read Contacts") == [200, 200, 200]
    refused = fake.answers_to("update Contacts")  # no retry: at most the calls already in flight at once
    assert refused and set(refused) == {429} and len(refused) <= 5
