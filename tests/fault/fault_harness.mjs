// Fault-injection harness: real gateway and worker processes that a test can kill (-9), stop
// (SIGSTOP/SIGCONT), drain (SIGTERM) and replace one by one, chat clients that check every
// delivery, and read-only queries of the SQLite store.
// Builds on tests/e2e/harness.mjs (free ports, HTTP, chat helpers) without changing it.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { b64, binaries, freePorts, httpGet, names, unb64 } from '../e2e/harness.mjs';

export { b64, names, unb64 };

const READY_TIMEOUT_MS = 20000;  // cold start on a busy 2-core machine
const STOP_GRACE_MS = 5000;      // SIGTERM first, SIGKILL after this
const LOG_TAIL_LINES = 80;

// Every process we started and every temp dir, so an abnormal exit still cleans up.
const live_procs = new Set();
const live_dirs = new Set();
function kill_everything() {
  for (const p of live_procs) p.kill_now();
  for (const dir of live_dirs) fs.rmSync(dir, { recursive: true, force: true });
}
process.on('exit', kill_everything);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    kill_everything();
    process.kill(process.pid, sig);
  });
}

export function delay(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Resolves with the promise's value, or rejects after timeoutMs naming `what`.
export async function within(promise, timeoutMs, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Polls check() (sync or async; truthy = done) with a bounded back-off until it holds or the
// deadline passes. For state that announces no event of its own (/healthz, the store).
export async function pollUntil(check, { timeoutMs = 10000, what = 'condition', minPause = 20, maxPause = 200,
                                         describe = null } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last_error = null;
  for (let pause = minPause; ; pause = Math.min(pause * 2, maxPause)) {
    try {
      const value = await check();
      if (value) return value;
      last_error = null;
    } catch (err) {
      if (err.fatal) throw err;
      last_error = err;
    }
    if (Date.now() >= deadline) {
      const extra = describe ? `; ${await Promise.resolve(describe()).catch((e) => e.message)}` : '';
      throw new Error(`${what}: not within ${timeoutMs} ms${last_error ? ` (last error: ${last_error.message})` : ''}${extra}`);
    }
    await delay(Math.min(pause, Math.max(1, deadline - Date.now())));
  }
}

// One real process, signalled by its pid (backends run with --workers 1: no children).
export class Proc {
  constructor(name, file, args, dir) {
    this.name = name;
    this.args = args;
    this.log_file = path.join(dir, `${name}.log`);
    const fd = fs.openSync(this.log_file, 'a');
    this.proc = spawn(file, args, { cwd: dir, stdio: ['ignore', fd, fd], detached: true });
    fs.closeSync(fd);
    this.pid = this.proc.pid;
    this.command = [file, ...args].join(' ');
    this.exit = null;
    this.started_at = Date.now();
    live_procs.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal, at: Date.now() };
        live_procs.delete(this);
        resolve(this.exit);
      });
      this.proc.once('error', (err) => {
        this.exit = { code: null, signal: null, error: err.message, at: Date.now() };
        live_procs.delete(this);
        resolve(this.exit);
      });
    });
  }

  get alive() { return this.exit === null; }

  signal(sig) {
    if (this.exit !== null) return false;
    try { process.kill(this.pid, sig); return true; } catch { return false; }
  }

  kill_now() {
    this.signal('SIGCONT');
    this.signal('SIGKILL');
  }

  waitExit(timeoutMs, what = `${this.name} exit`) {
    return within(this.exited, timeoutMs, what);
  }

  tail(lines = LOG_TAIL_LINES) {
    let text = '';
    try { text = fs.readFileSync(this.log_file, 'utf8'); } catch { return '(no log)'; }
    return text.split('\n').slice(-lines).join('\n');
  }

  log() {
    try { return fs.readFileSync(this.log_file, 'utf8'); } catch { return ''; }
  }

  // SIGCONT first: a stopped process would keep SIGTERM pending forever.
  async stop() {
    if (this.exit === null) {
      this.signal('SIGCONT');
      this.signal('SIGTERM');
      try {
        await this.waitExit(STOP_GRACE_MS);
      } catch {
        this.signal('SIGKILL');
        await this.exited;
      }
    }
    return this.exit;
  }
}

// Gateway + N workers (`--workers 1` each, own --worker-id, one SQLite file), on free ports.
// Processes are kept by name so tests can kill, stop, drain and replace them.
export async function startFaultStack(options = {}) {
  const bins = binaries();
  let last_error = null;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const stack = new FaultStack(bins, options);
    try {
      await stack.start();
      return stack;
    } catch (err) {
      last_error = err;
      process.stderr.write(`[fault] start attempt ${attempt} failed: ${err.message}\n${stack.logs()}\n`);
      await stack.stop();
    }
  }
  throw last_error;
}

export class FaultStack {
  constructor(bins, { workers = 2, gatewayId = 'fault', logLevel = 'info', gatewayArgs = [], backendArgs = [],
                      maxMessageBytes = 4096 } = {}) {
    this.bins = bins;
    this.worker_count = workers;
    this.gateway_id = gatewayId;
    this.log_level = logLevel;
    this.gateway_args = gatewayArgs;
    this.backend_args = backendArgs;
    this.max_message_bytes = maxMessageBytes;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-fault-'));
    live_dirs.add(this.dir);
    this.db_path = path.join(this.dir, 'switchboard.db');
    this.procs = [];           // every process ever started, for logs and cleanup
    this.gateway = null;
    this.workers = new Map();  // worker id -> Proc, the current ones
    this.gateway_starts = 0;
    this.stopped = false;
  }

  async start() {
    const [http_port, pool_port] = await freePorts(2);
    this.http_port = http_port;
    this.pool = `tcp://127.0.0.1:${pool_port}`;
    this.httpUrl = `http://127.0.0.1:${http_port}`;
    this.wsUrl = `ws://127.0.0.1:${http_port}`;
    this.startGateway();
    for (let i = 1; i <= this.worker_count; i++) this.startWorker(`${this.gateway_id}-w${i}`);
    await this.waitWorkers(this.worker_count, READY_TIMEOUT_MS);
  }

  // (Re)starts the gateway on this stack's ports; the old one must be gone.
  startGateway() {
    this.gateway_starts += 1;
    const name = this.gateway_starts === 1 ? 'gateway' : `gateway-${this.gateway_starts}`;
    this.gateway = new Proc(name, this.bins.gateway, [
      '--listen', `127.0.0.1:${this.http_port}`, '--pool', this.pool, '--gateway-id', this.gateway_id,
      '--max-message-bytes', String(this.max_message_bytes), '--log-level', this.log_level, ...this.gateway_args,
    ], this.dir);
    this.procs.push(this.gateway);
    return this.gateway;
  }

  startWorker(id) {
    const proc = new Proc(`backend-${id}`, this.bins.backend, [
      '--gateway', this.pool, '--workers', '1', '--worker-id', id, '--store', `sqlite:${this.db_path}`,
      '--log-level', this.log_level, ...this.backend_args,
    ], this.dir);
    proc.worker_id = id;
    this.workers.set(id, proc);
    this.procs.push(proc);
    return proc;
  }

  // GET /healthz: {status, body} with body parsed (null if unparsable).
  async healthz(timeoutMs = 1000) {
    const res = await httpGet(`${this.httpUrl}/healthz`, timeoutMs);
    let body = null;
    try { body = JSON.parse(res.body); } catch { /* keep null */ }
    return { status: res.status, body, raw: res.body, took_ms: null };
  }

  async counters() {
    const h = await this.healthz();
    // Top-level gauges next to the counters: sockets closed whose CLOSE no worker took yet.
    const extra = {};
    for (const name of ['closed_pending', 'workers', 'sockets']) {
      if (typeof h.body?.[name] === 'number') extra[name] = h.body[name];
    }
    return { ...(h.body?.counters ?? {}), ...extra };
  }

  // Until /healthz reports exactly `count` live workers; fails fast if the gateway died.
  async waitWorkers(count, timeoutMs = 10000) {
    let last = 'no answer yet';
    return pollUntil(async () => {
      if (this.gateway && !this.gateway.alive) {
        throw Object.assign(new Error(`gateway exited (${JSON.stringify(this.gateway.exit)})`), { fatal: true });
      }
      const h = await this.healthz();
      last = h.raw;
      return h.body && h.body.workers === count ? h.body : null;
    }, { timeoutMs, what: `/healthz workers == ${count}`, describe: () => `last /healthz: ${last}` });
  }

  // Read-only query of the chat store through the sqlite3 CLI; rows as arrays of strings.
  query(sql) {
    return new Promise((resolve, reject) => {
      execFile('sqlite3', ['-readonly', '-batch', '-noheader', '-separator', '\t', '-cmd', '.timeout 3000',
                           this.db_path, sql],
               { timeout: 10000 }, (err, stdout, stderr) => {
                 if (err) return reject(new Error(`sqlite3 failed: ${err.message} ${stderr}`));
                 resolve(stdout.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t')));
               });
    });
  }

  async members() {
    const rows = await this.query('SELECT wsid, room, alias FROM members ORDER BY room, joined');
    return rows.map(([wsid, room, alias]) => ({ wsid, room, alias }));
  }

  // SIGTERM every current worker at once (each drains; nobody is left to take sockets over,
  // so no take-over inflates the figures), waits for their exits and reads the counters line
  // each prints when it stops. Returns {exits, per_worker, total}; a worker without the line
  // (killed, or an older build) is missing from per_worker.
  async stopWorkersForCounters(timeoutMs = 10000) {
    const workers = [...this.workers.values()].filter((w) => w.alive);
    for (const w of workers) { w.signal('SIGCONT'); w.signal('SIGTERM'); }
    const exits = {};
    const per_worker = {};
    const total = {};
    for (const w of workers) {
      try {
        const exit = await w.waitExit(timeoutMs);
        exits[w.worker_id] = exit.code ?? exit.signal;
      } catch (err) {
        exits[w.worker_id] = err.message;
      }
      const lines = w.log().split('\n').filter((l) => l.includes('counters: '));
      if (lines.length === 0) continue;
      const values = {};
      for (const [, k, v] of lines[lines.length - 1].matchAll(/(\w+)=(\d+)/g)) values[k] = Number(v);
      per_worker[w.worker_id] = values;
      for (const [k, v] of Object.entries(values)) total[k] = (total[k] ?? 0) + v;
    }
    return { exits, per_worker, total };
  }

  logs() {
    return this.procs.map((p) => `----- ${p.name} (pid ${p.pid}, exit ${JSON.stringify(p.exit)}) ${p.command}\n${p.tail()}`)
      .join('\n');
  }

  async stop({ dumpLogs = false } = {}) {
    if (this.stopped) return;
    this.stopped = true;
    if (dumpLogs || process.env.SB_FAULT_DUMP_LOGS) process.stderr.write(`[fault] process logs:\n${this.logs()}\n`);
    await Promise.all(this.procs.map((p) => p.stop()));
    fs.rmSync(this.dir, { recursive: true, force: true });
    live_dirs.delete(this.dir);
  }
}

// ---------------------------------------------------------------------------------------------
// Chat clients that account for every delivery.
//
// A load message's text is "ft|<sender WSID>|<n>" with n = 1, 2, ... per sender socket, so each
// receiver can tell loss, duplication and reordering per sender.

const TAG = 'ft';

export class ChatPeer {
  constructor(hub, room, alias, { reconnect = false } = {}) {
    this.hub = hub;
    this.room = room;
    this.alias = alias;
    this.reconnect = reconnect;
    this.ws = null;
    this.wsid = null;             // current socket's WSID (from Status)
    this.worker = null;           // worker named in Status
    this.wsids = [];              // every WSID this peer had, oldest first
    this.closes = [];             // {code, reason, at, wsid}
    this.errors = [];             // server Error messages
    this.statuses = 0;            // Status messages received (one per connection expected)
    this.userlist = null;         // names of the last userlist, sorted
    this.userlists = 0;
    this.sent = new Map();        // own wsid -> last counter sent
    this.got = new Map();         // sender wsid -> counters in arrival order
    this.distinct = 0;            // distinct (sender, n) received
    this.seen = new Set();        // "wsid|n"
    this.contig = new Map();      // sender wsid -> highest n with 1..n all received
    this.ids = new Map();         // chat Id -> times received
    this.stopped = false;
    this.connecting = null;
  }

  url() { return `${this.hub.wsUrl}/chat?room=${encodeURIComponent(this.room)}`; }

  // Opens a socket and resolves when its Status arrived.
  connect(timeoutMs = 5000) {
    if (this.connecting) return this.connecting;
    this.connecting = new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url(), { perMessageDeflate: false, handshakeTimeout: timeoutMs });
      this.ws = ws;
      let settled = false;
      let established = false;  // got its Status: a later close is a disconnect
      const timer = setTimeout(() => finish(new Error(`${this.alias}: no Status within ${timeoutMs} ms`)), timeoutMs);
      const finish = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.connecting = null;
        if (err) {
          ws.terminate();
          reject(err);
        } else {
          resolve(this);
        }
      };
      ws.on('error', (err) => finish(err));
      ws.on('message', (data, isBinary) => {
        if (isBinary) return this.hub.problem(`${this.alias}: unexpected binary message`);
        let msg;
        try { msg = JSON.parse(data.toString('utf8')); } catch { return this.hub.problem(`${this.alias}: bad JSON`); }
        if (msg.Type === 'Status') {
          this.statuses += 1;
          if (!settled) {
            this.wsid = msg.WSID;
            this.worker = msg.Worker;
            this.wsids.push(msg.WSID);
            established = true;
            finish(null);
          } else {
            this.hub.problem(`${this.alias}: second Status on one socket (${msg.WSID}, worker ${msg.Worker})`);
          }
        }
        this.onMessage(msg);
      });
      ws.on('close', (code, reason) => {
        const info = { code, reason: reason.toString(), at: Date.now(), wsid: this.wsid };
        if (established) this.closes.push(info);
        finish(new Error(`${this.alias}: closed before Status (${code})`));
        this.hub.changed();
        // Failed attempts are retried by redial's own loop.
        if (established && this.reconnect && !this.stopped && ws === this.ws) this.redial();
      });
    });
    return this.connecting;
  }

  // Reconnects with a short doubling pause between attempts (pacing, not synchronisation).
  async redial() {
    for (let pause = 100; !this.stopped; pause = Math.min(pause * 2, 1000)) {
      await delay(pause);
      if (this.stopped) return;
      try {
        await this.connect();
        this.setAlias(this.alias);
        this.hub.changed();
        return;
      } catch { /* retry */ }
    }
  }

  get open() { return this.ws && this.ws.readyState === WebSocket.OPEN && this.wsid !== null; }

  onMessage(msg) {
    if (msg.Type === 'userlist') {
      this.userlist = names(msg);
      this.userlists += 1;
    } else if (msg.Type === 'Error') {
      this.errors.push(msg.Reason);
    } else if (msg.Type === 'Chat') {
      const text = unb64(msg.Message);
      const parts = text.split('|');
      if (parts[0] === TAG && parts.length === 3) {
        const [, sender, n_text] = parts;
        const n = Number(n_text);
        if (msg.WSID !== sender) this.hub.problem(`${this.alias}: Chat WSID ${msg.WSID} != sender in text ${sender}`);
        if (msg.Room !== this.room) this.hub.problem(`${this.alias}: Chat from room ${msg.Room} in ${this.room}`);
        let list = this.got.get(sender);
        if (!list) this.got.set(sender, (list = []));
        list.push(n);
        const key = `${sender}|${n}`;
        if (!this.seen.has(key)) {
          this.seen.add(key);
          this.distinct += 1;
          this.hub.distinct += 1;
          let c = this.contig.get(sender) ?? 0;
          while (this.seen.has(`${sender}|${c + 1}`)) c += 1;
          this.contig.set(sender, c);
        }
        this.ids.set(msg.Id, (this.ids.get(msg.Id) ?? 0) + 1);
        this.hub.deliveries += 1;
      }
    }
    this.hub.changed();
  }

  send(obj) {
    if (this.open) this.ws.send(JSON.stringify(obj));
  }

  setAlias(alias) {
    this.alias = alias;
    this.send({ User: alias });
  }

  // Sends the next load message; false if the socket is not open (nothing is counted then).
  sendNext() {
    if (!this.open) return false;
    const n = (this.sent.get(this.wsid) ?? 0) + 1;
    this.sent.set(this.wsid, n);
    this.ws.send(JSON.stringify({ Message: b64(`${TAG}|${this.wsid}|${n}`), Author: this.alias }));
    this.hub.sent_total += 1;
    return true;
  }

  close() {
    this.stopped = true;
    if (this.ws) this.ws.terminate();
  }
}

// A set of peers spread over rooms, a steady sender, and event-driven waits on their state.
export class ChatHub {
  constructor(stack) {
    this.stack = stack;
    this.peers = [];
    this.waiters = [];
    this.problems = [];
    this.sent_total = 0;
    this.deliveries = 0;
    this.distinct = 0;
    this.ticker = null;
    this.check_scheduled = null;
  }

  get wsUrl() { return this.stack.wsUrl; }

  problem(text) {
    if (this.problems.length < 50) this.problems.push(text);
  }

  // Re-checks the waits soon; called on every message and close. Coalesced so a burst of
  // deliveries costs one evaluation.
  changed() {
    if (this.waiters.length === 0 || this.check_scheduled) return;
    this.check_scheduled = setTimeout(() => {
      this.check_scheduled = null;
      this.checkWaiters();
    }, 5);
  }

  checkWaiters() {
    const pending = this.waiters;
    this.waiters = [];
    for (const w of pending) {
      let done = false;
      try { done = w.check(); } catch (err) { clearTimeout(w.timer); w.reject(err); continue; }
      if (done) {
        clearTimeout(w.timer);
        w.resolve(done);
      } else {
        this.waiters.push(w);
      }
    }
  }

  // Resolves once check() holds (evaluated now and after every message/close).
  until(check, { timeoutMs = 10000, what = 'condition', describe = null } = {}) {
    return new Promise((resolve, reject) => {
      const now = check();
      if (now) return resolve(now);
      const w = { check, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${what}: not within ${timeoutMs} ms${describe ? `; ${describe()}` : ''}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  // rooms x perRoom peers; aliases "<tag>-r<k>-c<i>". Connects in small batches, sets aliases and
  // waits until every peer's userlist shows exactly its room.
  async populate({ rooms = 5, perRoom = 20, tag = 'ld', reconnect = false, timeoutMs = 30000 } = {}) {
    const suffix = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
    this.rooms = [];
    for (let k = 0; k < rooms; k++) {
      const room = `${tag}-${k}-${suffix}`;
      this.rooms.push(room);
      for (let i = 0; i < perRoom; i++) this.peers.push(new ChatPeer(this, room, `${tag}-r${k}-c${i}`, { reconnect }));
    }
    const batch = 10;
    for (let i = 0; i < this.peers.length; i += batch) {
      await Promise.all(this.peers.slice(i, i + batch).map((p) => p.connect()));
    }
    for (const p of this.peers) p.setAlias(p.alias);
    this.natural_convergence = await this.settleUserlists({ timeoutMs, what: 'initial userlists' });
  }

  // Waits until the store holds exactly the live peers under their aliases, then until every
  // userlist shows them. Lists published concurrently by two workers can reach the gateway out
  // of order (a known chat-app race: the last list delivered may be an older read of the
  // store), so if they do not converge on their own within a second, one peer per room
  // re-announces its alias: a single fresh list per room. Resolves true if they converged
  // without that help.
  async settleUserlists({ timeoutMs = 15000, what = 'userlists' } = {}) {
    const want = () => this.peers.filter((p) => !p.stopped && this.rooms.includes(p.room))
      .map((p) => `${p.room} ${p.wsid} ${p.alias}`).sort();
    let last = [];
    await pollUntil(async () => {
      const ours = new Set(this.rooms);
      last = (await this.stack.members()).filter((m) => ours.has(m.room)).map((m) => `${m.room} ${m.wsid} ${m.alias}`).sort();
      return JSON.stringify(last) === JSON.stringify(want());
    }, { timeoutMs, what: `${what}: store members`, describe: () => {
      const w = new Set(want());
      const l = new Set(last);
      const extra = [...l].filter((x) => !w.has(x));
      // Whose socket was an extra row? Its history helps tell a lost close from a stale epoch.
      const owners = extra.slice(0, 3).map((row) => {
        const wsid = row.split(' ')[1];
        const p = this.peers.find((q) => q.wsids.includes(wsid));
        return p ? `${wsid} was ${p.alias}'s (sockets ${JSON.stringify(p.wsids)}, closes ${JSON.stringify(p.closes)})` : `${wsid}: no peer had it`;
      });
      return `missing ${JSON.stringify([...w].filter((x) => !l.has(x)).slice(0, 5))}, ` +
             `extra (${extra.length}) ${JSON.stringify(extra.slice(0, 5))}; ${owners.join('; ')}`;
    } });
    try {
      await this.waitUserlistsConverged({ timeoutMs: 1000, what });
      return true;
    } catch {
      for (const room of this.rooms) {
        const p = this.roomPeers(room).find((q) => !q.stopped);
        if (p) p.setAlias(p.alias);
      }
      await this.waitUserlistsConverged({ timeoutMs, what });
      return false;
    }
  }

  roomPeers(room) { return this.peers.filter((p) => p.room === room); }

  expectedNames(room) {
    return this.roomPeers(room).filter((p) => !p.stopped).map((p) => p.alias).sort();
  }

  // Every live peer's latest userlist equals its room's live aliases.
  userlistsConverged() {
    for (const p of this.peers) {
      if (p.stopped) continue;
      const want = this.expectedNames(p.room);
      if (!p.userlist || p.userlist.length !== want.length || p.userlist.some((n, i) => n !== want[i])) return false;
    }
    return true;
  }

  describeUserlists() {
    const bad = this.peers.filter((p) => !p.stopped).filter((p) => {
      const want = this.expectedNames(p.room);
      return !p.userlist || JSON.stringify(p.userlist) !== JSON.stringify(want);
    });
    if (bad.length === 0) return 'all converged';
    const p = bad[0];
    return `${bad.length} peers differ; e.g. ${p.alias} has ${JSON.stringify(p.userlist)}, want ` +
           `${JSON.stringify(this.expectedNames(p.room))}`;
  }

  waitUserlistsConverged({ timeoutMs = 15000, what = 'userlists converged' } = {}) {
    return this.until(() => this.userlistsConverged(), { timeoutMs, what, describe: () => this.describeUserlists() });
  }

  // One message per tick from the next peer, round-robin: `rate` messages/s in total.
  startLoad(rate = 100) {
    const interval = 10;
    const per_tick = rate * interval / 1000;
    let budget = 0;
    let next = 0;
    this.ticker = setInterval(() => {
      budget += per_tick;
      while (budget >= 1) {
        budget -= 1;
        for (let tries = 0; tries < this.peers.length; tries++) {
          const p = this.peers[next];
          next = (next + 1) % this.peers.length;
          if (!p.stopped && p.sendNext()) break;
        }
      }
    }, interval);
  }

  stopLoad() {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
  }

  // Until the load has sent `count` more messages than now.
  waitSent(count, timeoutMs) {
    const target = this.sent_total + count;
    return this.until(() => this.sent_total >= target, {
      timeoutMs, what: `${count} more messages sent`, describe: () => `sent ${this.sent_total} of ${target}` });
  }

  // Until every live peer has, from every sender of its room, all messages sent so far.
  waitDeliveredSoFar(timeoutMs = 15000, what = 'messages sent so far delivered') {
    const snapshot = new Map();  // sender wsid -> n
    for (const p of this.peers) for (const [wsid, n] of p.sent) snapshot.set(wsid, n);
    const lagging = () => {
      for (const p of this.peers) {
        if (p.stopped) continue;
        for (const q of this.roomPeers(p.room)) {
          for (const wsid of q.sent.keys()) {
            const want = snapshot.get(wsid) ?? 0;
            if ((p.contig.get(wsid) ?? 0) < want) return `${p.alias} has ${wsid} up to #${p.contig.get(wsid) ?? 0} of #${want}`;
          }
        }
      }
      return null;
    };
    return this.until(() => lagging() === null, { timeoutMs, what, describe: () => lagging() ?? 'done' });
  }

  // (sender wsid, n) pairs every member of a room must get: all sent by its peers (any socket).
  expectedPerPeer(p) {
    let total = 0;
    for (const q of this.roomPeers(p.room)) for (const n of q.sent.values()) total += n;
    return total;
  }

  expectedDistinct() {
    let total = 0;
    for (const p of this.peers) if (!p.stopped) total += this.expectedPerPeer(p);
    return total;
  }

  // Every live peer has every message of its room at least once.
  waitAllDelivered(timeoutMs = 30000) {
    const want = this.expectedDistinct();
    return this.until(() => {
      // A disconnected peer will not get the rest: fail now instead of at the deadline.
      const gone = this.peers.find((p) => !p.stopped && !p.reconnect && p.closes.length > 0);
      if (gone) throw new Error(`every message delivered: ${gone.alias} was disconnected ${JSON.stringify(gone.closes[0])}`);
      let have = 0;
      for (const p of this.peers) if (!p.stopped) have += p.distinct;
      return have >= want;
    }, { timeoutMs, what: 'every message delivered to every member',
         describe: () => {
           let have = 0;
           for (const p of this.peers) if (!p.stopped) have += p.distinct;
           return `${have} of ${want} distinct deliveries`;
         } });
  }

  // Compares what each peer got with what its room's peers sent.
  audit() {
    const result = { expected: 0, received: 0, lost: 0, duplicated: 0, reordered: 0, unknown: 0,
                     duplicate_ids: 0, examples: [] };
    const example = (text) => { if (result.examples.length < 10) result.examples.push(text); };
    for (const p of this.peers) {
      if (p.stopped) continue;
      const room_senders = new Map();
      for (const q of this.roomPeers(p.room)) for (const [wsid, n] of q.sent) room_senders.set(wsid, n);
      for (const [sender, list] of p.got) {
        if (!room_senders.has(sender)) {
          result.unknown += list.length;
          example(`${p.alias} got ${list.length} messages from unknown sender ${sender}`);
        }
      }
      for (const [sender, sent] of room_senders) {
        const list = p.got.get(sender) ?? [];
        result.expected += sent;
        result.received += list.length;
        const counts = new Map();
        for (const n of list) counts.set(n, (counts.get(n) ?? 0) + 1);
        for (let n = 1; n <= sent; n++) {
          const c = counts.get(n) ?? 0;
          if (c === 0) {
            result.lost += 1;
            example(`${p.alias} never got ${sender}#${n}`);
          } else if (c > 1) {
            result.duplicated += c - 1;
            example(`${p.alias} got ${sender}#${n} ${c} times`);
          }
        }
        // Order: the first arrivals must be increasing.
        let last = 0;
        const firsts = new Set();
        for (const n of list) {
          if (firsts.has(n)) continue;
          firsts.add(n);
          if (n < last) {
            result.reordered += 1;
            example(`${p.alias} got ${sender}#${n} after #${last}`);
          }
          last = Math.max(last, n);
        }
      }
      for (const [id, c] of p.ids) {
        if (c > 1) {
          result.duplicate_ids += c - 1;
          example(`${p.alias} got chat Id ${id} ${c} times`);
        }
      }
    }
    return result;
  }

  disconnected() { return this.peers.filter((p) => p.closes.length > 0); }

  close() {
    this.stopLoad();
    for (const p of this.peers) p.close();
    for (const w of this.waiters) { clearTimeout(w.timer); w.reject(new Error('hub closed')); }
    this.waiters = [];
    if (this.check_scheduled) clearTimeout(this.check_scheduled);
    this.check_scheduled = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Figures for the lead's note: printed, and appended as JSON lines to $SB_FAULT_FIGURES.

export const COUNTER_NAMES = ['events_resent', 'sessions_moved', 'duplicates_suppressed', 'acks_ignored',
                              'closed_pending', 'orphan_closes_dropped', 'failover_detect_ms_last', 'loop_drift_max_ms',
                              'loop_drift_last_ms', 'workers_lost', 'workers_drained', 'gone_sent', 'messages_in'];

// Worker-side figures from the counters line workers print when they stop.
export const WORKER_COUNTER_NAMES = ['messages', 'duplicates', 'resumes', 'opens', 'closes', 'close_acks', 'forgotten',
                                     'purged_stale', 'purged_lost', 'unknown_wsids', 'app_errors', 'outbox_drops',
                                     'bodies_dropped'];

export function pickWorkerCounters(total) {
  const out = {};
  for (const name of WORKER_COUNTER_NAMES) out[`worker_${name}`] = total?.[name];
  return out;
}

export function figure(value) {
  return value === undefined || value === null ? 'n/a' : value;
}

export function report(test_name, figures) {
  const shown = Object.entries(figures).map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : figure(v)}`);
  console.log(`[fault figures] ${test_name}: ${shown.join(' ')}`);
  const file = process.env.SB_FAULT_FIGURES;
  if (file) {
    try {
      fs.appendFileSync(file, `${JSON.stringify({ test: test_name, at: new Date().toISOString(), ...figures })}\n`);
    } catch { /* figures are informative only */ }
  }
}

// Picks the named counters (absent ones become undefined, printed as n/a).
export function pickCounters(counters) {
  const out = {};
  for (const name of COUNTER_NAMES) out[name] = counters?.[name];
  return out;
}

// The worker that holds most of the hub's sockets (by the worker named in their Status).
export function busiestWorker(hub) {
  const counts = new Map();
  for (const p of hub.peers) counts.set(p.worker, (counts.get(p.worker) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0];
}
