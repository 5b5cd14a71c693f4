#!/usr/bin/env python3
"""External client test: the official Python Socket.IO client (`python-socketio`,
`socketio.Client` and `socketio.AsyncClient`) against palisade's `/socket.io/`.

Starts the server from $PALISADE_BIN (default target/debug/palisade) on
127.0.0.1:0 with a users file holding alice (made with `palisade users add`),
logs in with POST /login, then with each client over the WebSocket transport
(`transports=TRANSPORTS`):
  - connects with `auth={"token": ...}`, gets `user_authorized` {"username": "alice"};
  - asks `get_name` for every hero with an ack (`call`) and gets the hero's name,
    and with `emit` plus a `name` handler;
  - with a wrong token: `connect_error` with the server's message
    ("unauthorized") and its code, and no connection;
  - with the token in an `Authorization` header instead (`headers=`, as the
    tutorial client's `extraHeaders`): connects;
  - with `auth={"username", "password"}`: connects (the password is checked on
    the workers, like /login); a wrong password gets `connect_error`
    `invalid_credentials`.
  - with the default transports, the client ends up on WebSocket; with
    `transports=["polling"]` it stays on long-polling and still gets its answers.

With PALISADE_TLS=1 the server runs on the development certificate and every
client trusts only certs/ca.pem (https:// polling, wss://); check names end in
"(tls)".

Prints one PASS/FAIL line per check; exits non-zero if any failed. The server's
stderr goes to target/test-output/logs/.
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install -r tests/clients/requirements.txt
    /tmp/venv/bin/python tests/clients/socketio_client.py
"""

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import socketio

NAME = "socketio_client"
BIN = os.environ.get("PALISADE_BIN", "target/debug/palisade")
ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = Path(os.environ.get("PALISADE_LOG_DIR", ROOT / "target" / "test-output" / "logs"))
HEROES = {
    "ironMan": "Tony Stark",
    "hulk": "Bruce Banner",
    "wonderWoman": "Diana",
    "batMan": "Bruce Wayne",
    "blackPanther": "T'Challa",
}
# Every password used here is listed in tests/test-passwords.txt.
PASSWORD = "sio-alice-Qw3Ez8Rt5y"
TIMEOUT_S = 10
results = []
# Each check runs with the default transports (long-polling, then the move
# to WebSocket) and with `transports=["websocket"]`.
TRANSPORTS = None
MODE = "default"
# PALISADE_TLS=1: the server on the development certificate; every client
# (requests for polling, websocket-client, aiohttp) trusts only certs/ca.pem,
# through the environment variables they read.
TLS = os.environ.get("PALISADE_TLS") == "1"
CA = str(ROOT / "certs" / "ca.pem")
TLS_ARGS = ["--tls-cert", str(ROOT / "certs" / "localhost.pem"),
            "--tls-key", str(ROOT / "certs" / "localhost.key")] if TLS else []
if TLS:
    os.environ["SSL_CERT_FILE"] = CA
    os.environ["REQUESTS_CA_BUNDLE"] = CA


def check(name, ok, detail=""):
    if TLS:
        name += " (tls)"
    results.append(bool(ok))
    print(f"PASS {NAME}: {name}" if ok else f"FAIL {NAME}: {name}" + (f" -- {detail}" if detail else ""),
          flush=True)
    return ok


def start_server(users_file, config):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / f"{NAME}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([BIN, "--listen", "127.0.0.1:0", *TLS_ARGS, "--users-file", users_file, "--config", config],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    found = threading.Event()
    addr = []

    def drain():
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            log.write(line)
            log.flush()
            m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
            if m and not addr:
                addr.append(m.group(1))
                found.set()
        log.close()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    found.wait(TIMEOUT_S)
    return proc, (addr[0] if addr else None)


def login(base):
    req = urllib.request.Request(f"{base}/login", method="POST",
                                 data=json.dumps({"username": "alice", "password": PASSWORD}).encode(),
                                 headers={"Content-Type": "application/json"})
    handlers = [urllib.request.ProxyHandler({})]
    if TLS:
        import ssl
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=CA)))
    opener = urllib.request.build_opener(*handlers)
    with opener.open(req, timeout=TIMEOUT_S) as res:
        return json.load(res)["token"]


def sync_checks(url, token):
    label = f"socketio.Client[{MODE}]"
    sio = socketio.Client(reconnection=False)
    events = []
    authorized = threading.Event()
    sio.on("user_authorized", lambda data: (events.append(("user_authorized", data)), authorized.set()))
    names = {}
    sio.on("name", lambda data: names.__setitem__(data.get("hero"), data.get("hero_name")))
    try:
        sio.connect(url, transports=TRANSPORTS, auth={"token": token}, wait_timeout=TIMEOUT_S)
        check(f"{label}: connects with auth", sio.connected)
    except Exception as e:  # noqa: BLE001
        check(f"{label}: connects with auth", False, repr(e))
        return
    check(f"{label}: user_authorized {{'username': 'alice'}}",
          authorized.wait(TIMEOUT_S) and events[0] == ("user_authorized", {"username": "alice"}), repr(events))
    for hero, real in HEROES.items():
        try:
            ack = sio.call("get_name", {"hero": hero}, timeout=TIMEOUT_S)
        except Exception as e:  # noqa: BLE001
            ack = repr(e)
        check(f"{label}: get_name {hero} acked with {real}", ack == {"hero": hero, "hero_name": real}, repr(ack))
    names.clear()
    for hero in HEROES:
        sio.emit("get_name", {"hero": hero})
    deadline = time.monotonic() + TIMEOUT_S
    while len(names) < len(HEROES) and time.monotonic() < deadline:
        sio.sleep(0.05)
    check(f"{label}: emit get_name for every hero: each name event arrives", names == HEROES, repr(names))
    # Channels (SPEC.md section 10): subscribed to lookups, a look-up of its
    # own comes back as the event `publication`.
    subscribed, publications = threading.Event(), []
    sio.on("subscribed", lambda data: subscribed.set() if data == {"channel": "lookups"} else None)
    sio.on("publication", publications.append)
    sio.emit("subscribe", {"channel": "lookups"})
    check(f"{label}: subscribe lookups: subscribed", subscribed.wait(TIMEOUT_S))
    sio.emit("get_name", {"hero": "hulk"})
    want = {"channel": "lookups", "data": {"user": "alice", "hero": "hulk", "hero_name": "Bruce Banner"}}
    deadline = time.monotonic() + TIMEOUT_S
    while not publications and time.monotonic() < deadline:
        sio.sleep(0.05)
    sio.sleep(0.3)
    check(f"{label}: a look-up is published once on lookups", publications == [want], repr(publications))
    sio.disconnect()


def refused_checks(url):
    label = f"socketio.Client[{MODE}]"
    sio = socketio.Client(reconnection=False)
    errors = []
    sio.on("connect_error", lambda data: errors.append(data))
    try:
        sio.connect(url, transports=TRANSPORTS, auth={"token": "x.y.z"}, wait_timeout=TIMEOUT_S)
        connected = sio.connected
    except socketio.exceptions.ConnectionError:
        connected = False
    check(f"{label}: a wrong token is refused (no connection)", not connected)
    check(f"{label}: connect_error carries the server's message and code",
          errors == [{"message": "unauthorized", "data": {"code": "malformed"}}], repr(errors))
    if connected:
        sio.disconnect()


def password_checks(url):
    label = f"socketio.Client[{MODE}]"
    sio = socketio.Client(reconnection=False)
    got = threading.Event()
    sio.on("user_authorized", lambda data: got.set() if data == {"username": "alice"} else None)
    try:
        sio.connect(url, transports=TRANSPORTS, auth={"username": "alice", "password": PASSWORD},
                    wait_timeout=TIMEOUT_S)
        check(f"{label}: a user name and password in auth connect (checked off the loop)",
              sio.connected and got.wait(TIMEOUT_S))
        sio.disconnect()
    except Exception as e:  # noqa: BLE001
        check(f"{label}: a user name and password in auth connect (checked off the loop)", False, repr(e))
    bad = socketio.Client(reconnection=False)
    errors = []
    bad.on("connect_error", lambda data: errors.append(data))
    try:
        bad.connect(url, transports=TRANSPORTS, auth={"username": "alice", "password": "not it"},
                    wait_timeout=TIMEOUT_S)
    except socketio.exceptions.ConnectionError:
        pass
    check(f"{label}: a wrong password: connect_error invalid_credentials",
          errors == [{"message": "unauthorized", "data": {"code": "invalid_credentials"}}], repr(errors))


def header_checks(url, token):
    label = f"socketio.Client[{MODE}]"
    sio = socketio.Client(reconnection=False)
    got = threading.Event()
    sio.on("user_authorized", lambda data: got.set())
    try:
        sio.connect(url, transports=TRANSPORTS, headers={"Authorization": f"Bearer {token}"},
                    wait_timeout=TIMEOUT_S)
        check(f"{label}: a token in the Authorization header connects",
              sio.connected and got.wait(TIMEOUT_S))
        sio.disconnect()
    except Exception as e:  # noqa: BLE001
        check(f"{label}: a token in the Authorization header connects", False, repr(e))


async def async_checks(url, token):
    session = None
    if TLS:
        # aiohttp takes its trust anchors from certifi, not the environment.
        import ssl

        import aiohttp
        ctx = ssl.create_default_context(cafile=CA)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
    try:
        await async_checks_with(url, token, session)
    finally:
        if session is not None:
            await session.close()


async def async_checks_with(url, token, session):
    label = f"socketio.AsyncClient[{MODE}]"
    sio = socketio.AsyncClient(reconnection=False, http_session=session)
    try:
        await sio.connect(url, transports=TRANSPORTS, auth={"token": token}, wait_timeout=TIMEOUT_S)
    except Exception as e:  # noqa: BLE001
        check(f"{label}: connects with auth", False, repr(e))
        return
    check(f"{label}: connects with auth", sio.connected)
    for hero, real in HEROES.items():
        try:
            ack = await sio.call("get_name", {"hero": hero}, timeout=TIMEOUT_S)
        except Exception as e:  # noqa: BLE001
            ack = repr(e)
        check(f"{label}: get_name {hero} acked with {real}", ack == {"hero": hero, "hero_name": real}, repr(ack))
    ack = await sio.call("get_name", {"hero": "nobody"}, timeout=TIMEOUT_S)
    check(f"{label}: an unknown hero is acked with the error event's data",
          isinstance(ack, dict) and ack.get("code") == "unknown_hero", repr(ack))
    await sio.disconnect()


def upgrade_checks(url, token):
    label = "socketio.Client"
    sio = socketio.Client(reconnection=False)
    try:
        sio.connect(url, auth={"token": token}, wait_timeout=TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while sio.transport() != "websocket" and time.monotonic() < deadline:
            sio.sleep(0.05)
        check(f"{label}: the default transports end up on websocket", sio.transport() == "websocket",
              sio.transport())
        ack = sio.call("get_name", {"hero": "hulk"}, timeout=TIMEOUT_S)
        check(f"{label}: get_name answered after the upgrade", ack == {"hero": "hulk", "hero_name": "Bruce Banner"},
              repr(ack))
        sio.disconnect()
    except Exception as e:  # noqa: BLE001
        check(f"{label}: the default transports end up on websocket", False, repr(e))
    sio = socketio.Client(reconnection=False)
    try:
        sio.connect(url, transports=["polling"], auth={"token": token}, wait_timeout=TIMEOUT_S)
        acks = [sio.call("get_name", {"hero": h}, timeout=TIMEOUT_S) for h in HEROES]
        check(f"{label}: polling only: every get_name acked",
              acks == [{"hero": h, "hero_name": n} for h, n in HEROES.items()], repr(acks))
        check(f"{label}: polling only: still on polling", sio.transport() == "polling", sio.transport())
        sio.disconnect()
    except Exception as e:  # noqa: BLE001
        check(f"{label}: polling only: every get_name acked", False, repr(e))


def main():
    global TRANSPORTS, MODE
    with tempfile.TemporaryDirectory(prefix=f"palisade-{NAME}.") as work:
        users = os.path.join(work, "users.json")
        config = os.path.join(work, "config.json")
        Path(config).write_text(json.dumps({"rate": {"logins_per_ip_per_min": 1000}}))
        r = subprocess.run([BIN, "users", "add", "alice", "--users-file", users, "--iterations", "10000"],
                           input=PASSWORD + "\n", text=True, capture_output=True, timeout=60)
        if not check("palisade users add alice", r.returncode == 0, r.stderr[:300]):
            return 1
        proc, addr = start_server(users, config)
        try:
            if check("server starts and reports its address", addr is not None):
                url = f"https://localhost:{addr.split(':')[1]}" if TLS else f"http://{addr}"
                token = login(url)
                for TRANSPORTS, MODE in ((None, "default"), (["websocket"], "websocket")):
                    sync_checks(url, token)
                    refused_checks(url)
                    password_checks(url)
                    header_checks(url, token)
                    asyncio.run(asyncio.wait_for(async_checks(url, token), 60))
                upgrade_checks(url, token)
                check("server still running after the checks", proc.poll() is None)
        finally:
            proc.terminate()
            proc.wait(10)
    failed = results.count(False)
    print(f"{NAME}: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
