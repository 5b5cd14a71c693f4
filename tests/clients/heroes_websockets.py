#!/usr/bin/env python3
"""External client test: the hero application seen through the Python
`websockets` library (asyncio client).

Starts the server from $PALISADE_BIN (default target/debug/palisade) with
`--listen 127.0.0.1:0` (plus any flags in $PALISADE_EXTRA_ARGS), waits for
`listening on 127.0.0.1:PORT` on its stderr, runs the checks, prints one
PASS/FAIL line per check and exits non-zero if any failed.

With PALISADE_TLS=1 the server is started with the development certificate
(certs/localhost.pem, certs/localhost.key) and the client connects to
wss://localhost:PORT/ws trusting only the development CA (certs/ca.pem); every
check name then ends in "(tls)".

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install -r tests/clients/requirements.txt
    /tmp/venv/bin/python tests/clients/heroes_websockets.py
"""

import asyncio
import collections
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

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

    def __init__(self):
        self.bin = os.environ.get("PALISADE_BIN", "target/debug/palisade")
        extra = shlex.split(os.environ.get("PALISADE_EXTRA_ARGS", ""))
        self.argv = [self.bin, "--listen", "127.0.0.1:0", *TLS_ARGS, *extra]
        self.proc = None
        self.addr = None
        self.log = collections.deque(maxlen=200)
        self._found = threading.Event()

    def start(self):
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # One thread reads stderr for the whole run, so the pipe never fills.
        threading.Thread(target=self._drain, daemon=True).start()
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
            if self.addr is None:
                m = LISTEN_RE.search(line)
                if m:
                    self.addr = m.group(1)
                    self._found.set()
        self._found.set()  # EOF: stop waiting

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


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


async def protocol_checks(url):
    async with connect(
        url, subprotocols=[SUBPROTOCOL], open_timeout=IO_TIMEOUT_S, close_timeout=IO_TIMEOUT_S,
        **tls_options(),
    ) as ws:
        check("subprotocol negotiated is palisade.v1", ws.subprotocol == SUBPROTOCOL,
              f"got {ws.subprotocol!r}")

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


async def clean_close_check(url):
    name = "client close 1000 -> closed cleanly with 1000"
    try:
        ws = await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=IO_TIMEOUT_S,
                           close_timeout=IO_TIMEOUT_S, **tls_options())
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


async def run_checks(addr):
    if TLS:
        url = f"wss://localhost:{addr.rsplit(':', 1)[1]}/ws"
        await untrusted_check(url)
    else:
        url = f"ws://{addr}/ws"
    try:
        await protocol_checks(url)
    except Exception as e:  # noqa: BLE001 - e.g. the handshake failed
        check("protocol checks ran to the end", False, f"{type(e).__name__}: {e}")
    await clean_close_check(url)


def main():
    server = Server()
    try:
        try:
            addr = server.start()
            check("server starts and reports its address", True)
        except Exception as e:  # noqa: BLE001
            check("server starts and reports its address", False, str(e))
            addr = None
        if addr is not None:
            try:
                asyncio.run(asyncio.wait_for(run_checks(addr), OVERALL_TIMEOUT_S))
            except asyncio.TimeoutError:
                check(f"all checks finish within {OVERALL_TIMEOUT_S:.0f} s", False)
            alive = server.proc.poll() is None
            check("server still running after the checks", alive,
                  f"exit status {server.proc.poll()}")
    finally:
        server.stop()
    failed = [n for ok, n in results if not ok]
    if failed:
        print(f"--- last server log lines ({NAME}) ---", file=sys.stderr)
        for line in list(server.log)[-30:]:
            print(line, file=sys.stderr)
    print(f"{NAME}: {len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
