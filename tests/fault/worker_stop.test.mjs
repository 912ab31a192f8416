// Fault injection: SIGSTOP one of two workers for 5 s (past the 3 s deadline), then SIGCONT,
// while 100 clients in 5 rooms chat. The stalled worker must be failed over without loss or
// duplicates, and must re-join on its own after SIGCONT without restarting. Then the other
// worker is drained, so the one that was stalled takes every socket over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { busiestWorker, delay } from './fault_harness.mjs';
import { loadScenario } from './scenario.mjs';

const STALL_MS = 5000;  // the injected fault, not a synchronisation wait

test('SIGSTOP of a worker for 5 s under load: failover without loss or duplicates; it re-joins after SIGCONT',
     { timeout: 180000 }, async (t) => {
  const r = await loadScenario(t, 'worker-sigstop-5s', async ({ stack, hub }) => {
    const [victim_id, victim_sockets] = busiestWorker(hub);
    const victim = stack.workers.get(victim_id);
    assert.ok(victim, `worker ${victim_id} named in Status is one of ours`);
    const stopped_at = Date.now();
    assert.ok(victim.signal('SIGSTOP'), 'SIGSTOP delivered');
    let detect_observed_ms = null;
    const detection = stack.waitWorkers(1, STALL_MS)
      .then(() => { detect_observed_ms = Date.now() - stopped_at; })
      .catch(() => {});
    try {
      await delay(STALL_MS);
    } finally {
      victim.signal('SIGCONT');
    }
    const continued_at = Date.now();
    await detection;
    assert.notEqual(detect_observed_ms, null, `the stalled worker was not declared dead within ${STALL_MS} ms`);
    // It was forgotten by the gateway; it must notice and register again, same process.
    await stack.waitWorkers(2, 15000);
    const rejoin_ms = Date.now() - continued_at;
    assert.ok(victim.alive, `the stalled worker kept running (exit: ${JSON.stringify(victim.exit)})`);

    // The stalled worker must have let go of the sockets that were moved away while it slept:
    // drain the other worker so every socket is taken over by the one that was stalled.
    await hub.waitSent(100, 10000);
    const [other_id, other] = [...stack.workers.entries()].find(([id]) => id !== victim_id);
    other.signal('SIGTERM');
    const other_exit = await other.waitExit(10000, `${other_id} exit after SIGTERM (drain)`);
    assert.equal(other_exit.code, 0, `${other_id} exits 0 after draining (got ${JSON.stringify(other_exit)})`);
    stack.workers.delete(other_id);
    stack.startWorker(`${other_id}-r`);
    await stack.waitWorkers(2, 15000);
    return { victim: victim_id, victim_sockets, detect_observed_ms, rejoin_ms };
  });
  // Each socket of the stalled worker was taken over, not closed and reopened.
  const moved = (r.counters_after.sessions_moved ?? NaN) - (r.counters_before.sessions_moved ?? NaN);
  if (!Number.isNaN(moved)) {
    assert.ok(moved >= r.figures.victim_sockets, `sessions_moved grew by ${moved}, want >= ${r.figures.victim_sockets} (the stalled worker)`);
  }
});
