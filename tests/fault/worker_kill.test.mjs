// Fault injection: kill -9 one of two workers while 100 clients in 5 rooms chat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { busiestWorker } from './fault_harness.mjs';
import { loadScenario } from './scenario.mjs';

const DETECT_BOUND_MS = 5000;  // 3 missed 1 s heartbeats, plus a tick and our polling

test('kill -9 of a worker under load: no disconnect, nothing lost or doubled, order kept, userlists converge',
     { timeout: 180000 }, async (t) => {
  const r = await loadScenario(t, 'worker-kill-9', async ({ stack, hub }) => {
    const [victim_id, victim_sockets] = busiestWorker(hub);
    const victim = stack.workers.get(victim_id);
    assert.ok(victim, `worker ${victim_id} named in Status is one of ours`);
    const sent_at_kill = hub.sent_total;
    const killed_at = Date.now();
    assert.ok(victim.signal('SIGKILL'), 'SIGKILL delivered');
    await victim.waitExit(5000);
    stack.workers.delete(victim_id);
    // Detection: the gateway stops counting the worker.
    await stack.waitWorkers(1, 15000);
    const detect_observed_ms = Date.now() - killed_at;
    assert.ok(detect_observed_ms <= DETECT_BOUND_MS,
              `dead worker detected in ${detect_observed_ms} ms (bound ${DETECT_BOUND_MS})`);
    return { victim: victim_id, victim_sockets, sent_at_kill, detect_observed_ms };
  });
  // Each socket of the killed worker was taken over, not closed and reopened.
  const moved = (r.counters_after.sessions_moved ?? NaN) - (r.counters_before.sessions_moved ?? NaN);
  if (!Number.isNaN(moved)) {
    assert.ok(moved >= r.figures.victim_sockets, `sessions_moved grew by ${moved}, want >= ${r.figures.victim_sockets} (the killed worker)`);
  }
});
