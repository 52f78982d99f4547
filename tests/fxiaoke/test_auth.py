"""Access token, operator and trace id on every call; token cache and renewal; error codes."""

from __future__ import annotations

import logging
import uuid

import pytest
from crmsync_fxiaoke.errors import SetupError
from crmsync_fxiaoke.limits import seconds_to_reset

from crmsync.connector import ConnectorContext, Stream
from crmsync.errors import AuthError, ExitCode, RetryableError

from .fake import (
    APP_ID,
    APP_SECRET,
    CORP_ID,
    EA,
    MOBILE,
    OPEN_USER_ID,
    PERMANENT_CODE,
    USER_ID,
    FakeFxiaoke,
)


def pull_all(conn, stream=Stream.MEMBERS, cursor=None):
    return list(conn.pull(stream, cursor))


def test_header_style_sends_token_headers_operator_and_fresh_trace_ids(fake: FakeFxiaoke, connect) -> None:
    fake.put("AccountObj", {"_id": "a1", "name": "上海示例"})
    conn = connect()
    pull_all(conn)
    pull_all(conn, Stream.ORDERS)
    token_call, *calls = fake.calls
    assert token_call["path"] == "/oauth2.0/token"
    assert token_call["body"] == {"appId": APP_ID, "appSecret": APP_SECRET, "permanentCode": PERMANENT_CODE,
                                  "grantType": "app_secret"}  # fmt: skip
    token = next(iter(fake.tokens))
    assert [c["path"] for c in calls] == ["/cgi/crm/v2/data/query", "/cgi/crm/v2/data/query"]
    for c in calls:
        assert c["headers"]["authorization"] == f"Bearer {token}"
        assert c["headers"]["x-fs-ea"] == EA
        assert c["headers"]["x-fs-userid"] == USER_ID
        assert "corpAccessToken" not in c["body"]
    traces = [c["trace"] for c in fake.calls]
    assert len(set(traces)) == len(traces) == 3
    assert all(uuid.UUID(t).version == 4 for t in traces)


def test_token_is_cached_in_state_and_shared_by_a_new_connector(fake: FakeFxiaoke, connect, context) -> None:
    pull_all(connect())
    pull_all(connect())  # a new process with the same store state
    assert [c["path"] for c in fake.calls].count("/oauth2.0/token") == 1
    assert context.state.get("fx:token") is None  # the key is namespaced by plugin
    assert APP_SECRET not in (context.state.get("fxiaoke:fx:token") or "")


def test_token_is_renewed_before_its_lifetime_ends(fake: FakeFxiaoke, connect) -> None:
    conn = connect()
    pull_all(conn)
    first = fake.calls[1]["headers"]["authorization"]
    fake.now += 6600  # before the renewal point: same token, no token call
    pull_all(conn)
    assert [c["path"] for c in fake.calls].count("/oauth2.0/token") == 1
    fake.now += 150  # 6,750 s: renewed although the old one is still valid until 7,200 s
    pull_all(conn)
    assert [c["path"] for c in fake.calls].count("/oauth2.0/token") == 2
    assert fake.calls[-1]["headers"]["authorization"] != first


def test_expired_token_code_renews_once_and_repeats_the_call(fake: FakeFxiaoke, connect) -> None:
    conn = connect()
    pull_all(conn)
    fake.tokens.clear()  # the tenant forgot the token: 20016 on the next call
    batches = pull_all(conn)
    paths = [c["path"] for c in fake.calls]
    assert paths == ["/oauth2.0/token", "/cgi/crm/v2/data/query", "/cgi/crm/v2/data/query", "/oauth2.0/token",
                     "/cgi/crm/v2/data/query"]  # fmt: skip
    assert batches[-1].cursor is not None


def test_a_second_token_refusal_is_an_auth_error(fake: FakeFxiaoke, connect) -> None:
    conn = connect()
    fake.codes.extend([(20016, "authorization is error")] * 2)
    with pytest.raises(AuthError) as err:
        pull_all(conn)
    assert "20016" in str(err.value)
    assert err.value.exit_code == ExitCode.CONFIG


def test_bad_credentials_are_an_auth_error_without_secrets(fake: FakeFxiaoke, connect) -> None:
    conn = connect(app_secret="wrong-secret-value-1234")
    with pytest.raises(AuthError) as err:
        pull_all(conn)
    text = f"{err.value!s} {err.value!r} {conn!r} {conn.client!r} {conn.settings!r}"
    assert "10006" in text and "app_secret" in text
    assert "wrong-secret-value-1234" not in text and PERMANENT_CODE not in text
    assert err.value.exit_code == ExitCode.CONFIG


def test_legacy_style_puts_credentials_and_operator_in_the_body(fake: FakeFxiaoke, connect) -> None:
    fake.put("AccountObj", {"_id": "a1", "name": "上海示例"})
    conn = connect(auth_style="legacy", user_id=OPEN_USER_ID)
    batches = pull_all(conn)
    assert [r.external_id for b in batches for r in b.records] == ["a1"]
    token_call, query = fake.calls
    assert token_call["path"] == "/cgi/corpAccessToken/get/V2"
    assert "grantType" not in token_call["body"]
    assert query["body"]["corpId"] == CORP_ID
    assert query["body"]["currentOpenUserId"] == OPEN_USER_ID
    assert query["body"]["corpAccessToken"] in fake.tokens
    assert "authorization" not in query["headers"]


def test_legacy_operator_found_once_from_mobile(fake: FakeFxiaoke, connect, context) -> None:
    pull_all(connect(auth_style="legacy", user_id=None, operator_mobile=MOBILE))
    pull_all(connect(auth_style="legacy", user_id=None, operator_mobile=MOBILE))
    paths = [c["path"] for c in fake.calls]
    assert paths.count("/cgi/user/getByMobile") == 1
    assert all(c["body"]["currentOpenUserId"] == OPEN_USER_ID for c in fake.calls if c["path"].endswith("query"))


def test_unknown_operator_mobile_is_an_auth_error(fake: FakeFxiaoke, connect) -> None:
    with pytest.raises(AuthError, match="operator_mobile"):
        pull_all(connect(auth_style="legacy", user_id=None, operator_mobile="13900000000"))


def test_no_quota_bought_is_a_configuration_error(fake: FakeFxiaoke, connect) -> None:
    fake.unlicensed = True
    with pytest.raises(SetupError) as err:
        pull_all(connect())
    assert err.value.exit_code == ExitCode.CONFIG
    assert "no OpenAPI call quota" in str(err.value)


def test_no_quota_on_a_business_call_names_the_fix(fake: FakeFxiaoke, connect) -> None:
    conn = connect()
    pull_all(conn)
    fake.codes.append((30003, "客户没有购买openapi配额"))
    with pytest.raises(SetupError) as err:
        pull_all(conn)
    assert err.value.exit_code == ExitCode.CONFIG
    assert "Open API" in str(err.value)


def test_daily_quota_used_up_is_retryable_after_beijing_midnight(fake: FakeFxiaoke, connect) -> None:
    conn = connect()
    pull_all(conn)
    fake.codes.append((30002, "当天访问频次超限"))
    with pytest.raises(RetryableError) as err:
        pull_all(conn)
    # T0 is 14:13:20 in Beijing: 9 h 46 min 40 s to midnight
    assert err.value.retry_after == seconds_to_reset(fake.now) == 35200


@pytest.mark.parametrize("code", [30004, 14001, -1, 50009])
def test_frequency_and_busy_codes_are_retried_with_backoff(fake: FakeFxiaoke, connect, context, code) -> None:
    conn = connect()
    pull_all(conn)
    before = fake.now
    fake.codes.extend([(code, "busy")] * 2)
    batches = pull_all(conn)
    assert batches[-1].cursor is not None
    assert fake.now - before == 2 + 4  # backoff 2 s, then 4 s
    assert context.api_calls["retries"] == 2


def test_frequency_code_gives_up_within_the_retry_budget(fake: FakeFxiaoke, connect) -> None:
    conn = connect(max_retries=2)
    fake.codes.extend([(30004, "秒频次超限")] * 5)
    with pytest.raises(RetryableError, match="30004"):
        pull_all(conn)
    assert [c["path"] for c in fake.calls].count("/cgi/crm/v2/data/query") == 3


def test_operator_is_required_by_the_settings() -> None:
    from pydantic import ValidationError

    from .conftest import make_settings

    with pytest.raises(ValidationError, match="user_id"):
        make_settings(user_id=None)
    with pytest.raises(ValidationError, match="https"):
        make_settings(base_url="http://open.fxiaoke.com")
    assert make_settings(auth_style="legacy", user_id=None, operator_mobile=MOBILE).operator_mobile == MOBILE


def test_state_keeps_token_between_contexts(fake: FakeFxiaoke, connect) -> None:
    shared = ConnectorContext(name="fx")
    pull_all(connect(shared))
    other = ConnectorContext(name="fx")  # another store: fetches its own token
    pull_all(connect(other))
    assert [c["path"] for c in fake.calls].count("/oauth2.0/token") == 2


@pytest.mark.parametrize("statuses", [[503], [500, 502], [504, 503, 502]])
def test_each_attempt_after_a_gateway_error_carries_a_fresh_trace_id(fake: FakeFxiaoke, connect, statuses) -> None:
    fake.put("AccountObj", {"_id": "a1", "name": "上海示例"})
    conn = connect()
    conn.client.tokens.get()
    fake.http_errors.extend(statuses)
    batches = pull_all(conn)
    assert [r.external_id for b in batches for r in b.records] == ["a1"]
    queries = [c["trace"] for c in fake.calls if c["path"].endswith("/data/query")]
    assert len(queries) == len(statuses) + 1 and len(set(queries)) == len(queries)
    assert fake.reused_traces == 0 and all(uuid.UUID(t).version == 4 for t in queries)
    assert conn.context.api_calls["retries"] == len(statuses)


def test_renewals_retries_and_errors_are_logged_without_secrets(fake: FakeFxiaoke, connect, caplog) -> None:
    from crmsync.connector import ProfileChange

    fake.put("AccountObj", {"_id": "a1", "name": "上海示例"})
    fake.put("AccountObj", {"_id": "a2", "name": "杭州演示"})
    fake.refuse["a2"] = (32000, "数据已锁定")
    conn = connect(daily_budget=500)
    with caplog.at_level(logging.DEBUG, logger="crmsync.connector"):
        pull_all(conn)
        fake.http_errors.append(503)
        fake.codes.append((30004, "秒频次超限"))
        issued = set(fake.tokens)
        fake.tokens.clear()  # the tenant forgets the token: 20016, renewed once
        pull_all(conn)
        conn.push([ProfileChange(i, {"points": 1}, {}, frozenset({"points"})) for i in ("a1", "a2")])
    text = "\n".join(r.getMessage() for r in caplog.records)
    for expected in ("requesting an access token (header style)", "new access token for acme01, valid 7200 s",
                     "attempt 2 with thirdTraceId", "errorCode 30004", "retry 1 in 2 s",
                     "errorCode 20016", "renewing the access token", "update of a2 refused: errorCode 32000",
                     "daily call count 1 stored with 49 more reserved"):  # fmt: skip
        assert expected in text, expected
    assert all(r.levelno <= logging.INFO for r in caplog.records)
    issued |= set(fake.tokens)
    leaks = [s for s in [APP_SECRET, PERMANENT_CODE, *issued] if s in text]
    assert leaks == [] and len(issued) == 2
