// End-to-end: a loop turn writes at most --max-socket-writes-per-turn sockets; the rest keep
// their place in line and are written in the turns that follow, without waiting for new input.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, Clients, httpGet, startStack, uniqueRoom } from './harness.mjs';

const T = { timeout: 30000 };
const MEMBERS = 60;

let stack;
let failed = false;
const clients = new Clients();

// One socket per turn: every fan-out spans many turns.
before(async () => { stack = await startStack({ gatewayArgs: ['--max-socket-writes-per-turn', '1'] }); });
afterEach((t) => {
  if (t.passed === false) failed = true;
  clients.closeAll();
});
after(async () => { await stack?.stop({ dumpLogs: failed || Boolean(process.exitCode) }); });

const counters = async () => JSON.parse((await httpGet(`${stack.httpUrl}/healthz`)).body).counters;

test('a fan-out wider than the write budget reaches every member, in order', T, async () => {
  const room = uniqueRoom('budget');
  const members = [];
  for (let i = 0; i < MEMBERS; i++) {
    const c = clients.add(await new Client(`${stack.wsUrl}/broadcast?room=${room}`, { json: false }).open());
    const probe = `probe ${i}`;
    c.sendRaw(probe);
    await c.take((m) => m.data.toString('utf8') === probe, { what: `own ${probe}` });
    members.push(c);
  }
  const before = await counters();

  // Without a turn that follows by itself, the loop would block after writing one socket and
  // the rest would trickle out one per tick (250 ms): far past take()'s 5 s.
  const texts = ['one', 'two', 'three', 'four', 'five'];
  for (const t of texts) members[0].sendRaw(t);
  for (const [i, m] of members.entries()) {
    const got = [];
    for (const t of texts) {
      const msg = await m.take((x) => texts.includes(x.data.toString('utf8')), { what: `'${t}' at member ${i}` });
      got.push(msg.data.toString('utf8'));
    }
    assert.deepEqual(got, texts, `member ${i} got the messages in the order sent`);
  }

  const after_ = await counters();
  assert.ok(after_.turns_over_write_budget > before.turns_over_write_budget,
    `turns that left sockets for the next: ${before.turns_over_write_budget} -> ${after_.turns_over_write_budget}`);
});
