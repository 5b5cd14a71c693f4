#!/usr/bin/env node
// Browser test of the Socket.IO demo page (/socketio.html): headless Chromium
// (Debian's chromium, driven by playwright-core) running the official
// socket.io-client browser bundle, served by palisade from the file named by
// `socketio.client_bundle` (tests/js/node_modules/socket.io-client/dist/socket.io.min.js,
// installed by `npm ci` in tests/js).
//
// 1. With the bundle: the page shows the login form; a wrong password shows
//    "Wrong user name or password."; alice logs in; "Logged in as alice" (the
//    server's user_authorized); one button per hero labelled with its display
//    name; every button shows the hero's real name (get_name with an ack); the
//    client ends up on the websocket transport; no console or page error.
// 2. Without the bundle: /socket.io/socket.io.min.js is 404 and the page
//    explains how to enable it (#no-bundle names socketio.client_bundle).
// Prints one PASS/FAIL line per check; exits non-zero if any failed. The
// server's stderr goes to target/test-output/logs/; screenshots to
// $PALISADE_TEST_OUT (default target/test-output/browser/).
//
//   (cd tests/js && npm ci) && node tests/browser/socketio.mjs

import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const require = createRequire(new URL('../js/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const NAME = 'browser_socketio';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = process.env.PALISADE_BIN || 'target/debug/palisade';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LOG_DIR = process.env.PALISADE_LOG_DIR || path.join(ROOT, 'target', 'test-output', 'logs');
const OUT_DIR = process.env.PALISADE_TEST_OUT || path.join(ROOT, 'target', 'test-output', 'browser');
const BUNDLE = path.join(ROOT, 'tests', 'js', 'node_modules', 'socket.io-client', 'dist', 'socket.io.min.js');
const STEP_MS = 10_000;
// Every password used here is listed in tests/test-passwords.txt.
const ALICE_PW = 'sio-browser-alice-Vd6Kq2Wm9t';
const HEROES = {
  ironMan: ['Iron Man', 'Tony Stark'],
  hulk: ['Hulk', 'Bruce Banner'],
  wonderWoman: ['Wonder Woman', 'Diana'],
  batMan: ['Bat Man', 'Bruce Wayne'],
  blackPanther: ['Black Panther', "T'Challa"],
};

const results = [];
function check(name, ok, detail = '') {
  results.push(Boolean(ok));
  console.log(ok ? `PASS ${NAME}: ${name}` : `FAIL ${NAME}: ${name}${detail ? ` -- ${detail}` : ''}`);
  return ok;
}
const errText = (e) => String(e && e.message ? e.message.split('\n')[0] : e);
async function step(name, fn) {
  try {
    const v = await fn();
    check(name, true);
    return v === undefined ? true : v;
  } catch (e) {
    check(name, false, errText(e));
    return undefined;
  }
}

let runs = 0;
function startServer(args) {
  mkdirSync(LOG_DIR, { recursive: true });
  runs += 1;
  const log = createWriteStream(path.join(LOG_DIR, `${NAME}-${Date.now()}-${process.pid}-${runs}.log`));
  const child = spawn(BIN, ['--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = readline.createInterface({ input: child.stderr });
  const ready = new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`server exited (${code})`)));
    lines.on('line', (line) => {
      log.write(line + '\n');
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  lines.on('close', () => log.end());
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no "listening on"')), STEP_MS));
  return { child, ready: Promise.race([ready, timeout]) };
}

async function stop(server) {
  if (server.child.exitCode !== null) return;
  const gone = new Promise((r) => server.child.once('exit', r));
  server.child.kill('SIGTERM');
  await Promise.race([gone, new Promise((r) => setTimeout(r, 5_000))]);
}

async function withBundle(browser, work, users) {
  const config = path.join(work, 'with-bundle.json');
  writeFileSync(config, JSON.stringify({ rate: { logins_per_ip_per_min: 1000 }, socketio: { client_bundle: BUNDLE } }));
  const server = startServer(['--users-file', users, '--config', config]);
  try {
    const addr = await server.ready;
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`http://${addr}/socketio.html`);
    await step('the login form is shown', () => page.waitForSelector('#login-form', { state: 'visible' }));
    await page.fill('#login-username', 'alice');
    await page.fill('#login-password', 'not the password');
    await page.click('#login-submit');
    await step('a wrong password shows the error', () => page.waitForFunction(
      () => document.querySelector('#login-error')?.textContent === 'Wrong user name or password.'));
    // (The refused login is the one expected console error: its 401.)
    errors.length = 0;
    await page.fill('#login-password', ALICE_PW);
    await page.click('#login-submit');
    await step('logs in: status connected', () => page.waitForFunction(
      () => document.querySelector('#status')?.textContent === 'connected'));
    await step('"Logged in as alice" (user_authorized)', () => page.waitForFunction(
      () => document.querySelector('#username')?.textContent === 'alice'));
    await step('one button per hero, labelled with its display name', async () => {
      await page.waitForFunction((n) => document.querySelectorAll('button[data-hero]').length === n,
        Object.keys(HEROES).length);
      const labels = await page.$$eval('button[data-hero]', (bs) => bs.map((b) => [b.dataset.hero, b.textContent]));
      const want = Object.entries(HEROES).map(([id, [label]]) => [id, label]);
      if (JSON.stringify(labels) !== JSON.stringify(want)) throw new Error(JSON.stringify(labels));
    });
    for (const [id, [label, real]] of Object.entries(HEROES)) {
      await step(`${label}: the page shows ${real}`, async () => {
        await page.click(`button[data-hero="${id}"]`);
        await page.waitForFunction(([h, r]) =>
          document.querySelector(`[data-hero-name-for="${h}"]`)?.textContent === r, [id, real]);
      });
    }
    await step('the client ends up on the websocket transport', () => page.waitForFunction(
      () => document.querySelector('#transport')?.textContent === 'websocket'));
    mkdirSync(OUT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(OUT_DIR, 'socketio.png'), fullPage: true }).catch(() => {});
    check('no console or page error', errors.length === 0, JSON.stringify(errors));
    await context.close();
  } finally {
    await stop(server);
  }
}

async function withoutBundle(browser, users) {
  const server = startServer(['--users-file', users]);
  try {
    const addr = await server.ready;
    const res = await fetch(`http://${addr}/socket.io/socket.io.min.js`);
    check('without socketio.client_bundle the bundle is 404', res.status === 404, String(res.status));
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    await page.goto(`http://${addr}/socketio.html`);
    await step('the page explains how to enable it', async () => {
      await page.waitForSelector('#no-bundle', { state: 'visible' });
      const text = await page.textContent('#no-bundle');
      if (!text.includes('socketio.client_bundle') || !text.includes('npm install socket.io-client')) {
        throw new Error(text);
      }
    });
    await context.close();
  } finally {
    await stop(server);
  }
}

async function main() {
  const work = mkdtempSync(path.join(os.tmpdir(), `palisade-${NAME}.`));
  let browser = null;
  try {
    const users = path.join(work, 'users.json');
    const r = spawnSync(BIN, ['users', 'add', 'alice', '--users-file', users, '--iterations', '10000'],
      { input: `${ALICE_PW}\n`, stdio: ['pipe', 'ignore', 'pipe'], timeout: 60_000 });
    if (!check('palisade users add alice', r.status === 0, String(r.stderr))) return;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    await withBundle(browser, work, users);
    await withoutBundle(browser, users);
  } catch (e) {
    check('the checks run to the end', false, errText(e));
  } finally {
    if (browser) await browser.close().catch(() => {});
    rmSync(work, { recursive: true, force: true });
    const failed = results.filter((ok) => !ok).length;
    console.log(`${NAME}: ${results.length - failed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  }
}

const overall = setTimeout(() => { console.log(`FAIL ${NAME}: overall timeout`); process.exit(1); }, 120_000);
overall.unref();
main();
