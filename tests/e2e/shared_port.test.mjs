// End-to-end: two gateway processes share one port (--reuse-port, SO_REUSEPORT), each with its
// own pool; the workers serve both. The kernel spreads browsers over the gateways, and a chat
// room spans them: a message sent through one gateway reaches members on the other.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { b64, binaries, chatText, Clients, freePorts, httpGet, joinChat, names, startStack, uniqueRoom } from './harness.mjs';

const T = { timeout: 30000 };

let stack;
let failed = false;
const clients = new Clients();

before(async () => { stack = await startStack({ gateways: 2, workers: 2 }); });
afterEach((t) => {
  if (t.passed === false) failed = true;
  clients.closeAll();
});
after(async () => { await stack?.stop({ dumpLogs: failed || Boolean(process.exitCode) }); });

const gatewayOf = (c) => c.status.WSID.split('.')[0];

test('sockets land on both gateways and one room spans them', T, async () => {
  const room = uniqueRoom('shared');
  const members = [];
  // 16 sockets: all on one gateway would mean the port is not shared (chance 2^-15 otherwise).
  for (let i = 0; i < 16; i++) members.push(clients.add(await joinChat(stack, room)));
  const byGateway = new Map();
  for (const c of members) byGateway.set(gatewayOf(c), [...(byGateway.get(gatewayOf(c)) || []), c]);
  assert.deepEqual([...byGateway.keys()].sort(), ['e2e-g1', 'e2e-g2']);

  // Every member, wherever it is, sees the same userlist of all 16.
  const last = members[members.length - 1];
  for (const c of members) {
    await c.takeType('userlist', (m) => names(m).length === members.length, { what: 'full userlist' });
  }

  // A message through gateway 1 reaches a member on gateway 2, and the other way round.
  for (const [from, to] of [['e2e-g1', 'e2e-g2'], ['e2e-g2', 'e2e-g1']]) {
    const sender = byGateway.get(from)[0];
    const receiver = byGateway.get(to)[0];
    const text = `from ${from} to ${to} ${Date.now()}`;
    sender.send({ Message: b64(text), Author: 'x' });
    const got = await receiver.takeType('Chat', (m) => chatText(m) === text, { what: `Chat ${from} -> ${to}` });
    assert.equal(got.WSID, sender.status.WSID);
  }
  assert.ok(last.status.WSID);
});

test('a gateway without --reuse-port on a taken port exits with an error instead of running deaf', T, async () => {
  const [pool] = await freePorts(1);
  const run = spawnSync(binaries().gateway, ['--listen', `127.0.0.1:${stack.http_port}`,
    '--pool', `tcp://127.0.0.1:${pool}`, '--gateway-id', 'late'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(run.status, 2, `exit status ${run.status}, signal ${run.signal}`);
  assert.match(run.stderr + run.stdout, /cannot listen on 127\.0\.0\.1:\d+/);
});

test('with --reuse-port, running out of descriptors pauses accepting and recovers', T, async () => {
  const [port, pool] = await freePorts(2);
  // 40 descriptors: about 20 are the gateway's own, so the rest of 40 connections hit EMFILE.
  const gw = spawn('prlimit', ['--nofile=40:40', binaries().gateway, '--listen', `127.0.0.1:${port}`,
    '--pool', `tcp://127.0.0.1:${pool}`, '--gateway-id', 'fdlimit', '--reuse-port'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  gw.stdout.on('data', (d) => { output += d; });
  gw.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => gw.on('exit', resolve));
  const until = async (what, check, ms) => {
    const deadline = Date.now() + ms;
    for (let pause = 10; ; pause = Math.min(2 * pause, 100)) {
      const value = await check();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`${what} not within ${ms} ms; gateway output:\n${output}`);
      await new Promise((r) => setTimeout(r, pause));  // back-off between checks, not a sync point
    }
  };
  const health = async () => {
    try {
      return JSON.parse((await httpGet(`http://127.0.0.1:${port}/healthz`, 1000)).body);
    } catch {
      return null;
    }
  };
  const sockets = [];
  try {
    await until('the gateway answering', health, 10000);
    for (let i = 0; i < 40; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      sockets.push(s);
    }
    await until('an accept failure logged', () => /accept on .*(Too many open files)/.test(output), 10000);
    for (const s of sockets) s.destroy();
    const after = await until('the gateway answering again', health, 10000);
    assert.ok(after.counters.accept_failures >= 1);
    // Paused 100 ms per failure: a handful. Retrying at once would fail thousands of times.
    assert.ok(after.counters.accept_failures < 200, `accept failed ${after.counters.accept_failures} times: spinning?`);
    assert.equal(gw.exitCode, null, 'still running');
  } finally {
    for (const s of sockets) s.destroy();
    gw.kill('SIGTERM');
    await exited;
  }
});
