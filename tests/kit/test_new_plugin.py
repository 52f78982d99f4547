"""``crmsync new-plugin``: the generated package installs, is discovered through its entry point, and its
own tests (the conformance kit against the example connector) pass unchanged."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crmsync.cli.new_plugin import new_plugin, render_plugin
from crmsync.errors import ConfigError
from crmsync.plugins import PluginHost


def test_writes_a_complete_package(tmp_path: Path):
    result = CliRunner().invoke(new_plugin, ["acme_crm", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "crmsync-acme-crm"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "src/crmsync_acme_crm/__init__.py",
        "src/crmsync_acme_crm/connector.py",
        "tests/acme_crm_double.py",
        "tests/test_contract.py",
    ]
    text = "\n".join((root / f).read_text() for f in files)
    assert "{{" not in text
    assert '[project.entry-points.crmsync]\nacme_crm = "crmsync_acme_crm"' in text
    assert "class AcmeCrmConnector(crmsync.Connector)" in text
    connector = (root / "src/crmsync_acme_crm/connector.py").read_text()
    assert len(connector.splitlines()) <= 150
    compile(connector, "connector.py", "exec")


def test_refuses_bad_names_and_existing_folders(tmp_path: Path):
    with pytest.raises(ConfigError, match="lower-case"):
        render_plugin("Acme-CRM", tmp_path)
    render_plugin("acme", tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        render_plugin("acme", tmp_path)


@pytest.mark.slow
def test_generated_plugin_installs_is_discovered_and_passes_its_tests(tmp_path: Path, monkeypatch):
    root, _ = render_plugin("acme_crm", tmp_path / "src")
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(root)]
    if importlib.util.find_spec("hatchling") is not None:
        pip.insert(5, "--no-build-isolation")
    subprocess.run(pip, check=True, capture_output=True, text=True)

    monkeypatch.syspath_prepend(str(site))
    host = PluginHost()
    host.load_entrypoints()
    assert host.plugins["acme_crm"].status == "ok", host.plugins["acme_crm"].error
    assert host.connector_spec("acme_crm").settings_model.__name__ == "AcmeCrmSettings"

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path[1:]])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
    assert "failed" not in run.stdout


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.acme.example/v1", True),
        ("http://localhost:8080/v1", True),
        ("http://127.0.0.1:9000", True),
        ("http://[::1]:9000/api", True),
        ("http://api.acme.example/v1", False),
        ("http://localhost.acme.example/v1", False),
    ],
)
def test_the_scaffold_settings_take_https_or_a_local_fake(tmp_path: Path, url: str, ok: bool):
    root, _ = render_plugin("acme_local", tmp_path)
    spec = importlib.util.spec_from_file_location("scaffold_connector", root / "src/crmsync_acme_local/connector.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the annotations through it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    table = {"base_url": url, "api_token": "t0k3n-for-a-local-fake"}
    if ok:
        assert module.AcmeLocalSettings.model_validate(table).base_url == url
    else:
        with pytest.raises(ValueError, match="must use https"):
            module.AcmeLocalSettings.model_validate(table)
