// Smoke test of switchboard-bench: starts the real gateway and one worker on free ports, runs
// every scenario at a tiny size (a few clients, well under a second per phase) and checks that
// the JSON is well-formed and its numbers are sane. No timed assertions: speed is the bench's
// business, not ctest's. Needs SB_GATEWAY_BIN, SB_BACKEND_BIN, SB_BENCH_BIN (ctest sets them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const bins = {
  gateway: process.env.SB_GATEWAY_BIN,
  backend: process.env.SB_BACKEND_BIN,
  bench: process.env.SB_BENCH_BIN,
};

const groups = new Set();
const killAll = () => {
  for (const pid of groups) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
  }
};
process.on('exit', killAll);

async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const s = net.createServer();
      await new Promise((resolve, reject) => { s.once('error', reject); s.listen(0, '127.0.0.1', resolve); });
      servers.push(s);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function healthz(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', timeout: 1000, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch { resolve(null); } });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

function start(file, args, dir, name) {
  const fd = fs.openSync(path.join(dir, `${name}.log`), 'a');
  const proc = spawn(file, args, { cwd: dir, stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  groups.add(proc.pid);
  proc.exitInfo = null;
  proc.once('exit', (code, signal) => { proc.exitInfo = { code, signal }; });
  return proc;
}

async function stop(proc) {
  if (proc.exitInfo === null) {
    try { process.kill(-proc.pid, 'SIGTERM'); } catch { /* gone */ }
    const deadline = Date.now() + 5000;
    while (proc.exitInfo === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }
  try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* gone */ }
  groups.delete(proc.pid);
}

function runBench(args, timeoutMs) {
  return new Promise((resolve) => {
    execFile(bins.bench, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ error, stdout, stderr }));
  });
}

const positive = (v, what) => assert.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `${what} = ${v}`);
const nonNegative = (v, what) => assert.ok(typeof v === 'number' && Number.isFinite(v) && v >= 0, `${what} = ${v}`);
function saneLatency(l, what) {
  positive(l.samples, `${what}.samples`);
  positive(l.p50_us, `${what}.p50_us`);
  assert.ok(l.p99_us >= l.p50_us, `${what}: p99 ${l.p99_us} < p50 ${l.p50_us}`);
  assert.ok(l.max_us >= l.p99_us, `${what}: max ${l.max_us} < p99 ${l.p99_us}`);
}

test('switchboard-bench runs every scenario at tiny size and reports sane JSON', { timeout: 200000 }, async (t) => {
  for (const [name, file] of Object.entries(bins)) {
    assert.ok(file, `SB_${name.toUpperCase()}_BIN is not set (ctest sets it; see bench/CMakeLists.txt)`);
    fs.accessSync(file, fs.constants.X_OK);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-bench-smoke-'));
  const procs = [];
  t.after(async () => {
    for (const p of procs.reverse()) await stop(p);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // A port can be taken between the probe and the bind: retry on fresh ports.
  let httpPort = 0;
  for (let attempt = 1; attempt <= 3 && !httpPort; attempt++) {
    const [h, p] = await freePorts(2);
    const gw = start(bins.gateway, ['--listen', `127.0.0.1:${h}`, '--pool', `tcp://127.0.0.1:${p}`,
      '--gateway-id', 'smoke', '--log-level', 'warn'], dir, `gateway-${attempt}`);
    const be = start(bins.backend, ['--gateway', `tcp://127.0.0.1:${p}`, '--workers', '1', '--worker-id', 'smoke-w1',
      '--store', `sqlite:${path.join(dir, `s${attempt}.db`)}`, '--log-level', 'warn'], dir, `backend-${attempt}`);
    const deadline = Date.now() + 20000;
    let ready = false;
    for (let pause = 20; Date.now() < deadline; pause = Math.min(pause * 2, 200)) {
      if (gw.exitInfo || be.exitInfo) break;
      const h2 = await healthz(h);
      if (h2 && h2.workers >= 1) { ready = true; break; }
      await new Promise((r) => setTimeout(r, pause));
    }
    if (ready) {
      procs.push(gw, be);
      httpPort = h;
    } else {
      await stop(be);
      await stop(gw);
    }
  }
  assert.ok(httpPort, `stack did not become ready; logs in ${dir}`);

  const out = path.join(dir, 'results.json');
  const res = await runBench([
    '--url', `ws://127.0.0.1:${httpPort}`, '--label', 'smoke', '--json', '--json-out', out,
    '--duration', '0.3', '--warmup', '0.1',
    '--s1-conns', '2,4', '--s2-rooms', '2,4', '--s2-clients', '8',
    '--s3-idle', '20', '--s3-active', '2', '--s3-duration', '0.4', '--s4-rate', '200', '--s4-duration', '0.5',
    '--s4-sweep', '100,300',
    '--s5-sockets', '10', '--s5-concurrency', '5', '--s5-room-size', '2',
    '--s6-room', '10', '--s6-stalled-pct', '20',
    '--connect-timeout', '20',
    '--server-pids', procs.map((p) => p.pid).join(','), '--gateway-pid', String(procs[0].pid),
  ], 150000);
  assert.equal(res.error, null, `bench failed: ${res.error?.message}\n${res.stderr}`);
  const fromStdout = JSON.parse(res.stdout);
  const r = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.deepEqual(r, fromStdout);
  assert.equal(r.target, 'smoke');
  // io_uring where the kernel allows it (a turn's reads in one submission, its writes in
  // another); one recv / send per socket otherwise. The scenarios' counts below check that every
  // batched send went out whole.
  assert.ok(['io_uring', 'recv'].includes(r.config.reads), `config.reads: ${r.config.reads}`);
  assert.equal(r.config.writes, r.config.reads === 'io_uring' ? 'io_uring' : 'send');
  // Arrivals are timed by the kernel's receive timestamps (SO_TIMESTAMPING) by default.
  assert.equal(r.config.receive_time, 'kernel');
  assert.equal(r.engine.rx_timestamp_failures, 0);
  const s = r.scenarios;
  for (const name of ['s1', 's2', 's3', 's4', 's5', 's6'])
    assert.ok(s[name] && !s[name].error, `${name}: ${JSON.stringify(s[name])}`);

  assert.equal(s.s1.length, 2);
  for (const row of s.s1) {
    positive(row.msgs_per_s, 's1.msgs_per_s');
    saneLatency(row.latency, 's1.latency');
    nonNegative(row.server_cpu_pct, 's1.server_cpu_pct');
  }
  assert.equal(s.s2.length, 2);
  for (const row of s.s2) {
    positive(row.deliveries_per_s, 's2.deliveries_per_s');
    assert.equal(row.clients, 8);
    saneLatency(row.saturated_latency, 's2.saturated_latency');
    saneLatency(row.half_load.latency, 's2.half_load.latency');
    assert.ok(Array.isArray(row.half_load.latency_curve) && row.half_load.latency_curve.length > 5);
    // The same rate again, senders interleaved across rooms (rooms of 2 and 4 here: 4 and 2 rooms).
    assert.equal(row.half_load.order, 'by_room');
    assert.equal(row.half_load_interleaved.order, 'interleaved');
    assert.equal(row.half_load_interleaved.sends_per_s_offered, row.half_load.sends_per_s_offered);
    positive(row.half_load_interleaved.deliveries_per_s, 's2.half_load_interleaved.deliveries_per_s');
    saneLatency(row.half_load_interleaved.latency, 's2.half_load_interleaved.latency');
  }
  assert.equal(s.s3.idle_open, 20);
  positive(s.s3.without_idle.msgs_per_s, 's3.without_idle');
  positive(s.s3.with_idle.msgs_per_s, 's3.with_idle');
  // --s3-duration, not --duration (0.3 s), sets its phases (measured wall time, so roughly).
  assert.ok(s.s3.with_idle.seconds >= 0.38 && s.s3.with_idle.seconds < 1, `s3 phase ${s.s3.with_idle.seconds} s`);
  positive(s.s3.rss_after_kib, 's3.rss_after_kib');
  saneLatency(s.s4.round_trip.latency, 's4.round_trip');
  saneLatency(s.s4.fixed_rate.latency, 's4.fixed_rate');
  // 0.5 s at 200/s: 50 windows of 10 ms; the slowest 1 % is at least one sample in one window.
  // A message reaches the socket before the bench reads it: timed at the kernel, the same
  // deliveries are never later than timed at the loop (a wrong clock conversion fails here).
  saneLatency(s.s4.fixed_rate.latency_at_loop, 's4.fixed_rate.latency_at_loop');
  for (const q of ['p50_us', 'p99_us', 'max_us'])
    assert.ok(s.s4.fixed_rate.latency[q] <= s.s4.fixed_rate.latency_at_loop[q] * 1.02 + 1,
      `s4 ${q}: kernel ${s.s4.fixed_rate.latency[q]} vs loop ${s.s4.fixed_rate.latency_at_loop[q]}`);
  for (const row of s.s2) saneLatency(row.half_load.latency_at_loop, 's2.half_load.latency_at_loop');
  assert.equal(s.s4.fixed_rate.seconds_measured, 0.5);
  assert.equal(s.s4.fixed_rate.windows_10ms, 50);
  assert.ok(s.s4.fixed_rate.tail_samples >= 1, `tail_samples ${s.s4.fixed_rate.tail_samples}`);
  assert.ok(s.s4.fixed_rate.tail_windows_10ms >= 1 && s.s4.fixed_rate.tail_windows_10ms <= s.s4.fixed_rate.tail_samples,
    `tail windows ${s.s4.fixed_rate.tail_windows_10ms} of ${s.s4.fixed_rate.tail_samples} samples`);
  // --s4-sweep: one row per rate, in order, each a phase as long as the main one; every send
  // comes back (an echo), so the achieved rate is the offered one within a message or two.
  assert.deepEqual(s.s4.rate_sweep.map((row) => row.rate_offered), [100, 300]);
  for (const row of s.s4.rate_sweep) {
    saneLatency(row.latency, `s4.rate_sweep ${row.rate_offered}`);
    assert.equal(row.drained, true);
    assert.ok(Math.abs(row.latency.samples - row.rate_offered * 0.5) <= 1, `s4 sweep ${row.rate_offered}/s: ${row.latency.samples} samples`);
    assert.ok(Math.abs(row.msgs_per_s - row.rate_offered) <= 4, `s4 sweep ${row.rate_offered}/s: ${row.msgs_per_s} msgs/s`);
    nonNegative(row.server_cpu_pct, 's4.rate_sweep.server_cpu_pct');
  }
  assert.equal(s.s5.reached_first_message, 10);
  assert.equal(s.s5.first_message_was_status, 10);
  positive(s.s5.sockets_per_s, 's5.sockets_per_s');
  saneLatency(s.s5.time_to_status, 's5.time_to_status');
  assert.equal(s.s6.stalled, 2);
  positive(s.s6.all_reading.healthy_deliveries_per_s, 's6.all_reading');
  positive(s.s6.with_stalled.healthy_deliveries_per_s, 's6.with_stalled');
  positive(s.s6.rss_peak_kib, 's6.rss_peak_kib');
  assert.equal(r.engine.protocol_errors, 0);
  assert.equal(r.engine.handshake_failures, 0);
});

test('switchboard-bench --scenario host measures this machine without a target', { timeout: 60000 }, async () => {
  assert.ok(bins.bench, 'SB_BENCH_BIN is not set (ctest sets it; see bench/CMakeLists.txt)');
  const res = await runBench(['--scenario', 'host', '--label', 'host', '--host-duration', '0.3', '--json'], 30000);
  assert.equal(res.error, null, `bench failed: ${res.error?.message}\n${res.stderr}`);
  const r = JSON.parse(res.stdout);
  assert.equal(r.url, undefined, 'no target, so no URL');
  const h = r.scenarios.host;
  assert.ok(h && !h.error, JSON.stringify(h));
  // 0.3 s of 1 ms periods: each period lasts at least 1 ms, so at most 300 (a slow machine gets fewer).
  for (const [what, probe, hist] of [['handoff', h.handoff, h.handoff.wake], ['sleep', h.sleep, h.sleep.late]]) {
    assert.equal(probe.period_us, 1000);
    assert.ok(probe.seconds >= 0.3 && probe.seconds < 5, `${what}: ${probe.seconds} s`);
    assert.ok(hist.samples >= 10 && hist.samples <= 300, `${what}: ${hist.samples} samples`);
    nonNegative(hist.p50_us, `${what}.p50_us`);
    assert.ok(hist.p99_us >= hist.p50_us && hist.max_us >= hist.p99_us, `${what}: ${JSON.stringify(hist)}`);
  }
  assert.equal(h.handoff.wakeups, h.handoff.wake.samples);
  assert.ok(h.handoff.coalesced <= h.handoff.wakeups);
  assert.equal(h.sleep.wakeups, h.sleep.late.samples);
  assert.ok(h.sleep.late_over_1ms <= h.sleep.late_over_500us && h.sleep.late_over_500us <= h.sleep.wakeups);
  // One 1 ms sleep that woke 0.5 ms late is what the maximum says, or none was.
  assert.equal(h.sleep.late_over_500us > 0, h.sleep.late.max_us > 500);
  assert.equal(h.spin.threshold_us, 50);
  assert.ok(h.spin.seconds >= 0.3 && h.spin.seconds < 5, `spin: ${h.spin.seconds} s`);
  assert.ok(h.spin.gaps_over_500us <= h.spin.gaps);
  assert.ok(h.spin.lost_pct >= 0 && h.spin.lost_pct <= 100, `lost ${h.spin.lost_pct} %`);
  assert.equal(h.spin.gaps > 0, h.spin.worst_gap_us > 50, `gaps ${h.spin.gaps}, worst ${h.spin.worst_gap_us} us`);
});
