#!/usr/bin/env node
// palisade behind a real nginx with deploy/nginx.conf: TLS ends at nginx
// (the development certificate, clients trusting only certs/ca.pem), and
// through it:
//   - POST /login, then the raw protocol over wss:// (Node ws): user_authorized
//     and get_name;
//   - the official socket.io-client with long-polling only, and with its
//     default transports (which move to WebSocket): acked get_name;
//   - the login rate limit keyed on the client's address from
//     X-Forwarded-For: a client on 127.0.0.2 is limited after 3 logins a
//     minute, and a client on 127.0.0.3 that sends "X-Forwarded-For:
//     127.0.0.2" is not (nginx replaces the header; palisade believes it
//     only from trusted_proxies).
// nginx (Debian's package, installed by the test command) runs with its own
// prefix in a temporary directory, on a free loopback port, and is stopped
// after. Skipped, with the reason printed, when nginx is not installed.
// Prints one PASS/FAIL line per check; exits non-zero if any failed.
//
//   (cd tests/js && npm ci) && node tests/clients/nginx_proxy.mjs

import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../js/package.json', import.meta.url));
const WebSocket = require('ws');
const { io } = require('socket.io-client');

const NAME = 'nginx_proxy';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = process.env.PALISADE_BIN || path.join(ROOT, 'target', 'debug', 'palisade');
const NGINX = process.env.NGINX || '/usr/sbin/nginx';
const LOG_DIR = process.env.PALISADE_LOG_DIR || path.join(ROOT, 'target', 'test-output', 'logs');
const CA = readFileSync(path.join(ROOT, 'certs', 'ca.pem'));
const TIMEOUT_MS = 10_000;
// Every password used here is listed in tests/test-passwords.txt.
const PASSWORD = 'nginx-alice-Rw5Tq8Zk2m';

const results = [];
function check(name, ok, detail = '') {
  results.push(Boolean(ok));
  console.log(ok ? `PASS ${NAME}: ${name}` : `FAIL ${NAME}: ${name}${detail ? ` -- ${detail}` : ''}`);
  return ok;
}
const withTimeout = (p, ms, what) => Promise.race([
  p, new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
]);

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startPalisade(args) {
  mkdirSync(LOG_DIR, { recursive: true });
  const log = createWriteStream(path.join(LOG_DIR, `${NAME}-${Date.now()}-${process.pid}.log`));
  const child = spawn(BIN, ['--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  const ready = new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`palisade exited (${code})`)));
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      log.write(line + '\n');
      lines.push(line);
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  return { child, lines, ready: withTimeout(ready, TIMEOUT_MS, 'palisade listening') };
}

async function waitPort(port) {
  const until = Date.now() + TIMEOUT_MS;
  while (Date.now() < until) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

// One HTTPS request through nginx: { status, body }.
function request(port, method, target, { body, headers = {}, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', servername: 'localhost', port, method, path: target, ca: CA, localAddress,
      headers: { Host: `localhost:${port}`, ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

const login = (port, password, opts = {}) =>
  request(port, 'POST', '/login', { body: JSON.stringify({ username: 'alice', password }), ...opts });

async function raw(port, token) {
  const ws = new WebSocket(`wss://localhost:${port}/ws?token=${token}`, ['palisade.v1'], { ca: CA });
  const messages = [];
  const got = (n) => new Promise((resolve) => {
    const f = () => { if (messages.length >= n) resolve(); };
    ws.on('message', (m) => { messages.push(JSON.parse(m.toString())); f(); });
  });
  const two = got(2);
  await withTimeout(new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); }), TIMEOUT_MS, 'wss open');
  ws.send(JSON.stringify({ event: 'get_name', data: { hero: 'hulk' } }));
  await withTimeout(two, TIMEOUT_MS, 'two messages').catch(() => {});
  ws.close();
  return messages;
}

async function sio(port, token, transports) {
  const socket = io(`https://localhost:${port}`, {
    ca: CA, auth: { token }, reconnection: false, timeout: TIMEOUT_MS, ...(transports ? { transports } : {}),
  });
  try {
    await withTimeout(new Promise((resolve, reject) => {
      socket.on('connect', resolve);
      socket.on('connect_error', reject);
    }), TIMEOUT_MS, 'connect');
    const ack = await socket.timeout(TIMEOUT_MS).emitWithAck('get_name', { hero: 'ironMan' });
    if (!transports && socket.io.engine.transport.name !== 'websocket') {
      await withTimeout(new Promise((r) => socket.io.engine.once('upgrade', r)), TIMEOUT_MS, 'upgrade').catch(() => {});
    }
    return { ack, transport: socket.io.engine.transport.name };
  } finally {
    socket.close();
  }
}

async function main() {
  if (!existsSync(NGINX)) {
    console.log(`SKIP ${NAME}: ${NGINX} is not installed`);
    return;
  }
  const work = mkdtempSync(path.join(os.tmpdir(), `palisade-${NAME}.`));
  let palisade = null;
  let nginx = null;
  try {
    const users = path.join(work, 'users.json');
    const r = spawnSync(BIN, ['users', 'add', 'alice', '--users-file', users, '--iterations', '10000'],
      { input: `${PASSWORD}\n`, stdio: ['pipe', 'ignore', 'pipe'], timeout: 60_000 });
    if (!check('palisade users add alice', r.status === 0, String(r.stderr))) return;
    // As deploy/nginx.conf says for the palisade side.
    const config = path.join(work, 'palisade.json');
    writeFileSync(config, JSON.stringify({
      trusted_proxies: ['127.0.0.1/32'], allowed_hosts: ['localhost'], rate: { logins_per_ip_per_min: 3 },
    }));
    palisade = startPalisade(['--users-file', users, '--config', config]);
    const upstream = await palisade.ready;
    const port = await freePort();
    // deploy/nginx.conf with this run's names, inside a minimal nginx.conf.
    const site = readFileSync(path.join(ROOT, 'deploy', 'nginx.conf'), 'utf8')
      .replace('listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`)
      .replace('server_name chat.example.com;', 'server_name localhost;')
      .replace('/etc/palisade/tls/fullchain.pem', path.join(ROOT, 'certs', 'localhost.pem'))
      .replace('/etc/palisade/tls/privkey.pem', path.join(ROOT, 'certs', 'localhost.key'))
      .replace('server 127.0.0.1:8080;', `server ${upstream};`);
    writeFileSync(path.join(work, 'palisade.conf'), site);
    mkdirSync(path.join(work, 'tmp'), { recursive: true });
    const root = process.getuid && process.getuid() === 0 ? 'user root;\n' : '';
    writeFileSync(path.join(work, 'nginx.conf'), `${root}worker_processes 1;
daemon off;
pid ${work}/nginx.pid;
error_log ${work}/error.log warn;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path ${work}/tmp/body;
    proxy_temp_path ${work}/tmp/proxy;
    fastcgi_temp_path ${work}/tmp/fastcgi;
    uwsgi_temp_path ${work}/tmp/uwsgi;
    scgi_temp_path ${work}/tmp/scgi;
    include ${work}/palisade.conf;
}
`);
    nginx = spawn(NGINX, ['-p', work, '-c', path.join(work, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let nginxErr = '';
    nginx.stderr.on('data', (d) => { nginxErr += d; });
    try {
      await waitPort(port);
    } catch (e) {
      check('nginx starts with deploy/nginx.conf', false, nginxErr || String(e));
      return;
    }
    check('nginx starts with deploy/nginx.conf', true);

    const ok = await login(port, PASSWORD);
    const token = ok.status === 200 ? JSON.parse(ok.body).token : '';
    check('POST /login through nginx (https)', ok.status === 200 && token, `${ok.status} ${ok.body}`);

    const messages = await raw(port, token).catch((e) => [String(e)]);
    check('wss:// through nginx: user_authorized, then get_name answered',
      messages.length === 2 && messages[0].event === 'user_authorized'
        && messages[1].event === 'name' && messages[1].data.hero_name === 'Bruce Banner', JSON.stringify(messages));

    const polling = await sio(port, token, ['polling']).catch((e) => ({ error: String(e) }));
    check('Socket.IO long-polling through nginx: get_name acked',
      polling.ack && polling.ack.hero_name === 'Tony Stark' && polling.transport === 'polling', JSON.stringify(polling));
    const upgraded = await sio(port, token, undefined).catch((e) => ({ error: String(e) }));
    check('Socket.IO default transports through nginx: acked, and moved to websocket',
      upgraded.ack && upgraded.ack.hero_name === 'Tony Stark' && upgraded.transport === 'websocket',
      JSON.stringify(upgraded));

    // The login rate is per client address, the one nginx saw.
    const statuses = [];
    for (let i = 0; i < 4; i += 1) {
      statuses.push((await login(port, 'not the password', { localAddress: '127.0.0.2' })).status);
    }
    check('logins from 127.0.0.2: limited after 3 a minute', JSON.stringify(statuses) === '[401,401,401,429]',
      JSON.stringify(statuses));
    await new Promise((r) => setTimeout(r, 300));
    check('palisade logs the limit against 127.0.0.2 (from X-Forwarded-For)',
      palisade.lines.some((l) => l.includes('rate limited') && l.includes('client=127.0.0.2')),
      palisade.lines.filter((l) => l.includes('rate limited')).join(' | '));
    const spoofed = await login(port, 'not the password',
      { localAddress: '127.0.0.3', headers: { 'X-Forwarded-For': '127.0.0.2' } });
    check('a client that sends X-Forwarded-For: 127.0.0.2 is not charged as 127.0.0.2', spoofed.status === 401,
      String(spoofed.status));
    const metrics = await request(port, 'GET', '/metrics');
    check('/metrics through nginx is 403', metrics.status === 403, `${metrics.status} ${metrics.body.slice(0, 80)}`);
  } catch (e) {
    check('the checks run to the end', false, String(e && e.stack ? e.stack : e));
  } finally {
    if (nginx) nginx.kill('SIGQUIT');
    if (palisade) palisade.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    rmSync(work, { recursive: true, force: true });
    const failed = results.filter((x) => !x).length;
    console.log(`${NAME}: ${results.length - failed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  }
}

main();
