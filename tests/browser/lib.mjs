// lib.mjs -- what the browser scenarios share: Debian's chromium through
// playwright-core, sign-in, screenshots under build/console-shots, checks
// that end the run with exit 1 and a message, and API calls from node.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BASE = process.argv[2];
export const SHOTS = process.argv[3] || 'build/console-shots';
export const PASS = (u) => `Secret-${u}-pw1`;
const profiles = [];

export function check(cond, msg) {
  if (!cond) {
    console.error(`    browser check failed: ${msg}`);
    process.exit(1);
  }
}

export async function launch() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    // A fresh profile every run: playwright gives chromium a new temporary
    // --user-data-dir itself (it refuses the flag), removed on close.
  });
  return browser;
}

export function cleanup() {
  for (const d of profiles) rmSync(d, { recursive: true, force: true });
}

// A fresh context at the bureau's desktop size; every console error or CSP
// violation fails the run.
export async function newPage(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 }, acceptDownloads: true, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) check(false, `CSP: ${m.text()}`);
  });
  page.on('pageerror', (e) => check(false, `page error: ${e.message}`));
  return page;
}

export async function signIn(page, user) {
  await page.goto(`${BASE}/console/`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', PASS(user));
  await page.click('button[type=submit]');
  await page.waitForSelector('header.top', { timeout: 15000 });
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

// A bearer-token session from node, for the figures a page is checked against.
export async function apiLogin(user, device) {
  const r = await fetch(`${BASE}/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: user, password: PASS(user), device_id: device }) });
  const j = await r.json();
  check(r.ok, `login ${user}: ${JSON.stringify(j)}`);
  return { token: j.token, seq: j.next_changeset_seq, device, user: j.user };
}

export async function api(sess, method, path, body, headers = {}) {
  const r = await fetch(`${BASE}${path}`, { method, headers: { Authorization: `Bearer ${sess.token}`, ...(body !== undefined && !(body instanceof Uint8Array) ? { 'Content-Type': 'application/json' } : {}), ...headers }, body: body === undefined ? undefined : body instanceof Uint8Array ? body : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: r.status, json, text, headers: r.headers };
}

export async function push(sess, changes) {
  const r = await api(sess, 'POST', '/v1/sync/push', { device_id: sess.device, changeset_seq: sess.seq, schema_version: 1, changes });
  check(r.status === 200, `push: ${r.text}`);
  sess.seq++;
  return r.json;
}

// page.waitForFunction evaluates strings, which the console's CSP forbids
// (no unsafe-eval): poll with page.evaluate instead, 15 s at most.
export async function waitFor(page, fn, arg, what = 'a condition') {
  for (let i = 0; i < 150; i++) {
    if (await page.evaluate(fn, arg)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  check(false, `timed out waiting for ${what}: ${fn.toString().slice(0, 200)}`);
}
