// Origin for the Pushpin peer: speaks Pushpin's WebSocket-over-HTTP (GRIP) protocol, no npm deps.
// Pushpin holds the client sockets and POSTs batches of socket events here; the reply carries
// the events to send back. Same semantics as Switchboard's apps:
//   /echo               each TEXT/BINARY back to its sender (in the HTTP reply)
//   /broadcast?room=R   OPEN subscribes the socket to channel R (GRIP control message);
//                       each message is published to R through Pushpin's publish endpoint,
//                       batched per event-loop turn (one publish request per batch)
//   /chat?room=R        a Status message on OPEN, then like /broadcast
// Usage: node grip-backend.mjs --port N --publish http://127.0.0.1:P/publish/
import http from 'node:http';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const port = Number(arg('--port', '0'));
const publishUrl = new URL(arg('--publish', 'http://127.0.0.1:5561/publish/'));
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

// Parses "TYPE[ hexlen]\r\n[content\r\n]" events.
function parseEvents(buf) {
  const events = [];
  let at = 0;
  while (at < buf.length) {
    const eol = buf.indexOf('\r\n', at);
    if (eol < 0) break;
    const line = buf.toString('latin1', at, eol);
    const sp = line.indexOf(' ');
    const type = sp < 0 ? line : line.slice(0, sp);
    at = eol + 2;
    let content = null;
    if (sp >= 0) {
      const len = parseInt(line.slice(sp + 1), 16);
      content = buf.subarray(at, at + len);
      at += len + 2;
    }
    events.push({ type, content });
  }
  return events;
}

function event(type, content) {
  if (content === undefined) return Buffer.from(`${type}\r\n`);
  const body = Buffer.isBuffer(content) ? content : Buffer.from(content);
  return Buffer.concat([Buffer.from(`${type} ${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n')]);
}

let pending = [];  // publish items of this turn
let scheduled = false;
let publishErrors = 0;
function publish(channel, content, binary) {
  const format = binary ? { 'content-bin': content.toString('base64') } : { content: content.toString('utf8') };
  pending.push({ channel, formats: { 'ws-message': format } });
  if (!scheduled) {
    scheduled = true;
    setImmediate(flushPublish);
  }
}
function flushPublish() {
  scheduled = false;
  const items = pending;
  pending = [];
  const body = JSON.stringify({ items });
  const req = http.request(publishUrl, {
    method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  }, (res) => {
    if (res.statusCode !== 200) publishErrors++;
    res.resume();
  });
  req.on('error', () => { publishErrors++; });
  req.end(body);
}

let counter = 0;
const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', publishErrors }));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://x');
    const room = url.searchParams.get('room') || 'default';
    const app = url.pathname;
    const out = [];
    const headers = { 'content-type': 'application/websocket-events' };
    for (const ev of parseEvents(Buffer.concat(chunks))) {
      switch (ev.type) {
        case 'OPEN':
          headers['sec-websocket-extensions'] = 'grip';
          out.push(event('OPEN'));
          if (app === '/chat')
            out.push(event('TEXT', 'm:' + JSON.stringify({ Type: 'Status', WSID: `pushpin.${++counter}`, Worker: 'grip' })));
          if (app === '/broadcast' || app === '/chat')
            out.push(event('TEXT', 'c:' + JSON.stringify({ type: 'subscribe', channel: room })));
          break;
        case 'TEXT':
        case 'BINARY':
          // With the grip extension on, Pushpin drops messages without the "m:" prefix.
          if (app === '/echo') out.push(event(ev.type, Buffer.concat([Buffer.from('m:'), ev.content])));
          else publish(room, ev.content, ev.type === 'BINARY');
          break;
        case 'CLOSE':
          out.push(event('CLOSE', ev.content ?? Buffer.alloc(0)));
          break;
        case 'PING':
          out.push(event('PONG'));
          break;
        default:
          break;  // PONG, DISCONNECT
      }
    }
    // Pushpin drops events sent with chunked encoding: give the length.
    const body = Buffer.concat(out);
    headers['content-length'] = body.length;
    res.writeHead(200, headers);
    res.end(body);
  });
});
server.keepAliveTimeout = 120000;
// A deep accept backlog: a connect storm reaches us as a burst of OPEN requests.
server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => process.stdout.write(`listening 127.0.0.1:${server.address().port}\n`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
