// Closed sockets leave the online list, whatever the workers are doing when they close:
// - a WRITE to a WSID that closed before its worker got to it is answered GONE, and the app
//   removes the member;
// - a socket that closes while its worker is stalled past the deadline: its CLOSE moves to a
//   live worker;
// - a socket that closes while no worker is live: its CLOSE waits and is delivered once one is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { ChatHub, pickCounters, pickWorkerCounters, pollUntil, report, startFaultStack, within } from './fault_harness.mjs';

// Opens a chat socket and drops it as soon as the upgrade completes, before its worker could
// have answered (it is stalled). Resolves once the client side is closed.
function openAndDrop(stack, room) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${stack.wsUrl}/chat?room=${encodeURIComponent(room)}`, { perMessageDeflate: false });
    ws.once('open', () => ws.terminate());
    ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
    ws.once('error', () => {});
    ws.once('close', resolve);
  });
}

// on_close runs exactly once per opened WSID: the workers' own count of on_close calls (from
// the counters line each prints when it stops) must equal the sockets that closed. Skipped,
// with a note, when a worker printed no counters.
function assertOnCloseOnce(workers_end, expected, what) {
  const reporting = Object.keys(workers_end.per_worker).length;
  const total = Object.keys(workers_end.exits).length;
  if (reporting !== total || workers_end.total.closes === undefined) {
    console.log(`[fault] ${what}: on_close count not checked (${reporting} of ${total} workers printed counters)`);
    return;
  }
  const per = Object.entries(workers_end.per_worker).map(([id, c]) => `${id}: ${c.closes}`).join(', ');
  assert.equal(workers_end.total.closes, expected, `${what}: on_close ran ${workers_end.total.closes} times for ` +
               `${expected} closed sockets (per worker: ${per})`);
}

async function storeWsids(stack, room) {
  return (await stack.members()).filter((m) => m.room === room).map((m) => m.wsid);
}

test('WRITE to a socket closed before its worker answered gets GONE; the app removes the member',
     { timeout: 60000 }, async () => {
  const stack = await startFaultStack({ workers: 1 });
  const hub = new ChatHub(stack);
  let ok = false;
  try {
    await hub.populate({ rooms: 1, perRoom: 2, tag: 'gone' });
    const room = hub.rooms[0];
    const worker = [...stack.workers.values()][0];
    const before = await stack.counters();

    // Stall the only worker briefly (well under the 3 s deadline, so it is not failed over):
    // the gateway accepts the sockets and queues their OPEN; the sockets close meanwhile.
    const dropped = 5;
    worker.signal('SIGSTOP');
    try {
      await within(Promise.all(Array.from({ length: dropped }, () => openAndDrop(stack, room))), 2000, 'sockets opened and dropped');
      await pollUntil(async () => (await stack.counters()).sockets_closed >= before.sockets_closed + dropped,
                      { timeoutMs: 1500, what: 'gateway saw the closes' });
    } finally {
      worker.signal('SIGCONT');
    }
    const after_stall = await stack.counters();
    assert.equal(after_stall.workers_lost, before.workers_lost, 'the brief stall did not count as a worker loss');

    // on_open wrote Status/history to closed sockets: each such WRITE must be answered GONE.
    await pollUntil(async () => (await stack.counters()).gone_sent >= before.gone_sent + dropped,
                    { timeoutMs: 5000, what: `GONE answered for the ${dropped} closed sockets`,
                      describe: async () => `gone_sent ${(await stack.counters()).gone_sent - before.gone_sent}` });
    // The store forgets them and the room's list shows only the live members.
    const live = new Set(hub.peers.map((p) => p.wsid));
    await pollUntil(async () => (await storeWsids(stack, room)).every((w) => live.has(w)),
                    { timeoutMs: 5000, what: 'closed sockets removed from the store' });
    const unaided = await hub.settleUserlists({ timeoutMs: 5000, what: 'userlists without the closed sockets' });
    const counters = await stack.counters();
    const workers_end = await stack.stopWorkersForCounters();
    report('write-to-closed-gone', { gone_delta: counters.gone_sent - before.gone_sent, userlists_converged_unaided: unaided,
                                     ...pickCounters(counters), ...pickWorkerCounters(workers_end.total),
                                     worker_exits: workers_end.exits });
    assertOnCloseOnce(workers_end, dropped, 'sockets closed before their OPEN was handled');
    ok = true;
  } finally {
    hub.close();
    await stack.stop({ dumpLogs: !ok });
  }
});

test('a socket closed while its worker is stalled past the deadline: on_close once, store and userlists clean',
     { timeout: 90000 }, async () => {
  const stack = await startFaultStack({ workers: 2 });
  const hub = new ChatHub(stack);
  let ok = false;
  try {
    await hub.populate({ rooms: 1, perRoom: 8, tag: 'stall' });
    const room = hub.rooms[0];
    const workers = [...new Set(hub.peers.map((p) => p.worker))];
    assert.equal(workers.length, 2, `sockets spread over both workers: ${workers}`);
    const victim_id = workers[0];
    const victim = stack.workers.get(victim_id);
    const leaver = hub.peers.find((p) => p.worker === victim_id);
    const before = await stack.counters();

    victim.signal('SIGSTOP');
    try {
      leaver.close();  // marks it stopped: no longer expected anywhere
      await pollUntil(async () => (await stack.counters()).sockets_closed > before.sockets_closed,
                      { timeoutMs: 2000, what: 'gateway saw the close' });
      // Failover: the CLOSE goes to the live worker, on_close runs there.
      await stack.waitWorkers(1, 10000);
      await pollUntil(async () => !(await storeWsids(stack, room)).includes(leaver.wsid),
                      { timeoutMs: 10000, what: 'closed socket removed from the store while its worker is stalled' });
      await hub.settleUserlists({ timeoutMs: 10000, what: 'userlists without the closed socket' });
    } finally {
      victim.signal('SIGCONT');
    }
    // The stalled worker comes back; it must not resurrect or re-close anything.
    await stack.waitWorkers(2, 15000);
    for (const p of hub.peers) if (!p.stopped) p.sendNext();
    await hub.waitDeliveredSoFar(10000, 'chat still works after the stall');
    const unaided = await hub.settleUserlists({ timeoutMs: 10000, what: 'userlists after the worker came back' });
    assert.deepEqual(hub.disconnected().filter((p) => !p.stopped).map((p) => p.alias), [], 'nobody else was disconnected');
    const counters = await stack.counters();
    const workers_end = await stack.stopWorkersForCounters();
    report('close-while-worker-stalled', { userlists_converged_unaided: unaided, ...pickCounters(counters),
                                           ...pickWorkerCounters(workers_end.total), worker_exits: workers_end.exits });
    assertOnCloseOnce(workers_end, 1, 'socket closed while its worker was stalled');
    ok = true;
  } finally {
    hub.close();
    await stack.stop({ dumpLogs: !ok });
  }
});

test('a socket closed while no worker is live: its close is delivered (once) when a worker is back',
     { timeout: 90000 }, async () => {
  const stack = await startFaultStack({ workers: 1 });
  const hub = new ChatHub(stack);
  let ok = false;
  try {
    await hub.populate({ rooms: 1, perRoom: 3, tag: 'orph' });
    const room = hub.rooms[0];
    const worker = [...stack.workers.values()][0];
    const leaver = hub.peers[0];
    const before = await stack.counters();

    worker.signal('SIGSTOP');
    let pending_seen = null;
    try {
      // No live worker once the deadline passes: /healthz says so (503, workers 0).
      await stack.waitWorkers(0, 10000);
      leaver.close();
      await pollUntil(async () => (await stack.counters()).sockets_closed > before.sockets_closed,
                      { timeoutMs: 2000, what: 'gateway saw the close' });
      pending_seen = (await stack.counters()).closed_pending;
      // The other sockets are kept open while they wait for a worker.
      assert.deepEqual(hub.disconnected().filter((p) => !p.stopped).map((p) => p.alias), [], 'waiting sockets stay open');
    } finally {
      worker.signal('SIGCONT');
    }
    await stack.waitWorkers(1, 15000);
    await pollUntil(async () => !(await storeWsids(stack, room)).includes(leaver.wsid),
                    { timeoutMs: 10000, what: 'the kept close removed the member once a worker was back' });
    const unaided = await hub.settleUserlists({ timeoutMs: 10000, what: 'userlists without the closed socket' });
    for (const p of hub.peers) if (!p.stopped) p.sendNext();
    await hub.waitDeliveredSoFar(10000, 'chat works again');
    assert.deepEqual(hub.disconnected().filter((p) => !p.stopped).map((p) => p.alias), [], 'nobody else was disconnected');
    const counters = await stack.counters();
    if (counters.closed_pending !== undefined) assert.equal(counters.closed_pending, 0, 'no close left pending');
    if (counters.orphan_closes_dropped !== undefined) {
      assert.equal(counters.orphan_closes_dropped, before.orphan_closes_dropped, 'no kept close dropped');
    }
    const workers_end = await stack.stopWorkersForCounters();
    report('close-with-no-worker', { closed_pending_during: pending_seen, userlists_converged_unaided: unaided,
                                     ...pickCounters(counters), ...pickWorkerCounters(workers_end.total),
                                     worker_exits: workers_end.exits });
    assertOnCloseOnce(workers_end, 1, 'socket closed while no worker was live');
    ok = true;
  } finally {
    hub.close();
    await stack.stop({ dumpLogs: !ok });
  }
});
