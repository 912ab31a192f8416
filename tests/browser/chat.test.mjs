// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) against the real
// stack: two tabs chat with non-ASCII text, see each other online, and HTML stays text.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startStack, tempDir, uniqueRoom } from '../e2e/harness.mjs';

const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';
const WAIT = { timeout: 10000 };  // every expectation below is bounded by this
const T = { timeout: 60000 };

let stack;
let context;
let profile;
let failed = false;

before(async () => {
  stack = await startStack({ maxMessageBytes: 65536 });
  profile = tempDir('sb-chromium-');
  // A persistent context is how playwright takes a fresh --user-data-dir.
  context = await chromium.launchPersistentContext(profile.dir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
});
afterEach((t) => { if (t.passed === false) failed = true; });
after(async () => {
  try {
    if (context) await context.close();
  } finally {
    profile?.remove();
    await stack?.stop({ dumpLogs: failed || Boolean(process.exitCode) });
  }
});

// Resolves once pred(page state) is true in the page; bounded by WAIT.
const waitIn = (page, fn, arg) => page.waitForFunction(fn, arg, WAIT);

async function openTab(room) {
  const page = await context.newPage();
  page.on('pageerror', (err) => { page.errors = [...(page.errors || []), err.message]; });
  await page.goto(`${stack.httpUrl}/?room=${encodeURIComponent(room)}`, WAIT);
  await waitIn(page, () => /^CHAT - connected - \S+$/.test(document.getElementById('headline').textContent));
  return page;
}

async function type(page, line) {
  await page.fill('#inputline', line, WAIT);
  await page.press('#inputline', 'Enter', WAIT);
}

const onlineHas = (page, wanted) => waitIn(page, (names) => {
  const shown = [...document.querySelectorAll('#userlist li')].map((li) => li.textContent);
  return names.every((n) => shown.includes(n));
}, wanted);

const chatHas = (page, text) => waitIn(page, (t) =>
  [...document.querySelectorAll('#chat li .text')].some((e) => e.textContent === t), text);

test('two tabs chat in UTF-8 and see each other online; HTML is shown as text', T, async () => {
  const room = uniqueRoom('browser');
  const alice = await openTab(room);
  const bob = await openTab(room);

  await type(alice, 'alias alice');
  await type(bob, '/nick bob');
  await onlineHas(alice, ['alice', 'bob']);
  await onlineHas(bob, ['alice', 'bob']);

  const text = 'Grüße, 世界 🎉';
  await type(alice, text);
  await chatHas(alice, text);
  await chatHas(bob, text);
  const author = await bob.$eval('#chat li:last-child .author', (e) => e.textContent);
  assert.equal(author, 'alice');

  const xss = '<img src=x onerror=window.__xss=1>';
  await type(bob, xss);
  await chatHas(alice, xss);
  await chatHas(bob, xss);
  for (const page of [alice, bob]) {
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.equal(await page.locator('#chat img').count(), 0);
  }

  if (process.env.SB_SCREENSHOT) await alice.screenshot({ path: process.env.SB_SCREENSHOT });
  assert.deepEqual([...(alice.errors || []), ...(bob.errors || [])], [], 'no script errors');
  await alice.close();
  await bob.close();
});

test('the room picker reconnects to another room', T, async () => {
  const room = uniqueRoom('picker');
  const alice = await openTab(room);
  const bob = await openTab(room);
  await type(alice, 'alias alice');
  await type(bob, 'alias bob');
  await onlineHas(alice, ['alice', 'bob']);
  const first = await bob.textContent('#headline');

  const other = uniqueRoom('picker-b');
  await bob.fill('#room', other, WAIT);
  await bob.press('#room', 'Enter', WAIT);
  // New socket, new WSID; the alias follows the tab; the old room's list drops bob.
  await waitIn(bob, (old) => {
    const h = document.getElementById('headline').textContent;
    return h.startsWith('CHAT - connected - ') && h !== old;
  }, first);
  assert.equal(new URL(bob.url()).searchParams.get('room'), other);
  await onlineHas(bob, ['bob']);
  await waitIn(alice, () => {
    const shown = [...document.querySelectorAll('#userlist li')].map((li) => li.textContent);
    return shown.includes('alice') && !shown.includes('bob');
  });

  await type(bob, 'in the other room');
  await chatHas(bob, 'in the other room');
  await type(alice, 'back in the first room');
  await chatHas(alice, 'back in the first room');
  const alice_texts = await alice.$$eval('#chat li .text', (els) => els.map((e) => e.textContent));
  assert.ok(!alice_texts.includes('in the other room'), 'rooms are isolated in the page');
  await alice.close();
  await bob.close();
});

// Last: it stops the gateway.
test('the headline says disconnected when the gateway goes away', T, async () => {
  const page = await openTab(uniqueRoom('bye'));
  await stack.children.find((c) => c.name === 'gateway').stop();
  await waitIn(page, () => /^CHAT - (disconnected|error)$/.test(document.getElementById('headline').textContent));
  await waitIn(page, () => document.getElementById('headline').textContent === 'CHAT - disconnected');
  await page.close();
});
