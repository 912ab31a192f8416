// Fault injection: kill -9 one of two workers while 100 clients in 5 rooms chat. Repeated a
// few times (a replacement joins after each kill, then the busiest worker is killed again), so
// the kills land at different points of a worker's work, including between storing a message
// and the gateway receiving its acknowledgement.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { busiestWorker } from './fault_harness.mjs';
import { loadScenario } from './scenario.mjs';

const KILLS = 3;
const DETECT_BOUND_MS = 5000;  // 3 missed 1 s heartbeats, plus a tick and our polling

test('kill -9 of a worker under load: no disconnect, nothing lost or doubled, order kept, userlists converge',
     { timeout: 180000 }, async (t) => {
  let victims_sockets = 0;
  const r = await loadScenario(t, 'worker-kill-9', async ({ stack, hub }) => {
    const kills = [];
    for (let k = 1; k <= KILLS; k++) {
      if (k > 1) {
        stack.startWorker(`fault-w${k + 1}`);
        await stack.waitWorkers(2, 15000);
        await hub.waitSent(100, 10000);  // the load reaches the new worker before the next kill
      }
      // First kill: the worker most Status messages named. Later: the oldest live worker, the
      // survivor of the previous kill, which took every socket over (no new sockets arrive
      // and the gateway does not rebalance onto the newcomer).
      const [victim_id, status_count] = k === 1 ? busiestWorker(hub) : [[...stack.workers.keys()][0], hub.peers.length];
      const victim = stack.workers.get(victim_id);
      assert.ok(victim, `worker ${victim_id} is one of ours`);
      const killed_at = Date.now();
      assert.ok(victim.signal('SIGKILL'), 'SIGKILL delivered');
      await victim.waitExit(5000);
      stack.workers.delete(victim_id);
      await stack.waitWorkers(1, 15000);  // detection: the gateway stops counting it
      const detect_observed_ms = Date.now() - killed_at;
      assert.ok(detect_observed_ms <= DETECT_BOUND_MS,
                `dead worker detected in ${detect_observed_ms} ms (bound ${DETECT_BOUND_MS})`);
      victims_sockets += status_count;
      kills.push({ victim: victim_id, sockets: status_count, detect_observed_ms });
    }
    return { kills };
  });
  // Each socket of a killed worker was taken over, not closed and reopened.
  const moved = (r.counters_after.sessions_moved ?? NaN) - (r.counters_before.sessions_moved ?? NaN);
  if (!Number.isNaN(moved)) {
    assert.ok(moved >= victims_sockets, `sessions_moved grew by ${moved}, want >= ${victims_sockets} (the killed workers' sockets)`);
  }
});
