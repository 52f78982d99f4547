"""Personal data and audit: reports and logs carry member ids only, ``forget`` erases a person everywhere in the
store and keeps them out, CSV output is formula-safe, and every pushed value is in ``crmsync history``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from tests.test_cli import run_main

from .rel_support import AS_OF, CsvWorld, crmsync_env, run_cli

BAD_MEMBER = "C9001,x@y,Secretname,Hiddenlast,2024-01-01 10:00:00\n"
FORMULA_MEMBER = '"=HYPERLINK(""http://evil"")",formula@example.com,=cmd,@SUM(A1),2024-01-01 10:00:00\n'


def _world(folder: Path, *, verbose: bool = False) -> Path:
    config = CsvWorld(folder, members=20, orders=60, activities=10).write()
    with (folder / "customers.csv").open("a", encoding="utf-8") as fh:
        fh.write(BAD_MEMBER + FORMULA_MEMBER)
    if verbose:
        text = config.read_text().replace('level = "INFO"', 'level = "DEBUG"\nverbose_personal_data = true')
        config.write_text(text)
    return config


def _sync(config: Path) -> tuple[dict, str]:
    done = run_cli(config, "--verbose", "sync", "--json", "--as-of", AS_OF, env=crmsync_env())
    assert done.returncode == 1, done.stderr  # rejected rows on purpose
    return json.loads(done.stdout), done.stdout + done.stderr + (config.parent / "out" / "crmsync.log").read_text()


def test_reports_and_logs_carry_member_ids_not_emails_or_names(tmp_path: Path) -> None:
    config = _world(tmp_path)
    report, everything = _sync(config)
    for secret in ("x@y", "Secretname", "Hiddenlast", "person3@example.com", "First3", "Last3"):
        assert secret not in everything, secret
    email_reject = [r for r in report["rejected"] if r["field"] == "email"]
    assert email_reject and email_reject[0]["locator"].startswith("customers.csv:")
    assert "not an email address" in email_reject[0]["reason"]


def test_verbose_mode_shows_the_rejected_value(tmp_path: Path) -> None:
    report, _ = _sync(_world(tmp_path, verbose=True))
    assert any("'x@y'" in r["reason"] for r in report["rejected"])


def test_csv_output_is_formula_safe(tmp_path: Path) -> None:
    config = _world(tmp_path)
    _sync(config)
    with (tmp_path / "out" / "profiles.csv").open(encoding="utf-8", newline="") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert '\'=HYPERLINK("http://evil")' in cells
    assert not any(c.startswith(("=", "@", "+")) for c in cells)
    with (tmp_path / "out" / "rejects.csv").open(encoding="utf-8", newline="") as fh:
        rejects = [c for row in csv.reader(fh) for c in row]
    assert not any(c.startswith(("=", "@")) for c in rejects)


def _member_rows(store: Path, member: str, email: str) -> dict[str, int]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        out = {}
        for table in ("profiles", "pushed", "outbox", "push_audit", "policy_points_ledger", "policy_tier_state"):
            out[table] = con.execute(f"SELECT count(*) FROM {table} WHERE member_id = ?", [member]).fetchone()[0]
        out["members"] = con.execute("SELECT count(*) FROM members WHERE external_id = ?", [member]).fetchone()[0]
        for table in ("orders", "activities"):
            out[table] = con.execute(
                f"SELECT count(*) FROM {table} WHERE member_id = ? OR member_external_id = ?", [member, member]
            ).fetchone()[0]
        out["quarantine"] = con.execute(
            "SELECT count(*) FROM quarantine WHERE record_key = ? OR raw::VARCHAR LIKE ? OR raw::VARCHAR LIKE ?",
            [member, f'%"{member}"%', f"%{email}%"],
        ).fetchone()[0]
        out["erasure entries naming the member"] = con.execute(
            "SELECT count(*) FROM erasures WHERE concat_ws(' ', member_hash, actor, reason) LIKE ?", [f"%{member}%"]
        ).fetchone()[0]
        out["erasures"] = -con.execute("SELECT count(*) FROM erasures").fetchone()[0]
        return out
    finally:
        con.close()


def test_forget_erases_a_member_everywhere_and_keeps_them_out(tmp_path: Path) -> None:
    config = _world(tmp_path)
    store = tmp_path / "store.duckdb"
    member, email = "C0003", "person3@example.com"
    with (tmp_path / "orders.csv").open("a", encoding="utf-8") as fh:  # a bad order row naming the member
        fh.write(f"O77777,{member},2025-05-05 10:00:00,1x,EUR,paid\n")
    _sync(config)
    before = _member_rows(store, member, email)
    assert before["profiles"] == 1 and before["orders"] > 0 and before["policy_points_ledger"] > 0
    assert before["quarantine"] == 1 and before["push_audit"] > 0
    forgot = run_cli(config, "forget", member, "--yes", "--json", env=crmsync_env())
    assert forgot.returncode == 0, forgot.stderr
    assert email not in forgot.stdout + forgot.stderr
    after = _member_rows(store, member, email)
    assert after == {k: 0 for k in after} | {"erasures": -1}, after
    # the source still sends the member (and a changed file is read again): they stay out and are never pushed
    with (tmp_path / "orders.csv").open("a", encoding="utf-8") as fh:
        fh.write(f"O88888,{member},2025-06-06 10:00:00,500.00,EUR,paid\n")
    _sync(config)
    again = _member_rows(store, member, email)
    assert again == after, again
    history = run_cli(config, "history", member, "--json", env=crmsync_env())
    assert json.loads(history.stdout) == []


def test_every_pushed_value_is_audited_with_run_previous_new_and_reason(tmp_path: Path) -> None:
    config = _world(tmp_path)
    first, _ = _sync(config)
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    try:
        pushed = dict(con.execute("SELECT member_id, fields FROM pushed").fetchall())
        top = con.execute("SELECT member_id FROM profiles ORDER BY points DESC, member_id LIMIT 1").fetchone()[0]
    finally:
        con.close()
    assert len(pushed) == first["pushed"]["shop"]
    history = json.loads(run_cli(config, "history", top, "--json", env=crmsync_env()).stdout)
    values = json.loads(pushed[top])
    expected = {k for k, v in values.items() if v is not None}
    assert {e["field"] for e in history} == expected
    for entry in history:
        assert entry["run_id"] == first["run_id"] and entry["target"] == "shop"
        assert entry["previous"] is None and entry["new"] == values[entry["field"]] and entry["reason"]
    # a big order changes the member's grades: the next push is audited with the previous value
    with (tmp_path / "orders.csv").open("a", encoding="utf-8") as fh:
        fh.write(f"O66666,{top},2025-12-30 10:00:00,5000.00,EUR,paid\n")
    second, _ = _sync(config)
    later = json.loads(run_cli(config, "history", top, "--json", env=crmsync_env()).stdout)
    new_entries = [e for e in later if e["run_id"] == second["run_id"]]
    assert {e["field"] for e in new_entries} >= {"points"}
    for entry in new_entries:
        assert entry["previous"] == values[entry["field"]] and entry["new"] != entry["previous"]
    table = run_cli(config, "history", top, env=crmsync_env())
    assert second["run_id"] in table.stdout and "points" in table.stdout


@pytest.mark.parametrize("member", ["C0005"])
def test_forget_unknown_member_is_a_clear_error(tmp_path: Path, member: str) -> None:
    config = _world(tmp_path)
    _sync(config)
    done = run_cli(config, "forget", "nobody-" + member, "--yes", env=crmsync_env())
    assert done.returncode == 2 and "no member with id" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------- erasure in bytes
def _people_world(folder: Path, n: int) -> tuple[Path, list[dict[str, str]]]:
    """Exports whose every personal value is distinctive; members 3 and 5 have rejected order rows, member 7's own
    row is rejected (a bad email) and member 8 is named by email only on one order."""
    config = CsvWorld(folder, members=1, orders=1, activities=1).write()
    people = [
        {"id": f"K{i:02d}Q", "email": f"k{i:02d}q@example.net", "phone": f"+4915{i:02d}7{i:02d}",
         "first": f"Fn{i:02d}q", "last": f"Ln{i:02d}q"}
        for i in range(n)
    ]  # fmt: skip
    rows = ["external_id,email,phone,first_name,last_name,created_at"]
    for p in people:
        email = "k07q(at)example.net" if p["id"] == "K07Q" else p["email"]
        rows.append(f"{p['id']},{email},{p['phone']},{p['first']},{p['last']},2024-01-01 10:00:00")
    (folder / "customers.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    rows = ["external_id,member_external_id,member_email,placed_at,amount,currency,status"]
    for i, p in enumerate(people):
        rows.append(f"O{i}a,{p['id']},,2025-05-0{1 + i % 9} 10:00:00,{100 + 50 * i}.00,EUR,paid")
    rows += ["Obad3,K03Q,,2025-05-05 10:00:00,1x,EUR,paid", "Obad5,K05Q,,2025-02-31 10:00:00,10.00,EUR,paid"]
    rows.append("Omail8,,k08q@example.net,2025-05-05 10:00:00,30.00,EUR,paid")
    (folder / "orders.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "activities.csv").write_text("external_id,member_external_id,kind,occurred_at\n", encoding="utf-8")
    return config, people


def _holding(folder: Path, person: dict[str, str]) -> dict[str, list[str]]:
    """The files crmsync keeps that still hold one of the person's values, with the values found."""
    files = [folder / "store.duckdb", folder / "store.duckdb.wal", folder / "out" / "rejects.csv",
             folder / "out" / "profiles.csv"]  # fmt: skip
    found = {}
    for path in files:
        if path.exists():
            data = path.read_bytes().lower()
            hits = [v for v in person.values() if v.lower().encode() in data]
            if hits:
                found[path.name] = hits
    return found


def test_forget_then_sync_leaves_no_byte_of_the_members_in_the_store_or_the_connectors_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, people = _people_world(tmp_path, 12)
    cfg = ["--config", str(config)]
    code, _, err = run_main([*cfg, "sync", "--as-of", AS_OF], capsys)
    assert code == 1, err  # the bad rows
    gone = [people[i] for i in (3, 5, 7, 8)]
    for person in gone:
        if person["id"] != "K07Q":  # its own row was rejected: only the id and the rejected row are kept
            assert _holding(tmp_path, person), person
    assert "K07Q" in (tmp_path / "out" / "rejects.csv").read_text()
    code, out, err = run_main([*cfg, "forget", *(p["id"] for p in gone), "--yes", "--json"], capsys)
    assert code == 0, err
    assert {d["member_id"]: d["connector_rows"]["shop"] > 0 for d in json.loads(out)} == {
        "K03Q": True, "K05Q": True, "K07Q": True, "K08Q": True
    }  # fmt: skip
    for person in gone:
        assert _holding(tmp_path, person) == {}, person
    # the exports change (a new order of each) and are read whole again: the forgotten stay out, in every file
    with (tmp_path / "orders.csv").open("a", encoding="utf-8") as fh:
        for p in gone:
            fh.write(f"Onew{p['id']},{p['id']},{p['email']},2025-06-01 10:00:00,77.00,EUR,paid\n")
            fh.write(f"Obadnew{p['id']},{p['id']},,2025-06-01 10:00:00,7x,EUR,paid\n")
    code, _, err = run_main([*cfg, "sync", "--as-of", AS_OF], capsys)
    assert code in (0, 1), err
    for person in gone:
        assert _holding(tmp_path, person) == {}, person
    for person in people[:3]:  # the others are all still there
        assert set(_holding(tmp_path, person)) >= {"store.duckdb", "profiles.csv"}
