#!/usr/bin/env node
// External client test: the official Node Socket.IO client (`socket.io-client`
// v4) against palisade's /socket.io/, with its default transports (long-polling,
// then the move to WebSocket) and with `transports: ['websocket']`.
//
// Makes a users file with alice (`palisade users add`), starts the server from
// $PALISADE_BIN (default target/debug/palisade) on 127.0.0.1:0, logs in with
// POST /login, then:
//   - connects with `auth: { token }`, gets
//     `user_authorized` {username: 'alice'};
//   - asks `get_name` for every hero with an ack and with emit + a `name` handler;
//   - an unknown hero is acked with the `error` event's data (`unknown_hero`);
//   - a wrong token: `connect_error` with the server's message and code;
//   - the token as `extraHeaders: { Authorization }` (the tutorial client's way).
//   - the default transports end up on WebSocket; `transports: ['polling']`
//     stays on long-polling and gets every answer.
// With PALISADE_TLS=1 the server runs on the development certificate and the
// client trusts only certs/ca.pem (https:// polling, wss://).
// Prints one PASS/FAIL line per check; exits non-zero if any failed. The
// server's stderr goes to target/test-output/logs/.
//
//   (cd tests/js && npm ci) && node tests/clients/socketio_node.mjs

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../js/package.json', import.meta.url));
const { io } = require('socket.io-client');

const NAME = 'socketio_node';
const NAMES = {
  ironMan: 'Tony Stark',
  hulk: 'Bruce Banner',
  wonderWoman: 'Diana',
  batMan: 'Bruce Wayne',
  blackPanther: "T'Challa",
};
// Every password used here is listed in tests/test-passwords.txt.
const PASSWORD = 'sio-node-alice-Hb4Vn7Kx2p';
const TIMEOUT_MS = 10_000;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = process.env.PALISADE_BIN || 'target/debug/palisade';
const LOG_DIR = process.env.PALISADE_LOG_DIR || path.join(ROOT, 'target', 'test-output', 'logs');

// PALISADE_TLS=1: the server on the development certificate, the client
// trusting only certs/ca.pem (https:// and wss://, polling included).
const TLS = process.env.PALISADE_TLS === '1';
const CA = TLS ? readFileSync(path.join(ROOT, 'certs', 'ca.pem')) : undefined;
const TLS_ARGS = TLS
  ? ['--tls-cert', path.join(ROOT, 'certs', 'localhost.pem'), '--tls-key', path.join(ROOT, 'certs', 'localhost.key')]
  : [];

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

function startServer(args) {
  mkdirSync(LOG_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  const log = createWriteStream(path.join(LOG_DIR, `${NAME}-${stamp}-${process.pid}.log`));
  const child = spawn(BIN, ['--listen', '127.0.0.1:0', ...TLS_ARGS, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = readline.createInterface({ input: child.stderr });
  const ready = new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`server exited (${code}) before listening`)));
    lines.on('line', (line) => {
      log.write(line + '\n');
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  lines.on('close', () => log.end());
  return { child, ready: withTimeout(ready, TIMEOUT_MS, 'listening on') };
}

function connect(url, opts) {
  const { transports, ...rest } = opts;
  const socket = io(url, {
    reconnection: false, timeout: TIMEOUT_MS, ...(transports ? { transports } : {}), ...(CA ? { ca: CA } : {}), ...rest,
  });
  const authorized = new Promise((resolve) => socket.on('user_authorized', resolve));
  const connected = new Promise((resolve, reject) => {
    socket.on('connect', resolve);
    socket.on('connect_error', reject);
  });
  return { socket, connected, authorized };
}

async function run(url, token, transports) {
  const L = `[${transports ? transports.join(',') : 'default'}] `;
  const { socket, connected, authorized } = connect(url, { auth: { token }, transports });
  try {
    await withTimeout(connected, TIMEOUT_MS, 'connect');
    check(L + 'connects with auth', socket.connected);
  } catch (e) {
    check(L + 'connects with auth', false, String(e && e.message));
    return;
  }
  const user = await withTimeout(authorized, TIMEOUT_MS, 'user_authorized').catch((e) => e);
  check(L + "user_authorized {username: 'alice'}", user && user.username === 'alice', JSON.stringify(user));
  for (const [hero, real] of Object.entries(NAMES)) {
    const ack = await socket.timeout(TIMEOUT_MS).emitWithAck('get_name', { hero }).catch((e) => String(e));
    check(L + `get_name ${hero} acked with ${real}`, ack && ack.hero === hero && ack.hero_name === real,
      JSON.stringify(ack));
  }
  const names = {};
  const all = new Promise((resolve) => {
    socket.on('name', (data) => {
      names[data.hero] = data.hero_name;
      if (Object.keys(names).length === Object.keys(NAMES).length) resolve();
    });
  });
  for (const hero of Object.keys(NAMES)) socket.emit('get_name', { hero });
  await withTimeout(all, TIMEOUT_MS, 'name events').catch(() => {});
  check(L + 'emit get_name for every hero: each name event arrives',
    JSON.stringify(names) === JSON.stringify(NAMES), JSON.stringify(names));
  const unknown = await socket.timeout(TIMEOUT_MS).emitWithAck('get_name', { hero: 'nobody' }).catch((e) => e);
  check(L + 'an unknown hero is acked with the error event data', unknown && unknown.code === 'unknown_hero',
    JSON.stringify(unknown));
  socket.disconnect();

  const bad = connect(url, { auth: { token: 'x.y.z' }, transports });
  const refused = await withTimeout(bad.connected, TIMEOUT_MS, 'connect_error').then(() => null, (e) => e);
  check(L + 'a wrong token: connect_error with the server\'s message and code',
    refused && refused.message === 'unauthorized' && refused.data && refused.data.code === 'malformed',
    refused && JSON.stringify({ message: refused.message, data: refused.data }));
  bad.socket.close();

  const viaHeader = connect(url, { extraHeaders: { Authorization: `Bearer ${token}` }, transports });
  const ok = await withTimeout(viaHeader.authorized, TIMEOUT_MS, 'user_authorized').then(() => true, () => false);
  check(L + 'the token as extraHeaders Authorization connects', ok);
  viaHeader.socket.close();
}

/// The default transports end up on WebSocket; polling alone still works.
async function transportsRun(url, token) {
  const up = connect(url, { auth: { token }, transports: undefined });
  await withTimeout(up.connected, TIMEOUT_MS, 'connect').catch(() => {});
  const engine = up.socket.io.engine;
  const upgraded = engine && engine.transport.name === 'websocket'
    ? true
    : await withTimeout(new Promise((resolve) => engine.once('upgrade', () => resolve(true))), TIMEOUT_MS, 'upgrade')
      .catch(() => false);
  check('the default transports end up on websocket', upgraded, engine && engine.transport.name);
  up.socket.close();
  const only = connect(url, { auth: { token }, transports: ['polling'] });
  await withTimeout(only.connected, TIMEOUT_MS, 'connect').catch(() => {});
  const acks = [];
  for (const hero of Object.keys(NAMES)) {
    acks.push(await only.socket.timeout(TIMEOUT_MS).emitWithAck('get_name', { hero }).catch((e) => String(e)));
  }
  check('polling only: every get_name acked',
    acks.every((a, i) => a && a.hero_name === Object.values(NAMES)[i]), JSON.stringify(acks));
  check('polling only: still on polling', only.socket.io.engine.transport.name === 'polling');
  only.socket.close();
}

/// POST /login (over https with only the development CA when TLS): the token.
function loginToken(base) {
  const body = JSON.stringify({ username: 'alice', password: PASSWORD });
  return new Promise((resolve, reject) => {
    const req = (TLS ? https : http).request(`${base}/login`, {
      method: 'POST', ca: CA, headers: { 'Content-Type': 'application/json', 'Content-Length': body.length },
    }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => { try { resolve(JSON.parse(data).token); } catch (e) { reject(e); } });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  const work = mkdtempSync(path.join(os.tmpdir(), `palisade-${NAME}.`));
  let server = null;
  try {
    const users = path.join(work, 'users.json');
    const r = spawnSync(BIN, ['users', 'add', 'alice', '--users-file', users, '--iterations', '10000'],
      { input: `${PASSWORD}\n`, stdio: ['pipe', 'ignore', 'pipe'], timeout: 60_000 });
    if (!check('palisade users add alice', r.status === 0, String(r.stderr))) return;
    const config = path.join(work, 'config.json');
    writeFileSync(config, JSON.stringify({ rate: { logins_per_ip_per_min: 1000 } }));
    server = startServer(['--users-file', users, '--config', config]);
    const addr = await server.ready.catch(() => null);
    if (!check('server starts and reports its address', addr !== null)) return;
    const base = TLS ? `https://localhost:${addr.split(':')[1]}` : `http://${addr}`;
    const token = await loginToken(base);
    for (const transports of [undefined, ['websocket']]) {
      await withTimeout(run(base, token, transports), 60_000, 'the checks');
    }
    await withTimeout(transportsRun(base, token), 60_000, 'the transport checks');
    check('server still running after the checks', server.child.exitCode === null);
  } catch (e) {
    check('the checks run to the end', false, String(e && e.stack ? e.stack : e));
  } finally {
    if (server) server.child.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
    const failed = results.filter((ok) => !ok).length;
    console.log(`${NAME}: ${results.length - failed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
    setTimeout(() => process.exit(process.exitCode), 2_000).unref();
  }
}

main();
