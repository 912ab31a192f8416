// Smoke test for a running stack (deploy/compose.sh smoke, or by hand):
//   node deploy/docker/smoke-test.mjs [--url http://127.0.0.1:8080] [--min-workers 2]
// Checks /healthz reports at least --min-workers live workers, opens chat sockets in one room
// until they sit on every live worker, and sends a chat line from one socket that must reach
// one held by another worker (on another container when there is one); then an /echo round trip.
// Uses the `ws` package from tests/node_modules (tests/run.sh installs it), or SB_NODE_MODULES.
// Every wait is bounded; exit 0 on success, 1 with the reason otherwise.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.SB_NODE_MODULES ?? path.join(here, '..', '..', 'tests', 'node_modules');
const { WebSocket } = createRequire(path.join(modules, 'index.js'))('ws');

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const base = option('--url', `http://127.0.0.1:${process.env.SB_HTTP_PORT ?? 8080}`).replace(/\/$/, '');
const min_workers = Number(option('--min-workers', 2));
const ws_base = base.replace(/^http/, 'ws');
const WAIT_MS = 10000;

const b64 = (text) => Buffer.from(text, 'utf8').toString('base64');
const unb64 = (data) => Buffer.from(data, 'base64').toString('utf8');
// Worker ids are "<host>-<pid>-<random>-<n>"; in a container <host> is the container id.
const host_of = (worker) => worker.split('-')[0];

function fail(why) {
  console.error(`smoke: FAIL: ${why}`);
  process.exit(1);
}

// A socket that queues parsed messages and lets the test wait for one matching a predicate.
function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const client = { ws, inbox: [], waiters: [] };
    client.take = (pred, what) =>
      new Promise((ok, no) => {
        const i = client.inbox.findIndex(pred);
        if (i >= 0) return ok(client.inbox.splice(i, 1)[0]);
        const timer = setTimeout(() => no(new Error(`timed out waiting for ${what}`)), WAIT_MS);
        client.waiters.push({ pred, ok: (m) => { clearTimeout(timer); ok(m); } });
      });
    ws.on('message', (data, binary) => {
      let m = binary ? data : data.toString('utf8');
      try { m = binary ? m : JSON.parse(m); } catch { /* echo answers are not JSON */ }
      const w = client.waiters.findIndex((x) => x.pred(m));
      if (w >= 0) client.waiters.splice(w, 1)[0].ok(m);
      else client.inbox.push(m);
    });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`timed out opening ${url}`)); }, WAIT_MS);
    ws.on('open', () => { clearTimeout(timer); resolve(client); });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

const opened = [];
try {
  const health_res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(WAIT_MS) });
  const health = await health_res.json();
  console.log(`smoke: GET /healthz -> ${health_res.status} workers=${health.workers} sockets=${health.sockets}`);
  if (health_res.status !== 200 || health.workers < min_workers)
    fail(`/healthz must be 200 with workers >= ${min_workers}`);

  // Sockets in one room until every live worker is represented (so, with two backend
  // containers, a pair on different containers exists) or 32 sockets are open.
  const room = `smoke-${Date.now().toString(36)}`;
  const by_worker = new Map();
  for (let i = 0; i < 32; i++) {
    const c = await open(`${ws_base}/chat?room=${room}`);
    opened.push(c);
    c.status = await c.take((m) => m.Type === 'Status', 'Status');
    if (!by_worker.has(c.status.Worker)) by_worker.set(c.status.Worker, c);
    if (by_worker.size >= Math.max(2, health.workers)) break;
  }
  const workers = [...by_worker.keys()];
  console.log(`smoke: ${opened.length} chat sockets landed on ${workers.length} workers: ${workers.join(', ')}`);
  if (workers.length < 2) fail('chat sockets did not spread over two workers');
  const sender = by_worker.get(workers[0]);
  const receiver = by_worker.get(workers.find((w) => host_of(w) !== host_of(workers[0])) ?? workers[1]);

  sender.ws.send(JSON.stringify({ User: 'smoke' }));
  await sender.take((m) => m.Type === 'userlist' && m.Users.some((u) => u.Name === 'smoke'), 'userlist with smoke');
  const text = `docker smoke: Grüße, 世界 ${Date.now()}`;
  sender.ws.send(JSON.stringify({ Message: b64(text), Author: 'smoke' }));
  const got = await receiver.take((m) => m.Type === 'Chat' && unb64(m.Message) === text, 'the Chat on the receiver');
  console.log(`smoke: chat ${sender.status.Worker} -> ${receiver.status.Worker}: ` +
              `Id=${got.Id} Author=${got.Author} Room=${got.Room} Sent=${got.Sent} text="${unb64(got.Message)}"`);
  if (got.Author !== 'smoke' || got.Room !== room || got.WSID !== sender.status.WSID) fail('Chat fields are wrong');

  const echo = await open(`${ws_base}/echo`);
  opened.push(echo);
  echo.ws.send('ping from smoke');
  await echo.take((m) => m === 'ping from smoke', 'the echo');
  console.log('smoke: echo round trip ok');
  console.log('smoke: PASS');
} catch (e) {
  fail(e.message);
} finally {
  for (const c of opened) c.ws.close(1000);
}
