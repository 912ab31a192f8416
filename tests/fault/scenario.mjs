// The shared shape of the worker-fault tests: 100 chat clients in 5 rooms send at a steady
// rate; a fault is injected; the load goes on; then every delivery is audited, userlists and
// the store are checked, and the gateway's figures are printed.
import assert from 'node:assert/strict';
import { ChatHub, pickCounters, pickWorkerCounters, report, startFaultStack } from './fault_harness.mjs';

export const LOAD = {
  rooms: 5,
  perRoom: 20,
  rate: 100,            // messages/s from all clients together: 1 per client per second
  warmupMessages: 200,  // sent before the fault
  afterMessages: 300,   // sent after the fault has been handled
};

// fault(ctx) injects the fault and waits until the system has handled it; it returns figures
// to print. ctx = {stack, hub, t}.
// With deliveryChecks false only disconnects are asserted (the delivery figures are still
// printed): for tests whose subject is something else, e.g. the gateway loop's drift.
export async function loadScenario(t, name, fault, { workers = 2, load = LOAD, stackOptions = {},
                                                     deliveryChecks = true } = {}) {
  const stack = await startFaultStack({ workers, ...stackOptions });
  const hub = new ChatHub(stack);
  let ok = false;
  try {
    await hub.populate({ rooms: load.rooms, perRoom: load.perRoom, tag: name.replace(/[^a-z0-9]/gi, '').slice(0, 8) });
    const counters_before = await stack.counters();

    hub.startLoad(load.rate);
    await hub.waitSent(load.warmupMessages, 30000);
    // Healthy before the fault: what was sent so far has reached everyone.
    await hub.waitDeliveredSoFar(15000, 'deliveries before the fault');

    const fault_figures = await fault({ stack, hub, t });

    await hub.waitSent(load.afterMessages, 30000);
    hub.stopLoad();
    // One last message per client: it follows everything else of its sender in order.
    for (const p of hub.peers) p.sendNext();
    const drain_started = Date.now();
    let drain_error = null;
    try {
      await hub.waitAllDelivered(30000);
    } catch (err) {
      drain_error = err;
    }
    const drain_ms = Date.now() - drain_started;

    const audit = hub.audit();
    const disconnected = hub.disconnected();
    const errors = hub.peers.flatMap((p) => p.errors.map((e) => `${p.alias}: ${e}`));

    // Userlists: one rename per room makes the workers publish a fresh list from the store.
    for (const room of hub.rooms) {
      const p = hub.roomPeers(room)[0];
      p.setAlias(`${p.alias}-z`);
    }
    let userlist_error = null;
    try {
      await hub.waitUserlistsConverged({ timeoutMs: 15000, what: 'userlists after the fault' });
    } catch (err) {
      userlist_error = err;
    }
    const members = await stack.members();
    const counters_after = await stack.counters();
    // Worker-side figures (duplicates dropped by sequence, take-overs): stop the workers now,
    // before the clients go, so no close or drain adds to them.
    const workers_end = await stack.stopWorkersForCounters();

    const figures = {
      ...fault_figures,
      sent: hub.sent_total,
      deliveries: hub.deliveries,
      expected_deliveries: audit.expected,
      lost: audit.lost,
      duplicated: audit.duplicated,
      reordered: audit.reordered,
      drain_ms,
      initial_userlists_converged_unaided: hub.natural_convergence,
      ...pickCounters(counters_after),
      ...pickWorkerCounters(workers_end.total),
      workers_reporting: Object.keys(workers_end.per_worker).length,
    };
    report(name, figures);

    assert.deepEqual(disconnected.map((p) => `${p.alias}: ${JSON.stringify(p.closes)}`), [], 'no client is disconnected');
    if (!deliveryChecks) {
      ok = true;
      return { stack, hub, figures, counters_before, counters_after };
    }
    assert.equal(audit.lost, 0, `no message lost; ${audit.examples.join('; ')}`);
    assert.equal(audit.duplicated, 0, `no message delivered twice; ${audit.examples.join('; ')}`);
    assert.equal(audit.duplicate_ids, 0, `no chat Id delivered twice; ${audit.examples.join('; ')}`);
    assert.equal(audit.reordered, 0, `per-sender order kept; ${audit.examples.join('; ')}`);
    assert.equal(audit.unknown, 0, `no message from outside the room; ${audit.examples.join('; ')}`);
    if (drain_error) throw drain_error;
    assert.deepEqual(errors, [], 'no client got an Error');
    assert.deepEqual(hub.problems, [], 'protocol problems seen by clients');
    if (userlist_error) throw userlist_error;

    // The store lists exactly the live sockets, under their current aliases.
    const ours = new Set(hub.rooms);
    const stored = members.filter((m) => ours.has(m.room)).map((m) => `${m.room} ${m.wsid} ${m.alias}`).sort();
    const live = hub.peers.map((p) => `${p.room} ${p.wsid} ${p.alias}`).sort();
    assert.deepEqual(stored, live, 'store members are exactly the live sockets');
    ok = true;
    return { stack, hub, figures, counters_before, counters_after };
  } finally {
    hub.close();
    await stack.stop({ dumpLogs: !ok });
  }
}
