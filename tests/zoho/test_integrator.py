"""An integrator following README.md and plugins/zoho/README.md against a strict fake org, through the command line:
``crmsync init``, the Zoho connector in place of the sample one, secrets in the environment, ``crmsync check``,
``crmsync check --create-fields``, ``crmsync sync``. With the starter's (default) policy, the first sync has no
refusal: every tier, RFM segment, lifecycle stage and tag it writes is an option of its field."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import crmsync_zoho.bulk
import pytest

import crmsync.plugins
from crmsync.cli import main
from crmsync.plugins import PluginHost

from .fake import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, FakeZoho, push_field, zoho_time

ZOHO_TABLE = f"""[connectors.crm]
plugin = "zoho"
data_centre = "eu"
client_id = "{CLIENT_ID}"
"""


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out + err


def seed_org(fake: FakeZoho, contacts: int) -> list[str]:
    """Contacts whose orders spread over two years: every lifecycle stage, many RFM segments, VIPs at risk."""
    ids = fake.seed_contacts(contacts)
    for i, cid in enumerate(ids):
        for k in range(i % 13):  # 0 orders (potential) up to 12 (mature, loyal)
            days_ago = (i * 37 + k * 23) % (60 if i % 4 == 0 else 720)
            placed = zoho_time(fake.now - timedelta(days=days_ago))
            fake.add_order(cid, f"{40 + (i * 71 + k * 13) % 900}.90", Created_Time=placed)
    return ids


@pytest.fixture
def org(monkeypatch: pytest.MonkeyPatch) -> FakeZoho:
    from crmsync_zoho.settings import DataCentre

    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__REFRESH_TOKEN", REFRESH_TOKEN)
    monkeypatch.setenv("CRMSYNC_CONNECTORS__CRM__RATE_PER_MINUTE", "60000")  # no real waiting between calls
    monkeypatch.setenv("COLUMNS", "250")
    host = PluginHost()
    host.load_entrypoints()
    monkeypatch.setattr(crmsync.plugins, "_HOST", host)
    fake = FakeZoho(DataCentre.EU)
    # bulk jobs wait bulk_poll_seconds (10 s) before each status call: in the fake's time, not the test's
    monkeypatch.setattr(crmsync_zoho.bulk, "time", SimpleNamespace(sleep=fake.sleep))
    return fake


def configure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """``crmsync init``, then the steps of the READMEs: the Zoho connector replaces the sample CSV one."""
    path = tmp_path / "crmsync.toml"
    assert run(["init", str(path)], capsys)[0] == 0
    text = path.read_text(encoding="utf-8")
    text, n = re.subn(r'"shop"', '"crm"', text)
    assert n == 3
    text, n = re.subn(r"\[connectors\.shop\]\n(?:[^\n\[#]+\n)+", ZOHO_TABLE, text)
    assert n == 1
    path.write_text(text, encoding="utf-8")
    return path


ORGS = {
    "a new org": [],
    "fields made by hand, a few options each": [
        push_field("Loyalty_Tier", "picklist", ["Gold", "Silver", "Bronze"], 1),
        push_field("Loyalty_Points", "integer", None, 2),
        push_field("Loyalty_Tags", "multiselectpicklist", ["vip"], 3),
        push_field("RFM_Segment", "picklist", ["Champions", "Loyal", "At Risk", "Lost"], 4),
        push_field("Lifecycle_Stage", "picklist", ["new", "loyal", "churned"], 5),
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(ORGS))
def test_first_sync_after_create_fields_has_no_refusal(
    tmp_path: Path, org: FakeZoho, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    org.fields["Contacts"] = [dict(f) for f in ORGS[kind]]
    ids = seed_org(org, 500)
    config = configure(tmp_path, capsys)
    as_of = (org.now + timedelta(hours=1)).isoformat()
    with org.router:
        code, out = run(["--config", str(config), "check"], capsys)
        assert code == 2 and "FAIL" in out
        if kind != "a new org":  # the values a push can write, named one by one
            assert "'Potential Loyalist'" in out and "'potential'" in out and "'at_risk_vip'" in out
        code, out = run(["--config", str(config), "check", "--create-fields"], capsys)
        assert code == 0, out
        code, out = run(["--config", str(config), "check"], capsys)
        assert code == 0 and "all checks passed" in out, out
        code, out = run(["--config", str(config), "sync", "--json", "--as-of", as_of], capsys)
    report = json.loads(out)
    assert code == 0, report
    assert report["push_rejected"].get("crm", 0) == 0 and report["rejected"] == [] and report["dead"] == {"crm": 0}
    assert report["pushed"] == {"crm": 500}
    held = [org.contact(i) for i in ids]
    assert all(c.get("Loyalty_Tier") in ("Gold", "Silver", "Bronze") for c in held)
    # the push wrote values of every kind, many of them: each is an option of its field now
    segments = {c.get("RFM_Segment") for c in held} - {None}
    stages = {c.get("Lifecycle_Stage") for c in held} - {None}
    assert len(segments) >= 5 and len(stages) >= 4 and any(c.get("Loyalty_Tags") for c in held)


@pytest.mark.parametrize("command", [["check"], ["sync"]])
def test_an_api_domain_of_another_host_stops_with_both_hosts_named(
    tmp_path: Path, org: FakeZoho, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    org.token_api_domain = "https://www.zohoapis.com"  # the EU accounts server names the US API host
    org.seed_contacts(3)
    config = configure(tmp_path, capsys)
    with org.router:
        code, out = run(["--config", str(config), *command], capsys)
    assert code == 2, out
    assert "accounts.zoho.eu" in out and "www.zohoapis.com" in out and "api_url" in out
    assert "API at" not in out and "Traceback" not in out
    assert {r.url.host for r in org.requests} == {"accounts.zoho.eu"}  # no data went anywhere
