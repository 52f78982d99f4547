"""Zoho OAuth: data-centre hosts, api_domain, cached token, INVALID_TOKEN refresh, refused credentials."""

from __future__ import annotations

import logging

import httpx
import pytest
from crmsync_zoho.client import classify
from crmsync_zoho.connector import ZohoConnector
from crmsync_zoho.settings import DataCentre, dc_urls
from pydantic import ValidationError

from crmsync.connector import ConnectorContext, Stream
from crmsync.errors import AuthError, ConfigError, ExitCode

from .conftest import make_settings
from .fake import REFRESH_TOKEN, FakeZoho

EXPECTED = {
    DataCentre.US: ("accounts.zoho.com", "www.zohoapis.com", "content.zohoapis.com"),
    DataCentre.EU: ("accounts.zoho.eu", "www.zohoapis.eu", "content.zohoapis.eu"),
    DataCentre.IN: ("accounts.zoho.in", "www.zohoapis.in", "content.zohoapis.in"),
    DataCentre.AU: ("accounts.zoho.com.au", "www.zohoapis.com.au", "content.zohoapis.com.au"),
    DataCentre.JP: ("accounts.zoho.jp", "www.zohoapis.jp", "content.zohoapis.jp"),
    DataCentre.CN: ("accounts.zoho.com.cn", "www.zohoapis.com.cn", "content.zohoapis.com.cn"),
    DataCentre.CA: ("accounts.zohocloud.ca", "www.zohoapis.ca", "upload.zohocloud.ca"),
    DataCentre.SA: ("accounts.zoho.sa", "www.zohoapis.sa", "files.zoho.sa"),
}


@pytest.mark.parametrize("dc", list(DataCentre))
def test_every_data_centre_talks_to_its_own_hosts(dc: DataCentre) -> None:
    assert tuple(httpx.URL(u).host for u in dc_urls(dc)) == EXPECTED[dc]
    fake = FakeZoho(dc)
    fake.seed_contacts(1)
    context = ConnectorContext(name="crm")
    connector = ZohoConnector(make_settings(data_centre=dc.value), context, transport=fake.transport)
    records = [r for b in connector.pull(Stream.MEMBERS, None) for r in b.records]
    assert len(records) == 1
    hosts = [r.url.host for r in fake.requests]
    assert hosts == [EXPECTED[dc][0], EXPECTED[dc][1]]
    assert fake.requests[1].headers["Authorization"].startswith("Zoho-oauthtoken 1000.")


def test_sandbox_environment_and_aliases() -> None:
    assert dc_urls(DataCentre.EU, "sandbox")[1] == "https://sandbox.zohoapis.eu"
    assert make_settings(data_centre="us").data_centre is DataCentre.US
    assert make_settings(data_centre="au").data_centre is DataCentre.AU


API_DOMAINS = [
    # (settings, api_domain in the token answer, API base URL used or None for "refused")
    ({}, "https://www.zohoapis.com", "https://www.zohoapis.com"),
    ({"data_centre": "eu", "environment": "sandbox"}, "https://www.zohoapis.eu", "https://sandbox.zohoapis.eu"),
    ({"data_centre": "eu"}, "https://developer.zohoapis.eu", "https://www.zohoapis.eu"),
    ({"data_centre": "ca"}, "https://www.zohoapis.ca", "https://www.zohoapis.ca"),
    ({"data_centre": "sa"}, "https://www.zohoapis.sa", "https://www.zohoapis.sa"),
    ({"data_centre": "au"}, "https://www.zohoapis.com.au", "https://www.zohoapis.com.au"),
    ({"data_centre": "au"}, "https://www.zohoapis.com", None),  # another data centre
    ({}, "https://www.zohoapis.eu", None),
    ({}, "https://www.zohoapis.com.cn", None),
    ({}, "https://evil.example.com", None),
    ({}, "http://www.zohoapis.com", None),  # not HTTPS
    ({}, "https://www.zohoapis.com.evil.example", None),
    ({"accounts_url": "http://127.0.0.1:9001"}, "http://127.0.0.1:9002", "http://127.0.0.1:9002"),
    ({"accounts_url": "http://localhost:9001"}, "http://[::1]:9002", "http://[::1]:9002"),
    ({"accounts_url": "http://127.0.0.1:9001"}, "https://www.zohoapis.com", None),  # a fake must not leak out
    ({"accounts_url": "https://zoho-proxy.example.com", "data_centre": "eu"}, "https://www.zohoapis.eu",
     "https://www.zohoapis.eu"),
    ({"accounts_url": "https://zoho-proxy.example.com", "data_centre": "eu"}, "https://www.zohoapis.com", None),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "api_domain", "used"), API_DOMAINS)
def test_api_domain_must_belong_with_the_accounts_server(overrides, api_domain, used, context) -> None:
    settings = make_settings(**overrides)
    accounts = settings.urls[0]
    fake = FakeZoho(accounts=accounts, api=used or settings.urls[1])
    fake.token_api_domain = api_domain
    fake.seed_contacts(1)
    connector = ZohoConnector(settings, context, transport=fake.transport)
    if used is not None:
        assert len([r for b in connector.pull(Stream.MEMBERS, None) for r in b.records]) == 1
        assert str(fake.requests[-1].url).startswith(used)
        return
    with pytest.raises(ConfigError) as info:
        list(connector.pull(Stream.MEMBERS, None))
    assert info.value.exit_code == ExitCode.CONFIG
    message = str(info.value)
    assert httpx.URL(accounts).host in message and httpx.URL(api_domain).host in message
    assert "api_url" in message  # what to set if that host is meant
    assert [classify(r) for r in fake.requests] == ["oauth token"]  # nothing went to any API host


def test_check_never_reports_an_api_host_the_token_did_not_earn(context) -> None:
    fake = FakeZoho()
    fake.token_api_domain = "https://www.zohoapis.eu"
    connector = ZohoConnector(make_settings(), context, transport=fake.transport)
    with pytest.raises(ConfigError, match=r"www\.zohoapis\.eu"):
        connector.check()


def test_overrides_for_a_local_fake_server(context) -> None:
    fake = FakeZoho(accounts="http://127.0.0.1:9001", api="http://127.0.0.1:9002", upload="http://127.0.0.1:9003")
    fake.seed_contacts(2)
    settings = make_settings(
        accounts_url="http://127.0.0.1:9001", api_url="http://127.0.0.1:9002", upload_url="http://127.0.0.1:9003"
    )
    connector = ZohoConnector(settings, context, transport=fake.transport)
    assert len([r for b in connector.pull(Stream.MEMBERS, None) for r in b.records]) == 2
    assert {r.url.port for r in fake.requests} == {9001, 9002}


def test_plain_http_override_refused_unless_loopback() -> None:
    with pytest.raises(ValidationError) as info:
        make_settings(api_url="http://zoho.internal.example.com")
    assert "https" in str(info.value)
    with pytest.raises(ConfigError):
        from crmsync.http import ensure_secure_url

        ensure_secure_url("http://zoho.internal.example.com")


def test_token_is_cached_sealed_across_runs(fake: FakeZoho, context) -> None:
    fake.seed_contacts(1)
    for _ in range(3):
        connector = ZohoConnector(make_settings(), context, transport=fake.transport)
        list(connector.pull(Stream.MEMBERS, None))
    assert fake.calls("oauth token") == 1
    assert any(key.endswith(":token") for key in context.secrets._data)  # the sealed state of a real store
    assert not any(key.endswith(":token") for key in context.state._data)  # never the clear one
    (token,) = fake.access
    assert not any(token in value for value in context.state._data.values())


def test_a_token_left_in_clear_by_an_earlier_version_is_removed(fake: FakeZoho, context) -> None:
    context.state.set("zoho:crm:token", '{"access_token": "1000.old", "expires_at": 1e12}')
    ZohoConnector(make_settings(), context, transport=fake.transport)
    assert context.state.get("zoho:crm:token") is None


def test_invalid_token_refreshes_once_and_resumes(fake: FakeZoho, connect) -> None:
    fake.seed_contacts(3)
    connector = connect()
    list(connector.pull(Stream.MEMBERS, None))
    fake.expire_access_tokens()  # revoked or 16th token: the API now answers INVALID_TOKEN
    records = [r for b in connector.pull(Stream.MEMBERS, None) for r in b.records]
    assert len(records) == 3 and fake.calls("oauth token") == 2


def test_revoked_refresh_token_is_a_clear_auth_error_without_retry_storm(context, caplog) -> None:
    fake = FakeZoho(DataCentre.EU)
    fake.valid_refresh.clear()
    connector = ZohoConnector(make_settings(data_centre="eu"), context, transport=fake.transport, sleep=fake.sleep)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as info:
        list(connector.pull(Stream.MEMBERS, None))
    assert info.value.exit_code == ExitCode.CONFIG == 2
    assert "Zoho data centre eu" in str(info.value) and "accounts.zoho.eu" in str(info.value)
    assert "invalid_code" in str(info.value)
    assert fake.calls("oauth token") == 1 and fake.sleeps == []
    assert REFRESH_TOKEN not in str(info.value) and REFRESH_TOKEN not in caplog.text


def test_check_reports_refused_credentials(fake: FakeZoho, connect) -> None:
    fake.valid_refresh.clear()
    (result,) = connect().check()
    assert result.name == "credentials" and not result.ok and "invalid_code" in result.detail


def test_settings_repr_hides_secrets() -> None:
    settings = make_settings()
    assert REFRESH_TOKEN not in repr(settings) and REFRESH_TOKEN not in str(settings.model_dump())
