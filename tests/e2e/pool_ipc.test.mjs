// End-to-end: one gateway binds its pool on tcp:// and ipc:// at once; one worker connects over
// the Unix socket, the other over TCP. Both serve, and a room spans them.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { b64, chatText, Clients, httpGet, joinChat, startStack, uniqueRoom } from './harness.mjs';

const T = { timeout: 20000 };

let stack;
let failed = false;
const clients = new Clients();

before(async () => { stack = await startStack({ workers: 2, ipcWorkers: 1 }); });
afterEach((t) => {
  if (t.passed === false) failed = true;
  clients.closeAll();
});
after(async () => { await stack?.stop({ dumpLogs: failed || Boolean(process.exitCode) }); });

test('workers on ipc:// and tcp:// both register and a room spans them', T, async () => {
  assert.ok(fs.existsSync(stack.ipcPool.slice('ipc://'.length)), 'the gateway created its Unix socket');
  const health = JSON.parse((await httpGet(`${stack.httpUrl}/healthz`)).body);
  assert.equal(health.workers, 2);

  const room = uniqueRoom('ipc');
  const byWorker = new Map();
  for (let i = 0; i < 16 && byWorker.size < 2; i++) {
    const c = clients.add(await joinChat(stack, room));
    if (!byWorker.has(c.status.Worker)) byWorker.set(c.status.Worker, c);
  }
  // e2e-w1 is the worker on the Unix socket, e2e-w2 the one on TCP.
  assert.deepEqual([...byWorker.keys()].map((w) => w.replace(/-\d+$/, '')).sort(), ['e2e-w1', 'e2e-w2']);
  const [a, b] = [...byWorker.values()];
  for (const [from, to] of [[a, b], [b, a]]) {
    const text = `across transports ${Date.now()} ${Math.random()}`;
    from.send({ Message: b64(text) });
    const got = await to.takeType('Chat', (m) => chatText(m) === text, { what: 'Chat from the other worker' });
    assert.equal(got.WSID, from.status.WSID);
  }
});
