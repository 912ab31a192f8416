// SIGTERM to the gateway: close frames 1001 to every browser, a CLOSE to the workers for each
// WSID (so the online list is cleaned at once, not after the lease), exit 0 within 2 s, even
// when no worker answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatHub, pollUntil, report, startFaultStack } from './fault_harness.mjs';

const EXIT_BOUND_MS = 2000;
const EXIT_SLACK_MS = 300;     // our own signal-to-exit-event latency on a busy machine
const CLEANUP_BOUND_MS = 5000; // well under the 10 s lease: the CLOSEs did it, not the lease

async function closeCodes(hub, timeoutMs) {
  await hub.until(() => hub.peers.every((p) => p.closes.length > 0),
                  { timeoutMs, what: 'every client got a close',
                    describe: () => `${hub.peers.filter((p) => p.closes.length === 0).length} still open` });
  const codes = {};
  for (const p of hub.peers) codes[p.closes[0].code] = (codes[p.closes[0].code] ?? 0) + 1;
  return codes;
}


// SIGTERM to the gateway, then the checks both tests share: every client got 1001, the gateway
// exited 0 within the bound. Returns when it was signalled and how long it took to exit.
async function sigtermGateway(stack, hub) {
  const signalled_at = Date.now();
  assert.ok(stack.gateway.signal('SIGTERM'), 'SIGTERM delivered to the gateway');
  const exit = await stack.gateway.waitExit(EXIT_BOUND_MS + 3000);
  const exit_ms = exit.at - signalled_at;
  const codes = await closeCodes(hub, 3000);
  assert.deepEqual(codes, { 1001: hub.peers.length }, 'every client got close code 1001');
  assert.equal(exit.code, 0, `gateway exit ${JSON.stringify(exit)}`);
  assert.ok(exit_ms <= EXIT_BOUND_MS + EXIT_SLACK_MS, `gateway exited ${exit_ms} ms after SIGTERM`);
  return { signalled_at, exit_ms };
}
test('SIGTERM to the gateway: 1001 to every client, workers get a CLOSE per socket, exit 0 within 2 s',
     { timeout: 60000 }, async () => {
  const stack = await startFaultStack({ workers: 2 });
  const hub = new ChatHub(stack);
  let ok = false;
  try {
    await hub.populate({ rooms: 2, perRoom: 10, tag: 'gwt' });
    const { signalled_at, exit_ms } = await sigtermGateway(stack, hub);
    // The workers ran on_close for every socket: the store is clean long before the lease.
    await pollUntil(async () => (await stack.members()).filter((m) => hub.rooms.includes(m.room)).length === 0, {
      timeoutMs: Math.max(0, signalled_at + CLEANUP_BOUND_MS - Date.now()),
      what: `store free of the closed sockets within ${CLEANUP_BOUND_MS} ms of the SIGTERM`,
      describe: async () => `${(await stack.members()).filter((m) => hub.rooms.includes(m.room)).length} left` });
    const cleaned_ms = Date.now() - signalled_at;
    report('gateway-sigterm', { exit_ms, store_cleaned_ms: cleaned_ms });
    ok = true;
  } finally {
    hub.close();
    await stack.stop({ dumpLogs: !ok });
  }
});

test('SIGTERM to the gateway while every worker is stalled: 1001 to every client, exit 0 within 2 s',
     { timeout: 60000 }, async () => {
  const stack = await startFaultStack({ workers: 2 });
  const hub = new ChatHub(stack);
  let ok = false;
  const workers = [...stack.workers.values()];
  try {
    await hub.populate({ rooms: 2, perRoom: 10, tag: 'gws' });
    for (const w of workers) w.signal('SIGSTOP');
    const { exit_ms } = await sigtermGateway(stack, hub);
    report('gateway-sigterm-workers-stalled', { exit_ms });
    ok = true;
  } finally {
    for (const w of workers) w.signal('SIGCONT');
    hub.close();
    await stack.stop({ dumpLogs: !ok });
  }
});
