#!/usr/bin/env node
// External test: palisade and a Node `socket.io` server with the official
// Redis adapter (`@socket.io/redis-adapter`, the classic `createAdapter`, on
// the `redis` v4 client) form one cluster on one real `redis-server`.
//
// Starts Debian's redis-server on a loopback port with its own directory, a
// Node socket.io v4 server in this process with the adapter (its sockets
// join the room named by their `room` query parameter), and palisade
// ($PALISADE_BIN, default target/debug/palisade) with `cluster.redis_url` on
// the same Redis. Clients, all in room (channel) `news.a`:
//   - a socket.io-client on the Node server, and one in room `news.b`;
//   - two socket.io-clients on palisade (subscribed with an acked
//     `subscribe`), one with the default transports (it moves to WebSocket),
//     one on long-polling only;
//   - a raw WebSocket (`ws`) on palisade.
// Then:
//   - Node `io.to('news.a').emit('publication', {channel, data})`: every
//     news.a client on both sides gets it exactly once (the raw client as
//     {"event":"publication","data":{...}}), the news.b client nothing;
//   - Node `io.to('news.a').emit('news', 1, 'two')`: the palisade Socket.IO
//     client gets event `news` with the arguments (1, 'two'), the raw client
//     {"event":"news","data":[1,"two"]};
//   - palisade `POST /api/publish` on news.a: the Node client gets the event
//     `publication` {channel, data} exactly once, palisade's clients once.
// Prints one PASS/FAIL line per check; exits non-zero if any failed.
//
//   (cd tests/js && npm ci) && node tests/clients/cluster_socketio.mjs

import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../js/package.json', import.meta.url));
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');
const { io: ioClient } = require('socket.io-client');
const WebSocket = require('ws');

const NAME = 'cluster_socketio';
// Every password used here is listed in tests/test-passwords.txt.
const PASSWORD = 'cluster-node-alice-Rf5Gh8Lm3z';
const TIMEOUT_MS = 10_000;
const QUIET_MS = 1_000;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = process.env.PALISADE_BIN || path.join(ROOT, 'target', 'debug', 'palisade');
const LOG_DIR = process.env.PALISADE_LOG_DIR || path.join(ROOT, 'target', 'test-output', 'logs');

const results = [];
function check(name, ok, detail = '') {
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRedis(dir, port) {
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '',
    '--appendonly', 'no', '--daemonize', 'no', '--logfile', path.join(dir, 'redis.log')], { stdio: 'ignore' });
  const deadline = Date.now() + TIMEOUT_MS;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
      s.on('data', (d) => { s.destroy(); resolve(d.toString().includes('PONG')); });
      s.on('error', () => resolve(false));
    });
    if (ok) return child;
    await sleep(50);
  }
  child.kill();
  throw new Error('redis-server did not start');
}

function startPalisade(args) {
  mkdirSync(LOG_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  const log = createWriteStream(path.join(LOG_DIR, `${NAME}-${stamp}-${process.pid}.log`));
  const child = spawn(BIN, ['--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = readline.createInterface({ input: child.stderr });
  const ready = new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`palisade exited (${code}) before listening`)));
    lines.on('line', (line) => {
      log.write(line + '\n');
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  lines.on('close', () => log.end());
  return { child, ready: withTimeout(ready, TIMEOUT_MS, 'listening on') };
}

async function metric(base, name) {
  const r = await fetch(`${base}/metrics`);
  const line = (await r.text()).split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : null;
}

/// Every `event` a Socket.IO client gets, as its argument lists.
function record(socket, ...events) {
  const got = Object.fromEntries(events.map((e) => [e, []]));
  for (const e of events) socket.on(e, (...args) => got[e].push(args));
  return got;
}

function connected(socket) {
  return withTimeout(new Promise((resolve, reject) => {
    socket.on('connect', resolve);
    socket.on('connect_error', reject);
  }), TIMEOUT_MS, 'connect');
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function main() {
  const work = mkdtempSync(path.join(os.tmpdir(), `palisade-${NAME}.`));
  const cleanup = [];
  try {
    const users = path.join(work, 'users.json');
    const keys = path.join(work, 'keys.json');
    let r = spawnSync(BIN, ['users', 'add', 'alice', '--users-file', users, '--iterations', '10000'],
      { input: PASSWORD + '\n', encoding: 'utf8' });
    if (!check('palisade users add alice', r.status === 0, r.stderr)) return;
    r = spawnSync(BIN, ['apikeys', 'add', 'ops', '--keys-file', keys], { encoding: 'utf8' });
    const key = r.stdout.trim();
    if (!check('palisade apikeys add ops', r.status === 0 && key.startsWith('pk_'), r.stderr)) return;

    const redisPort = await freePort();
    const redis = await startRedis(work, redisPort);
    cleanup.push(() => redis.kill());
    const redisUrl = `redis://127.0.0.1:${redisPort}`;

    // The Node side: socket.io with the Redis adapter.
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    cleanup.push(() => Promise.all([pub.quit(), sub.quit()]).catch(() => {}));
    const httpServer = http.createServer();
    const nodeIo = new Server(httpServer, { adapter: createAdapter(pub, sub) });
    nodeIo.on('connection', (socket) => socket.join(socket.handshake.query.room));
    const nodePort = await freePort();
    await new Promise((resolve) => httpServer.listen(nodePort, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => nodeIo.close(() => resolve())));

    // palisade on the same Redis.
    const config = path.join(work, 'config.json');
    writeFileSync(config, JSON.stringify({
      auth: { users_file: users },
      api: { keys_file: keys },
      channels: [{ pattern: 'news.*', subscribe: ['authenticated'], publish: ['key:ops'] }],
      cluster: { redis_url: redisUrl },
    }));
    const pal = startPalisade(['--config', config]);
    cleanup.push(() => pal.child.kill('SIGTERM'));
    const base = `http://${await pal.ready}`;
    let up = null;
    for (let i = 0; i < 200 && up !== 2; i++) {
      up = await metric(base, 'palisade_cluster_links_up');
      if (up !== 2) await sleep(50);
    }
    check('palisade connects to the same redis (two links)', up === 2, String(up));
    const login = await fetch(`${base}/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'alice', password: PASSWORD }),
    });
    const { token } = await login.json();
    check('alice logs in on palisade', typeof token === 'string');

    // The clients.
    const nodeA = ioClient(`http://127.0.0.1:${nodePort}`, { query: { room: 'news.a' }, transports: ['websocket'], reconnection: false });
    const nodeB = ioClient(`http://127.0.0.1:${nodePort}`, { query: { room: 'news.b' }, transports: ['websocket'], reconnection: false });
    const palSio = ioClient(base, { auth: { token }, reconnection: false });
    const palPoll = ioClient(base, { auth: { token }, reconnection: false, transports: ['polling'] });
    cleanup.push(() => { nodeA.close(); nodeB.close(); palSio.close(); palPoll.close(); });
    await Promise.all([connected(nodeA), connected(nodeB), connected(palSio), connected(palPoll)]);
    const gotA = record(nodeA, 'publication', 'news');
    const gotB = record(nodeB, 'publication', 'news');
    const gotPal = record(palSio, 'publication', 'news');
    const gotPoll = record(palPoll, 'publication', 'news');
    for (const [label, c] of [['default transports', palSio], ['long-polling', palPoll]]) {
      const subscribed = await c.timeout(TIMEOUT_MS).emitWithAck('subscribe', { channel: 'news.a' }).catch((e) => String(e));
      check(`palisade Socket.IO client (${label}): subscribe news.a acked {channel}`, same(subscribed, { channel: 'news.a' }), JSON.stringify(subscribed));
    }
    const raw = new WebSocket(`${base.replace('http', 'ws')}/ws`, { headers: { Authorization: `Bearer ${token}` } });
    cleanup.push(() => raw.close());
    const rawGot = [];
    raw.on('message', (m) => rawGot.push(JSON.parse(m.toString())));
    await withTimeout(new Promise((resolve) => raw.on('open', resolve)), TIMEOUT_MS, 'raw open');
    raw.send(JSON.stringify({ event: 'subscribe', data: { channel: 'news.a' } }));
    await sleep(300);
    check('raw client: user_authorized, then subscribed news.a',
      same(rawGot.map((m) => m.event), ['user_authorized', 'subscribed']), JSON.stringify(rawGot));
    rawGot.length = 0;

    // Node -> palisade: the publication event to room news.a.
    const fromNode = { channel: 'news.a', data: { from: 'node', n: 1.5, text: 'é ✓' } };
    nodeIo.to('news.a').emit('publication', fromNode);
    await sleep(QUIET_MS);
    check('Node io.to(news.a).emit(publication): the Node client in news.a gets it once',
      same(gotA.publication, [[fromNode]]), JSON.stringify(gotA.publication));
    check('Node io.to(news.a).emit(publication): the palisade Socket.IO client (WebSocket) gets it once',
      same(gotPal.publication, [[fromNode]]), JSON.stringify(gotPal.publication));
    check('Node io.to(news.a).emit(publication): the palisade long-polling client gets it once',
      same(gotPoll.publication, [[fromNode]]), JSON.stringify(gotPoll.publication));
    check('Node io.to(news.a).emit(publication): the palisade raw client gets {"event":"publication","data":{...}} once',
      same(rawGot, [{ event: 'publication', data: fromNode }]), JSON.stringify(rawGot));
    check('Node io.to(news.a).emit(publication): the Node client in news.b gets nothing',
      gotB.publication.length === 0, JSON.stringify(gotB.publication));
    rawGot.length = 0;

    // Node -> palisade: any event, several arguments.
    nodeIo.to('news.a').emit('news', 1, 'two');
    await sleep(QUIET_MS);
    check("Node io.to(news.a).emit('news', 1, 'two'): the palisade Socket.IO client gets news(1, 'two') once",
      same(gotPal.news, [[1, 'two']]), JSON.stringify(gotPal.news));
    check("Node emit news: the palisade long-polling client gets news(1, 'two') once",
      same(gotPoll.news, [[1, 'two']]), JSON.stringify(gotPoll.news));
    check('Node emit news: the palisade raw client gets {"event":"news","data":[1,"two"]} once',
      same(rawGot, [{ event: 'news', data: [1, 'two'] }]), JSON.stringify(rawGot));
    rawGot.length = 0;

    // palisade -> Node: the publish API.
    const data = { from: 'palisade', list: [1, null, true] };
    const res = await fetch(`${base}/api/publish`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel: 'news.a', data }),
    });
    const answer = await res.json();
    check('palisade POST /api/publish: 200 {"delivered":3,"cluster":"published"}',
      res.status === 200 && same(answer, { delivered: 3, cluster: 'published' }), `${res.status} ${JSON.stringify(answer)}`);
    await sleep(QUIET_MS);
    const want = { channel: 'news.a', data };
    check('palisade publication: the Node client in news.a gets the event publication once',
      same(gotA.publication.slice(1), [[want]]), JSON.stringify(gotA.publication));
    check('palisade publication: the palisade Socket.IO client gets it once',
      same(gotPal.publication.slice(1), [[want]]), JSON.stringify(gotPal.publication));
    check('palisade publication: the palisade long-polling client gets it once',
      same(gotPoll.publication.slice(1), [[want]]), JSON.stringify(gotPoll.publication));
    check('palisade publication: the palisade raw client gets it once',
      same(rawGot, [{ event: 'publication', data: want }]), JSON.stringify(rawGot));
    check('palisade publication: the Node client in news.b gets nothing',
      gotB.publication.length === 0 && gotB.news.length === 0, JSON.stringify(gotB));
    check('the Node client in news.a got news nowhere twice', same(gotA.news, [[1, 'two']]), JSON.stringify(gotA.news));
    check('palisade still running', pal.child.exitCode === null);
  } catch (e) {
    check('the scenario ran to the end', false, String(e && e.stack));
  } finally {
    for (const f of cleanup.reverse()) {
      try { await f(); } catch { /* already gone */ }
    }
    rmSync(work, { recursive: true, force: true });
  }
}

await withTimeout(main(), 120_000, NAME).catch((e) => check('finished in time', false, String(e)));
const failed = results.filter((ok) => !ok).length;
console.log(`${NAME}: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
