"""Sealed connector state: a cached credential is in the store only as ciphertext keyed by environment secrets."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from crmsync.store import Store
from crmsync.store.sealed import MemoryState, SealedState, derive_key, sealed_state, secret_values

# token shapes: Zoho's "1000.<hex>.<hex>", Fxiaoke's opaque strings; random enough never to be a word of the schema
TOKENS = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["1000.", "", "tok_"]),
    st.text(alphabet=string.ascii_letters + string.digits, min_size=24, max_size=96).filter(
        lambda t: sum(c.isdigit() for c in t) >= 4
    ),
)


class Inner(BaseModel):
    api_key: SecretStr = SecretStr("inner-key")


class Settings(BaseModel):
    client_id: str = "1000.ABC"
    client_secret: SecretStr = SecretStr("client-secret-value")
    refresh_token: SecretStr = SecretStr("1000.refresh")
    nested: Inner = Inner()
    extra: dict[str, SecretStr] = {}


def test_secret_values_are_found_in_nested_settings() -> None:
    s = Settings(extra={"x": SecretStr("from-a-dict")})
    assert secret_values(s) == ["client-secret-value", "1000.refresh", "inner-key", "from-a-dict"]
    assert secret_values(Settings.model_construct(client_secret=SecretStr(""))) == ["1000.refresh", "inner-key"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=TOKENS)
def test_a_cached_token_never_reaches_the_store_in_clear(tmp_path_factory: pytest.TempPathFactory, token: str) -> None:
    path = tmp_path_factory.mktemp("sealed") / "s.duckdb"
    with Store.open(path) as store:
        state = sealed_state(store.state("crm"), Settings(), "crm")
        state.set("oauth_token", token)
        assert state.get("oauth_token") == token
        rows = store.con.execute("SELECT key, value FROM connector_state").fetchall()
        assert rows and all(token not in value and token not in key for key, value in rows)
        store.con.execute("CHECKPOINT")
    assert token.encode() not in path.read_bytes()
    with Store.open(path) as store:  # the next run, with the same environment, reads it back
        assert sealed_state(store.state("crm"), Settings(), "crm").get("oauth_token") == token


def test_other_secrets_other_connector_or_damage_read_as_absent(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as store:
        sealed_state(store.state("crm"), Settings(), "crm").set("t", "1000.abcdef0123456789")
        rotated = Settings(refresh_token=SecretStr("1000.new-refresh"))
        assert sealed_state(store.state("crm"), rotated, "crm").get("t") is None
        assert SealedState(store.state("crm"), derive_key(secret_values(Settings()), "other"), "crm").get("t") is None
        raw = store.state("crm").get("sealed:t")
        assert raw is not None
        for damaged in (raw[:-4] + "AAAA", raw[:20], "sealed1:not base64!", "1000.abcdef0123456789"):
            store.state("crm").set("sealed:t", damaged)
            assert sealed_state(store.state("crm"), Settings(), "crm").get("t") is None
        sealed = sealed_state(store.state("crm"), Settings(), "crm")
        sealed.set("t", "x" * 20)
        sealed.set("t", None)
        assert store.state("crm").get("sealed:t") is None


def test_a_connector_without_secrets_keeps_its_cache_in_memory_only(tmp_path: Path) -> None:
    class Plain(BaseModel):
        path: str = "x.csv"

    with Store.open(tmp_path / "s.duckdb") as store:
        state = sealed_state(store.state("csv"), Plain(), "csv")
        assert isinstance(state, MemoryState)
        state.set("k", "v")
        assert state.get("k") == "v" and store.count("connector_state") == 0
