"""A third-party plugin package, installed from a temporary folder, is discovered through its entry point and
syncs: the core knows nothing about it beforehand."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "crmsync-filecrm"
version = "2.3.0"
dependencies = []

[project.entry-points.crmsync]
filecrm = "crmsync_filecrm"

[tool.hatch.build.targets.wheel]
packages = ["crmsync_filecrm"]
"""

PLUGIN = '''
"""A CRM kept in one JSON file: contacts and orders in, grades written back into the same file."""
import json
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel

import crmsync
from crmsync import Batch, Capability, Member, Order, RecordResult, Stream


class FileCrmSettings(BaseModel):
    path: Path


class FileCrmConnector(crmsync.Connector):
    capabilities = frozenset({Capability.PULL_MEMBERS, Capability.PULL_ORDERS, Capability.PUSH_PROFILES})

    def _data(self):
        return json.loads(self.settings.path.read_text())

    def pull(self, stream, cursor):
        data = self._data()
        if stream is Stream.MEMBERS:
            recs = [Member(source=self.name, external_id=c["id"], email=c["email"]) for c in data["contacts"]]
        else:
            recs = [
                Order(source=self.name, external_id=o["id"], member_external_id=o["contact"],
                      placed_at=o["at"], amount=Decimal(o["amount"]), currency="EUR")
                for o in data["orders"]
            ]
        yield Batch(stream, recs, cursor="full", snapshot_complete=True)

    def push(self, changes):
        data = self._data()
        grades = data.setdefault("grades", {})
        for c in changes:
            grades[c.member_id] = dict(c.values)
        self.settings.path.write_text(json.dumps(data))
        return [RecordResult(c.member_id, ok=True) for c in changes]


@crmsync.hookimpl
def crmsync_connectors():
    yield crmsync.ConnectorSpec(
        name="filecrm", settings_model=FileCrmSettings, factory=FileCrmConnector,
        capabilities=FileCrmConnector.capabilities,
    )
'''

CONFIG = """
[store]
path = "store.duckdb"
[sync]
members = "crm"
orders = ["crm"]
push = ["crm"]
[connectors.crm]
plugin = "filecrm"
path = "crm.json"
[[policy.tiers]]
name = "Gold"
condition = "spend_lifetime >= 100"
[[policy.tiers]]
name = "Basic"
"""


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    src = tmp_path / "crmsync-filecrm"
    (src / "crmsync_filecrm").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (src / "crmsync_filecrm" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(src)]
    if importlib.util.find_spec("hatchling") is not None:
        pip.insert(5, "--no-build-isolation")
    subprocess.run(pip, check=True, capture_output=True, text=True, timeout=300)
    return site


def crmsync_cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path[1:]])}
    cmd = [sys.executable, "-c", "from crmsync.cli import main; main()", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_installed_plugin_is_discovered_and_syncs(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "crmsync.toml").write_text(textwrap.dedent(CONFIG))
    crm = {
        "contacts": [{"id": "c1", "email": "a@example.com"}, {"id": "c2", "email": "b@example.com"}],
        "orders": [{"id": "o1", "contact": "c1", "at": "2026-01-05T10:00:00+01:00", "amount": "150.00"}],
    }
    (work / "crm.json").write_text(json.dumps(crm))

    listed = crmsync_cli(installed, work, "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    info = {p["name"]: p for p in json.loads(listed.stdout)}
    assert info["filecrm"]["status"] == "ok" and info["filecrm"]["version"] == "2.3.0"
    assert info["filecrm"]["connectors"] == ["filecrm"]

    run = crmsync_cli(installed, work, "sync", "--json", "--as-of", "2026-02-01")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["pulled"]["crm"]["members"]["pulled"] == 2 and report["pushed"] == {"crm": 2}
    grades = json.loads((work / "crm.json").read_text())["grades"]
    assert grades["c1"]["tier"] == "Gold" and grades["c2"]["tier"] == "Basic"

    again = crmsync_cli(installed, work, "sync", "--json", "--as-of", "2026-02-01")
    assert again.returncode == 0 and json.loads(again.stdout)["pushed"] == {"crm": 0}
