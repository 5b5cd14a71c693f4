#!/usr/bin/env python3
"""External test: palisade's /metrics scraped by a real Prometheus.

Starts palisade ($PALISADE_BIN, default target/debug/palisade) with
`--auth-mode none` and a message rate of 2 a second (burst 4) on a loopback
port, and Debian's `prometheus` on another loopback port with its own
configuration and data directory (scraping palisade every second). Then a
scripted sequence with the Python `websockets` client:

- 3 WebSocket handshakes accepted (the three clients stay open);
- 2 refused for their Origin (`403`);
- 5 messages from the first client at once: 4 answered `name`, the fifth
  refused by the message rate (`rate_limited`);
- the three clients close (`1000`).

Then `palisade_socketio_sessions{transport}` with the official
`python-socketio` client on each transport.

The counts are read back through Prometheus's HTTP query API and must be
exact: palisade_handshakes_total{result="accepted"} 3,
{result="refused",reason="origin"} 2, palisade_messages_received_total 5,
palisade_messages_sent_total 5, palisade_rate_limited_total{kind="message"} 1,
palisade_closes_total{code="1000"} 3, and palisade_connections_open 3 more
while the clients are open than after (Prometheus's own keep-alive scrape
connection is the rest). `promtool check metrics` must pass on the raw page,
and the page is `403` to a client outside loopback (named by
X-Forwarded-For through a trusted proxy) unless `metrics.allow` lists it.

Prints one PASS/FAIL line per check; exits non-zero if any failed.
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

NAME = "prometheus_metrics"
ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = Path(os.environ.get("PALISADE_LOG_DIR", ROOT / "target" / "test-output" / "logs"))
LISTEN_RE = re.compile(r"listening on (127\.0\.0\.1:\d+)")
WAIT_S = 30.0

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"PASS {NAME}: {name}" if ok else f"FAIL {NAME}: {name} -- {detail}", flush=True)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Palisade:
    def __init__(self, work, config):
        self.bin = os.environ.get("PALISADE_BIN", str(ROOT / "target" / "debug" / "palisade"))
        cfg = work / f"palisade-{len(list(work.iterdir()))}.json"
        cfg.write_text(json.dumps(config))
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.log_path = LOG_DIR / f"{NAME}-{stamp}-{os.getpid()}-{cfg.stem}.log"
        self.proc = subprocess.Popen(
            [self.bin, "--config", str(cfg), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addr = None
        found = threading.Event()
        log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed by drain

        def drain():
            with log:
                for line in self.proc.stderr:
                    log.write(line)
                    log.flush()
                    m = LISTEN_RE.search(line)
                    if m and not self.addr:
                        self.addr = m.group(1)
                        found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(15):
            raise RuntimeError("palisade did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# Loopback only: no proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url, headers=None):
    """Status and body; status 0 when nothing listens (yet)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with OPENER.open(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def prometheus_value(prom, query):
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = http_get(url)
    if status != 200:
        return None
    result = json.loads(body)["data"]["result"]
    if len(result) != 1:
        return None
    return float(result[0]["value"][1])


def wait_for(prom, query, want, since):
    """Waits until a scrape after `since` shows `want` (the last value seen otherwise)."""
    deadline = time.monotonic() + WAIT_S
    value = None
    while time.monotonic() < deadline:
        value = prometheus_value(prom, query)
        stamp = prometheus_value(prom, 'timestamp(up{job="palisade"})')
        if value == want and stamp is not None and stamp > since:
            return value
        time.sleep(0.3)
    return value


async def sequence(addr):
    url = f"ws://{addr}/ws"
    clients = [await connect(url) for _ in range(3)]
    refused = []
    for _ in range(2):
        try:
            ws = await connect(url, origin="http://evil.example")
            await ws.close()
            refused.append(101)
        except InvalidStatus as e:
            refused.append(e.response.status_code)
    first = clients[0]
    for _ in range(5):
        await first.send(json.dumps({"event": "get_name", "data": {"hero": "hulk"}}))
    replies = [json.loads(await asyncio.wait_for(first.recv(), 5)) for _ in range(5)]
    return clients, refused, replies


def main():
    prometheus = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    if not prometheus or not promtool:
        check("prometheus and promtool are installed", False, "apt-get install prometheus")
        return 1
    work = Path(tempfile.mkdtemp(prefix="palisade-prometheus."))
    config = {"auth": {"mode": "none"}, "rate": {"messages_per_conn_per_s": 2}}
    server = Palisade(work, config)
    prom_port = free_port()
    prom = f"127.0.0.1:{prom_port}"
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: palisade\n"
        f"    static_configs:\n      - targets: ['{server.addr}']\n"
    )
    prom_log = open(work / "prometheus.log", "w")  # noqa: SIM115
    prom_proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={prom}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=prom_log,
        stderr=subprocess.STDOUT,
    )
    try:
        return run(server, prom, promtool, work)
    finally:
        prom_proc.terminate()
        try:
            prom_proc.wait(10)
        except subprocess.TimeoutExpired:
            prom_proc.kill()
        server.stop()
        if not all(results):
            print((work / "prometheus.log").read_text()[-3000:], file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


def page_value(addr, series):
    status, page = http_get(f"http://{addr}/metrics")
    for line in page.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return int(value)
    return None


def sessions_by_transport(addr):
    """The official Python client on each transport, seen in the gauge."""
    import socketio

    for transport in ["polling", "websocket"]:
        client = socketio.Client(reconnection=False)
        client.connect(f"http://{addr}", transports=[transport], wait_timeout=5)
        try:
            counts = {
                t: page_value(addr, f'palisade_socketio_sessions{{transport="{t}"}}')
                for t in ["polling", "websocket"]
            }
            want = {t: int(t == transport) for t in counts}
            check(f"one Socket.IO client on {transport} in the sessions gauge", counts == want,
                  str(counts))
        finally:
            client.disconnect()
    time.sleep(0.5)
    ended = [page_value(addr, f'palisade_socketio_sessions{{transport="{t}"}}')
             for t in ["polling", "websocket"]]
    check("the sessions gauge is back to 0 after they leave", ended == [0, 0], str(ended))


def run(server, prom, promtool, work):
    addr = server.addr
    up = wait_for(prom, 'up{job="palisade"}', 1.0, 0)
    if not check("prometheus scrapes palisade", up == 1.0, f"up = {up}"):
        return 1
    idle_open = int(prometheus_value(prom, "palisade_connections_open") or 0)

    async def scripted():
        clients, refused, replies = await sequence(addr)
        check("two handshakes refused 403 for their Origin", refused == [403, 403], str(refused))
        names = [r for r in replies if r.get("event") == "name"]
        limited = [r for r in replies if r.get("event") == "error"]
        check(
            "four answers and one rate_limited",
            len(names) == 4
            and len(limited) == 1
            and limited[0]["data"]["code"] == "rate_limited",
            str(replies),
        )
        since = time.time()
        await asyncio.sleep(0)
        busy_open = await asyncio.to_thread(
            wait_for, prom, "palisade_connections_open", idle_open + 3, since
        )
        check(
            "palisade_connections_open counts the three clients",
            busy_open == idle_open + 3,
            f"{busy_open} with the clients open, {idle_open} before",
        )
        for ws in clients:
            await ws.close()

    asyncio.run(scripted())
    since = time.time()
    expected = [
        ('palisade_handshakes_total{result="accepted"}', 3),
        ('palisade_handshakes_total{result="refused",reason="origin"}', 2),
        ("palisade_messages_received_total", 5),
        ("palisade_messages_sent_total", 5),
        ('palisade_rate_limited_total{kind="message"}', 1),
        ('palisade_closes_total{code="1000"}', 3),
        ("palisade_connections_open", idle_open),
        ("palisade_handshake_duration_seconds_count", 3),
    ]
    for query, want in expected:
        got = wait_for(prom, query, float(want), since)
        check(f"{query} reads {want} through Prometheus", got == float(want), f"got {got}")
    for query in ["palisade_bytes_received_total", "palisade_bytes_sent_total"]:
        got = prometheus_value(prom, query)
        check(f"{query} is counted", got is not None and got > 0, f"got {got}")
    got = prometheus_value(prom, 'palisade_build_info{version!=""}')
    check("palisade_build_info is 1", got == 1.0, f"got {got}")

    status, page = http_get(f"http://{addr}/metrics")
    check("GET /metrics is 200 on loopback", status == 200, str(status))
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=30
    )
    check(
        "promtool check metrics passes on the page",
        lint.returncode == 0 and lint.stdout.strip() == "" and lint.stderr.strip() == "",
        (lint.stdout + lint.stderr)[:500],
    )
    sessions_by_transport(addr)
    server.stop()

    # Outside loopback: a client named by a trusted proxy.
    behind = {"auth": {"mode": "none"}, "trusted_proxies": ["127.0.0.1"]}
    for allow, want in [([], 403), (["203.0.113.0/24"], 200)]:
        s = Palisade(work, {**behind, "metrics": {"allow": allow}})
        try:
            status, body = http_get(
                f"http://{s.addr}/metrics", {"X-Forwarded-For": "203.0.113.9"}
            )
            check(
                f"/metrics to 203.0.113.9 with metrics.allow {allow} is {want}",
                status == want and (want == 200) == body.startswith("# HELP"),
                f"{status} {body[:80]!r}",
            )
        finally:
            s.stop()
    return 0


if __name__ == "__main__":
    code = main()
    passed = sum(results)
    failed = len(results) - passed
    print(f"{NAME}: {passed} passed, {failed} failed")
    sys.exit(1 if failed or code else 0)
