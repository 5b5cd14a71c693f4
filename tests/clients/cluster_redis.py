#!/usr/bin/env python3
"""External test: three palisade instances fanning out through a real Redis.

Starts Debian's `redis-server` on a loopback port with its own directory
and a password (`requirepass`), and three palisade instances
($PALISADE_BIN, default target/debug/palisade) on loopback ports with
`cluster.redis_url` naming it; the first runs two event loops
(`--workers 2`). Each instance gets raw WebSocket subscribers of channel
`news.a` (logged in, the Python `websockets` client) and one of `news.b`;
the second also gets an official `python-socketio` client in the same
channel.

- A publication through each instance's `POST /api/publish` reaches every
  `news.a` subscriber on all three instances exactly once (the exact
  frame), none of `news.b`; the answer is
  `{"delivered": <local subscribers>, "cluster": "published"}`.
- Redis is stopped: every instance logs `redis connection failed`, and
  `palisade_cluster_links_up` falls to 0; a publication then still
  reaches the publishing instance's subscribers, is answered
  `"cluster":"unavailable"` and counted in
  `palisade_cluster_unsent_total`; no instance exits.
- Redis is started again on the same port: the instances reconnect by
  themselves (the links come back up), and publications cross again,
  once each.

With PALISADE_TLS=1 Redis listens on TLS only (the development
certificate) and the instances reach it with `rediss://localhost:...` and
`cluster.redis_ca_file` naming certs/ca.pem.

Prints one PASS/FAIL line per check; exits non-zero if any failed.
"""

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import socketio
from websockets.asyncio.client import connect

NAME = "cluster_redis"
ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("PALISADE_BIN", str(ROOT / "target" / "debug" / "palisade"))
LOG_DIR = Path(os.environ.get("PALISADE_LOG_DIR", ROOT / "target" / "test-output" / "logs"))
# Every password used here is listed in tests/test-passwords.txt.
PASSWORD = "cluster-alice-Jd4Kx9Wp2q"
REDIS_PASSWORD = "cluster-redis-Tn6Bv3Hs8c"
WAIT_S = 20.0
TLS = os.environ.get("PALISADE_TLS") == "1"
CERTS = ROOT / "certs"
QUIET_S = 1.0

results = []
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check(name, ok, detail=""):
    if TLS:
        name += " (redis over tls)"
    results.append(bool(ok))
    print(f"PASS {NAME}: {name}" if ok else f"FAIL {NAME}: {name} -- {detail}", flush=True)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with OPENER.open(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


class Redis:
    def __init__(self, work, port):
        self.dir = work / "redis"
        self.dir.mkdir(exist_ok=True)
        self.port = port
        self.proc = None

    def url(self):
        if TLS:
            return f"rediss://:{REDIS_PASSWORD}@localhost:{self.port}"
        return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}"

    def start(self):
        port = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(CERTS / "localhost.pem"),
                "--tls-key-file", str(CERTS / "localhost.key"), "--tls-ca-cert-file", str(CERTS / "ca.pem"),
                "--tls-auth-clients", "no"] if TLS else ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", *port, "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--requirepass", REDIS_PASSWORD,
             "--daemonize", "no", "--logfile", str(self.dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                    s = raw
                    if TLS:
                        s = ssl.create_default_context(cafile=str(CERTS / "ca.pem")).wrap_socket(
                            raw, server_hostname="localhost")
                    s.sendall(f"AUTH {REDIS_PASSWORD}\r\nPING\r\n".encode())
                    if b"PONG" in s.recv(100):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Palisade:
    def __init__(self, work, n, config, workers):
        cfg = work / f"palisade-{n}.json"
        cfg.write_text(json.dumps(config))
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{NAME}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{n}.log"
        self.lines = []
        self.proc = subprocess.Popen(
            [BIN, "--config", str(cfg), "--listen", "127.0.0.1:0", "--workers", str(workers)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.workers = workers
        self.addr = None
        found = threading.Event()
        log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed by drain

        def drain():
            with log:
                for line in self.proc.stderr:
                    log.write(line)
                    log.flush()
                    self.lines.append(line)
                    m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
                    if m and not self.addr:
                        self.addr = m.group(1)
                        found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(15):
            raise RuntimeError("palisade did not start")
        self.url = f"http://{self.addr}"

    def metric(self, name):
        status, body = http("GET", f"{self.url}/metrics")
        if status != 200:
            return None
        for line in body.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if line.split(" ")[0] == name:
                    return float(line.split(" ")[1])
        return None

    def wait_metric(self, name, want):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.metric(name) == want:
                return True
            time.sleep(0.05)
        return False

    def logged(self, text):
        return any(text in line for line in self.lines)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def login(p):
    status, body = http("POST", f"{p.url}/login",
                        json.dumps({"username": "alice", "password": PASSWORD}).encode(),
                        {"Content-Type": "application/json"})
    return json.loads(body)["token"] if status == 200 else None


def publish(p, key, channel, data):
    body = json.dumps({"channel": channel, "data": data}).encode()
    return http("POST", f"{p.url}/api/publish", body,
                {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


async def subscriber(p, token, channel):
    ws = await connect(f"ws://{p.addr}/ws", additional_headers={"Authorization": f"Bearer {token}"},
                       open_timeout=10)
    greeting = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert greeting["event"] == "user_authorized", greeting
    await ws.send(json.dumps({"event": "subscribe", "data": {"channel": channel}}))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer == {"event": "subscribed", "data": {"channel": channel}}, answer
    return ws


async def received(ws, quiet=QUIET_S):
    """Every frame that arrives until none has for `quiet` seconds."""
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(ws.recv(), quiet))
        except asyncio.TimeoutError:
            return got


def frame(channel, data):
    """The delivery, parsed: the publishing instance passes the publisher's
    JSON text on unchanged, the others write it again from MessagePack."""
    return {"event": "publication", "data": {"channel": channel, "data": data}}


class SioClient:
    def __init__(self, p, token, channel):
        self.events = []
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("publication", lambda data: self.events.append(data))
        self.sio.connect(p.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        answer = self.sio.call("subscribe", {"channel": channel}, timeout=10)
        assert answer == {"channel": channel}, answer


async def round_of(label, instances, subs, others, sio, via, key, data, want_cluster, reach):
    """Publishes `data` on news.a through instance `via`; every subscriber in
    `reach` (instance indexes) must get it once, the others nothing."""
    status, body = await asyncio.to_thread(publish, instances[via], key, "news.a", data)
    local = sum(1 for i, _ in subs if i == via) + (1 if via == 1 else 0)
    want_answer = {"delivered": local, "cluster": want_cluster}
    check(f"{label}: publish through instance {via} answered 200 {json.dumps(want_answer)}",
          status == 200 and json.loads(body or "null") == want_answer, f"{status} {body}")
    gots = await asyncio.gather(*(received(ws) for _, ws in subs), *(received(ws) for ws in others))
    gots = [[json.loads(t) for t in g] for g in gots]
    want = frame("news.a", data)
    wrong = [(subs[k][0], g) for k, g in enumerate(gots[:len(subs)])
             if g != ([want] if subs[k][0] in reach else [])]
    check(f"{label}: each news.a subscriber on instances {sorted(reach)} got it exactly once"
          + (", the others nothing" if len(reach) < len(instances) else ""),
          not wrong, repr(wrong[:3]))
    check(f"{label}: news.b subscribers got nothing", all(g == [] for g in gots[len(subs):]),
          repr(gots[len(subs):]))
    sio_want = [{"channel": "news.a", "data": data}] if 1 in reach else []
    sio_got, sio.events[:] = list(sio.events), []
    check(f"{label}: the python-socketio client on instance 1 got "
          + ("it once as the event publication" if sio_want else "nothing"),
          sio_got == sio_want, repr(sio_got))


async def scenario(instances, redis, key):
    tokens = [await asyncio.to_thread(login, p) for p in instances]
    if not check("alice logs in on every instance", all(tokens), repr(tokens)):
        return
    # Four subscribers on the instance with two loops, two elsewhere.
    subs = []
    for i, p in enumerate(instances):
        for _ in range(4 if p.workers > 1 else 2):
            subs.append((i, await subscriber(p, tokens[i], "news.a")))
    others = [await subscriber(p, tokens[i], "news.b") for i, p in enumerate(instances)]
    sio = await asyncio.to_thread(SioClient, instances[1], tokens[1], "news.a")
    everyone = set(range(len(instances)))
    for via in range(len(instances)):
        await round_of("redis up", instances, subs, others, sio, via, key,
                       {"round": via, "text": "é ✓", "n": [1.5, -7, None, True]}, "published", everyone)

    redis.stop()
    down = all(p.wait_metric("palisade_cluster_links_up", 0) for p in instances)
    check("redis stopped: palisade_cluster_links_up falls to 0 on every instance", down)
    check("redis stopped: every instance logs redis connection failed",
          all(p.logged('"redis connection failed"') or p.logged("redis connection failed")
              for p in instances))
    await round_of("redis down", instances, subs, others, sio, 0, key, {"round": "down"},
                   "unavailable", {0})
    unsent = instances[0].metric("palisade_cluster_unsent_total")
    check("redis down: the publication is counted in palisade_cluster_unsent_total",
          unsent is not None and unsent >= 1, repr(unsent))
    check("redis down: no instance exited", all(p.proc.poll() is None for p in instances))

    check("redis started again", redis.start())
    back = all(p.wait_metric("palisade_cluster_links_up", 2 * p.workers) for p in instances)
    check("redis back: every instance reconnects by itself (links up again)", back,
          repr([p.metric("palisade_cluster_links_up") for p in instances]))
    for via in (2, 0):
        await round_of("redis back", instances, subs, others, sio, via, key, {"round": f"back {via}"},
                       "published", everyone)
    sent = sum(p.metric("palisade_cluster_messages_total{direction=\"sent\"}") or 0 for p in instances)
    check("palisade_cluster_messages_total{direction=\"sent\"} counts the five publications",
          sent == 5, repr(sent))
    for _, ws in subs:
        await ws.close()
    for ws in others:
        await ws.close()
    sio.sio.disconnect()


def main():
    if shutil.which("redis-server") is None:
        check("redis-server is installed (the test command installs it)", False)
        return 1
    with tempfile.TemporaryDirectory(prefix=f"palisade-{NAME}.") as w:
        work = Path(w)
        users = work / "users.json"
        keys = work / "keys.json"
        r = subprocess.run([BIN, "users", "add", "alice", "--users-file", str(users), "--iterations", "10000"],
                           input=PASSWORD + "\n", text=True, capture_output=True, timeout=60)
        if not check("palisade users add alice", r.returncode == 0, r.stderr[:300]):
            return 1
        r = subprocess.run([BIN, "apikeys", "add", "ops", "--keys-file", str(keys)],
                           text=True, capture_output=True, timeout=60)
        key = r.stdout.strip()
        if not check("palisade apikeys add ops", r.returncode == 0 and key.startswith("pk_"), r.stderr):
            return 1
        redis = Redis(work, free_port())
        if not check("redis-server starts (with requirepass)", redis.start()):
            return 1
        config = {
            "auth": {"users_file": str(users)},
            "api": {"keys_file": str(keys)},
            "rate": {"logins_per_ip_per_min": 1000},
            "channels": [{"pattern": "news.*", "subscribe": ["authenticated"], "publish": ["key:ops"]}],
            "cluster": {"redis_url": redis.url(),
                        **({"redis_ca_file": str(CERTS / "ca.pem")} if TLS else {})},
        }
        instances = []
        try:
            for n, workers in enumerate((2, 1, 1)):
                instances.append(Palisade(work, n, config, workers))
            up = all(p.wait_metric("palisade_cluster_links_up", 2 * p.workers) for p in instances)
            check("every instance connects to redis (two links per event loop)", up,
                  repr([p.metric("palisade_cluster_links_up") for p in instances]))
            asyncio.run(asyncio.wait_for(scenario(instances, redis, key), 180))
            check("no instance logged the redis password",
                  not any(REDIS_PASSWORD in line for p in instances for line in p.lines))
        finally:
            for p in instances:
                p.stop()
            redis.stop()
    failed = results.count(False)
    print(f"{NAME}: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
