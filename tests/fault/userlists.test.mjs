// Userlists converge on their own: when members of one room change their aliases at the same
// time on two workers, the last userlist every member receives must match the store. Each
// worker reads the list from the store after its own change and publishes it; two such
// publishes can reach the gateway in the opposite order of their reads, leaving an older list
// as the last one shown (the other fault tests work around this by re-announcing one alias per
// room; this test does not).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatHub, pollUntil, report, startFaultStack } from './fault_harness.mjs';

const ROUNDS = 10;
const CONVERGE_MS = 2000;  // after the store is right; publishes take milliseconds

test('userlists converge without help after concurrent alias changes on two workers', { timeout: 120000 }, async () => {
  const stack = await startFaultStack({ workers: 2 });
  const hub = new ChatHub(stack);
  let ok = false;
  const outcomes = [];
  try {
    await hub.populate({ rooms: 1, perRoom: 20, tag: 'ul' });
    const workers = new Set(hub.peers.map((p) => p.worker));
    assert.equal(workers.size, 2, 'the room spans both workers');
    for (let round = 1; round <= ROUNDS; round++) {
      for (const p of hub.peers) p.setAlias(`${p.alias.replace(/~\d+$/, '')}~${round}`);
      const want = hub.peers.map((p) => `${p.wsid} ${p.alias}`).sort();
      await pollUntil(async () => {
        const got = (await stack.members()).filter((m) => m.room === hub.rooms[0]).map((m) => `${m.wsid} ${m.alias}`).sort();
        return JSON.stringify(got) === JSON.stringify(want);
      }, { timeoutMs: 10000, what: `round ${round}: store has every new alias` });
      try {
        await hub.waitUserlistsConverged({ timeoutMs: CONVERGE_MS, what: `round ${round}: userlists` });
        outcomes.push('converged');
      } catch (err) {
        outcomes.push(hub.describeUserlists());
        // Let the next round start from a converged state.
        hub.peers[0].setAlias(hub.peers[0].alias);
        await hub.waitUserlistsConverged({ timeoutMs: 10000, what: `round ${round}: userlists after a re-announce` });
      }
    }
    const stale = outcomes.filter((o) => o !== 'converged');
    report('userlists-concurrent-aliases', { rounds: ROUNDS, stale_rounds: stale.length });
    assert.deepEqual(stale, [], `${stale.length} of ${ROUNDS} rounds left stale userlists`);
    ok = true;
  } finally {
    hub.close();
    await stack.stop({ dumpLogs: !ok && process.env.SB_FAULT_DUMP_LOGS });
  }
});
