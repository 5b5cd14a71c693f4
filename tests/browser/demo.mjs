#!/usr/bin/env node
// Browser test of the demo page: headless Chromium driven by playwright-core.
//
// Starts the server from $PALISADE_BIN (default target/debug/palisade) with
// `--listen 127.0.0.1:0` (plus any flags in $PALISADE_EXTRA_ARGS), opens the page,
// looks every hero up through the buttons, tries an unknown hero, then kills the
// server, restarts it on the same address and checks that the page reconnects.
// Screenshots go to $PALISADE_TEST_OUT (default target/test-output/browser/).
// Prints one PASS/FAIL line per check and exits non-zero if any failed.
//
// With PALISADE_TLS=1 the server is started with the development certificate
// (certs/localhost.pem, certs/localhost.key), the page is opened at
// https://localhost:PORT/ (it then connects to wss://), and every check name ends
// in "(tls)".
//
//   (cd tests/js && npm ci) && node tests/browser/demo.mjs
// Needs Chromium at $CHROMIUM (default /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

// Dependencies live in tests/js (package.json + package-lock.json).
const require = createRequire(new URL('../js/package.json', import.meta.url));
const { chromium } = require('playwright-core');

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
const OVERALL_TIMEOUT_MS = 150_000;
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

function startServer(listen) {
  const bin = process.env.PALISADE_BIN || 'target/debug/palisade';
  const extra = (process.env.PALISADE_EXTRA_ARGS || '').split(/\s+/).filter(Boolean);
  const child = spawn(bin, ['--listen', listen, ...TLS_ARGS, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  servers.add(child);
  child.on('exit', () => servers.delete(child));
  let found = false;
  const ready = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      reject(new Error(`server exited (${code ?? signal}) before reporting its address`)));
    // Read stderr for the whole run so the pipe never fills.
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
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

// ---- the test ---------------------------------------------------------------

async function run(state) {
  const first = startServer('127.0.0.1:0');
  state.server = first.child;
  const addr = await step('server starts and reports its address', () => first.ready);
  if (!addr) return;
  const url = TLS ? `https://localhost:${addr.split(':').pop()}/` : `http://${addr}/`;

  state.browser = await step('chromium starts', () => chromium.launch({
    executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000,
  }));
  if (!state.browser) return;
  const context = await state.browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);

  // Console errors, tagged with whether the server was meant to be down at the time.
  const consoleErrors = [];
  const pageErrors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push({ text: msg.text(), serverDown: state.serverDown });
  });
  page.on('pageerror', (e) => pageErrors.push(errText(e)));
  const socketUrls = [];
  page.on('websocket', (ws) => socketUrls.push(ws.url()));

  const response = await step('page loads', async () => {
    const r = await page.goto(url, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
    if (!r || r.status() !== 200) throw new Error(`status ${r && r.status()}`);
    return r;
  });
  if (!response) return;
  const csp = (await response.allHeaders())['content-security-policy'] || '';
  check('page is served with a Content-Security-Policy', csp.includes("script-src 'self'"),
    `got ${JSON.stringify(csp)}`);

  if (!await step('#status becomes connected', () => waitStatus(page, 'connected', STEP_TIMEOUT_MS))) return;
  if (TLS) {
    const want = `wss://localhost:${addr.split(':').pop()}/ws`;
    check(`the page's WebSocket is ${want}`, socketUrls.length > 0 && socketUrls.every((u) => u === want),
      JSON.stringify(socketUrls));
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

  mkdirSync(OUT_DIR, { recursive: true });
  await step(`screenshot ${path.join(OUT_DIR, `demo${SHOT_SUFFIX}.png`)}`,
    () => page.screenshot({ path: path.join(OUT_DIR, `demo${SHOT_SUFFIX}.png`), fullPage: true }).then(() => undefined));

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

  // Stay down long enough for a few failed attempts and a growing backoff.
  await new Promise((r) => setTimeout(r, 2_000));

  // Restart on the same address (a few bounded tries in case the port is briefly busy).
  let second = null;
  let lastError = null;
  for (let i = 0; i < 10 && !second; i++) {
    const s = startServer(addr);
    try {
      const got = await s.ready;
      if (got !== addr) throw new Error(`listening on ${got}, wanted ${addr}`);
      second = s;
    } catch (e) {
      lastError = e;
      await killServer(s.child, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  check(`server restarts on the same address ${addr}`, second !== null, errText(lastError));
  if (!second) return;
  state.server = second.child;

  await step(`#status is connected again within ${RECONNECT_TIMEOUT_MS / 1000} s`,
    () => waitStatus(page, 'connected', RECONNECT_TIMEOUT_MS));
  state.serverDown = false;
  await step('hero list is requested again after reconnecting', () => waitFreshHeroes(page));
  await step('after reconnecting, button blackPanther shows T\'Challa',
    () => lookUpByButton(page, 'blackPanther'));
  await step(`screenshot ${path.join(OUT_DIR, `demo-reconnected${SHOT_SUFFIX}.png`)}`,
    () => page.screenshot({ path: path.join(OUT_DIR, `demo-reconnected${SHOT_SUFFIX}.png`), fullPage: true })
      .then(() => undefined));

  // Only failed WebSocket connection attempts while the server was down are expected.
  const expected = (e) => e.serverDown && /WebSocket connection to '.*\/ws' failed/.test(e.text);
  const unexpected = consoleErrors.filter((e) => !expected(e)).map((e) => e.text);
  console.log(`info ${NAME}: ${consoleErrors.length - unexpected.length} expected console errors`
    + ' from reconnect attempts while the server was down');
  check('no console errors other than failed reconnect attempts', unexpected.length === 0,
    JSON.stringify(unexpected.slice(0, 5)));
  check('no uncaught page errors', pageErrors.length === 0, JSON.stringify(pageErrors.slice(0, 5)));
}

async function main() {
  const state = { server: null, browser: null, serverDown: false };
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
