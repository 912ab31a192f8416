// End-to-end: the gateway's keep-alive pings. A client that answers (every browser, the `ws`
// package) stays open; one that never answers is closed with 4009 once a ping stays unanswered for an interval.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import { Client, Clients, httpGet, startStack } from './harness.mjs';

const T = { timeout: 20000 };
const PING_MS = 200;

let stack;
let failed = false;
const clients = new Clients();

before(async () => {
  stack = await startStack({ workers: 1, gatewayArgs: ['--ping-interval-ms', String(PING_MS)] });
});
afterEach((t) => {
  if (t.passed === false) failed = true;
  clients.closeAll();
});
after(async () => { await stack?.stop({ dumpLogs: failed || Boolean(process.exitCode) }); });

// Resolves when `count` pings arrived; rejects after `ms`.
function pings(ws, count, ms) {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => reject(new Error(`only ${seen} of ${count} pings in ${ms} ms`)), ms);
    ws.on('ping', () => {
      if (++seen === count) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
  });
}

test('a client that answers pings is pinged while silent and stays open', T, async () => {
  const c = clients.add(await new Client(`${stack.wsUrl}/echo`, { json: false }).open());
  const started = Date.now();
  await pings(c.ws, 4, 10 * PING_MS);  // 4 silent intervals: closed after 2 if pongs were ignored
  assert.ok(Date.now() - started >= 3 * PING_MS, 'pings come only after a silent interval');
  assert.equal(c.ws.readyState, c.ws.OPEN);
  c.send('still here');
  assert.equal((await c.take(() => true, { what: 'the echo' })).data.toString('utf8'), 'still here');
});

test('a client that never answers is closed with 4009 once a ping stays unanswered', T, async () => {
  const port = stack.http_port;
  const sock = net.connect(port, '127.0.0.1');
  const chunks = [];
  // Done when the close frame (0x88) arrived after the HTTP response, or the socket ended.
  const ended = new Promise((resolve) => {
    sock.on('close', resolve);
    sock.on('data', (d) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      const body = all.indexOf('\r\n\r\n');
      if (body >= 0 && all.indexOf(0x88, body + 4) >= 0) resolve();
    });
  });
  sock.on('error', () => {});
  await new Promise((resolve) => sock.once('connect', resolve));
  const key = crypto.randomBytes(16).toString('base64');
  sock.write(`GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
             `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const opened = Date.now();
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('not closed in 5 s')), 5000); });
  await Promise.race([ended, timeout]).finally(() => {
    clearTimeout(timer);
    sock.destroy();
  });
  const elapsed = Date.now() - opened;
  const bytes = Buffer.concat(chunks);
  const text = bytes.toString('latin1');
  assert.match(text, /^HTTP\/1\.1 101 /);
  const frames = bytes.subarray(text.indexOf('\r\n\r\n') + 4);
  // Pings first (0x89, 1-byte payload), then a close frame with code 4009.
  assert.ok(frames.length >= 3 && frames[0] === 0x89 && frames[1] === 0x01, `first frame is a ping: ${frames.toString('hex')}`);
  const close = frames.indexOf(0x88);
  assert.ok(close >= 0, `a close frame arrived: ${frames.toString('hex')}`);
  assert.equal(frames.readUInt16BE(close + 2), 4009);
  assert.ok(elapsed >= 2 * PING_MS, `closed after ${elapsed} ms, not before two intervals`);
  const health = JSON.parse((await httpGet(`${stack.httpUrl}/healthz`)).body);
  assert.ok(health.counters.ping_timeouts >= 1);
  assert.ok(health.counters.pings_sent >= 1);
});
