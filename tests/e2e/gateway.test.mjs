// End-to-end: HTTP routes, WebSocket limits, and the echo and broadcast apps.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { b64, chatText, Client, Clients, httpGet, joinChat, startStack, uniqueRoom } from './harness.mjs';

const T = { timeout: 20000 };
const MAX_MESSAGE_BYTES = 1024;

let stack;
let failed = false;
const clients = new Clients();

before(async () => { stack = await startStack({ maxMessageBytes: MAX_MESSAGE_BYTES }); });
afterEach((t) => {
  if (t.passed === false) failed = true;
  clients.closeAll();
});
after(async () => { await stack?.stop({ dumpLogs: failed || Boolean(process.exitCode) }); });

const raw = async (path) => clients.add(await new Client(`${stack.wsUrl}${path}`, { json: false }).open());

test('GET /healthz answers 200 with the worker count', T, async () => {
  const res = await httpGet(`${stack.httpUrl}/healthz`);
  assert.equal(res.status, 200);
  const body = JSON.parse(res.body);
  assert.equal(body.status, 'ok');
  assert.equal(body.workers, 2);
  assert.equal(typeof body.sockets, 'number');
});

test("lws' memory comes from the gateway's pool: /healthz shows it grow with sockets", T, async () => {
  const pool = async () => JSON.parse((await httpGet(`${stack.httpUrl}/healthz`)).body).counters;
  const before = await pool();
  const sockets = [];
  for (let i = 0; i < 20; ++i) sockets.push(await raw('/echo'));
  const during = await pool();
  // Each open socket holds lws' connection struct, WebSocket state and receive buffer (over
  // 1 KiB together with Debian's build), all from the pool.
  assert.ok(during.lws_pool_in_use_bytes - before.lws_pool_in_use_bytes >= 20 * 1024,
    `pool grew by ${during.lws_pool_in_use_bytes - before.lws_pool_in_use_bytes} bytes for 20 sockets`);
  assert.ok(during.lws_pool_reserved_bytes >= during.lws_pool_in_use_bytes);
  // And the sockets still work.
  sockets[19].sendRaw('still here');
  const echoed = await sockets[19].take(() => true, { what: 'echo' });
  assert.equal(echoed.data.toString('utf8'), 'still here');
});

test('GET / serves the chat page', T, async () => {
  const res = await httpGet(`${stack.httpUrl}/`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/html/);
  assert.match(res.body, /id="headline"/);
  assert.match(res.body, /id="inputline"/);
});

test('GET of an unknown path answers 404', T, async () => {
  const res = await httpGet(`${stack.httpUrl}/nope`);
  assert.equal(res.status, 404);
});

test('a WebSocket upgrade to an unknown path is refused', T, async () => {
  const c = clients.add(new Client(`${stack.wsUrl}/nope`));
  await assert.rejects(c.opened, /HTTP 404/, 'upgrade to /nope must be answered 404');
});

test('a message within --max-message-bytes is accepted', T, async () => {
  const c = clients.add(await joinChat(stack, uniqueRoom('limit-ok')));
  const text = 'x'.repeat(600);  // about 830 bytes of JSON after base64
  const frame = JSON.stringify({ Message: b64(text), Author: 'big' });
  assert.ok(Buffer.byteLength(frame) < MAX_MESSAGE_BYTES);
  c.send(frame);
  await c.takeType('Chat', (m) => chatText(m) === text);
});

test('a message over --max-message-bytes is closed with 1009', T, async () => {
  const c = clients.add(await joinChat(stack, uniqueRoom('limit')));
  c.send(JSON.stringify({ Message: b64('y'.repeat(2000)), Author: 'huge' }));
  const { code } = await c.waitClose();
  assert.equal(code, 1009);
});

test('a fragmented message over the limit is closed with 1009', T, async () => {
  const c = clients.add(await joinChat(stack, uniqueRoom('limit-frag')));
  // Every fragment is small; only the reassembled message is too big.
  const piece = 'z'.repeat(500);
  c.ws.send(piece, { fin: false });
  c.ws.send(piece, { fin: false });
  c.ws.send(piece, { fin: true });
  const { code } = await c.waitClose();
  assert.equal(code, 1009);
});

test('invalid UTF-8 in a text frame is closed with 1007', T, async () => {
  const c = clients.add(await joinChat(stack, uniqueRoom('utf8')));
  c.sendRaw(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
  const { code } = await c.waitClose();
  assert.equal(code, 1007);
});

test('the echo app echoes text and binary', T, async () => {
  const c = await raw('/echo');
  const text = 'echo ✓ Grüße 🎉';
  c.sendRaw(text);
  const t = await c.take(() => true, { what: 'echoed text' });
  assert.equal(t.binary, false);
  assert.equal(t.data.toString('utf8'), text);

  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  c.sendRaw(bytes, { binary: true });
  const b = await c.take(() => true, { what: 'echoed binary' });
  assert.equal(b.binary, true);
  assert.ok(b.data.equals(bytes), 'binary echoed byte for byte');
});

test('messages longer than the receive buffer arrive whole, fragmented or not', T, async () => {
  // The gateway reads 128 bytes per piece (rx_buffer_size) and reassembles.
  const c = await raw('/echo');
  const text = 'Grüße 🎉 '.repeat(40);  // ~480 bytes, multi-byte characters across piece borders
  c.sendRaw(text);
  const whole = await c.take(() => true, { what: 'echoed long text' });
  assert.equal(whole.data.toString('utf8'), text);
  const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));
  c.ws.send(bytes.subarray(0, 100), { binary: true, fin: false });
  c.ws.send(bytes.subarray(100, 250), { binary: true, fin: false });
  c.ws.send(bytes.subarray(250), { binary: true, fin: true });
  const b = await c.take(() => true, { what: 'echoed fragmented binary' });
  assert.equal(b.binary, true);
  assert.ok(b.data.equals(bytes), 'fragments reassembled byte for byte');
});

test('a ping with the largest control payload (125 bytes) gets it back in the pong', T, async () => {
  const c = await raw('/echo');
  const payload = Buffer.from('p'.repeat(120) + '12345');
  const pong = new Promise((resolve) => c.ws.once('pong', resolve));
  c.ws.ping(payload);
  const data = await pong;
  assert.ok(Buffer.from(data).equals(payload), `pong payload ${data.length} bytes`);
});

test('the broadcast app fans out byte for byte to the room only', T, async () => {
  const room = uniqueRoom('bcast');
  const members = [];
  // A member is subscribed once its own probe comes back to it.
  for (let i = 0; i < 3; i++) {
    const c = await raw(`/broadcast?room=${room}`);
    const probe = `probe ${i}`;
    c.sendRaw(probe);
    await c.take((m) => !m.binary && m.data.toString('utf8') === probe, { what: `own ${probe}` });
    members.push(c);
  }
  const outsider = await raw(`/broadcast?room=${uniqueRoom('bcast-other')}`);

  const text = 'to everyone: 世界 🎉';
  const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 0x7f, 10, 13]);
  members[0].sendRaw(text);
  members[0].sendRaw(bytes, { binary: true });
  for (const [i, m] of members.entries()) {
    const t = await m.take((x) => !x.binary && x.data.toString('utf8') === text, { what: `text at member ${i}` });
    assert.ok(t.data.equals(Buffer.from(text, 'utf8')));
    const b = await m.take((x) => x.binary, { what: `binary at member ${i}` });
    assert.ok(b.data.equals(bytes), `member ${i} got the bytes unchanged`);
  }

  // Delivered to the room already; a leak would reach the outsider before its own probe.
  outsider.sendRaw('outsider probe');
  await outsider.take((m) => m.data.toString('utf8') === 'outsider probe', { what: 'outsider probe' });
  assert.equal(outsider.received.length, 1, 'outsider saw only its own probe');
});

// The app refuses in on_open (chat: room name over 64 bytes): the client must see the app's
// close code and reason, not a dropped connection (1006).
test('a socket the app refuses is closed with 1008 and the reason', T, async () => {
       const c = clients.add(new Client(`${stack.wsUrl}/chat?room=${'r'.repeat(65)}`));
       await c.open();
       const { code, reason } = await c.waitClose();
       assert.equal(code, 1008);
       assert.match(reason, /room/);
       assert.equal(c.received.filter((m) => m.Type === 'Chat' || m.Type === 'userlist').length, 0);
     });
