// Test harness: starts the real gateway and two real backend worker processes on free ports,
// waits until the gateway reports both workers, and tears everything down afterwards.
// Shared by the end-to-end tests (tests/e2e) and the browser test (tests/browser).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';

const READY_TIMEOUT_MS = 20000;  // cold start of three processes on a busy 2-core CI machine
const STOP_GRACE_MS = 5000;      // SIGTERM first; SIGKILL whatever is left after this
const LOG_TAIL_LINES = 60;

// Every process group and temp dir we made, so an unexpected exit of the test process still
// kills and removes them.
const live_groups = new Set();
const live_dirs = new Set();
function kill_all_groups() {
  for (const pid of live_groups) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  for (const dir of live_dirs) fs.rmSync(dir, { recursive: true, force: true });
}
process.on('exit', kill_all_groups);
// Our children are in their own process groups, so a Ctrl-C (or the runner's SIGTERM) does
// not reach them: forward it by killing them before dying.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    kill_all_groups();
    process.kill(process.pid, sig);
  });
}

// A temp dir removed at the end even if the process is interrupted; `remove` removes it now.
export function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  live_dirs.add(dir);
  return { dir, remove: () => { fs.rmSync(dir, { recursive: true, force: true }); live_dirs.delete(dir); } };
}

export function binaries() {
  const gateway = process.env.SB_GATEWAY_BIN;
  const backend = process.env.SB_BACKEND_BIN;
  for (const [name, file] of [['SB_GATEWAY_BIN', gateway], ['SB_BACKEND_BIN', backend]]) {
    if (!file) throw new Error(`${name} is not set (ctest sets it; see tests/e2e/CMakeLists.txt)`);
    fs.accessSync(file, fs.constants.X_OK);
  }
  return { gateway, backend };
}

// Ports the kernel says are free right now. All are held open together so they differ.
export async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
      servers.push(server);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

// GET a path; resolves {status, headers, body}. Bounded by timeoutMs.
export function httpGet(url, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
                                    body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

function delay(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

class Child {
  constructor(name, file, args, dir) {
    this.name = name;
    this.log_file = path.join(dir, `${name}.log`);
    const fd = fs.openSync(this.log_file, 'a');
    // Own process group: a backend may fork, and the whole group is killed at the end.
    this.proc = spawn(file, args, { cwd: dir, stdio: ['ignore', fd, fd], detached: true });
    fs.closeSync(fd);
    this.command = [file, ...args].join(' ');
    this.exit = null;
    live_groups.add(this.proc.pid);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.proc.once('error', (err) => {
        this.exit = { code: null, signal: null, error: err };
        resolve(this.exit);
      });
    });
  }

  tail(lines = LOG_TAIL_LINES) {
    let text = '';
    try { text = fs.readFileSync(this.log_file, 'utf8'); } catch { return '(no log)'; }
    return text.split('\n').slice(-lines).join('\n');
  }

  signal(sig) {
    try { process.kill(-this.proc.pid, sig); } catch { /* group already gone */ }
  }

  async stop() {
    if (this.exit === null) {
      this.signal('SIGTERM');
      let timer;
      const grace = new Promise((resolve) => { timer = setTimeout(resolve, STOP_GRACE_MS, 'timeout'); });
      const outcome = await Promise.race([this.exited, grace]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        this.signal('SIGKILL');
        await this.exited;
      }
    }
    // Forked workers may outlive the leader: make sure the group is empty.
    this.signal('SIGKILL');
    live_groups.delete(this.proc.pid);
    return this.exit;
  }
}

// Starts gateway + `workers` backend processes (each `--workers 1`, its own --worker-id,
// one shared SQLite file) and resolves once /healthz reports all of them.
export async function startStack(options = {}) {
  // gateways > 1: that many gateway processes share the port (--reuse-port), each with its own
  // pool; every worker connects to all of them.
  // ipcWorkers (one gateway only): the gateway binds an ipc:// endpoint next to its tcp:// one,
  // and the first `ipcWorkers` workers connect over it.
  const { maxMessageBytes = 1024, workers = 2, gateways = 1, logLevel = 'info', attempts = 3, gatewayArgs = [],
          ipcWorkers = 0 } = options;
  const bins = binaries();
  let last_error = null;
  // A free port can be taken between our probe and the gateway's bind: retry on new ports.
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const stack = new Stack(bins, { maxMessageBytes, workers, gateways, logLevel, gatewayArgs, ipcWorkers });
    try {
      await stack.start();
      return stack;
    } catch (err) {
      last_error = err;
      process.stderr.write(`[harness] start attempt ${attempt} failed: ${err.message}\n${stack.logs()}\n`);
      await stack.stop({ keepLogs: false });
    }
  }
  throw last_error;
}

class Stack {
  constructor(bins, opts) {
    this.bins = bins;
    this.opts = opts;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-'));
    live_dirs.add(this.dir);
    this.children = [];
    this.stopped = false;
  }

  async start() {
    const [http_port, ...pool_ports] = await freePorts(1 + this.opts.gateways);
    this.http_port = http_port;
    this.pools = pool_ports.map((p) => `tcp://127.0.0.1:${p}`);
    this.pool = this.pools[0];
    this.ipcPool = this.opts.ipcWorkers > 0 ? `ipc://${path.join(this.dir, 'pool.ipc')}` : null;
    if (this.ipcPool && this.opts.gateways !== 1) throw new Error('ipcWorkers needs exactly one gateway');
    this.httpUrl = `http://127.0.0.1:${http_port}`;
    this.wsUrl = `ws://127.0.0.1:${http_port}`;
    this.store = `sqlite:${path.join(this.dir, 'switchboard.db')}`;
    const level = this.opts.logLevel;

    const shared = this.opts.gateways > 1;
    this.gatewayIds = this.pools.map((_, i) => (shared ? `e2e-g${i + 1}` : 'e2e'));
    this.pools.forEach((pool, i) => {
      this.children.push(new Child(shared ? `gateway-${i + 1}` : 'gateway', this.bins.gateway, [
        '--listen', `127.0.0.1:${http_port}`, '--pool', this.ipcPool ? `${pool},${this.ipcPool}` : pool,
        '--gateway-id', this.gatewayIds[i],
        '--max-message-bytes', String(this.opts.maxMessageBytes), '--log-level', level,
        ...(shared ? ['--reuse-port'] : []), ...this.opts.gatewayArgs,
      ], this.dir));
    });
    for (let i = 1; i <= this.opts.workers; i++) {
      this.children.push(new Child(`backend-${i}`, this.bins.backend, [
        ...(i <= this.opts.ipcWorkers ? ['--gateway', this.ipcPool] : this.pools.flatMap((pool) => ['--gateway', pool])),
        '--workers', '1', '--worker-id', `e2e-w${i}`,
        '--store', this.store, '--log-level', level,
      ], this.dir));
    }
    await this.waitReady(READY_TIMEOUT_MS);
  }

  // Polls /healthz until it reports every worker (from every gateway: with a shared port each
  // poll reaches one of them); fails fast when a process dies.
  async waitReady(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const ready = new Set();
    let last = 'no answer yet';
    for (let pause = 20; ; pause = Math.min(pause * 2, 200)) {
      for (const c of this.children) {
        if (c.exit !== null) throw new Error(`${c.name} exited early (${JSON.stringify(c.exit)}): ${c.command}`);
      }
      try {
        const res = await httpGet(`${this.httpUrl}/healthz`, 1000);
        last = `${res.status} ${res.body}`;
        const body = JSON.parse(res.body);
        if (res.status === 200 && body.workers === this.opts.workers) ready.add(body.gateway_id);
        if (ready.size === this.gatewayIds.length) return body;
      } catch (err) {
        last = err.message;
      }
      if (Date.now() > deadline) throw new Error(`stack not ready after ${timeoutMs} ms; last /healthz: ${last}`);
      // Bounded back-off between polls; readiness itself is decided by /healthz, not by time.
      await delay(pause);
    }
  }

  logs() {
    return this.children.map((c) => `----- ${c.name} (${c.command})\n${c.tail()}`).join('\n');
  }

  // Kills every process (SIGTERM, then SIGKILL) and removes the temp dir.
  // With dumpLogs, prints each process's log tail first (use it when a test failed).
  async stop({ dumpLogs = false } = {}) {
    if (this.stopped) return;
    this.stopped = true;
    if (dumpLogs) process.stderr.write(`[harness] process logs:\n${this.logs()}\n`);
    await Promise.all(this.children.map((c) => c.stop()));
    fs.rmSync(this.dir, { recursive: true, force: true });
    live_dirs.delete(this.dir);
  }
}

// A WebSocket client that buffers what arrives so tests can wait for a matching message.
// `take` consumes the stream up to and including the first match, so later waits only see
// later messages.
export class Client {
  constructor(url, { json = true } = {}) {
    this.url = url;
    this.json = json;
    this.inbox = [];      // not yet consumed
    this.received = [];   // everything, for assertions about what never arrived
    this.waiters = [];
    this.ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 5000 });
    this.ws.binaryType = 'nodebuffer';
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (req, res) =>
        reject(new Error(`upgrade refused with HTTP ${res.statusCode}`)));
      this.ws.once('error', reject);
      this.ws.once('close', (code) => reject(new Error(`closed before open (${code})`)));
    });
    this.opened.catch(() => {});  // observed through `open()`
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.close_info = { code, reason: reason.toString() };
        resolve(this.close_info);
        this.flush();
      });
    });
    this.ws.on('error', () => {});  // surfaced through `opened`/`closed`
    this.ws.on('message', (data, isBinary) => {
      let msg;
      if (this.json && !isBinary) {
        try { msg = JSON.parse(data.toString('utf8')); } catch { msg = { unparsable: data.toString('utf8') }; }
      } else {
        msg = { binary: isBinary, data: Buffer.from(data) };
      }
      this.inbox.push(msg);
      this.received.push(msg);
      this.flush();
    });
  }

  async open() {
    await this.opened;
    return this;
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj));
  }

  sendRaw(data, { binary = false } = {}) {
    this.ws.send(data, { binary });
  }

  flush() {
    const pending = this.waiters;
    this.waiters = [];
    for (const w of pending) {
      if (!this.tryResolve(w)) this.waiters.push(w);
    }
  }

  tryResolve(w) {
    const i = this.inbox.findIndex(w.pred);
    if (i >= 0) {
      const msg = this.inbox[i];
      this.inbox.splice(0, i + 1);
      clearTimeout(w.timer);
      w.resolve(msg);
      return true;
    }
    if (this.close_info) {
      clearTimeout(w.timer);
      w.reject(new Error(`${w.what}: socket closed (${this.close_info.code} ${this.close_info.reason}) ` +
                         `before a match; unconsumed: ${describe(this.inbox)}`));
      return true;
    }
    return false;
  }

  // Resolves with the first buffered or future message matching pred.
  take(pred, { timeoutMs = 5000, what = 'message' } = {}) {
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject, what };
      if (this.tryResolve(w)) return;
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; unconsumed: ${describe(this.inbox)}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  takeType(type, pred = () => true, opts = {}) {
    return this.take((m) => m.Type === type && pred(m), { what: `${type}`, ...opts });
  }

  // Waits for the close frame; resolves {code, reason}.
  async waitClose(timeoutMs = 5000) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`socket not closed within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(code = 1000) {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
  }

  terminate() {
    this.ws.terminate();
  }
}

function describe(msgs) {
  const text = JSON.stringify(msgs.slice(-5).map((m) => (m.data ? { binary: m.binary, bytes: m.data.length } : m)));
  return msgs.length > 5 ? `${msgs.length} messages, last 5: ${text}` : text;
}

// Chat helpers.
export const b64 = (text) => Buffer.from(text, 'utf8').toString('base64');
export const unb64 = (data) => Buffer.from(String(data), 'base64').toString('utf8');
export const names = (userlist) => (userlist.Users || []).map((u) => u.Name).sort();
export const chatText = (m) => (m.Type === 'Chat' ? unb64(m.Message) : undefined);

let room_counter = 0;
// A room name no other test uses, so tests stay independent on one shared stack.
export function uniqueRoom(prefix) {
  room_counter += 1;
  return `${prefix}-${process.pid}-${room_counter}-${Math.random().toString(36).slice(2, 8)}`;
}

// Opens a chat socket (room null: no ?room=) and waits for its Status message.
export async function joinChat(stack, room, { path: urlPath = '/chat' } = {}) {
  const query = room === null ? '' : `?room=${encodeURIComponent(room)}`;
  const c = new Client(`${stack.wsUrl}${urlPath}${query}`);
  await c.open();
  c.status = await c.takeType('Status', () => true, { timeoutMs: 5000 });
  return c;
}

// Tracks closing of clients opened in a test.
export class Clients {
  constructor() { this.list = []; }
  add(c) { this.list.push(c); return c; }
  closeAll() { for (const c of this.list) c.terminate(); this.list = []; }
}
