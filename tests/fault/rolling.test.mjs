// Fault injection: restart every worker one by one (SIGTERM drains it; a replacement joins)
// while 100 clients in 5 rooms chat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadScenario } from './scenario.mjs';

const DRAIN_EXIT_BOUND_MS = 10000;  // drain timeout is 2 s by default; generous for a loaded machine

test('rolling restart of all workers under load: drained workers exit 0; no disconnect, loss or duplicate',
     { timeout: 240000 }, async (t) => {
  const r = await loadScenario(t, 'rolling-restart', async ({ stack, hub }) => {
    const drains = [];
    for (const id of [...stack.workers.keys()]) {
      const old = stack.workers.get(id);
      const started = Date.now();
      assert.ok(old.signal('SIGTERM'), `SIGTERM delivered to ${id}`);
      const exit = await old.waitExit(DRAIN_EXIT_BOUND_MS, `${id} exit after SIGTERM (drain)`);
      drains.push({ worker: id, exit_ms: Date.now() - started, code: exit.code, signal: exit.signal });
      assert.equal(exit.code, 0, `${id} exits 0 after draining (got ${JSON.stringify(exit)})`);
      stack.workers.delete(id);
      stack.startWorker(`${id}-r`);
      await stack.waitWorkers(2, 15000);
      // Keep the load going between restarts so each happens with traffic in flight.
      await hub.waitSent(100, 10000);
    }
    return { drains };
  });
  // Every socket moved at least once (all workers were replaced), without a close and reopen.
  const moved = (r.counters_after.sessions_moved ?? NaN) - (r.counters_before.sessions_moved ?? NaN);
  if (!Number.isNaN(moved)) {
    assert.ok(moved >= r.hub.peers.length, `sessions_moved grew by ${moved}, want >= ${r.hub.peers.length} (every socket moved at least once)`);
  }
});
