"""Zoho: 50,000 contacts and 200,000 orders through the Zoho connector against a local fake Zoho over real HTTP.

The fake org of the test suite (``tests/zoho/fake.py``: accounts server, REST v8, Bulk Read/Write, Zoho's answer
shapes) is served on 127.0.0.1 by a threaded HTTP server that answers each call after ``--latency`` (100 ms) and
stops by itself after ``--timeout`` seconds. crmsync runs as a subprocess (``crmsync sync --json``), half an hour
of the org's time apart: the first sync (it writes every contact back), a rerun with no change after that
write-back, a steady rerun, a rerun after ``--changed`` orders changed, a rerun after an admin's mass update of
every contact within one second, and a rerun after that. For each: API calls by kind, the minimum the work needs,
and wall time.

    python bench/zoho_sync.py --contacts 50000 --orders 200000
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from crmsync_zoho.client import classify  # noqa: E402
from harness import CRMSYNC, emit, machine, run  # noqa: E402
from zoho.fake import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, FakeZoho  # noqa: E402

BULK_READ_PAGE = 200_000
REST_PAGE = 200
REST_UPDATE = 100
FAKE_DOWNLOAD = b"https://download.zohocrm.com"
BULK_POLL = 0.05
"""``bulk_poll_seconds`` of the configuration: the connector waits this long before a job's first status call."""
BULK_JOB_SECONDS = 0.05
"""How long a fake bulk job runs after its creation (a real job's duration is not documented)."""


class FakeServer:
    """``fake`` behind a real HTTP server on 127.0.0.1, each answer delayed by ``latency`` seconds."""

    def __init__(self, latency: float, timeout: float) -> None:
        self.latency = latency
        self.lock = threading.Lock()
        server = self
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.bench = server  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.fake = FakeZoho(
            accounts=self.base,
            api=self.base,
            upload=self.base,
            bulk_page_size=BULK_READ_PAGE,
            bulk_job_seconds=BULK_JOB_SECONDS,
            clock=time.monotonic,
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.deadline = threading.Timer(timeout, self.stop)
        self.deadline.daemon = True

    def __enter__(self) -> FakeServer:
        self.thread.start()
        self.deadline.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.deadline.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.latency)
        with self.lock:
            return self.fake._handle(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _any(self) -> None:
        bench: FakeServer = self.server.bench  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in ("host", "content-length")]
        request = httpx.Request(self.command, bench.base + self.path, headers=headers, content=body)
        response = bench.answer(request)
        content = response.read().replace(FAKE_DOWNLOAD, bench.base.encode())
        self.send_response_only(response.status_code)  # the fake's own Date: the org's clock, not this machine's
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


def seed(fake: FakeZoho, contacts: int, orders: int, rng: random.Random) -> list[str]:
    ids = fake.seed_contacts(contacts)
    order_ids = []
    for _ in range(orders):
        loyal = min(int(rng.paretovariate(1.2)) - 1, contacts - 1)  # a few contacts buy very often
        contact = ids[loyal if rng.random() < 0.5 else rng.randrange(contacts)]
        amount = Decimal(str(round(rng.lognormvariate(3.7, 0.85), 2)))
        order_ids.append(fake.add_order(contact, str(amount)))
    return order_ids


def config(work: Path, base: str) -> Path:
    text = f"""[store]
path = "crmsync.duckdb"

[sync]
members = "crm"
orders = ["crm"]
push = ["crm"]
base_currency = "EUR"

[connectors.crm]
plugin = "zoho"
client_id = "{CLIENT_ID}"
accounts_url = "{base}"
api_url = "{base}"
upload_url = "{base}"
rate_per_minute = 1000000
bulk_poll_seconds = {BULK_POLL}
tier_names = ["Bronze", "Silver", "Gold", "Platinum"]

"""
    path = work / "crmsync.toml"
    path.write_text(text + (ROOT / "bench" / "policy.toml").read_text(encoding="utf-8"), encoding="utf-8")
    return path


def minimum(changed: dict[str, int], pushed: int, first: bool, read_back: int, bulk_write: int) -> int:
    """Calls the work needs, from what changed in the source since the last sync (not from what was re-read).

    A token on the first sync (it is cached afterwards). Each stream read once, the cheaper of pages of 200 and a
    Bulk Read (create, one status, download per 200,000 records); on reruns one look at the deleted records per
    stream. ``read_back`` contacts written by the previous sync changed in the source too (their
    ``Modified_Time`` moved): a write cannot tell whether a person edited the record between the read and the
    write, so a correct rerun reads them back. The pushes: Bulk Write (upload, create, one status, result; plus
    one look-up of the org id, the upload's ``X-CRM-ORG`` header, the first time) from ``bulk_write`` changes,
    else updates of 100 records.
    """
    calls = 1 if first else 0
    for stream, n in changed.items():
        n += read_back if stream == "members" else 0
        calls += min(3 * max(1, math.ceil(n / BULK_READ_PAGE)), max(1, math.ceil(n / REST_PAGE)))
        calls += 0 if first else 1
    if pushed >= bulk_write:
        calls += 4 + (1 if first else 0)
    elif pushed:
        calls += math.ceil(pushed / REST_UPDATE)
    return calls


RUN_INTERVAL = 1800
"""Seconds of the org's time between two runs (a sync every half hour)."""


def _plan(contacts: int, orders: int, changed: int) -> list[tuple[str, dict[str, int], str]]:
    """(label, records changed in the org before the run, what changes them)."""
    return [
        ("first sync", {"members": contacts, "orders": orders}, ""),
        ("rerun, no change, after the full write-back", {"members": 0, "orders": 0}, ""),
        ("rerun, no change", {"members": 0, "orders": 0}, ""),
        (f"rerun, {changed} orders changed", {"members": 0, "orders": changed}, "orders"),
        (f"rerun, mass update of {contacts} contacts in one second", {"members": contacts, "orders": 0}, "mass"),
        ("rerun, no change, after the mass update", {"members": 0, "orders": 0}, ""),
    ]


def scenario(contacts: int, orders: int, changed: int, latency: float, timeout: float) -> dict[str, Any]:
    rng = random.Random(7)
    runs = []
    with FakeServer(latency, timeout) as server, tempfile.TemporaryDirectory(prefix="crmsync-zoho-") as tmp:
        work = Path(tmp)
        order_ids = seed(server.fake, contacts, orders, rng)
        config(work, server.base)
        env = {
            "CRMSYNC_CONNECTORS__CRM__CLIENT_SECRET": CLIENT_SECRET,
            "CRMSYNC_CONNECTORS__CRM__REFRESH_TOKEN": REFRESH_TOKEN,
        }
        read_back = 0
        for label, source_changes, change in _plan(contacts, orders, changed):
            with server.lock:
                fake = server.fake
                if change == "orders":
                    for rid in rng.sample(order_ids, changed):
                        fake.modify("Sales_Orders", rid, Grand_Total=Decimal("999.00"))
                elif change == "mass":
                    fake.mass_update("Contacts", list(fake.records["Contacts"]), Lead_Source="Trade fair 2025")
                fake.tick(RUN_INTERVAL)  # the changes happen between two runs
                before = len(fake.requests)
            m = run([*CRMSYNC, "--config", str(work / "crmsync.toml"), "sync", "--json"], cwd=work, env=env)
            if m.returncode not in (0, 1):
                raise RuntimeError(f"crmsync sync failed ({m.returncode}): {m.stdout[-1500:]} {m.stderr[-1500:]}")
            report = json.loads(m.stdout)
            kinds: dict[str, int] = {}
            for req in server.fake.requests[before:]:
                kinds[classify(req)] = kinds.get(classify(req), 0) + 1
            pulled = {s: c["pulled"] for s, c in report["pulled"].get("crm", {}).items()}
            pushed = report["pushed"].get("crm", 0)
            runs.append(
                {
                    "run": label,
                    "wall_s": m.wall_s,
                    "timings": report.get("timings", {}),
                    "api_calls": sum(kinds.values()),
                    "minimum": minimum(source_changes, pushed, label == "first sync", read_back, 5_000),
                    "calls_by_kind": kinds,
                    "pulled": pulled,
                    "pushed": pushed,
                }
            )
            read_back = pushed
    return {"contacts": contacts, "orders": orders, "latency_ms": latency * 1000, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--changed", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every answer")
    parser.add_argument("--timeout", type=float, default=1800, help="the fake server stops after this long")
    args = parser.parse_args(argv)
    r = scenario(args.contacts, args.orders, args.changed, args.latency, args.timeout)
    emit(
        "zoho",
        {"machine": machine(), **r},
        [(f"{x['run']}: calls (s)", f"{x['api_calls']} ({x['wall_s']})", f"min {x['minimum']}") for x in r["runs"]],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
