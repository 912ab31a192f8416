// Peer for the benchmark: a plain Node `ws` server with the same semantics as Switchboard's
// apps, in one process (one hop less than gateway + worker):
//   /echo                 each message back to its sender
//   /broadcast?room=R     each message, byte for byte, to every socket in room R (sender too)
//   /chat?room=R          a Status message on connect (for the connect storm), then like /broadcast
// Usage: node ws-server.mjs --port N [--host 127.0.0.1]
import http from 'node:http';
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const port = Number(arg('--port', '0'));
const host = arg('--host', '127.0.0.1');

const rooms = new Map();  // room name -> Set of sockets
let counter = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', sockets: wss.clients.size }));
    return;
  }
  res.writeHead(404);
  res.end();
});
// Same limits as Switchboard's defaults: 64 KiB messages, no compression.
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024, clientTracking: true });

function join(ws, room) {
  let members = rooms.get(room);
  if (!members) rooms.set(room, (members = new Set()));
  members.add(ws);
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0) rooms.delete(room);
  });
  ws.on('message', (data, isBinary) => {
    for (const member of members) member.send(data, { binary: isBinary });
  });
}

wss.on('connection', (ws, req) => {
  const url = new URL(req.url, 'http://x');
  const room = url.searchParams.get('room') || 'default';
  switch (url.pathname) {
    case '/echo':
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      break;
    case '/broadcast':
      join(ws, room);
      break;
    case '/chat':
      ws.send(JSON.stringify({ Type: 'Status', WSID: `node.${++counter}`, Worker: 'node' }));
      join(ws, room);
      break;
    default:
      ws.close(1008, 'no app');
  }
});

server.listen({ port, host, backlog: 4096 }, () => {
  process.stdout.write(`listening ${host}:${server.address().port}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
