// Backpressure end to end: a client that sends faster than its worker acknowledges gets its
// reading paused by the gateway (nothing dropped, nothing buffered without bound), and resumed
// once the worker has caught up; every message then arrives, in order, while other sockets keep
// the gateway's loop busy (lws must still drain what it had read before the pause).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { pollUntil, report, startFaultStack, within } from './fault_harness.mjs';

const SENT = 600;  // over the gateway's 256 unacknowledged events per socket

function openEcho(stack) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${stack.wsUrl}/echo`, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// A socket echoing in a closed loop (one message in flight) until stopped.
function busyLoop(ws, tag) {
  const state = { echoes: 0, stopped: false };
  ws.on('message', () => {
    state.echoes += 1;
    if (!state.stopped) ws.send(`${tag} ${state.echoes}`);
  });
  ws.send(`${tag} 0`);
  return state;
}

test('a paused client loses nothing: its reading resumes when the worker catches up', { timeout: 60000 }, async () => {
  const stack = await startFaultStack({ workers: 1 });
  const sockets = [];
  const loops = [];
  try {
    const worker = [...stack.workers.values()][0];
    const fast = await openEcho(stack);
    sockets.push(fast);
    const got = [];
    let all_received;
    const all = new Promise((resolve) => { all_received = resolve; });
    fast.on('message', (data) => {
      got.push(data.toString());
      if (got.length === SENT) all_received();
    });
    for (let i = 0; i < 3; i++) {
      const ws = await openEcho(stack);
      sockets.push(ws);
      loops.push(busyLoop(ws, `busy${i}`));
    }
    await pollUntil(() => loops.every((l) => l.echoes > 10), { timeoutMs: 5000, what: 'busy sockets echoing' });
    const before = await stack.counters();

    // Stall the worker (well under the 3 s deadline: no failover) and send everything at once.
    worker.signal('SIGSTOP');
    try {
      for (let i = 0; i < SENT; i++) fast.send(`m${i}`);
      await pollUntil(async () => (await stack.counters()).reads_paused > before.reads_paused,
                      { timeoutMs: 2000, what: 'the gateway paused reading the fast client' });
    } finally {
      worker.signal('SIGCONT');
    }

    await within(all, 20000, `all ${SENT} echoes back (got ${got.length})`);
    assert.deepEqual(got, Array.from({ length: SENT }, (_, i) => `m${i}`), 'every message echoed once, in order');
    const busy_after_resume = loops.map((l) => l.echoes);
    await pollUntil(() => loops.every((l, i) => l.echoes > busy_after_resume[i] + 10),
                    { timeoutMs: 5000, what: 'busy sockets still echoing' });
    const after = await stack.counters();
    assert.equal(after.slow_consumer_closes, before.slow_consumer_closes, 'nobody closed as a slow consumer');
    assert.equal(after.workers_lost, before.workers_lost, 'the stall did not count as a worker loss');
    assert.equal(after.sockets_closed, before.sockets_closed, 'no socket closed');
    report('backpressure-pause-resume', {
      sent: SENT, echoed: got.length, reads_paused: after.reads_paused - before.reads_paused,
      busy_echoes: loops.map((l) => l.echoes).join('/'),
    });
  } finally {
    for (const l of loops) l.stopped = true;
    for (const ws of sockets) ws.terminate();
    await stack.stop();
  }
});
