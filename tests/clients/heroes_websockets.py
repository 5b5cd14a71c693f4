#!/usr/bin/env python3
"""External client test: the hero application seen through the Python
`websockets` library (asyncio client).

Starts the server from $PALISADE_BIN (default target/debug/palisade) with
`--listen 127.0.0.1:0` (plus any flags in $PALISADE_EXTRA_ARGS), waits for
`listening on 127.0.0.1:PORT` on its stderr, runs the checks, prints one
PASS/FAIL line per check and exits non-zero if any failed.

Authentication (SPEC.md section 5): a users file with alice is made with
`palisade users add` (10000 iterations) and the server started with it (and a
config raising the login rate). The client logs in with POST /login (urllib),
connects with `Authorization: Bearer <token>`, expects
{"event":"user_authorized","data":{"username":"alice"}} as the first message,
then runs the hero checks. Without credentials, and with a garbage token, the
handshake must be refused with HTTP 401 and `WWW-Authenticate: Bearer`. A
second server with --auth-mode none accepts a client without credentials and
sends no user_authorized. The passwords used are listed in
tests/test-passwords.txt; each server's stderr is also written to
target/test-output/logs/.

With PALISADE_TLS=1 the server is started with the development certificate
(certs/localhost.pem, certs/localhost.key) and the client connects to
wss://localhost:PORT/ws trusting only the development CA (certs/ca.pem); every
check name then ends in "(tls)".

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install -r tests/clients/requirements.txt
    /tmp/venv/bin/python tests/clients/heroes_websockets.py
"""

import asyncio
import collections
import itertools
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

NAME = "heroes_websockets"
SUBPROTOCOL = "palisade.v1"
HEROES = ["ironMan", "hulk", "wonderWoman", "batMan", "blackPanther"]
NAMES = {
    "ironMan": "Tony Stark",
    "hulk": "Bruce Banner",
    "wonderWoman": "Diana",
    "batMan": "Bruce Wayne",
    "blackPanther": "T'Challa",
}
START_TIMEOUT_S = 10.0
IO_TIMEOUT_S = 5.0
OVERALL_TIMEOUT_S = 90.0
LISTEN_RE = re.compile(r"listening on (127\.0\.0\.1:\d+)")
ROOT = Path(__file__).resolve().parents[2]  # the repository root
TLS = os.environ.get("PALISADE_TLS") == "1"
CA_FILE = ROOT / "certs" / "ca.pem"
TLS_ARGS = ["--tls-cert", str(ROOT / "certs" / "localhost.pem"),
            "--tls-key", str(ROOT / "certs" / "localhost.key")] if TLS else []
LOG_DIR = Path(os.environ.get("PALISADE_LOG_DIR", ROOT / "target" / "test-output" / "logs"))
# Every password used here is listed in tests/test-passwords.txt.
USER = "alice"
PASSWORD = "py-alice-Nq5Tc8Lb2w"
WRONG_PASSWORD = "py-wrong-Gd3Xs7Pk4m"
USER_AUTHORIZED = {"event": "user_authorized", "data": {"username": USER}}
_server_numbers = itertools.count(1)

results = []  # (ok, name)


def check(name, ok, detail=""):
    if TLS:
        name += " (tls)"
    results.append((bool(ok), name))
    if ok:
        print(f"PASS {NAME}: {name}", flush=True)
    else:
        print(f"FAIL {NAME}: {name}" + (f" -- {detail}" if detail else ""), flush=True)
    return ok


class Server:
    """The server under test, started with --listen 127.0.0.1:0."""

    def __init__(self, *args):
        self.bin = os.environ.get("PALISADE_BIN", "target/debug/palisade")
        extra = shlex.split(os.environ.get("PALISADE_EXTRA_ARGS", ""))
        self.argv = [self.bin, "--listen", "127.0.0.1:0", *TLS_ARGS, *args, *extra]
        self.proc = None
        self.addr = None
        self.log = collections.deque(maxlen=200)
        self._found = threading.Event()
        self._log_file = None
        self._drainer = None

    def start(self):
        # The whole stderr is kept for tests/check-logs.sh, under a name no other run uses.
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        mode = "-tls" if TLS else ""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        path = LOG_DIR / f"{NAME}{mode}-{stamp}-{os.getpid()}-{next(_server_numbers)}.log"
        self._log_file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by _drain
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # One thread reads stderr for the whole run, so the pipe never fills.
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        if not self._found.wait(START_TIMEOUT_S) or self.addr is None:
            raise RuntimeError(
                f"no 'listening on' line within {START_TIMEOUT_S:.0f} s from {' '.join(self.argv)}"
                f" (exit status {self.proc.poll()})"
            )
        return self.addr

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            self._log_file.write(line + "\n")
            self._log_file.flush()
            if self.addr is None:
                m = LISTEN_RE.search(line)
                if m:
                    self.addr = m.group(1)
                    self._found.set()
        self._log_file.close()
        self._found.set()  # EOF: stop waiting

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._drainer is not None:
            self._drainer.join(5)  # the log file is complete once stderr reached EOF


def add_user(users_file, username, password):
    """`palisade users add` with the password on stdin (10000 iterations: fast logins)."""
    bin_ = os.environ.get("PALISADE_BIN", "target/debug/palisade")
    proc = subprocess.run(
        [bin_, "users", "add", username, "--users-file", str(users_file), "--iterations", "10000"],
        input=(password + "\n").encode(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        timeout=60, check=False,
    )
    return check(f"palisade users add {username}", proc.returncode == 0,
                 f"exit {proc.returncode}: {proc.stderr.decode('utf-8', 'replace')[:300]}")


def http_base(addr):
    if TLS:
        return f"https://localhost:{addr.rsplit(':', 1)[1]}"
    return f"http://{addr}"


def login(addr, username, password):
    """POST /login; returns (status, headers, parsed JSON body or None)."""
    body = json.dumps({"username": username, "password": password}).encode()
    req = urllib.request.Request(http_base(addr) + "/login", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=str(CA_FILE)) if TLS else None
    # Loopback only: no proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=IO_TIMEOUT_S) as res:
            status, headers, raw = res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, headers, parsed


def tls_options():
    """connect() keyword arguments: in TLS mode a context that trusts only the
    development CA (hostname and chain verified as usual)."""
    if not TLS:
        return {}
    return {"ssl": ssl.create_default_context(cafile=str(CA_FILE))}


async def recv_json(ws):
    """Next application message as JSON, skipping at most a few
    server-initiated `user_authorized` events."""
    for _ in range(4):
        raw = await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
        if not isinstance(raw, str):
            raise AssertionError(f"expected a text message, got binary {raw!r}")
        msg = json.loads(raw)
        if isinstance(msg, dict) and msg.get("event") == "user_authorized":
            continue
        return msg
    raise AssertionError("only user_authorized events received")


def is_error(msg, code, id_=None):
    """An `error` event with exactly {code, message}, the given id (or none)."""
    if not isinstance(msg, dict):
        return False
    expected_keys = {"event", "data"} | ({"id"} if id_ is not None else set())
    if set(msg) != expected_keys or msg["event"] != "error":
        return False
    data = msg["data"]
    if not isinstance(data, dict) or set(data) != {"code", "message"}:
        return False
    if data["code"] != code or not isinstance(data["message"], str):
        return False
    return id_ is None or (msg["id"] == id_ and type(msg["id"]) is int)


async def request(ws, name, payload, predicate, describe):
    try:
        await asyncio.wait_for(ws.send(payload), IO_TIMEOUT_S)
        msg = await recv_json(ws)
    except Exception as e:  # noqa: BLE001 - any failure is a FAIL line
        return check(name, False, f"{type(e).__name__}: {e}")
    return check(name, predicate(msg), f"expected {describe}, got {msg!r}")


def bearer(token):
    return {"additional_headers": {"Authorization": f"Bearer {token}"}}


async def first_message_check(ws, name, expected):
    """The first message the server sends after the 101 is exactly `expected`."""
    try:
        raw = await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
        msg = json.loads(raw) if isinstance(raw, str) else raw
    except Exception as e:  # noqa: BLE001
        return check(name, False, f"{type(e).__name__}: {e}")
    return check(name, msg == expected, f"expected {json.dumps(expected)}, got {msg!r}")


async def refused_check(url, name, **kwargs):
    """The handshake is refused with HTTP 401 and WWW-Authenticate: Bearer."""
    try:
        ws = await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=IO_TIMEOUT_S,
                           **tls_options(), **kwargs)
        await ws.close()
        check(name, False, "handshake succeeded")
    except InvalidStatus as e:
        status = e.response.status_code
        www = e.response.headers.get("WWW-Authenticate", "")
        check(name, status == 401 and (www == "Bearer" or www.startswith("Bearer ")),
              f"status {status}, WWW-Authenticate {www!r}")
    except Exception as e:  # noqa: BLE001
        check(name, False, f"{type(e).__name__}: {e}")


async def protocol_checks(url, token):
    async with connect(
        url, subprotocols=[SUBPROTOCOL], open_timeout=IO_TIMEOUT_S, close_timeout=IO_TIMEOUT_S,
        **tls_options(), **bearer(token),
    ) as ws:
        check("subprotocol negotiated is palisade.v1", ws.subprotocol == SUBPROTOCOL,
              f"got {ws.subprotocol!r}")
        await first_message_check(ws, "first message is user_authorized for alice", USER_AUTHORIZED)

        expected = {"event": "heroes", "data": {"heroes": HEROES}, "id": 1}
        await request(ws, "list_heroes returns the exact hero list",
                      json.dumps({"event": "list_heroes", "id": 1}),
                      lambda m: m == expected, json.dumps(expected))

        for i, hero in enumerate(HEROES, start=10):
            expected = {"event": "name", "data": {"hero": hero, "hero_name": NAMES[hero]}, "id": i}
            await request(ws, f"get_name {hero} -> {NAMES[hero]}",
                          json.dumps({"event": "get_name", "data": {"hero": hero}, "id": i}),
                          lambda m, e=expected: m == e, json.dumps(expected))

        await request(ws, "get_name nobody -> error unknown_hero with the same id",
                      json.dumps({"event": "get_name", "data": {"hero": "nobody"}, "id": 42}),
                      lambda m: is_error(m, "unknown_hero", 42),
                      'error {"code":"unknown_hero","message":...} id 42')

        await request(ws, "invalid JSON -> error invalid_json",
                      "{not json",
                      lambda m: is_error(m, "invalid_json"),
                      'error {"code":"invalid_json","message":...} without id')

        await request(ws, 'event "fly" -> error unknown_event',
                      json.dumps({"event": "fly"}),
                      lambda m: is_error(m, "unknown_event"),
                      'error {"code":"unknown_event","message":...} without id')

        await request(ws, "get_name with a numeric hero -> error invalid_message",
                      json.dumps({"event": "get_name", "data": {"hero": 5}}),
                      lambda m: is_error(m, "invalid_message"),
                      'error {"code":"invalid_message","message":...} without id')

        # The connection must still be usable after all those errors.
        expected = {"event": "heroes", "data": {"heroes": HEROES}, "id": 7}
        await request(ws, "connection still serves requests after errors",
                      json.dumps({"event": "list_heroes", "id": 7}),
                      lambda m: m == expected, json.dumps(expected))

        # A binary message to the hero application: the server closes with 1003.
        name = "binary message -> server closes with 1003"
        try:
            await asyncio.wait_for(ws.send(b"\x00\x01binary"), IO_TIMEOUT_S)
            for _ in range(4):  # bounded: a stray reply would not be a close
                await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
            check(name, False, "connection still open after the binary message")
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else None
            check(name, code == 1003, f"server close frame: {e.rcvd!r}")
        except Exception as e:  # noqa: BLE001
            check(name, False, f"{type(e).__name__}: {e}")


async def clean_close_check(url, token):
    name = "client close 1000 -> closed cleanly with 1000"
    try:
        ws = await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=IO_TIMEOUT_S,
                           close_timeout=IO_TIMEOUT_S, **tls_options(), **bearer(token))
        await asyncio.wait_for(ws.send(json.dumps({"event": "list_heroes", "id": 3})), IO_TIMEOUT_S)
        await recv_json(ws)
        started = time.monotonic()
        await asyncio.wait_for(ws.close(1000, "bye"), IO_TIMEOUT_S + 1)
        elapsed = time.monotonic() - started
        rcvd = ws.protocol.close_rcvd
        sent = ws.protocol.close_sent
        ok = (
            sent is not None and sent.code == 1000
            and rcvd is not None and rcvd.code == 1000
            and ws.close_code == 1000
            and elapsed < 3.0  # the server closes TCP right after answering the close
        )
        check(name, ok, f"sent={sent!r} rcvd={rcvd!r} close_code={ws.close_code} in {elapsed:.2f} s")
    except Exception as e:  # noqa: BLE001
        check(name, False, f"{type(e).__name__}: {e}")


async def untrusted_check(url):
    """The client really verifies: without the development CA (system trust
    store only) the handshake must fail on the certificate."""
    name = "wss without the development CA is refused (certificate not trusted)"
    try:
        ws = await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=IO_TIMEOUT_S,
                           ssl=ssl.create_default_context())
        await ws.close()
        check(name, False, "handshake succeeded")
    except ssl.SSLCertVerificationError:
        check(name, True)
    except Exception as e:  # noqa: BLE001
        check(name, False, f"{type(e).__name__}: {e}")


def ws_url(addr):
    if TLS:
        return f"wss://localhost:{addr.rsplit(':', 1)[1]}/ws"
    return f"ws://{addr}/ws"


def login_checks(addr):
    """Logs alice in; returns the token (or None)."""
    try:
        status, _, body = login(addr, USER, WRONG_PASSWORD)
        check("POST /login with a wrong password -> 401 invalid_credentials",
              status == 401 and body == {"error": "invalid_credentials"}, f"status {status}, body {body!r}")
        status, headers, body = login(addr, USER, PASSWORD)
    except Exception as e:  # noqa: BLE001
        check("POST /login alice -> 200 with a Bearer token", False, f"{type(e).__name__}: {e}")
        return None
    token = body.get("token") if isinstance(body, dict) else None
    ok = (status == 200 and isinstance(token, str) and token.count(".") == 2
          and body.get("token_type") == "Bearer" and isinstance(body.get("expires_in"), int))
    check("POST /login alice -> 200 with a Bearer token", ok, f"status {status}, body {body!r}")
    cookie = headers.get("Set-Cookie", "") if headers else ""
    check("login sets the HttpOnly cookie palisade_token",
          token is not None and cookie.startswith(f"palisade_token={token};") and "HttpOnly" in cookie,
          f"Set-Cookie {cookie[:40]!r}...")
    return token if ok else None


async def run_checks(addr, token):
    url = ws_url(addr)
    if TLS:
        await untrusted_check(url)
    await refused_check(url, "handshake without credentials -> HTTP 401, WWW-Authenticate: Bearer")
    await refused_check(url, "handshake with a garbage Bearer token -> HTTP 401",
                        **bearer("garbage.not-a.token"))
    if token is None:
        check("protocol checks ran (logged in)", False, "no token from POST /login")
        return
    try:
        await protocol_checks(url, token)
    except Exception as e:  # noqa: BLE001 - e.g. the handshake failed
        check("protocol checks ran to the end", False, f"{type(e).__name__}: {e}")
    await clean_close_check(url, token)


async def auth_none_checks(addr):
    """auth.mode none: no credentials needed, no user_authorized event."""
    name = "auth none: handshake without credentials -> open, first message is the reply"
    try:
        async with connect(ws_url(addr), subprotocols=[SUBPROTOCOL], open_timeout=IO_TIMEOUT_S,
                           close_timeout=IO_TIMEOUT_S, **tls_options()) as ws:
            await asyncio.wait_for(ws.send(json.dumps({"event": "list_heroes", "id": 5})), IO_TIMEOUT_S)
            await first_message_check(ws, name, {"event": "heroes", "data": {"heroes": HEROES}, "id": 5})
    except Exception as e:  # noqa: BLE001
        check(name, False, f"{type(e).__name__}: {e}")


def start(server, what):
    try:
        addr = server.start()
        check(f"{what} starts and reports its address", True)
        return addr
    except Exception as e:  # noqa: BLE001
        check(f"{what} starts and reports its address", False, str(e))
        return None


def main():
    servers = []
    with tempfile.TemporaryDirectory(prefix=f"palisade-{NAME}.") as work:
        users = Path(work) / "users.json"
        config = Path(work) / "config.json"
        config.write_text(json.dumps({"rate": {"logins_per_ip_per_min": 1000}}))
        try:
            if add_user(users, USER, PASSWORD):
                server = Server("--config", str(config), "--users-file", str(users))
                servers.append(server)
                addr = start(server, "server")
                if addr is not None:
                    token = login_checks(addr)
                    try:
                        asyncio.run(asyncio.wait_for(run_checks(addr, token), OVERALL_TIMEOUT_S))
                    except asyncio.TimeoutError:
                        check(f"all checks finish within {OVERALL_TIMEOUT_S:.0f} s", False)
                    alive = server.proc.poll() is None
                    check("server still running after the checks", alive,
                          f"exit status {server.proc.poll()}")
                server.stop()

            server = Server("--auth-mode", "none")
            servers.append(server)
            addr = start(server, "server with --auth-mode none")
            if addr is not None:
                try:
                    asyncio.run(asyncio.wait_for(auth_none_checks(addr), OVERALL_TIMEOUT_S))
                except asyncio.TimeoutError:
                    check(f"auth none checks finish within {OVERALL_TIMEOUT_S:.0f} s", False)
        finally:
            for server in servers:
                server.stop()
    failed = [n for ok, n in results if not ok]
    if failed:
        for server in servers:
            print(f"--- last server log lines ({NAME}: {' '.join(server.argv[1:])}) ---", file=sys.stderr)
            for line in list(server.log)[-30:]:
                print(line, file=sys.stderr)
    print(f"{NAME}: {len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
