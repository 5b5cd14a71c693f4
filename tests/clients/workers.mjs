#!/usr/bin/env node
// External test: palisade with `--workers 2` (two event loops on one port,
// SO_REUSEPORT), driven by Node `ws` and the official `socket.io-client`.
//
// Starts $PALISADE_BIN (default target/debug/palisade) with `--workers 2`,
// `--auth-mode none`, `limits.max_connections` 1000 and per-client limits
// raised (every client here is 127.0.0.1), then:
//   - opens 999 WebSockets in batches; /metrics (the 1000th connection) shows
//     palisade_connections_open 1000 split over both loops
//     (palisade_worker_connections_open, each loop well above none);
//   - one more WebSocket (the 1000th) opens; 20 more are refused `503` each:
//     max_connections holds exactly across the loops;
//   - after closing 10, 10 new ones open again;
//   - every WebSocket answers `get_name` (a sample of 50);
//   - 200 Socket.IO clients with the default transports (long-polling first,
//     then the move to WebSocket) all connect, upgrade and get their ack:
//     half of the long-polling requests reach the loop that does not own
//     the session, which hands the connection over.
// With PALISADE_TLS=1 the same over TLS (every check name ends in "(tls)").
// Prints one PASS/FAIL line per check; exits non-zero if any failed. The
// server's stderr goes to target/test-output/logs/.
//
//   (cd tests/js && npm ci) && node tests/clients/workers.mjs

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../js/package.json', import.meta.url));
const WebSocket = require('ws');
const { io } = require('socket.io-client');

const NAME = 'workers';
const TIMEOUT_MS = 15_000;
const MAX = 1000;
const SIO_CLIENTS = 200;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = process.env.PALISADE_BIN || 'target/debug/palisade';
const LOG_DIR = process.env.PALISADE_LOG_DIR || path.join(ROOT, 'target', 'test-output', 'logs');

// PALISADE_TLS=1: the server on the development certificate, every client
// trusting only certs/ca.pem (wss://, https:// polling): hand-overs then
// carry the connection's TLS session to the other loop.
const TLS = process.env.PALISADE_TLS === '1';
const CA = TLS ? readFileSync(path.join(ROOT, 'certs', 'ca.pem')) : undefined;
const TLS_ARGS = TLS
  ? ['--tls-cert', path.join(ROOT, 'certs', 'localhost.pem'), '--tls-key', path.join(ROOT, 'certs', 'localhost.key')]
  : [];
const HOST = (addr) => (TLS ? addr.replace('127.0.0.1', 'localhost') : addr);

const results = [];
function check(name, ok, detail = '') {
  if (TLS) name += ' (tls)';
  results.push(Boolean(ok));
  console.log(ok ? `PASS ${NAME}: ${name}` : `FAIL ${NAME}: ${name}${detail ? ` -- ${detail}` : ''}`);
  return ok;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function startServer(configFile) {
  mkdirSync(LOG_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  const log = createWriteStream(path.join(LOG_DIR, `${NAME}-${stamp}-${process.pid}.log`));
  const child = spawn(BIN, ['--listen', '127.0.0.1:0', ...TLS_ARGS, '--config', configFile, '--workers', '2'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = readline.createInterface({ input: child.stderr });
  const seen = [];
  const ready = new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`server exited (${code}) before listening`)));
    lines.on('line', (line) => {
      log.write(line + '\n');
      seen.push(line);
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  lines.on('close', () => log.end());
  return { child, seen, ready: withTimeout(ready, TIMEOUT_MS, 'listening on') };
}

// One WebSocket: resolves with it open, or with the refusal's status.
function openWs(addr) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${TLS ? 'wss' : 'ws'}://${HOST(addr)}/ws`, { ca: CA });
    ws.on('open', () => resolve({ ws }));
    ws.on('unexpected-response', (_req, res) => { resolve({ status: res.statusCode }); res.resume(); });
    ws.on('error', (e) => resolve({ error: String(e) }));
  });
}

function metrics(addr) {
  return new Promise((resolve, reject) => {
    const get = TLS ? https.get : http.get;
    const url = `${TLS ? 'https' : 'http'}://${HOST(addr)}/metrics`;
    const req = get(url, { agent: false, ca: CA, headers: { Connection: 'close' } }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
  });
}

function series(page, name) {
  for (const line of page.split('\n')) {
    const i = line.lastIndexOf(' ');
    if (line.slice(0, i) === name) return Number(line.slice(i + 1));
  }
  return undefined;
}

async function getName(ws) {
  return withTimeout(new Promise((resolve) => {
    ws.once('message', (m) => resolve(JSON.parse(m.toString())));
    ws.send(JSON.stringify({ event: 'get_name', data: { hero: 'hulk' } }));
  }), TIMEOUT_MS, 'get_name');
}

async function socketIoClient(addr) {
  const url = `${TLS ? 'https' : 'http'}://${HOST(addr)}`;
  const socket = io(url, { reconnection: false, timeout: TIMEOUT_MS, ...(CA ? { ca: CA } : {}) });
  try {
    await withTimeout(new Promise((resolve, reject) => {
      socket.on('connect', resolve);
      socket.on('connect_error', reject);
    }), TIMEOUT_MS, 'connect');
    const upgraded = socket.io.engine.transport.name === 'websocket'
      ? Promise.resolve()
      : new Promise((resolve) => socket.io.engine.once('upgrade', resolve));
    const ack = await socket.timeout(TIMEOUT_MS).emitWithAck('get_name', { hero: 'hulk' });
    await withTimeout(upgraded, TIMEOUT_MS, 'upgrade');
    return { ok: ack && ack.hero_name === 'Bruce Banner', transport: socket.io.engine.transport.name };
  } catch (e) {
    return { ok: false, error: String(e && e.message) };
  } finally {
    socket.close();
  }
}

async function main() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'palisade-workers-'));
  const config = path.join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    auth: { mode: 'none' },
    limits: { max_connections: MAX, max_connections_per_ip: 100000 },
    rate: { handshakes_per_ip_per_s: 100000 },
  }));
  const server = startServer(config);
  const open = [];
  try {
    const addr = await server.ready;
    check('palisade starts with --workers 2', server.seen.some((l) => l.includes('workers=2')),
      server.seen.filter((l) => l.includes('listening')).join(' | '));
    for (let n = 0; n < MAX - 1; n += 111) {
      const batch = await Promise.all(Array.from({ length: Math.min(111, MAX - 1 - n) }, () => openWs(addr)));
      open.push(...batch.filter((r) => r.ws).map((r) => r.ws));
    }
    check(`${MAX - 1} WebSockets open`, open.length === MAX - 1, `${open.length} open`);
    const m = await metrics(addr);
    const total = series(m.body, 'palisade_connections_open');
    const w0 = series(m.body, 'palisade_worker_connections_open{worker="0"}');
    const w1 = series(m.body, 'palisade_worker_connections_open{worker="1"}');
    check(`/metrics counts ${MAX} connections over both loops`, m.status === 200 && total === MAX && w0 + w1 === MAX,
      `status ${m.status}, total ${total}, loops ${w0} + ${w1}`);
    check('the kernel spreads them: each loop has more than a fifth', w0 > MAX / 5 && w1 > MAX / 5, `${w0} and ${w1}`);
    // The metrics connection's close reaches the server.
    await new Promise((r) => setTimeout(r, 500));
    const last = await openWs(addr);
    if (last.ws) open.push(last.ws);
    check(`the ${MAX}th WebSocket opens`, Boolean(last.ws), JSON.stringify(last));
    const over = await Promise.all(Array.from({ length: 20 }, () => openWs(addr)));
    check(`20 more are refused 503 (max_connections ${MAX} across both loops)`,
      over.every((r) => r.status === 503), JSON.stringify(over.map((r) => r.status ?? r.error ?? 'open')));
    for (const r of over) if (r.ws) r.ws.terminate();
    for (const ws of open.splice(0, 10)) ws.close();
    await new Promise((r) => setTimeout(r, 500));
    const again = await Promise.all(Array.from({ length: 10 }, () => openWs(addr)));
    open.push(...again.filter((r) => r.ws).map((r) => r.ws));
    check('after 10 close, 10 open again', again.every((r) => r.ws), JSON.stringify(again.map((r) => r.status ?? 'open')));
    const sample = open.filter((_, i) => i % 20 === 0);
    const names = await Promise.all(sample.map((ws) => getName(ws).catch((e) => String(e))));
    check(`get_name answered on ${sample.length} of them`,
      names.every((n) => n && n.data && n.data.hero_name === 'Bruce Banner'), JSON.stringify(names.find((n) => !n.data)));
    for (const ws of open.splice(0)) ws.close();
    await new Promise((r) => setTimeout(r, 1000));

    const sio = [];
    for (let n = 0; n < SIO_CLIENTS; n += 50) {
      sio.push(...await Promise.all(Array.from({ length: 50 }, () => socketIoClient(addr))));
    }
    const good = sio.filter((r) => r.ok && r.transport === 'websocket').length;
    check(`${SIO_CLIENTS} default-transport Socket.IO clients connect, upgrade and get their ack`, good === SIO_CLIENTS,
      `${good} good; first failure ${JSON.stringify(sio.find((r) => !(r.ok && r.transport === 'websocket')))}`);
    await new Promise((r) => setTimeout(r, 500));
    const after = await metrics(addr);
    const handoffs = series(after.body, 'palisade_handoffs_total');
    check('long-polling requests were handed to the loop owning their session', handoffs > 0,
      `palisade_handoffs_total ${handoffs}`);
    check('every Socket.IO session is gone afterwards',
      series(after.body, 'palisade_socketio_sessions{transport="polling"}') === 0
        && series(after.body, 'palisade_socketio_sessions{transport="websocket"}') === 0,
      after.body.split('\n').filter((l) => l.startsWith('palisade_socketio_sessions')).join(' | '));
  } catch (e) {
    check('the checks run to the end', false, String(e && e.stack ? e.stack : e));
  } finally {
    for (const ws of open) ws.terminate();
    server.child.kill('SIGTERM');
    await new Promise((r) => server.child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
  const passed = results.filter(Boolean).length;
  console.log(`${NAME}: ${passed} passed, ${results.length - passed} failed`);
  process.exit(results.every(Boolean) && results.length > 0 ? 0 : 1);
}

main();
