"""Plugin compatibility: a plugin that fails to import, registers a bad spec, misspells a hook or was written
for another plugin API is reported by name with the reason, and neither the other plugins nor the command
line break. Plugins come from fake distributions written to ``tmp_path``."""

from __future__ import annotations

import json
import textwrap
import uuid
from importlib.metadata import EntryPoint, distributions
from pathlib import Path

import pytest
from click.testing import CliRunner

from crmsync import PLUGIN_API_VERSION, PluginError
from crmsync.plugins import PluginHost, reset_host

HEADER = """
import crmsync
from pydantic import BaseModel


class Settings(BaseModel):
    pass


class Conn(crmsync.Connector):
    capabilities = frozenset({crmsync.Capability.PULL_MEMBERS})
"""

GOOD = (
    HEADER
    + """
@crmsync.hookimpl
def crmsync_connectors():
    yield crmsync.ConnectorSpec("{connector}", Settings, Conn, capabilities=Conn.capabilities)
"""
)

SOURCES = {
    "good": GOOD,
    "import_error": "raise ImportError(\"crmsync-import-error needs the 'acme-sdk' package\")\n",
    "not_a_spec": HEADER + "@crmsync.hookimpl\ndef crmsync_connectors():\n    yield {'name': 'x'}\n",
    "bad_name": HEADER
    + "@crmsync.hookimpl\ndef crmsync_connectors():\n    yield crmsync.ConnectorSpec('Bad-Name', Settings, Conn)\n",
    "old_api": HEADER
    + "@crmsync.hookimpl\ndef crmsync_connectors():\n"
    + f"    yield crmsync.ConnectorSpec('old', Settings, Conn, api_version={PLUGIN_API_VERSION + 1})\n",
    "misspelt_hook": HEADER + "@crmsync.hookimpl\ndef crmsync_conectors():\n    return []\n",
}


def make_dists(site: Path, plugins: dict[str, str], connector: str = "fine") -> list[EntryPoint]:
    """Write one fake installed distribution per plugin; return their ``crmsync`` entry points."""
    tag = uuid.uuid4().hex[:8]  # fresh module names: no module cached by an earlier test
    site.mkdir(exist_ok=True)
    for name, source in plugins.items():
        module = f"crmsync_{name}_{tag}"
        (site / f"{module}.py").write_text(textwrap.dedent(source).replace("{connector}", connector))
        info = site / f"crmsync_{name}-1.{len(name)}.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: crmsync-{name}\nVersion: 1.{len(name)}.0\n")
        (info / "entry_points.txt").write_text(f"[crmsync]\n{name} = {module}\n")
    eps = [ep for dist in distributions(path=[str(site)]) for ep in dist.entry_points if ep.group == "crmsync"]
    return sorted(eps, key=lambda ep: ep.name)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


def load(eps: list[EntryPoint]) -> PluginHost:
    host = PluginHost()
    host.load_entrypoints(eps)
    host.connectors()  # registration hooks run here: bad specs surface now
    return host


def test_a_good_plugin_loads_with_its_version(site: Path):
    host = load(make_dists(site, {"good": GOOD}))
    info = host.plugins["good"]
    assert (info.status, info.version, info.connectors) == ("ok", "1.4.0", ["fine"])
    assert info.hooks == ["crmsync_connectors"]
    assert host.connector_spec("fine").api_version == PLUGIN_API_VERSION


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ("import_error", "ImportError: crmsync-import-error needs the 'acme-sdk' package"),
        ("not_a_spec", "returned dict, not ConnectorSpec"),
        ("bad_name", "connector name 'Bad-Name' must be lower-case"),
        ("old_api", f"written for plugin API {PLUGIN_API_VERSION + 1}; this crmsync implements {PLUGIN_API_VERSION}"),
        ("misspelt_hook", "crmsync_conectors"),
    ],
)
@pytest.mark.parametrize("broken_first", [True, False], ids=["broken-first", "good-first"])
def test_a_broken_plugin_is_reported_by_name_and_the_others_still_load(
    site: Path, broken: str, reason: str, broken_first: bool
):
    eps = make_dists(site, {"good": GOOD, broken: SOURCES[broken]})
    host = load(sorted(eps, key=lambda ep: (ep.name == "good") == broken_first))
    info = host.plugins[broken]
    assert info.status == "error"
    assert reason in (info.error or "")
    assert host.plugins["good"].status == "ok"
    assert host.connector_names() == ["fine"]


def test_a_missing_module_is_reported(site: Path):
    eps = [*make_dists(site, {"good": GOOD}), EntryPoint("ghost", "crmsync_ghost_not_installed", "crmsync")]
    host = load(eps)
    assert host.plugins["ghost"].status == "error"
    assert "ModuleNotFoundError" in (host.plugins["ghost"].error or "")
    assert host.connector_names() == ["fine"]


def test_two_plugins_registering_one_connector_name_are_named(site: Path):
    eps = make_dists(site, {"good": GOOD, "twin": GOOD})
    host = PluginHost()
    host.load_entrypoints(eps)
    with pytest.raises(PluginError, match=r"'fine' is registered by both '(good|twin)' and '(good|twin)'"):
        host.connectors()


def test_disabled_plugins_are_listed_but_not_loaded(site: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRMSYNC_DISABLE_PLUGINS", "import_error")
    host = load(make_dists(site, {"good": GOOD, "import_error": SOURCES["import_error"]}))
    assert host.plugins["import_error"].status == "disabled"
    assert host.plugins["import_error"].error is None


@pytest.fixture
def cli_with(site: Path, monkeypatch: pytest.MonkeyPatch):
    """The command line, seeing only the given fake distributions."""

    def use(plugins: dict[str, str]):
        eps = make_dists(site, plugins)
        monkeypatch.setattr("crmsync.plugins.entry_points", lambda group: [ep for ep in eps if ep.group == group])
        reset_host()
        from crmsync.cli import cli

        return cli

    yield use
    reset_host()


def test_the_command_line_lists_broken_plugins_with_their_reason(cli_with):
    cli = cli_with({name: SOURCES.get(name, GOOD) for name in ("good", "import_error", "old_api")})
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["good"]["status"] == "ok"
    assert rows["good"]["connectors"] == ["fine"]
    assert rows["import_error"]["status"] == "error"
    assert "acme-sdk" in rows["import_error"]["error"]
    assert rows["old_api"]["status"] == "error"
    assert "plugin API" in rows["old_api"]["error"]


def test_the_command_line_still_works_with_a_broken_plugin(cli_with):
    cli = cli_with({"good": GOOD, "import_error": SOURCES["import_error"]})
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "plugins" in result.output


@pytest.mark.parametrize("version", [PLUGIN_API_VERSION - 1, PLUGIN_API_VERSION + 1])
def test_a_metric_written_for_another_plugin_api_is_refused_by_name(version: int):
    import crmsync

    class Metrics:
        @crmsync.hookimpl
        def crmsync_metrics(self):
            yield crmsync.MetricSpec("weekend_orders", "count(*)")
            yield crmsync.MetricSpec("old_style", "sum(amount)", api_version=version)

    host = PluginHost()
    host.register(Metrics(), "metrics_plugin")
    assert [m.name for m in host.metrics()] == ["weekend_orders"]
    info = host.plugins["metrics_plugin"]
    assert info.status == "error"
    assert f"metric 'old_style' was written for plugin API {version}" in (info.error or "")
