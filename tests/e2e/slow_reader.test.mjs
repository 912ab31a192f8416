// End-to-end: a client that stops reading while a room floods it. Its kernel buffers fill, so
// the gateway's batched sends come back short and the rest goes through lws; when the client
// reads again, every message arrives whole and in order (no byte lost, none written twice).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { WebSocket } from 'ws';
import { httpGet, startStack, uniqueRoom } from './harness.mjs';

const T = { timeout: 60000 };
const SIZE = 60000;   // bytes per message
const COUNT = 150;    // 9 MB in all: more than loopback TCP buffers hold for a reader that stopped

let stack;
let failed = false;
before(async () => {
  stack = await startStack({ workers: 1, maxMessageBytes: 65536, gatewayArgs: ['--max-queue-bytes', String(64 << 20)] });
});
after(async () => { await stack?.stop({ dumpLogs: failed || Boolean(process.exitCode) }); });

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 20 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// A reader on a plain TCP socket (the `ws` client resumes a paused socket by itself): does the
// handshake, then collects server frames (unmasked; 2-, 4- or 10-byte headers) as messages.
function openRawReader(port, path) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const reader = { socket, messages: [], buffer: Buffer.alloc(0), upgraded: false };
    socket.once('error', reject);
    socket.on('connect', () => socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'));
    socket.on('data', (chunk) => {
      reader.buffer = Buffer.concat([reader.buffer, chunk]);
      if (!reader.upgraded) {
        const end = reader.buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!reader.buffer.subarray(0, 12).toString().includes('101')) return reject(new Error('no upgrade'));
        reader.upgraded = true;
        reader.buffer = reader.buffer.subarray(end + 4);
        resolve(reader);
      }
      for (;;) {
        const b = reader.buffer;
        if (b.length < 2) return;
        let len = b[1] & 0x7f, at = 2;
        if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); at = 4; }
        else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); at = 10; }
        if (b.length < at + len) return;
        reader.messages.push(Buffer.from(b.subarray(at, at + len)));
        reader.buffer = b.subarray(at + len);
      }
    });
  });
}

// Message i: its number, then a byte pattern that depends on it, so a gap, a repeat or a
// misplaced chunk shows up.
function payload(i) {
  const b = Buffer.alloc(SIZE);
  b.writeUInt32BE(i, 0);
  for (let k = 4; k < SIZE; k++) b[k] = (i * 31 + k) & 0xff;
  return b;
}

async function counters() {
  return JSON.parse((await httpGet(`${stack.httpUrl}/healthz`)).body).counters;
}

test('readers that stop get every message, whole and in order, when they read again', T, async (t) => {
  t.after(() => { if (t.passed === false) failed = true; });
  const path = `/broadcast?room=${uniqueRoom('slow')}`;
  const sender = await open(`${stack.wsUrl}${path}`);
  // Two stalled readers: while one fills up, the other and the sender have output in the same
  // loop turn, so the short send happens inside a batch, not in a lone write.
  const readers = [await openRawReader(stack.http_port, path), await openRawReader(stack.http_port, path)];
  // All three are in the room once both readers have the sender's probe.
  sender.send(Buffer.from('probe'));
  const until = async (done, what, ms = 20000) => {
    const limit = Date.now() + ms;
    for (let pause = 5; !(await done()); pause = Math.min(pause * 2, 100)) {
      assert.ok(Date.now() < limit, `${what} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, pause));
    }
  };
  await until(() => readers.every((r) => r.messages.length === 1), 'both readers got the probe');
  for (const r of readers) r.messages.length = 0;

  const before = await counters();
  for (const r of readers) r.socket.pause();  // stop reading: the kernel's buffers fill
  // One message per loop turn (the sender waits for its own copy): each reader then has one
  // write's worth of output per turn, sent in a batch with the others', until its buffers fill.
  for (let i = 0; i < COUNT; i++) {
    const echoed = new Promise((resolve) => sender.once('message', resolve));
    sender.send(payload(i));
    await echoed;
  }
  await until(async () => (await counters()).writes_handed_to_lws > before.writes_handed_to_lws,
              'a batched send came back short and its rest went through lws');
  for (const r of readers) r.socket.resume();
  await until(() => readers.every((r) => r.messages.length >= COUNT), 'every message arrived', 30000);
  for (const r of readers) {
    assert.equal(r.messages.length, COUNT, 'nothing arrived twice');
    r.messages.forEach((b, i) => assert.ok(b.equals(payload(i)), `message ${i} arrived whole and in its place`));
    r.socket.destroy();
  }
  sender.close();
});

// The kernel's part of a stalled reader's backlog is bounded too (--socket-send-buffer-bytes):
// left to autotuning, Linux let it grow to 4 MiB before the gateway's own queue (and its 4008
// cap) was reached at all.
test('a reader that stops is closed with 4008 after its queue cap plus a bounded kernel buffer', T, async (t) => {
  const capped = await startStack({ workers: 1, maxMessageBytes: 65536, gatewayArgs: ['--max-queue-bytes', String(1 << 20)] });
  t.after(() => capped.stop({ dumpLogs: t.passed === false }));
  const cappedCounters = async () => JSON.parse((await httpGet(`${capped.httpUrl}/healthz`)).body).counters;
  const path = `/broadcast?room=${uniqueRoom('cap')}`;
  const sender = await open(`${capped.wsUrl}${path}`);
  const reader = await openRawReader(capped.http_port, path);
  sender.send(Buffer.from('probe'));
  for (const limit = Date.now() + 20000; reader.messages.length < 1;) {
    assert.ok(Date.now() < limit, 'the reader got the probe');
    await new Promise((r) => setTimeout(r, 10));
  }
  reader.socket.pause();
  const before = (await cappedCounters()).slow_consumer_closes;
  // Each message is in the reader's backlog before the sender gets its own copy back.
  let sentBytes = 0;
  for (let i = 0; i < 200 && (await cappedCounters()).slow_consumer_closes === before; i++) {
    const echoed = new Promise((resolve) => sender.once('message', resolve));
    sender.send(payload(i));
    await echoed;
    sentBytes += SIZE;
  }
  assert.equal((await cappedCounters()).slow_consumer_closes, before + 1, 'the stalled reader was closed with 4008');
  // 1 MiB queued by the gateway + at most 256 KiB in its kernel send buffer + what the reader's
  // own receive buffer took; with autotuning this took over 5 MB.
  assert.ok(sentBytes < 2.5 * (1 << 20), `closed after ${sentBytes} bytes`);
  assert.equal((await cappedCounters()).sndbuf_failures, 0, 'SO_SNDBUF was applied to every socket');
  t.diagnostic(`stalled reader closed with 4008 after ${sentBytes} bytes`);
  reader.socket.destroy();
  sender.close();
});
