#!/usr/bin/env node
// External client test: the hero application seen through the Node `ws` library.
//
// Starts the server from $PALISADE_BIN (default target/debug/palisade) with
// `--listen 127.0.0.1:0` (plus any flags in $PALISADE_EXTRA_ARGS), waits for
// `listening on 127.0.0.1:PORT` on its stderr, runs the checks, prints one
// PASS/FAIL line per check and exits non-zero if any failed.
//
// Authentication (SPEC.md section 5): a users file with alice and bob is made with
// `palisade users add` (10000 iterations) and the server started with it (and a
// config raising the login rate). Both log in with POST /login; alice then
// connects with the cookie (`Cookie: palisade_token=...`), bob with the token in
// the subprotocol offer (['palisade.v1', 'palisade.bearer.<token>'], the server
// selecting palisade.v1). Each expects {"event":"user_authorized","data":
// {"username":...}} with its own name first, then hero round trips. Without
// credentials the handshake must get HTTP 401 with `WWW-Authenticate: Bearer`.
// The passwords used are listed in tests/test-passwords.txt; the server's stderr
// is also written to target/test-output/logs/.
//
// With PALISADE_TLS=1 the server is started with the development certificate
// (certs/localhost.pem, certs/localhost.key) and the client connects to
// wss://localhost:PORT/ws trusting only the development CA (certs/ca.pem); every
// check name then ends in "(tls)".
//
//   (cd tests/js && npm ci) && node tests/clients/heroes_ws.mjs

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

// Dependencies live in tests/js (package.json + package-lock.json).
const require = createRequire(new URL('../js/package.json', import.meta.url));
const WebSocket = require('ws');

const NAME = 'heroes_ws';
const SUBPROTOCOL = 'palisade.v1';
const HEROES = ['ironMan', 'hulk', 'wonderWoman', 'batMan', 'blackPanther'];
const NAMES = {
  ironMan: 'Tony Stark',
  hulk: 'Bruce Banner',
  wonderWoman: 'Diana',
  batMan: 'Bruce Wayne',
  blackPanther: "T'Challa",
};
const START_TIMEOUT_MS = 10_000;
const IO_TIMEOUT_MS = 5_000;
const OVERALL_TIMEOUT_MS = 90_000;
const LISTEN_RE = /listening on (127\.0\.0\.1:\d+)/;
const ROOT = fileURLToPath(new URL('../..', import.meta.url)); // the repository root
const TLS = process.env.PALISADE_TLS === '1';
const TLS_ARGS = TLS
  ? ['--tls-cert', path.join(ROOT, 'certs', 'localhost.pem'), '--tls-key', path.join(ROOT, 'certs', 'localhost.key')]
  : [];
// In TLS mode the client trusts only the development CA (hostname and chain verified as usual).
const CLIENT_TLS = TLS ? { ca: readFileSync(path.join(ROOT, 'certs', 'ca.pem')) } : {};
const BIN = process.env.PALISADE_BIN || 'target/debug/palisade';
const LOG_DIR = process.env.PALISADE_LOG_DIR || path.join(ROOT, 'target', 'test-output', 'logs');
// Every password used here is listed in tests/test-passwords.txt.
const USERS = { alice: 'node-alice-Wm6Ry2Kd8s', bob: 'node-bob-Jt9Fc4Qv1z' };

const results = [];
function check(name, ok, detail = '') {
  if (TLS) name += ' (tls)';
  results.push({ name, ok: Boolean(ok) });
  console.log(ok ? `PASS ${NAME}: ${name}` : `FAIL ${NAME}: ${name}${detail ? ` -- ${detail}` : ''}`);
  return ok;
}

function splitArgs(s) {
  return (s || '').split(/\s+/).filter(Boolean);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- server under test ----------------------------------------------------

function startServer(args) {
  const bin = BIN;
  const argv = ['--listen', '127.0.0.1:0', ...TLS_ARGS, ...args, ...splitArgs(process.env.PALISADE_EXTRA_ARGS)];
  const log = [];
  // The whole stderr is kept for tests/check-logs.sh, under a name no other run uses.
  mkdirSync(LOG_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  const logFd = openSync(path.join(LOG_DIR, `${NAME}${TLS ? '-tls' : ''}-${stamp}-${process.pid}.log`), 'w');
  const child = spawn(bin, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  const server = { child, log, addr: null };
  const lines = readline.createInterface({ input: child.stderr });
  lines.on('close', () => closeSync(logFd));
  const ready = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      reject(new Error(`server exited (${code ?? signal}) before reporting its address`)));
    // Read stderr for the whole run so the pipe never fills.
    lines.on('line', (line) => {
      writeSync(logFd, line + '\n');
      log.push(line);
      if (log.length > 200) log.shift();
      const m = server.addr === null && LISTEN_RE.exec(line);
      if (m) {
        server.addr = m[1];
        resolve(m[1]);
      }
    });
  });
  server.ready = withTimeout(ready, START_TIMEOUT_MS, `"listening on" from ${bin}`);
  return server;
}

// `palisade users add NAME` with the password on stdin (10000 iterations: fast logins).
function addUser(usersFile, name, password) {
  const r = spawnSync(BIN, ['users', 'add', name, '--users-file', usersFile, '--iterations', '10000'],
    { input: password + '\n', stdio: ['pipe', 'ignore', 'pipe'], timeout: 60_000 });
  return check(`palisade users add ${name}`, r.status === 0,
    `exit ${r.status ?? r.signal}: ${String(r.stderr || r.error || '').slice(0, 300)}`);
}

// POST /login; resolves to { status, headers, body (parsed JSON or null) }.
function login(addr, username, password) {
  const payload = JSON.stringify({ username, password });
  const port = Number(addr.split(':').pop());
  const options = {
    host: TLS ? 'localhost' : addr.split(':')[0], port, path: '/login', method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
    ...(TLS ? { ca: CLIENT_TLS.ca, servername: 'localhost' } : {}),
  };
  return withTimeout(new Promise((resolve, reject) => {
    const req = (TLS ? https : http).request(options, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        let body = null;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          body = null;
        }
        resolve({ status: res.statusCode, headers: res.headers, body });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  }), IO_TIMEOUT_MS, 'POST /login');
}

async function stopServer(server) {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  try {
    await withTimeout(exited, 5_000, 'server exit after SIGTERM');
  } catch {
    child.kill('SIGKILL');
    await withTimeout(exited, 5_000, 'server exit after SIGKILL').catch(() => {});
  }
}

// ---- a WebSocket client with bounded reads --------------------------------

class Client {
  constructor(url, { tls = CLIENT_TLS, protocols = [SUBPROTOCOL], headers = {} } = {}) {
    this.ws = new WebSocket(url, protocols, { handshakeTimeout: IO_TIMEOUT_MS, ...tls, headers });
    this.queue = [];
    this.waiters = [];
    this.closed = null; // { code, reason } once closed
    this.closedPromise = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        resolve(this.closed);
        for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed (${code})`));
      });
    });
    this.ws.on('message', (data, isBinary) => {
      const item = { data, isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(item);
      else this.queue.push(item);
    });
    this.ws.on('error', () => {}); // surfaced through 'close' / open()
  }

  open() {
    return withTimeout(new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    }), IO_TIMEOUT_MS, 'WebSocket open');
  }

  next() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.reject(new Error(`connection closed (${this.closed.code})`));
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      this.waiters.push(waiter);
    });
    return withTimeout(p, IO_TIMEOUT_MS, 'next message').catch((e) => {
      this.waiters = this.waiters.filter((w) => w !== waiter); // a late message is queued instead
      throw e;
    });
  }

  // Next JSON message, skipping at most a few server-sent user_authorized events.
  async recvJson() {
    for (let i = 0; i < 4; i++) {
      const { data, isBinary } = await this.next();
      if (isBinary) throw new Error('expected a text message, got binary');
      const msg = JSON.parse(data.toString('utf8'));
      if (msg && msg.event === 'user_authorized') continue;
      return msg;
    }
    throw new Error('only user_authorized events received');
  }
}

// Deep equality for JSON values (key order does not matter).
function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
}

function isError(msg, code, id) {
  if (!msg || typeof msg !== 'object') return false;
  const keys = Object.keys(msg).sort().join(',');
  if (keys !== (id === undefined ? 'data,event' : 'data,event,id')) return false;
  if (msg.event !== 'error' || !msg.data || typeof msg.data !== 'object') return false;
  if (Object.keys(msg.data).sort().join(',') !== 'code,message') return false;
  if (msg.data.code !== code || typeof msg.data.message !== 'string') return false;
  return id === undefined || msg.id === id;
}

async function request(client, name, payload, predicate, describe) {
  try {
    client.ws.send(payload);
    const msg = await client.recvJson();
    return check(name, predicate(msg), `expected ${describe}, got ${JSON.stringify(msg)}`);
  } catch (e) {
    return check(name, false, String(e && e.message ? e.message : e));
  }
}

// ---- checks ----------------------------------------------------------------

// The client really verifies: without the development CA (Node's bundled
// roots only) the handshake must fail on the certificate.
async function untrustedCheck(url) {
  const name = 'wss without the development CA is refused (certificate not trusted)';
  const c = new Client(url, { tls: {} });
  try {
    await c.open();
    check(name, false, 'handshake succeeded');
    c.ws.terminate();
  } catch (e) {
    const code = e && e.code;
    check(name, code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || code === 'SELF_SIGNED_CERT_IN_CHAIN'
      || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', `${code}: ${e && e.message}`);
  }
}

// The handshake without credentials: HTTP 401 with WWW-Authenticate: Bearer.
async function refusedCheck(url) {
  const name = 'handshake without credentials -> HTTP 401, WWW-Authenticate: Bearer';
  const ws = new WebSocket(url, [SUBPROTOCOL], { handshakeTimeout: IO_TIMEOUT_MS, ...CLIENT_TLS });
  ws.on('error', () => {});
  try {
    const got = await withTimeout(new Promise((resolve) => {
      ws.once('unexpected-response', (req, res) => {
        resolve({ status: res.statusCode, www: res.headers['www-authenticate'] || '' });
        res.resume();
        req.destroy();
      });
      ws.once('open', () => resolve({ status: 101, www: '' }));
      ws.once('error', (e) => resolve({ status: null, www: '', error: e }));
    }), IO_TIMEOUT_MS, 'handshake answer');
    check(name, got.status === 401 && /^Bearer( |$)/.test(got.www),
      got.error ? String(got.error.message) : `status ${got.status}, WWW-Authenticate ${JSON.stringify(got.www)}`);
  } catch (e) {
    check(name, false, String(e.message || e));
  } finally {
    if (ws.readyState === WebSocket.OPEN) ws.terminate();
  }
}

async function loginAs(addr, username) {
  const name = `POST /login ${username} -> 200 with a token and the palisade_token cookie`;
  try {
    const { status, headers, body } = await login(addr, username, USERS[username]);
    const token = body && typeof body.token === 'string' ? body.token : null;
    const cookies = [].concat(headers['set-cookie'] || []);
    const ok = status === 200 && token !== null && body.token_type === 'Bearer'
      && cookies.some((c) => c.startsWith(`palisade_token=${token};`));
    check(name, ok, `status ${status}, body ${JSON.stringify(body)}, ${cookies.length} Set-Cookie`);
    return ok ? token : null;
  } catch (e) {
    check(name, false, String(e.message || e));
    return null;
  }
}

// Opens `client`; checks the first message is user_authorized for `username`.
async function openAuthorized(client, how, username) {
  try {
    await client.open();
  } catch (e) {
    check(`WebSocket handshake with ${how} succeeds`, false, String(e && e.message ? e.message : e));
    return false;
  }
  check(`WebSocket handshake with ${how} succeeds`, true);
  check(`${how}: subprotocol negotiated is palisade.v1`, client.ws.protocol === SUBPROTOCOL,
    `got ${JSON.stringify(client.ws.protocol)}`);
  const want = { event: 'user_authorized', data: { username } };
  try {
    const { data, isBinary } = await client.next();
    const msg = isBinary ? null : JSON.parse(data.toString('utf8'));
    check(`${how}: first message is user_authorized for ${username}`, jsonEqual(msg, want),
      `expected ${JSON.stringify(want)}, got ${isBinary ? 'binary' : JSON.stringify(msg)}`);
  } catch (e) {
    check(`${how}: first message is user_authorized for ${username}`, false, String(e.message || e));
  }
  return true;
}

async function heroRoundTrips(client, label, firstId) {
  let id = firstId;
  const expected = { event: 'heroes', data: { heroes: HEROES }, id };
  await request(client, `${label}list_heroes returns the exact hero list`,
    JSON.stringify({ event: 'list_heroes', id }),
    (m) => jsonEqual(m, expected), JSON.stringify(expected));
  for (const hero of HEROES) {
    id += 1;
    const want = { event: 'name', data: { hero, hero_name: NAMES[hero] }, id };
    await request(client, `${label}get_name ${hero} -> ${NAMES[hero]}`,
      JSON.stringify({ event: 'get_name', data: { hero }, id }),
      (m) => jsonEqual(m, want), JSON.stringify(want));
  }
}

async function runChecks(addr) {
  const url = TLS ? `wss://localhost:${addr.split(':').pop()}/ws` : `ws://${addr}/ws`;
  if (TLS) await untrustedCheck(url);
  await refusedCheck(url);

  // alice: the cookie set by POST /login.
  const aliceToken = await loginAs(addr, 'alice');
  if (aliceToken !== null) {
    const cookie = { headers: { Cookie: `palisade_token=${aliceToken}` } };
    const client = new Client(url, cookie);
    if (await openAuthorized(client, 'the cookie', 'alice')) {
      await heroRoundTrips(client, '', 100);

      await request(client, 'get_name nobody -> error unknown_hero with the same id',
        JSON.stringify({ event: 'get_name', data: { hero: 'nobody' }, id: 4242 }),
        (m) => isError(m, 'unknown_hero', 4242), 'error {"code":"unknown_hero","message":...} id 4242');

      await request(client, 'invalid JSON -> error invalid_json', '{not json',
        (m) => isError(m, 'invalid_json'), 'error {"code":"invalid_json","message":...} without id');

      const expected = { event: 'heroes', data: { heroes: HEROES }, id: 2 };
      await request(client, 'connection still serves requests after errors',
        JSON.stringify({ event: 'list_heroes', id: 2 }),
        (m) => jsonEqual(m, expected), JSON.stringify(expected));

      // Binary message -> the server closes with 1003.
      try {
        client.ws.send(Buffer.from([0, 1, 2, 3]), { binary: true });
        const closed = await withTimeout(client.closedPromise, IO_TIMEOUT_MS, 'close after binary');
        check('binary message -> server closes with 1003', closed.code === 1003,
          `close code ${closed.code}`);
      } catch (e) {
        check('binary message -> server closes with 1003', false, String(e.message || e));
      }
    }

    // Clean close initiated by the client.
    const c2 = new Client(url, cookie);
    try {
      await c2.open();
      c2.ws.close(1000, 'bye');
      const closed = await withTimeout(c2.closedPromise, IO_TIMEOUT_MS, 'close handshake');
      check('client close 1000 -> closed cleanly with 1000', closed.code === 1000,
        `close code ${closed.code}`);
    } catch (e) {
      check('client close 1000 -> closed cleanly with 1000', false, String(e.message || e));
      c2.ws.terminate();
    }
  }

  // bob: the token offered as a subprotocol beside palisade.v1.
  const bobToken = await loginAs(addr, 'bob');
  if (bobToken !== null) {
    const client = new Client(url, { protocols: [SUBPROTOCOL, `palisade.bearer.${bobToken}`] });
    if (await openAuthorized(client, 'the palisade.bearer.<token> subprotocol', 'bob')) {
      await heroRoundTrips(client, 'subprotocol: ', 200);
      client.ws.close(1000, 'bye');
      await withTimeout(client.closedPromise, IO_TIMEOUT_MS, 'close handshake').catch(() => client.ws.terminate());
    }
  }
}

async function main() {
  const work = mkdtempSync(path.join(os.tmpdir(), `palisade-${NAME}.`));
  const usersFile = path.join(work, 'users.json');
  const config = path.join(work, 'config.json');
  writeFileSync(config, JSON.stringify({ rate: { logins_per_ip_per_min: 1000 } }));
  let server = null;
  let overall;
  try {
    for (const [name, password] of Object.entries(USERS)) {
      if (!addUser(usersFile, name, password)) return;
    }
    server = startServer(['--config', config, '--users-file', usersFile]);
    let addr;
    try {
      addr = await server.ready;
      check('server starts and reports its address', true);
    } catch (e) {
      check('server starts and reports its address', false, String(e.message || e));
      return;
    }
    await Promise.race([
      runChecks(addr),
      new Promise((_, reject) => {
        overall = setTimeout(() => reject(new Error('overall timeout')), OVERALL_TIMEOUT_MS);
      }),
    ]).catch((e) => check(`all checks finish within ${OVERALL_TIMEOUT_MS / 1000} s`, false, String(e.message || e)));
    check('server still running after the checks',
      server.child.exitCode === null && server.child.signalCode === null,
      `exit ${server.child.exitCode ?? server.child.signalCode}`);
  } finally {
    clearTimeout(overall);
    if (server) await stopServer(server);
    rmSync(work, { recursive: true, force: true });
    const failed = results.filter((r) => !r.ok).length;
    if (failed && server) {
      console.error(`--- last server log lines (${NAME}) ---`);
      for (const line of server.log.slice(-30)) console.error(line);
    }
    console.log(`${NAME}: ${results.length - failed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  }
}

main().catch((e) => {
  console.log(`FAIL ${NAME}: unexpected error -- ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
});
