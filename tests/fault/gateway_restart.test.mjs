// Fault injection on the gateway: kill -9, then (a) a new gateway on the same ports, (b) none.
// Workers must purge the dead epoch's sockets from the store (on the new epoch's WELCOME, or
// when the gateway stays dead past the lease) so the online list is never stale.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatHub, pickCounters, pollUntil, report, startFaultStack } from './fault_harness.mjs';

const LEASE_MS = 10000;       // worker default --gateway-lease-ms
const DEAD_AFTER_MS = 3000;   // 3 missed 1 s heartbeats before a worker calls a gateway dead
const ROOMS = 5;
const PER_ROOM = 10;

// "fault.<epoch36>." of a WSID.
function epochPrefix(wsid) {
  const parts = wsid.split('.');
  assert.equal(parts.length, 3, `WSID ${wsid} has 3 parts`);
  return `${parts[0]}.${parts[1]}.`;
}

async function countWithPrefix(stack, prefix) {
  // The prefix is [A-Za-z0-9_-.] only (gateway id and base 36), safe to inline.
  assert.match(prefix, /^[A-Za-z0-9_.-]+$/);
  const rows = await stack.query(`SELECT count(*) FROM members WHERE substr(wsid, 1, ${prefix.length}) = '${prefix}'`);
  return Number(rows[0][0]);
}

test('kill -9 of the gateway, new gateway on the same ports: clients reconnect, old epoch purged within the lease, ' +
     'userlists show only live users', { timeout: 120000 }, async () => {
  const stack = await startFaultStack({ workers: 2 });
  const hub = new ChatHub(stack);
  let ok = false;
  try {
    await hub.populate({ rooms: ROOMS, perRoom: PER_ROOM, tag: 'gwr', reconnect: true });
    const old_prefix = epochPrefix(hub.peers[0].wsid);
    for (const p of hub.peers) assert.equal(epochPrefix(p.wsid), old_prefix, 'one epoch before the kill');
    assert.equal(await countWithPrefix(stack, old_prefix), ROOMS * PER_ROOM, 'store has every member before the kill');

    const old_gateway = stack.gateway;
    const killed_at = Date.now();
    assert.ok(old_gateway.signal('SIGKILL'), 'SIGKILL delivered to the gateway');
    await old_gateway.waitExit(5000);
    stack.startGateway();
    // Workers re-join a restarted gateway on their own.
    await stack.waitWorkers(2, 15000);
    const workers_back_ms = Date.now() - killed_at;

    // Our clients reconnect by themselves (the page does too); each gets a new-epoch WSID.
    await hub.until(() => hub.peers.every((p) => p.open && epochPrefix(p.wsid) !== old_prefix),
                    { timeoutMs: 15000, what: 'every client reconnected to the new gateway',
                      describe: () => `${hub.peers.filter((p) => !p.open).length} not open` });
    const reconnected_ms = Date.now() - killed_at;
    const new_prefix = epochPrefix(hub.peers[0].wsid);
    for (const p of hub.peers) assert.equal(epochPrefix(p.wsid), new_prefix, 'one new epoch');
    assert.deepEqual(hub.peers.filter((p) => p.statuses !== p.wsids.length)
      .map((p) => `${p.alias}: ${p.statuses} Status for ${p.wsids.length} connections ${JSON.stringify(p.wsids)}`),
    [], 'one Status per connection');

    // Within the lease (counted from the kill) nothing of the old epoch stays in the store.
    await pollUntil(async () => (await countWithPrefix(stack, old_prefix)) === 0, {
      timeoutMs: Math.max(0, killed_at + LEASE_MS - Date.now()),
      what: `store free of old-epoch WSIDs (${old_prefix}) within the ${LEASE_MS} ms lease`,
      describe: async () => `${await countWithPrefix(stack, old_prefix)} old-epoch members left` });
    const purged_ms = Date.now() - killed_at;

    // Userlists: only the live users, each once; the store holds exactly the live sockets.
    const unaided = await hub.settleUserlists({ timeoutMs: 15000, what: 'userlists after the gateway restart' });
    const stale_seen_after_purge = [];
    for (const p of hub.peers) {
      const want = hub.expectedNames(p.room);
      if (JSON.stringify(p.userlist) !== JSON.stringify(want)) stale_seen_after_purge.push(p.alias);
    }
    assert.deepEqual(stale_seen_after_purge, [], 'every userlist shows exactly the live users');

    const counters = await stack.counters();
    report('gateway-kill-9-restart', { workers_back_ms, reconnected_ms, old_epoch_purged_ms: purged_ms,
                                       userlists_converged_unaided: unaided, ...pickCounters(counters) });
    ok = true;
  } finally {
    hub.close();
    await stack.stop({ dumpLogs: !ok });
  }
});

test('kill -9 of the gateway with no restart: its sockets leave the store once the lease expires',
     { timeout: 120000 }, async () => {
  const stack = await startFaultStack({ workers: 2 });
  const hub = new ChatHub(stack);
  let ok = false;
  try {
    await hub.populate({ rooms: 2, perRoom: 10, tag: 'gwl' });
    const prefix = `${stack.gateway_id}.`;
    assert.equal(await countWithPrefix(stack, prefix), 20, 'store has every member before the kill');
    const killed_at = Date.now();
    assert.ok(stack.gateway.signal('SIGKILL'), 'SIGKILL delivered to the gateway');
    await stack.gateway.waitExit(5000);
    // The lease runs from when the workers last heard the gateway; allow the dead-peer
    // detection and a heartbeat on top of it.
    const bound = LEASE_MS + DEAD_AFTER_MS + 1000;
    await pollUntil(async () => (await countWithPrefix(stack, prefix)) === 0, {
      timeoutMs: bound, maxPause: 250,
      what: `store free of the dead gateway's WSIDs within ${bound} ms`,
      describe: async () => `${await countWithPrefix(stack, prefix)} members left` });
    const purged_ms = Date.now() - killed_at;
    for (const w of stack.workers.values()) assert.ok(w.alive, `${w.name} keeps running without its gateway`);
    report('gateway-kill-9-lease', { purged_ms, lease_ms: LEASE_MS });
    ok = true;
  } finally {
    hub.close();
    await stack.stop({ dumpLogs: !ok });
  }
});
