"""Zoho OAuth: data-centre hosts, api_domain, cached token, INVALID_TOKEN refresh, refused credentials."""

from __future__ import annotations

import logging

import httpx
import pytest
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


def test_api_domain_from_the_token_decides_the_api_host(context) -> None:
    fake = FakeZoho(DataCentre.US, api="https://www.zohoapis.eu")
    fake.seed_contacts(1)
    connector = ZohoConnector(make_settings(), context, transport=fake.transport)
    list(connector.pull(Stream.MEMBERS, None))
    assert fake.requests[-1].url.host == "www.zohoapis.eu"
    assert "Authorization" in fake.requests[-1].headers


def test_foreign_api_domain_is_not_trusted(context) -> None:
    fake = FakeZoho(DataCentre.US, api="https://evil.example.com")
    connector = ZohoConnector(make_settings(), context, transport=fake.transport)
    connector.client.connect()
    assert connector.client.api_url == "https://www.zohoapis.com"


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


def test_token_is_cached_in_state_across_runs(fake: FakeZoho, context) -> None:
    fake.seed_contacts(1)
    for _ in range(3):
        connector = ZohoConnector(make_settings(), context, transport=fake.transport)
        list(connector.pull(Stream.MEMBERS, None))
    assert fake.calls("oauth token") == 1
    assert any(key.endswith(":token") for key in context.state._data)


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
