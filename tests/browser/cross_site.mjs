#!/usr/bin/env node
// Browser test of the Origin policy (SPEC.md section 4): cross-site WebSocket
// hijacking, tried by a real page in headless Chromium (playwright-core).
//
// The "attacker" page is served by a small Node HTTP server on 127.0.0.1 (its
// own port, so its own origin, and no Content-Security-Policy); its script opens
// `new WebSocket('ws://127.0.0.1:<palisade port>/ws')`, sends
// {"event":"get_name","data":{"hero":"ironMan"}} once open, and records every
// open, message, error and close event. Chromium sends
// `Origin: http://127.0.0.1:<node port>` with that handshake. Palisade runs
// from $PALISADE_BIN (default target/debug/palisade) with
// `--listen 127.0.0.1:0 --auth-mode none` (plus any flags in
// $PALISADE_EXTRA_ARGS), so the Origin check is the only thing that can refuse
// the page.
//   1. Default policy (allowed_origins empty, same-origin only): the page gets
//      an error and a close with code 1006, never an open and never a message;
//      Chromium reports the 403; the server logs
//      `handshake refused ... status=403 reason="origin not allowed"` for it
//      and accepts no handshake.
//   2. Control: a second server with
//      allowed_origins ["http://127.0.0.1:<node port>"]: the same page connects
//      and gets {"event":"name","data":{"hero":"ironMan","hero_name":"Tony Stark"}},
//      so what refuses it in 1 is the Origin policy and nothing else.
//   3. Same origin: palisade's own demo page (GET / on the server of 1) still
//      connects (#status data-state "connected").
//   4. DNS rebinding: Chromium resolves rebind.test to 127.0.0.1
//      (--host-resolver-rules). The attacker's page is served at
//      http://rebind.test:P/ by the Node site; then the Node site stops and
//      palisade starts on the same port P, as if the name had been re-pointed
//      at a server on the visitor's machine. The page's WebSocket to
//      ws://rebind.test:P/ws now carries Host and Origin of the same name and
//      port, which the same-origin rule alone accepts. With the default
//      allowed_hosts the page gets close 1006, Chromium reports 421, and the
//      server logs status=421 reason="host not allowed"; control: with
//      allowed_hosts ["rebind.test"] the same page gets the hero's name, so
//      the Host check is what stops it.
// Screenshots go to $PALISADE_TEST_OUT (default target/test-output/browser/);
// every server's stderr to $PALISADE_LOG_DIR (default target/test-output/logs/).
// Prints one PASS/FAIL line per check and exits non-zero if any failed.
// Plain HTTP only; PALISADE_TLS is ignored.
//
//   (cd tests/js && npm ci) && node tests/browser/cross_site.mjs
// Needs Chromium at $CHROMIUM (default /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

// Dependencies live in tests/js (package.json + package-lock.json).
const require = createRequire(new URL('../js/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const NAME = 'browser_cross_site';
const START_TIMEOUT_MS = 10_000;
const STEP_TIMEOUT_MS = 10_000;
const LOG_WAIT_MS = 5_000; // for a server log line to show up
const QUIET_MS = 1_000; // how long nothing more may happen after a refusal
const OVERALL_TIMEOUT_MS = 120_000;
const LISTEN_RE = /listening on (127\.0\.0\.1:\d+)/;
const REFUSED_RE = /handshake refused .*status=403 reason="origin not allowed"/;
const ACCEPTED_RE = /handshake accepted/;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
  // Only this made-up name: every other name resolves as usual.
  '--host-resolver-rules=MAP rebind.test 127.0.0.1',
];
const REBIND_HOST = 'rebind.test';
const ROOT = fileURLToPath(new URL('../..', import.meta.url)); // the repository root
const OUT_DIR = process.env.PALISADE_TEST_OUT || path.join('target', 'test-output', 'browser');
const BIN = process.env.PALISADE_BIN || 'target/debug/palisade';
const LOG_DIR = process.env.PALISADE_LOG_DIR || path.join(ROOT, 'target', 'test-output', 'logs');
const GET_NAME = { event: 'get_name', data: { hero: 'ironMan' } };
const NAME_REPLY = { event: 'name', data: { hero: 'ironMan', hero_name: 'Tony Stark' } };

const results = [];
function check(name, ok, detail = '') {
  results.push({ name, ok: Boolean(ok) });
  console.log(ok ? `PASS ${NAME}: ${name}` : `FAIL ${NAME}: ${name}${detail ? ` -- ${detail}` : ''}`);
  return ok;
}
const errText = (e) => String(e && e.message ? e.message.split('\n')[0] : e);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Runs fn and turns its outcome into one PASS/FAIL line; returns its value or undefined.
async function step(name, fn) {
  try {
    const value = await fn();
    check(name, true);
    return value === undefined ? true : value;
  } catch (e) {
    check(name, false, errText(e));
    return undefined;
  }
}

// ---- palisade ----------------------------------------------------------------

const servers = new Set();
let serverRuns = 0;
let lastLog = []; // the stderr lines of the server started last, shown on failure

// Starts palisade on 127.0.0.1:0 with auth none and the given config file. Its
// stderr goes whole to a log file of its own under LOG_DIR and line by line to
// `lines`, which the checks read.
function startServer(configFile, listen = '127.0.0.1:0') {
  const extra = (process.env.PALISADE_EXTRA_ARGS || '').split(/\s+/).filter(Boolean);
  mkdirSync(LOG_DIR, { recursive: true });
  serverRuns += 1;
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  const logFd = openSync(path.join(LOG_DIR, `${NAME}-${stamp}-${process.pid}-${serverRuns}.log`), 'w');
  const child = spawn(BIN,
    ['--listen', listen, '--auth-mode', 'none', '--config', configFile, ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.add(child);
  child.on('exit', () => servers.delete(child));
  const server = { child, lines: [] };
  lastLog = server.lines;
  let found = false;
  const reader = readline.createInterface({ input: child.stderr });
  reader.on('close', () => closeSync(logFd));
  const ready = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      reject(new Error(`server exited (${code ?? signal}) before reporting its address`)));
    // Read stderr for the whole run so the pipe never fills.
    reader.on('line', (line) => {
      writeSync(logFd, line + '\n');
      server.lines.push(line);
      const m = !found && LISTEN_RE.exec(line);
      if (m) {
        found = true;
        resolve(m[1]);
      }
    });
  });
  server.ready = withTimeout(ready, START_TIMEOUT_MS, `"listening on" from ${BIN}`);
  return server;
}

async function killServer(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  try {
    await withTimeout(exited, 5_000, `server exit after ${signal}`);
  } catch {
    child.kill('SIGKILL');
    await withTimeout(exited, 5_000, 'server exit after SIGKILL').catch(() => {});
  }
}

// The server's log lines from index `from` on that match `re`.
const logMatches = (server, from, re) => server.lines.slice(from).filter((l) => re.test(l));

// Waits until a line from index `from` on matches `re`; returns the matches.
async function waitLog(server, from, re, what) {
  const deadline = Date.now() + LOG_WAIT_MS;
  for (;;) {
    const hits = logMatches(server, from, re);
    if (hits.length > 0) return hits;
    if (Date.now() > deadline) throw new Error(`no ${what} line in the server log within ${LOG_WAIT_MS} ms`);
    await sleep(50);
  }
}

// ---- the attacker's site -------------------------------------------------------

// The page takes the palisade address from its query (?target=127.0.0.1:PORT) and
// keeps what happens in window.attack (and on screen, for the screenshot).
const ATTACKER_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>Some other site</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2em; }
  #result { font-weight: bold; padding: .4em .6em; display: inline-block; }
  #result[data-state="refused"] { background: #d4f7d4; }
  #result[data-state="hijacked"] { background: #f7d4d4; }
  pre { background: #f4f4f4; padding: .8em; }
</style>
</head>
<body>
<h1>A page on another origin</h1>
<p>This page (<code id="origin"></code>) opens a WebSocket to <code id="url"></code>
and asks it for ironMan's name.</p>
<p>Result: <span id="result" data-state="pending">pending</span></p>
<pre id="log"></pre>
<script>
  const target = new URLSearchParams(location.search).get('target');
  const url = 'ws://' + target + '/ws';
  const attack = window.attack = { url, events: [], messages: [], done: false };
  const logEl = document.getElementById('log');
  const resultEl = document.getElementById('result');
  document.getElementById('origin').textContent = location.origin;
  document.getElementById('url').textContent = url;
  function note(event, detail) {
    attack.events.push(Object.assign({ event }, detail || {}));
    logEl.textContent += event + (detail ? ' ' + JSON.stringify(detail) : '') + '\\n';
  }
  function result(state) {
    resultEl.dataset.state = state;
    resultEl.textContent = state;
  }
  let ws;
  function go() {
    try {
      ws = new WebSocket(url);
    } catch (e) {
      note('exception', { message: String(e) });
      attack.done = true;
    }
    if (ws) wire();
  }
  // ?wait=1: the test calls go() (after the name is re-pointed).
  if (new URLSearchParams(location.search).get('wait')) window.go = go; else go();
  function wire() {
    ws.onopen = () => {
      note('open');
      ws.send(${JSON.stringify(JSON.stringify(GET_NAME))});
    };
    ws.onmessage = (e) => {
      attack.messages.push(String(e.data));
      note('message', { data: String(e.data) });
      result('hijacked');
    };
    ws.onerror = () => note('error');
    ws.onclose = (e) => {
      note('close', { code: e.code, wasClean: e.wasClean });
      if (attack.messages.length === 0) result('refused');
      attack.done = true;
    };
  }
</script>
</body>
</html>
`;

function startAttackerSite() {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && new URL(req.url, 'http://x').pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(ATTACKER_PAGE);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// Serves the attacker page on `port` of 127.0.0.1 (0: any free port).
function startAttackerSiteOn(port) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(ATTACKER_PAGE);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

async function stopAttackerSite(server) {
  server.closeAllConnections();
  await withTimeout(new Promise((r) => server.close(r)), 5_000, 'attacker site close').catch(() => {});
}

// ---- browser helpers -----------------------------------------------------------

// A page in a new browser context that records console errors, page errors and,
// through the DevTools protocol, the headers of each WebSocket handshake it sends.
async function openTab(browser) {
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const tab = { context, page, consoleErrors: [], pageErrors: [], handshakes: [] };
  page.on('console', (msg) => { if (msg.type() === 'error') tab.consoleErrors.push(msg.text()); });
  page.on('pageerror', (e) => tab.pageErrors.push(errText(e)));
  const cdp = await context.newCDPSession(page);
  cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => tab.handshakes.push(e.request.headers));
  await cdp.send('Network.enable');
  return tab;
}

// Value of header `name` in a DevTools header object (any case).
function header(headers, name) {
  for (const [k, v] of Object.entries(headers || {})) if (k.toLowerCase() === name) return v;
  return undefined;
}

async function load(page, url) {
  const r = await page.goto(url, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
  if (!r || r.status() !== 200) throw new Error(`status ${r && r.status()}`);
}

async function shot(page, name) {
  const file = path.join(OUT_DIR, `${name}.png`);
  await step(`screenshot ${file}`, () => page.screenshot({ path: file, fullPage: true }).then(() => undefined));
}

// What the attacker page saw (empty should its script not have run).
const attackState = async (page) =>
  (await page.evaluate(() => window.attack)) || { events: [], messages: [], done: false };

// ---- the checks ------------------------------------------------------------------

// 1. The default policy refuses the other origin's page.
async function refused(state, server, addr, siteOrigin) {
  const label = 'default policy';
  const tab = await openTab(state.browser);
  const { page } = tab;
  const mark = server.lines.length;
  if (!await step(`${label}: the page on the other origin loads`,
    () => load(page, `${siteOrigin}/?target=${addr}`))) return;
  // Waits for the close, or for a message should the page get one; either way
  // everything it saw is checked below (and is on the screenshot).
  await step(`${label}: the page's socket attempt ends (closed, or answered)`, () => page.waitForFunction(
    () => window.attack && (window.attack.done || window.attack.messages.length > 0), null,
    { timeout: STEP_TIMEOUT_MS }));
  await sleep(QUIET_MS); // anything late would show up here
  const attack = await attackState(page);
  const kinds = attack.events.map((e) => e.event);
  const close = attack.events.find((e) => e.event === 'close');
  check(`${label}: the page gets error then close with code 1006, never open`,
    kinds.join(',') === 'error,close' && close?.code === 1006 && close?.wasClean === false,
    JSON.stringify(attack.events));
  check(`${label}: the page receives no message`, attack.messages.length === 0,
    JSON.stringify(attack.messages));
  const origins = tab.handshakes.map((h) => header(h, 'origin'));
  check(`${label}: Chromium sent one handshake, with the other origin in Origin`,
    origins.length === 1 && origins[0] === siteOrigin, JSON.stringify(origins));
  check(`${label}: Chromium reports the handshake refused with 403`,
    tab.consoleErrors.some((t) => /WebSocket connection to .* failed/.test(t) && /\b403\b/.test(t)),
    JSON.stringify(tab.consoleErrors));
  check(`${label}: no other console errors, no page errors`,
    tab.consoleErrors.every((t) => /WebSocket connection to .* failed/.test(t)) && tab.pageErrors.length === 0,
    JSON.stringify([...tab.consoleErrors, ...tab.pageErrors]));
  await step(`${label}: server logs status=403 reason="origin not allowed" for that handshake, and accepts none`,
    async () => {
      const hits = await waitLog(server, mark, REFUSED_RE, 'refused-origin');
      await sleep(200);
      const refusedLines = logMatches(server, mark, /handshake refused/);
      const accepted = logMatches(server, mark, ACCEPTED_RE);
      if (hits.length !== 1 || refusedLines.length !== 1 || accepted.length !== 0) {
        throw new Error(`refused ${JSON.stringify(refusedLines)}, accepted ${JSON.stringify(accepted)}`);
      }
    });
  await shot(page, 'cross-site-refused');
  await tab.context.close();
}

// 3. Palisade's own page, on the same server: same origin, so it connects.
async function sameOrigin(state, server, addr) {
  const label = 'same origin';
  const tab = await openTab(state.browser);
  const { page } = tab;
  const mark = server.lines.length;
  if (!await step(`${label}: palisade's own page loads`, () => load(page, `http://${addr}/`))) return;
  await step(`${label}: #status data-state becomes connected`, () => page.waitForFunction(
    () => document.querySelector('#status')?.dataset.state === 'connected', null, { timeout: STEP_TIMEOUT_MS }));
  const origins = tab.handshakes.map((h) => header(h, 'origin'));
  check(`${label}: Chromium sent palisade's own origin in Origin`,
    origins.length >= 1 && origins.every((o) => o === `http://${addr}`), JSON.stringify(origins));
  await step(`${label}: server logs handshake accepted, and refuses none`, async () => {
    await waitLog(server, mark, ACCEPTED_RE, 'handshake accepted');
    const refusedLines = logMatches(server, mark, /handshake refused/);
    if (refusedLines.length !== 0) throw new Error(JSON.stringify(refusedLines));
  });
  check(`${label}: no console errors, no page errors`,
    tab.consoleErrors.length === 0 && tab.pageErrors.length === 0,
    JSON.stringify([...tab.consoleErrors, ...tab.pageErrors]));
  await shot(page, 'cross-site-same-origin');
  await tab.context.close();
}

// 2. The same page against a server that allows its origin.
async function allowed(state, server, addr, siteOrigin) {
  const label = 'other origin allowed';
  const tab = await openTab(state.browser);
  const { page } = tab;
  const mark = server.lines.length;
  if (!await step(`${label}: the same page loads`, () => load(page, `${siteOrigin}/?target=${addr}`))) return;
  const attack = await step(`${label}: the page connects and gets an answer`, async () => {
    await page.waitForFunction(() => window.attack && window.attack.messages.length > 0, null,
      { timeout: STEP_TIMEOUT_MS });
    return attackState(page);
  });
  if (attack) {
    check(`${label}: the socket opened and stays open`,
      attack.events[0]?.event === 'open' && !attack.events.some((e) => e.event === 'error' || e.event === 'close'),
      JSON.stringify(attack.events));
    const parsed = attack.messages.map((m) => { try { return JSON.parse(m); } catch { return m; } });
    check(`${label}: get_name ironMan answers ${JSON.stringify(NAME_REPLY)}`,
      parsed.some((m) => isDeepStrictEqual(m, NAME_REPLY)), JSON.stringify(attack.messages));
  }
  const origins = tab.handshakes.map((h) => header(h, 'origin'));
  check(`${label}: Chromium sent one handshake, with the other origin in Origin`,
    origins.length === 1 && origins[0] === siteOrigin, JSON.stringify(origins));
  await step(`${label}: server logs handshake accepted, and refuses none`, async () => {
    await waitLog(server, mark, ACCEPTED_RE, 'handshake accepted');
    const refusedLines = logMatches(server, mark, /handshake refused/);
    if (refusedLines.length !== 0) throw new Error(JSON.stringify(refusedLines));
  });
  check(`${label}: no console errors, no page errors`,
    tab.consoleErrors.length === 0 && tab.pageErrors.length === 0,
    JSON.stringify([...tab.consoleErrors, ...tab.pageErrors]));
  await shot(page, 'cross-site-allowed');
  await tab.context.close();
}

// 4. DNS rebinding: the page's own name, re-pointed at palisade.
async function rebinding(state, label, configFile, wantHijack) {
  const site = await step(`${label}: the attacker's site starts on a port of its own`, () => startAttackerSiteOn(0));
  if (!site) return;
  const port = site.address().port;
  const origin = `http://${REBIND_HOST}:${port}`;
  const tab = await openTab(state.browser);
  const { page } = tab;
  const loaded = await step(`${label}: the page loads from ${REBIND_HOST}:${port} (the attacker's server)`,
    () => load(page, `${origin}/?target=${REBIND_HOST}:${port}&wait=1`));
  await stopAttackerSite(site);
  if (!loaded) { await tab.context.close(); return; }
  // The name now leads to palisade, on the same port.
  const server = startServer(configFile, `127.0.0.1:${port}`);
  const addr = await step(`${label}: palisade starts on the same port`, () => server.ready);
  if (!addr) { await tab.context.close(); return; }
  const mark = server.lines.length;
  await page.evaluate(() => window.go());
  await step(`${label}: the page's socket attempt ends (closed, or answered)`, () => page.waitForFunction(
    () => window.attack && (window.attack.done || window.attack.messages.length > 0), null,
    { timeout: STEP_TIMEOUT_MS }));
  await sleep(QUIET_MS);
  const attack = await attackState(page);
  const origins = tab.handshakes.map((h) => header(h, 'origin'));
  check(`${label}: Chromium sent Origin ${origin}, the server's own name and port`,
    origins.length === 1 && origins[0] === origin, JSON.stringify(origins));
  if (wantHijack) {
    const parsed = attack.messages.map((m) => { try { return JSON.parse(m); } catch { return m; } });
    check(`${label}: with the name allowed, the page opens the socket and gets ${JSON.stringify(NAME_REPLY)}`,
      attack.events[0]?.event === 'open' && parsed.some((m) => isDeepStrictEqual(m, NAME_REPLY)),
      JSON.stringify(attack.events));
  } else {
    const close = attack.events.find((e) => e.event === 'close');
    check(`${label}: the page gets error then close with code 1006 and no message`,
      attack.events.map((e) => e.event).join(',') === 'error,close' && close?.code === 1006
        && attack.messages.length === 0, JSON.stringify(attack.events));
    check(`${label}: Chromium reports the handshake refused with 421`,
      tab.consoleErrors.some((t) => /WebSocket connection to .* failed/.test(t) && /\b421\b/.test(t)),
      JSON.stringify(tab.consoleErrors));
    await step(`${label}: server logs status=421 reason="host not allowed", and accepts none`, async () => {
      await waitLog(server, mark, /handshake refused .*status=421 reason="host not allowed"/, 'refused-host');
      const accepted = logMatches(server, mark, ACCEPTED_RE);
      if (accepted.length !== 0) throw new Error(JSON.stringify(accepted));
    });
  }
  await shot(page, wantHijack ? 'dns-rebinding-allowed' : 'dns-rebinding-refused');
  await tab.context.close();
  await killServer(server.child, 'SIGTERM');
}

async function run(state) {
  mkdirSync(OUT_DIR, { recursive: true });
  state.site = await step('the other site (Node http on 127.0.0.1) starts', () => startAttackerSite());
  if (!state.site) return;
  const siteOrigin = `http://127.0.0.1:${state.site.address().port}`;
  console.log(`info ${NAME}: the other origin is ${siteOrigin}`);

  const sameOnly = path.join(state.work, 'same-origin.json');
  writeFileSync(sameOnly, JSON.stringify({}));
  const allowing = path.join(state.work, 'allowed.json');
  writeFileSync(allowing, JSON.stringify({ allowed_origins: [siteOrigin] }));

  state.browser = await step('chromium starts', () => chromium.launch({
    executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000,
  }));
  if (!state.browser) return;

  const first = startServer(sameOnly);
  const firstAddr = await step('server with the default policy (same origin only) starts', () => first.ready);
  if (firstAddr) {
    console.log(`info ${NAME}: default-policy server on ${firstAddr}`);
    await refused(state, first, firstAddr, siteOrigin);
    await sameOrigin(state, first, firstAddr);
    await killServer(first.child, 'SIGTERM');
  }

  await rebinding(state, 'DNS rebinding, default allowed_hosts', sameOnly, false);
  const rebindAllowed = path.join(state.work, 'rebind-allowed.json');
  writeFileSync(rebindAllowed, JSON.stringify({ allowed_hosts: ['localhost', '127.0.0.1', REBIND_HOST] }));
  await rebinding(state, 'DNS rebinding, control with allowed_hosts [rebind.test]', rebindAllowed, true);

  const second = startServer(allowing);
  const secondAddr = await step('server with allowed_origins [the other origin] starts', () => second.ready);
  if (secondAddr) {
    console.log(`info ${NAME}: allowing server on ${secondAddr}`);
    await allowed(state, second, secondAddr, siteOrigin);
    await killServer(second.child, 'SIGTERM');
  }
}

async function main() {
  const state = {
    browser: null, site: null,
    work: mkdtempSync(path.join(os.tmpdir(), `palisade-${NAME}.`)),
  };
  let overall;
  try {
    await Promise.race([
      run(state),
      new Promise((_, reject) => {
        overall = setTimeout(() => reject(new Error('overall timeout')), OVERALL_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    check(`test runs to the end within ${OVERALL_TIMEOUT_MS / 1000} s`, false, errText(e));
  } finally {
    clearTimeout(overall);
    if (state.browser) await withTimeout(state.browser.close(), 10_000, 'browser close').catch(() => {});
    for (const child of [...servers]) await killServer(child, 'SIGTERM');
    if (state.site) await stopAttackerSite(state.site);
    rmSync(state.work, { recursive: true, force: true });
    const failed = results.filter((r) => !r.ok).length;
    if (failed) {
      console.error(`--- last server log lines (${NAME}) ---`);
      for (const line of lastLog.slice(-30)) console.error(line);
    }
    console.log(`${NAME}: ${results.length - failed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
    // Should anything still hold the event loop open, do not hang.
    setTimeout(() => process.exit(process.exitCode), 5_000).unref();
  }
}

main().catch((e) => {
  console.log(`FAIL ${NAME}: unexpected error -- ${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
});
