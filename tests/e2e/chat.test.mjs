// End-to-end: the chat app through the real gateway and two real backend workers.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { b64, chatText, Clients, joinChat, names, startStack, uniqueRoom } from './harness.mjs';

const T = { timeout: 20000 };  // per-test bound; every wait inside is bounded too
const SENT_FORMAT = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;
const WSID_FORMAT = /^[A-Za-z0-9_-]{1,32}\.[0-9a-z]+\.[0-9a-z]+$/;

let stack;
let failed = false;
const clients = new Clients();

before(async () => { stack = await startStack({ maxMessageBytes: 1024 }); });
afterEach((t) => {
  if (t.passed === false) failed = true;
  clients.closeAll();
});
after(async () => { await stack?.stop({ dumpLogs: failed || Boolean(process.exitCode) }); });

const join = async (room, opts) => clients.add(await joinChat(stack, room, opts));

// Sets the alias and waits until the room's userlist shows it.
async function rename(client, alias) {
  client.send({ User: alias });
  await client.takeType('userlist', (m) => names(m).includes(alias), { what: `userlist with ${alias}` });
}

// Sends a chat line and waits until the sender sees it come back (it is then stored).
// The server ignores "Author" and shows the sender's alias; the page still sends it.
async function say(client, text) {
  client.send({ Message: b64(text), Author: 'ignored' });
  return client.takeType('Chat', (m) => chatText(m) === text && m.WSID === client.status.WSID,
                         { what: `own Chat "${text}"` });
}

test('Status comes first and carries a WSID and the worker', T, async () => {
  const c = await join(uniqueRoom('status'));
  assert.equal(c.received[0].Type, 'Status', 'first message must be Status');
  assert.match(c.status.WSID, WSID_FORMAT);
  assert.ok(c.status.WSID.startsWith('e2e.'), `WSID names the gateway: ${c.status.WSID}`);
  assert.equal(typeof c.status.Worker, 'string');
  assert.ok(c.status.Worker.length > 0);
  const other = await join(uniqueRoom('status'));
  assert.notEqual(other.status.WSID, c.status.WSID, 'WSIDs are unique');
});

test('a new socket appears in the userlist as guest-XXXX', T, async () => {
  const room = uniqueRoom('guest');
  const c = await join(room);
  const list = await c.takeType('userlist', (m) => names(m).length === 1);
  assert.match(names(list)[0], /^guest-\S+$/);
});

test('userlist follows alias changes and leaving', T, async () => {
  const room = uniqueRoom('users');
  const a = await join(room);
  a.send({ User: 'alice' });
  await a.takeType('userlist', (m) => names(m).includes('alice'));

  const b = await join(room);
  b.send({ User: 'bob' });
  const seen_by_a = await a.takeType('userlist', (m) => names(m).includes('bob'));
  assert.deepEqual(names(seen_by_a), ['alice', 'bob']);
  const seen_by_b = await b.takeType('userlist', (m) => names(m).includes('bob'));
  assert.deepEqual(names(seen_by_b), ['alice', 'bob']);

  // /nick-style rename: the old name disappears.
  a.send({ User: 'alice2' });
  const renamed = await b.takeType('userlist', (m) => names(m).includes('alice2'));
  assert.deepEqual(names(renamed), ['alice2', 'bob']);

  b.close();
  await b.waitClose();
  const left = await a.takeType('userlist', (m) => !names(m).includes('bob'));
  assert.deepEqual(names(left), ['alice2']);
});

test('a Chat sent via one worker reaches a socket held by the other worker', T, async () => {
  const room = uniqueRoom('cross');
  const by_worker = new Map();
  // The gateway picks a worker per socket: open sockets until two workers are represented.
  for (let i = 0; i < 16 && by_worker.size < 2; i++) {
    const c = await join(room);
    if (!by_worker.has(c.status.Worker)) by_worker.set(c.status.Worker, c);
  }
  assert.equal(by_worker.size, 2, `sockets landed on only ${[...by_worker.keys()]}`);
  const [sender, receiver] = [...by_worker.values()];
  await rename(sender, 'crosser');
  const text = `over the pool: Grüße, 世界 🎉 ${Date.now()}`;
  // The shown author is the alias the server holds, whatever "Author" claims.
  sender.send({ Message: b64(text), Author: 'someone else' });

  const got = await receiver.takeType('Chat', (m) => chatText(m) === text, { what: 'cross-worker Chat' });
  assert.equal(got.Author, 'crosser');
  assert.equal(got.Room, room);
  assert.equal(got.WSID, sender.status.WSID);
  assert.ok(Number.isInteger(got.Id), `Id is an integer: ${got.Id}`);
  assert.match(got.Sent, SENT_FORMAT);

  // The sender gets the same message, with the same id.
  const own = await sender.takeType('Chat', (m) => chatText(m) === text, { what: 'own Chat' });
  assert.equal(own.Id, got.Id);
});

test('rooms are isolated', T, async () => {
  const room_a = uniqueRoom('iso-a');
  const room_b = uniqueRoom('iso-b');
  const a1 = await join(room_a);
  const a2 = await join(room_a);
  const b1 = await join(room_b);

  const text_a = 'only for room a';
  a1.send({ Message: b64(text_a), Author: 'a1' });
  await a2.takeType('Chat', (m) => chatText(m) === text_a, { what: 'room a message at a2' });

  // Room a's message was delivered before b1 speaks; the gateway delivers each socket's
  // messages in order, so had it leaked to b1 it would arrive before b1's own message.
  await say(b1, 'room b speaks');
  const leaked = b1.received.filter((m) => m.Type === 'Chat' && m.Room !== room_b);
  assert.deepEqual(leaked, []);
  assert.ok(!b1.received.some((m) => chatText(m) === text_a), 'room a text reached room b');
  assert.ok(!a2.received.some((m) => chatText(m) === 'room b speaks'), 'room b text reached room a');
});

test('history: a new socket gets the last 50 messages, oldest first', T, async () => {
  const room = uniqueRoom('history');
  const writer = await join(room);
  await rename(writer, 'writer');
  const total = 55;
  for (let i = 1; i <= total; i++) writer.send({ Message: b64(`line ${i}`), Author: 'writer' });
  await writer.takeType('Chat', (m) => chatText(m) === `line ${total}`, { what: 'last line', timeoutMs: 10000 });

  const reader = await join(room);
  // History is written when the socket opens, before anything the reader sends is handled.
  await say(reader, 'reader marker');
  const marker = reader.received.findIndex((m) => chatText(m) === 'reader marker');
  const history = reader.received.slice(0, marker).filter((m) => m.Type === 'Chat');
  assert.deepEqual(history.map(chatText), Array.from({ length: 50 }, (_, i) => `line ${i + 6}`));
  for (let i = 1; i < history.length; i++) {
    assert.ok(history[i].Id > history[i - 1].Id, 'history ids increase');
  }
  for (const m of history) {
    assert.equal(m.Room, room);
    assert.equal(m.Author, 'writer');
    assert.match(m.Sent, SENT_FORMAT);
  }
});

test('message ids increase in a room', T, async () => {
  const room = uniqueRoom('ids');
  const c = await join(room);
  const first = await say(c, 'one');
  const second = await say(c, 'two');
  assert.ok(second.Id > first.Id);
});

test('bad input gets an Error and the socket stays usable', T, async () => {
  const c = await join(uniqueRoom('bad'));
  const cases = [
    'this is not json {',
    '[1,2,3]',
    JSON.stringify({ Foo: 'bar' }),
    JSON.stringify({ Message: '%%% not base64 %%%', Author: 'x' }),
    JSON.stringify({ User: '' }),
    JSON.stringify({ User: 'x'.repeat(900) }),
  ];
  for (const input of cases) {
    c.send(input);
    const err = await c.takeType('Error', () => true, { what: `Error for ${input.slice(0, 40)}` });
    assert.equal(typeof err.Reason, 'string');
    assert.ok(err.Reason.length > 0);
  }
  await say(c, 'still here');
  assert.equal(c.close_info, undefined, 'socket still open');
});

test('the IRIS path /csp/user/Chat.Server.cls reaches the chat app', T, async () => {
  const room = uniqueRoom('iris');
  const iris = await join(room, { path: '/csp/user/Chat.Server.cls' });
  assert.match(iris.status.WSID, WSID_FORMAT);
  const plain = await join(room);
  await say(iris, 'from the IRIS path');
  const got = await plain.takeType('Chat', (m) => chatText(m) === 'from the IRIS path');
  assert.equal(got.Room, room);
});

test('room defaults to "default" without ?room=', T, async () => {
  const c = await join(null);
  const text = `default room ${Date.now()}`;
  const got = await say(c, text);
  assert.equal(got.Room, 'default');
});
