"""The command line against the fake tenant: a missing permission is a configuration error in every command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import crmsync_fxiaoke
import pytest
import respx

import crmsync.plugins
from crmsync.cli import main
from crmsync.plugins import PluginHost

from .conftest import TIER
from .fake import FakeFxiaoke
from .test_e2e import CONFIG


@pytest.fixture
def cli(fake: FakeFxiaoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Iterator:
    host = PluginHost()
    host.register(crmsync_fxiaoke, "fxiaoke")
    monkeypatch.setattr(crmsync.plugins, "_HOST", host)
    config = tmp_path / "crmsync.toml"
    config.write_text(CONFIG, encoding="utf-8")
    fake.put("AccountObj", {"_id": "a1", "name": "上海示例"})

    def invoke(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as info:
            main(["--config", str(config), *args])
        out, err = capsys.readouterr()
        return int(info.value.code or 0), out, err

    with respx.mock(assert_all_called=False) as router:
        router.route(host="open.fxiaoke.com").mock(side_effect=fake.handle)
        yield invoke


@pytest.mark.parametrize(
    ("op", "obj"), [("query", "AccountObj"), ("query", "SalesOrderObj"), ("describe", "AccountObj")]
)
def test_a_permission_refusal_exits_2_in_sync_and_in_check_with_what_to_grant(
    fake: FakeFxiaoke, cli, op: str, obj: str
) -> None:
    fake.deny(op, obj)
    code, _, err = cli("sync")
    assert code == 2, err
    assert f"needs the list and view permission on {obj}" in err and "user_id 1000" in err
    assert "role permissions" in err and "set user_id to a CRM administrator" in err
    code, out, _ = cli("check", "--json")
    assert code == 2
    failed = [c for c in json.loads(out)["checks"] if not c["ok"]]
    assert failed and all(f"needs the list and view permission on {obj}" in c["detail"] for c in failed)


def test_other_business_errors_on_a_read_still_fail_the_run_with_3(fake: FakeFxiaoke, cli) -> None:
    fake.codes.extend([(32000, "参数错误")] * 2)
    code, _, err = cli("sync")
    assert code == 3 and "32000" in err and "permission" not in err


def test_check_with_create_fields_names_the_options_it_cannot_add(fake: FakeFxiaoke, cli) -> None:
    fake.describes["AccountObj"][TIER]["options"] = [{"label": "Gold", "value": "opt_gold"}]
    code, out, _ = cli("check", "--create-fields", "--json")
    assert code == 2
    (failed,) = [c for c in json.loads(out)["checks"] if not c["ok"]]
    assert failed["name"] == f"field {TIER} (tier)"
    assert 'in this order: "Silver", "Bronze", giving' in failed["detail"]
    assert "check --create-fields cannot" in failed["detail"]
    assert all(not c["path"].endswith("/data/update") for c in fake.calls)
