#!/usr/bin/env node
// Browser test of the demo page: headless Chromium driven by playwright-core.
//
// Makes a users file with alice (`palisade users add`, 10000 iterations) and a
// JWT secret file, starts the server from $PALISADE_BIN (default
// target/debug/palisade) with `--listen 127.0.0.1:0`, both files and a config
// raising the login rate (plus any flags in $PALISADE_EXTRA_ARGS), then:
//   1. opens the page: without a session it shows the login form without any
//      WebSocket attempt or console error (it asks GET /session first); logs in
//      through the form; "Logged in as alice"; the token is in
//      no web storage and not readable from script (HttpOnly cookie); looks every
//      hero up through the buttons, tries an unknown hero; a second page logged
//      in as alice sees a look-up made on the first in its live feed (channel
//      `lookups`) within a second, as the first page does; kills the server,
//      restarts it on the same address (same secret, so the cookie still holds)
//      and checks that the page reconnects by itself; then "Log out": the server
//      closes the WebSocket (1008 "logged out"), the page shows the form, the
//      cookie is gone, and the old token opens no WebSocket any more (401 to a
//      Node `ws` client that sends it);
//   2. in a new browser context, a wrong password shows the error on the page;
//   3. against a server with token_ttl_s 3, leeway_s 0 and 2 logins per minute:
//      after logging in, the session expires (close 1008 "token expired") and the
//      page asks to log in again without reconnecting; the next wrong password
//      shows the error, the one after it the rate limit with its retry time;
//   4. against a server with --auth-mode none the page connects without a form.
// Screenshots go to $PALISADE_TEST_OUT (default target/test-output/browser/);
// every server's stderr to target/test-output/logs/. The passwords used are
// listed in tests/test-passwords.txt.
// Prints one PASS/FAIL line per check and exits non-zero if any failed.
//
// With PALISADE_TLS=1 the server is started with the development certificate
// (certs/localhost.pem, certs/localhost.key), the page is opened at
// https://localhost:PORT/ (it then connects to wss://), and every check name ends
// in "(tls)".
//
//   (cd tests/js && npm ci) && node tests/browser/demo.mjs
// Needs Chromium at $CHROMIUM (default /usr/bin/chromium).

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

// Dependencies live in tests/js (package.json + package-lock.json).
const require = createRequire(new URL('../js/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const WebSocket = require('ws');

const NAME = 'browser_demo';
const HEROES = ['ironMan', 'hulk', 'wonderWoman', 'batMan', 'blackPanther'];
const NAMES = {
  ironMan: 'Tony Stark',
  hulk: 'Bruce Banner',
  wonderWoman: 'Diana',
  batMan: 'Bruce Wayne',
  blackPanther: "T'Challa",
};
const START_TIMEOUT_MS = 10_000;
const STEP_TIMEOUT_MS = 10_000;
const RECONNECT_TIMEOUT_MS = 15_000;
const OVERALL_TIMEOUT_MS = 200_000;
const LISTEN_RE = /listening on (127\.0\.0\.1:\d+)/;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../..', import.meta.url)); // the repository root
const TLS = process.env.PALISADE_TLS === '1';
const TLS_ARGS = TLS
  ? ['--tls-cert', path.join(ROOT, 'certs', 'localhost.pem'), '--tls-key', path.join(ROOT, 'certs', 'localhost.key')]
  : [];
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
  // TLS mode only: Chromium takes its trust anchors from the NSS database, and
  // trusting just certs/ca.pem there would need the NSS tools (certutil) and a
  // profile set up for it. So this one client skips certificate verification;
  // the certificate itself (chain to the development CA, host name) is verified
  // by the Python, Node and curl clients, which trust only certs/ca.pem. What
  // this test covers over TLS is the page itself: https:// page, wss:// socket.
  ...(TLS ? ['--ignore-certificate-errors'] : []),
];
const OUT_DIR = process.env.PALISADE_TEST_OUT || path.join('target', 'test-output', 'browser');
const SHOT_SUFFIX = TLS ? '-tls' : ''; // keep the plain-mode screenshots
const BIN = process.env.PALISADE_BIN || 'target/debug/palisade';
const LOG_DIR = process.env.PALISADE_LOG_DIR || path.join(ROOT, 'target', 'test-output', 'logs');
// Every password used here is listed in tests/test-passwords.txt.
const ALICE_PW = 'browser-alice-Zp4Hx8Ne3c';
const WRONG_PW = 'browser-wrong-Lu7Gb2Yt6r';

const results = [];
function check(name, ok, detail = '') {
  if (TLS) name += ' (tls)';
  results.push({ name, ok: Boolean(ok) });
  console.log(ok ? `PASS ${NAME}: ${name}` : `FAIL ${NAME}: ${name}${detail ? ` -- ${detail}` : ''}`);
  return ok;
}
const errText = (e) => String(e && e.message ? e.message.split('\n')[0] : e);

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

// ---- server under test ----------------------------------------------------

const serverLog = [];
const servers = new Set();

let serverRuns = 0;

function startServer(listen, args = []) {
  const bin = BIN;
  const extra = (process.env.PALISADE_EXTRA_ARGS || '').split(/\s+/).filter(Boolean);
  // The whole stderr is kept for tests/check-logs.sh, under a name no other run uses.
  mkdirSync(LOG_DIR, { recursive: true });
  serverRuns += 1;
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  const logFd = openSync(
    path.join(LOG_DIR, `${NAME}${TLS ? '-tls' : ''}-${stamp}-${process.pid}-${serverRuns}.log`), 'w');
  const child = spawn(bin, ['--listen', listen, ...TLS_ARGS, ...args, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.add(child);
  child.on('exit', () => servers.delete(child));
  let found = false;
  const lines = readline.createInterface({ input: child.stderr });
  lines.on('close', () => closeSync(logFd));
  const ready = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      reject(new Error(`server exited (${code ?? signal}) before reporting its address`)));
    // Read stderr for the whole run so the pipe never fills.
    lines.on('line', (line) => {
      writeSync(logFd, line + '\n');
      serverLog.push(line);
      if (serverLog.length > 300) serverLog.shift();
      const m = !found && LISTEN_RE.exec(line);
      if (m) {
        found = true;
        resolve(m[1]);
      }
    });
  });
  return { child, ready: withTimeout(ready, START_TIMEOUT_MS, `"listening on" from ${bin}`) };
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

// ---- page helpers ----------------------------------------------------------

async function waitStatus(page, state, timeout) {
  await page.waitForFunction(
    (s) => document.querySelector('#status')?.textContent === s,
    state, { timeout });
}

// Waits until the hero list shows exactly HEROES, all enabled, with no name yet.
async function waitFreshHeroes(page) {
  await page.waitForFunction((heroes) => {
    const buttons = [...document.querySelectorAll('button[data-hero]')];
    if (buttons.map((b) => b.dataset.hero).join('\n') !== heroes.join('\n')) return false;
    if (buttons.some((b) => b.disabled)) return false;
    return heroes.every((h) => {
      const slot = document.querySelector(`[data-hero-name-for="${CSS.escape(h)}"]`);
      return slot !== null && slot.textContent === '';
    });
  }, HEROES, { timeout: STEP_TIMEOUT_MS });
}

async function lookUpByButton(page, hero) {
  await page.click(`button[data-hero="${hero}"]`, { timeout: STEP_TIMEOUT_MS });
  const slot = `[data-hero-name-for="${hero}"]`;
  await page.waitForFunction((sel) => (document.querySelector(sel)?.textContent ?? '') !== '',
    slot, { timeout: STEP_TIMEOUT_MS });
  const text = await page.textContent(slot, { timeout: STEP_TIMEOUT_MS });
  if (text !== NAMES[hero]) throw new Error(`shows ${JSON.stringify(text)}`);
}

// ---- login helpers -----------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Waits until the textContent of `sel` matches `re`; on timeout says what it was.
async function waitText(page, sel, re, timeout = STEP_TIMEOUT_MS) {
  try {
    await page.waitForFunction(([s, src, flags]) =>
      new RegExp(src, flags).test(document.querySelector(s)?.textContent ?? ''),
    [sel, re.source, re.flags], { timeout });
  } catch (e) {
    const now = await page.textContent(sel, { timeout: 1_000 }).catch(() => null);
    throw new Error(`${sel} does not match ${re} (it shows ${JSON.stringify(now)}): ${errText(e)}`);
  }
}

async function waitLoginForm(page) {
  await page.waitForSelector('#login-form', { state: 'visible', timeout: STEP_TIMEOUT_MS });
  await waitStatus(page, 'disconnected', STEP_TIMEOUT_MS);
}

async function submitLogin(page, username, password) {
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
}

// No new WebSocket attempt for `ms`: the page stopped reconnecting.
async function noNewSockets(tab, ms) {
  const before = tab.sockets.length;
  await sleep(ms);
  if (tab.sockets.length !== before) {
    throw new Error(`${tab.sockets.length - before} more WebSocket attempts in ${ms} ms`);
  }
}

async function waitLoggedInAs(page, username) {
  await waitStatus(page, 'connected', STEP_TIMEOUT_MS);
  await page.waitForSelector('#user', { state: 'visible', timeout: STEP_TIMEOUT_MS });
  await waitText(page, '#user', new RegExp(`^Logged in as ${username}\\b`));
  const name = await page.textContent('#username');
  if (name !== username) throw new Error(`#username shows ${JSON.stringify(name)}`);
}

async function shot(page, name) {
  const file = path.join(OUT_DIR, `${name}${SHOT_SUFFIX}.png`);
  await step(`screenshot ${file}`,
    () => page.screenshot({ path: file, fullPage: true }).then(() => undefined));
}

// A page in a new browser context (no cookies) that records console errors
// (tagged with whether the server was meant to be down), page errors and the
// URLs of its WebSocket attempts.
async function openTab(state, label) {
  const context = await state.browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const tab = { label, context, page, consoleErrors: [], pageErrors: [], sockets: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error') tab.consoleErrors.push({ text: msg.text(), serverDown: state.serverDown });
  });
  page.on('pageerror', (e) => tab.pageErrors.push(errText(e)));
  page.on('websocket', (ws) => tab.sockets.push(ws.url()));
  state.tabs.push(tab);
  return tab;
}

async function load(tab, url, what) {
  return step(`${what}: page loads`, async () => {
    const r = await tab.page.goto(url, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
    if (!r || r.status() !== 200) throw new Error(`status ${r && r.status()}`);
    return r;
  });
}

// Console errors the page cannot avoid: a refused WebSocket handshake (401) or
// one while the server is down, the /healthz probe while it is down, and the
// login answers a test provokes on purpose (401, 429).
function expectedConsoleError(e, refusedLogins) {
  if (/WebSocket connection to '.*\/ws' failed/.test(e.text)) {
    // Chromium words a 401 with WWW-Authenticate as "HTTP Authentication failed".
    return e.serverDown || /\b401\b|HTTP Authentication failed/.test(e.text);
  }
  if (/Failed to load resource/.test(e.text)) {
    if (e.serverDown && /ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE/.test(e.text)) return true;
    return refusedLogins && /status of (401|429)\b/.test(e.text);
  }
  return false;
}

// ---- the test ---------------------------------------------------------------

function setUp(work) {
  const usersFile = path.join(work, 'users.json');
  const r = spawnSync(BIN, ['users', 'add', 'alice', '--users-file', usersFile, '--iterations', '10000'],
    { input: `${ALICE_PW}\n`, stdio: ['pipe', 'ignore', 'pipe'], timeout: 60_000 });
  check('palisade users add alice', r.status === 0,
    `exit ${r.status ?? r.signal}: ${String(r.stderr || r.error || '').slice(0, 300)}`);
  if (r.status !== 0) return null;
  // A fixed secret, so that tokens outlive the restart of phase 1.
  const secret = path.join(work, 'jwt-secret');
  writeFileSync(secret, randomBytes(32).toString('hex'), { mode: 0o600 });
  const main = path.join(work, 'main.json');
  writeFileSync(main, JSON.stringify({
    rate: { logins_per_ip_per_min: 1000 }, auth: { jwt_secret_file: secret },
  }));
  const short = path.join(work, 'short.json');
  writeFileSync(short, JSON.stringify({
    rate: { logins_per_ip_per_min: 2 }, auth: { token_ttl_s: 3, leeway_s: 0 },
  }));
  return {
    main: ['--config', main, '--users-file', usersFile],
    short: ['--config', short, '--users-file', usersFile],
  };
}

function pageUrl(addr) {
  return TLS ? `https://localhost:${addr.split(':').pop()}/` : `http://${addr}/`;
}

// Phase 1: log in, heroes, reconnect after a restart.
async function loginAndHeroes(state, args) {
  const first = startServer('127.0.0.1:0', args);
  state.server = first.child;
  const addr = await step('server starts and reports its address', () => first.ready);
  if (!addr) return null;
  const url = pageUrl(addr);

  const tab = await openTab(state, 'login and heroes');
  const { page } = tab;
  const response = await load(tab, url, 'logged out');
  if (!response) return null;
  const csp = (await response.allHeaders())['content-security-policy'] || '';
  check('page is served with a Content-Security-Policy', csp.includes("script-src 'self'"),
    `got ${JSON.stringify(csp)}`);

  if (!await step('without a session the page shows the login form, #status disconnected',
    () => waitLoginForm(page))) return null;
  check('a visit without a session makes no WebSocket attempt (GET /session first)',
    tab.sockets.length === 0, JSON.stringify(tab.sockets));
  check('a visit without a session logs no console error', tab.consoleErrors.length === 0,
    JSON.stringify(tab.consoleErrors.map((e) => e.text).slice(0, 3)));
  await step('the form stays up without reconnect attempts', () => noNewSockets(tab, 1_500));
  await shot(page, 'demo-login');

  await submitLogin(page, 'alice', ALICE_PW);
  if (!await step('logging in through the form connects: "Logged in as alice"',
    () => waitLoggedInAs(page, 'alice'))) return addr;
  await step('#login is hidden while connected', () =>
    page.waitForSelector('#login', { state: 'hidden', timeout: STEP_TIMEOUT_MS }));
  await step('the token is in no web storage and the cookie is HttpOnly', async () => {
    const seen = await page.evaluate(() => ({
      local: localStorage.length, session: sessionStorage.length, cookie: document.cookie,
    }));
    if (seen.local !== 0 || seen.session !== 0 || seen.cookie.includes('palisade_token')) {
      throw new Error(JSON.stringify(seen));
    }
  });
  if (TLS) {
    const want = `wss://localhost:${addr.split(':').pop()}/ws`;
    check(`the page's WebSocket is ${want}`, tab.sockets.length > 0 && tab.sockets.every((u) => u === want),
      JSON.stringify(tab.sockets));
  }
  await step('one button per hero, in server order', () => waitFreshHeroes(page));
  for (const hero of HEROES) {
    await step(`button ${hero} shows ${NAMES[hero]}`, () => lookUpByButton(page, hero));
  }

  await step('unknown hero lookup shows unknown_hero in #errors', async () => {
    await page.fill('#lookup-hero', 'nobody');
    await page.click('#lookup-submit');
    await page.waitForFunction(() => (document.querySelector('#errors')?.textContent ?? '').includes('unknown_hero'),
      null, { timeout: STEP_TIMEOUT_MS });
  });
  await shot(page, 'demo');
  await liveFeed(state, url, page);

  // Kill the server outright; the page must notice and show when it retries.
  state.serverDown = true;
  await killServer(first.child, 'SIGKILL');
  await step('#status shows disconnected after the server is killed',
    () => waitStatus(page, 'disconnected', STEP_TIMEOUT_MS));
  await step('page shows when the next retry happens', () => page.waitForFunction(
    () => /\d/.test(document.querySelector('#retry')?.textContent ?? ''), null,
    { timeout: STEP_TIMEOUT_MS }));
  await step('hero buttons are disabled while disconnected', async () => {
    const enabled = await page.$$eval('button[data-hero]', (bs) => bs.filter((b) => !b.disabled).length);
    if (enabled !== 0) throw new Error(`${enabled} buttons still enabled`);
  });
  await step('the login form stays hidden while the server is down', async () => {
    if (await page.isVisible('#login')) throw new Error('#login is visible');
  });

  // Stay down long enough for a few failed attempts and a growing backoff.
  await sleep(2_000);

  // Restart on the same address (a few bounded tries in case the port is briefly busy).
  let second = null;
  let lastError = null;
  for (let i = 0; i < 10 && !second; i++) {
    const s = startServer(addr, args);
    try {
      const got = await s.ready;
      if (got !== addr) throw new Error(`listening on ${got}, wanted ${addr}`);
      second = s;
    } catch (e) {
      lastError = e;
      await killServer(s.child, 'SIGKILL');
      await sleep(500);
    }
  }
  check(`server restarts on the same address ${addr}`, second !== null, errText(lastError));
  if (!second) return null;
  state.server = second.child;

  await step(`#status is connected again within ${RECONNECT_TIMEOUT_MS / 1000} s`,
    () => waitStatus(page, 'connected', RECONNECT_TIMEOUT_MS));
  state.serverDown = false;
  await step('after reconnecting (same cookie), "Logged in as alice" again',
    () => waitLoggedInAs(page, 'alice'));
  await step('hero list is requested again after reconnecting', () => waitFreshHeroes(page));
  await step('after reconnecting, button blackPanther shows T\'Challa',
    () => lookUpByButton(page, 'blackPanther'));
  await shot(page, 'demo-reconnected');
  await logOut(tab, addr);
  return addr;
}

// The live feed (channel `lookups`): a second page, logged in too, sees a
// look-up made on the first one, and so does the first, within a second.
async function liveFeed(state, url, page) {
  const other = await openTab(state, 'live feed');
  try {
    if (!await load(other, url, 'second page')) return;
    if (!await step('second page: the login form', () => waitLoginForm(other.page))) return;
    await submitLogin(other.page, 'alice', ALICE_PW);
    if (!await step('second page: "Logged in as alice"', () => waitLoggedInAs(other.page, 'alice'))) return;
    const live = (p) => p.waitForSelector('#feed[data-live="true"]', { timeout: STEP_TIMEOUT_MS });
    if (!await step('both pages subscribed to lookups', () => Promise.all([live(page), live(other.page)]))) return;
    const want = 'alice looked up wonderWoman: Diana';
    await page.click('button[data-hero="wonderWoman"]');
    await step(`within a second both feeds show "${want}"`, () => Promise.all([page, other.page].map(
      (p) => p.waitForFunction((w) => document.querySelector('#feed li')?.textContent === w, want,
        { timeout: 1_000 }))));
    await shot(other.page, 'demo-live-feed');
  } finally {
    await other.context.close();
  }
}

// The old token, sent by a client that is not the page: 401 (revoked).
function handshakeStatus(addr, token) {
  const port = addr.split(':').pop();
  const origin = TLS ? `https://localhost:${port}` : `http://${addr}`;
  const url = TLS ? `wss://localhost:${port}/ws` : `ws://${addr}/ws`;
  const tls = TLS ? { ca: readFileSync(path.join(ROOT, 'certs', 'ca.pem')) } : {};
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['palisade.v1'], {
      headers: { Cookie: `palisade_token=${token}` }, origin, handshakeTimeout: STEP_TIMEOUT_MS, ...tls,
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode);
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(101);
      ws.terminate();
    });
    ws.on('error', (e) => reject(e));
  });
}

// Phase 1, last: the "Log out" button.
async function logOut(tab, addr) {
  const { page, context } = tab;
  const cookie = (await context.cookies()).find((c) => c.name === 'palisade_token');
  if (!check('the session cookie is there before logging out', cookie !== undefined)) return;
  const before = tab.sockets.length;
  await page.click('#logout');
  await step('"Log out" shows the login form: "You logged out."', async () => {
    await waitLoginForm(page);
    await waitText(page, '#login-notice', /^You logged out\.$/);
  });
  await step('the server closed the WebSocket with 1008 "logged out"', () => withTimeout((async () => {
    while (!serverLog.some((l) => l.includes('code=1008 by=server reason="logged out"'))) await sleep(50);
  })(), STEP_TIMEOUT_MS, 'the close in the server log'));
  await step('after logging out the cookie is gone', async () => {
    const left = (await context.cookies()).filter((c) => c.name === 'palisade_token');
    if (left.length !== 0) throw new Error(JSON.stringify(left));
  });
  await step('after logging out the page opens no new WebSocket', () => noNewSockets(tab, 1_000));
  check('no WebSocket attempt since "Log out"', tab.sockets.length === before);
  await step('the logged-out token is refused at the handshake: 401', async () => {
    const status = await handshakeStatus(addr, cookie.value);
    if (status !== 401) throw new Error(`status ${status}`);
  });
  await shot(page, 'demo-logged-out');
}

// Phase 2: a wrong password, in a context without the cookie.
async function wrongPassword(state, addr) {
  const tab = await openTab(state, 'wrong password');
  tab.refusedLogins = true;
  const { page } = tab;
  if (!await load(tab, pageUrl(addr), 'new context')) return;
  if (!await step('new context: the login form is shown', () => waitLoginForm(page))) return;
  await submitLogin(page, 'alice', WRONG_PW);
  await step('wrong password: #login-error says "Wrong user name or password."',
    () => waitText(page, '#login-error', /^Wrong user name or password\.$/));
  await step('wrong password: still logged out, the form still shown', async () => {
    if (!await page.isVisible('#login-form')) throw new Error('#login-form hidden');
    if (await page.isVisible('#user')) throw new Error('#user is visible');
    await waitStatus(page, 'disconnected', 1_000);
  });
  await shot(page, 'demo-login-error');
}

// Phase 3: the session expires; then a wrong password and the login rate limit.
async function expiryAndRateLimit(state, args) {
  const server = startServer('127.0.0.1:0', args);
  const addr = await step('server with token_ttl_s 3 and 2 logins per minute starts', () => server.ready);
  if (!addr) return;
  const tab = await openTab(state, 'session expiry');
  tab.refusedLogins = true;
  const { page } = tab;
  if (!await load(tab, pageUrl(addr), 'short sessions')) return;
  if (!await step('short sessions: the login form is shown', () => waitLoginForm(page))) return;
  await submitLogin(page, 'alice', ALICE_PW);
  if (!await step('short sessions: logged in as alice', () => waitLoggedInAs(page, 'alice'))) return;
  await step('when the token expires the page says "Your session expired. Log in again."', async () => {
    await waitText(page, '#login-notice', /^Your session expired\. Log in again\.$/, 10_000);
    await page.waitForSelector('#login-form', { state: 'visible', timeout: 1_000 });
    await waitStatus(page, 'disconnected', 1_000);
    if (await page.isVisible('#user')) throw new Error('#user still visible');
  });
  await step('after the session expired the page does not reconnect', () => noNewSockets(tab, 1_500));
  await shot(page, 'demo-expired');

  await submitLogin(page, 'alice', WRONG_PW);
  await step('second login (wrong password) shows the error',
    () => waitText(page, '#login-error', /^Wrong user name or password\.$/));
  await submitLogin(page, 'alice', ALICE_PW);
  await step('third login within a minute: "Too many login attempts. Try again in N s."',
    () => waitText(page, '#login-error', /^Too many login attempts\. Try again in \d+ s\.$/));
  await step('the login button is disabled until then', async () => {
    if (!await page.isDisabled('#login-submit')) throw new Error('#login-submit is enabled');
  });
  await shot(page, 'demo-rate-limited');
  await killServer(server.child, 'SIGTERM');
}

// Phase 4: auth.mode none: no form, the connection simply opens.
async function authNone(state) {
  const server = startServer('127.0.0.1:0', ['--auth-mode', 'none']);
  const addr = await step('server with --auth-mode none starts', () => server.ready);
  if (!addr) return;
  const tab = await openTab(state, 'auth none');
  const { page } = tab;
  if (!await load(tab, pageUrl(addr), 'auth none')) return;
  await step('auth none: #status becomes connected', () => waitStatus(page, 'connected', STEP_TIMEOUT_MS));
  await step('auth none: no login form, no user line', async () => {
    await sleep(300);
    if (await page.isVisible('#login')) throw new Error('#login is visible');
    if (await page.isVisible('#user')) throw new Error('#user is visible');
  });
  await step('auth none: one button per hero', () => waitFreshHeroes(page));
  await step('auth none: button ironMan shows Tony Stark', () => lookUpByButton(page, 'ironMan'));
  await shot(page, 'demo-auth-none');
  await killServer(server.child, 'SIGTERM');
}

async function run(state) {
  const args = setUp(state.work);
  if (!args) return;
  mkdirSync(OUT_DIR, { recursive: true });
  state.browser = await step('chromium starts', () => chromium.launch({
    executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000,
  }));
  if (!state.browser) return;

  const addr = await loginAndHeroes(state, args.main);
  if (addr) await wrongPassword(state, addr);
  await expiryAndRateLimit(state, args.short);
  await authNone(state);

  let expectedCount = 0;
  for (const tab of state.tabs) {
    const unexpected = tab.consoleErrors.filter((e) => !expectedConsoleError(e, tab.refusedLogins));
    expectedCount += tab.consoleErrors.length - unexpected.length;
    check(`${tab.label}: no console errors other than refused or failed connections and logins`,
      unexpected.length === 0, JSON.stringify(unexpected.map((e) => e.text).slice(0, 5)));
    check(`${tab.label}: no uncaught page errors`, tab.pageErrors.length === 0,
      JSON.stringify(tab.pageErrors.slice(0, 5)));
  }
  console.log(`info ${NAME}: ${expectedCount} expected console errors`
    + ' (refused handshakes, reconnect attempts while the server was down, refused logins)');
}


async function main() {
  const state = {
    server: null, browser: null, serverDown: false, tabs: [],
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
    rmSync(state.work, { recursive: true, force: true });
    const failed = results.filter((r) => !r.ok).length;
    if (failed) {
      console.error(`--- last server log lines (${NAME}) ---`);
      for (const line of serverLog.slice(-30)) console.error(line);
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
