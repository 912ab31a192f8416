// Builds the benchmark report from a results directory written by bench/run.sh:
// <target>.json (switchboard-bench --json-out) and meta.json in; results.json, REPORT.md and
// PNG plots (gnuplot, if installed) out. notes.md in the directory, if present, is appended.
// Usage: node bench/report.mjs DIR
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node report.mjs RESULTS_DIR');
  process.exit(2);
}
const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8'));
const order = ['switchboard-1w', 'switchboard-2w', 'node-ws', 'pushpin'];
// run.sh --rounds N writes <target>[-s3].rK.json for rounds K = 1..N (targets interleaved round by
// round); a single-round run writes <target>[-s3].json, read as round 1.
const byRound = {};
for (const f of fs.readdirSync(dir)) {
  if (!f.endsWith('.json') || f === 'meta.json' || f === 'results.json' || f.startsWith('host-')) continue;
  try {
    const r = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    if (!r || !r.scenarios) continue;
    const round = Number(f.match(/\.r(\d+)\.json$/)?.[1] ?? 1);
    const set = (byRound[round] ??= {});
    // A target may have several files (run.sh runs S3 on a fresh server): merge the scenarios.
    if (set[r.target]) Object.assign(set[r.target].scenarios, r.scenarios);
    else set[r.target] = r;
  } catch (e) {
    console.error(`report: skipping ${f}: ${e.message}`);
  }
}
const rounds = Object.keys(byRound).map(Number).sort((a, b) => a - b).map((k) => byRound[k]);

// Several rounds: every figure is the median over the rounds that measured it (a scenario that
// failed in one round is left out of that round's share). Rows and curves pair up by position.
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  const n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
};
const isPlainObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
function combine(values) {
  let present = values.filter((v) => v !== undefined && v !== null);
  if (present.length === 0) return values[0];
  const ok = present.filter((v) => !(isPlainObject(v) && v.error));
  if (ok.length) present = ok;
  if (present.every((v) => typeof v === 'number')) return median(present);
  if (present.every(Array.isArray)) {
    const length = Math.max(...present.map((a) => a.length));
    return Array.from({ length }, (_, i) => combine(present.map((a) => a[i])));
  }
  if (present.every(isPlainObject)) {
    const keys = [...new Set(present.flatMap(Object.keys))];
    return Object.fromEntries(keys.map((k) => [k, combine(present.map((o) => o[k]))]));
  }
  return present[0];
}
const medianTargets = {};
for (const t of new Set(rounds.flatMap(Object.keys))) medianTargets[t] = combine(rounds.map((r) => r[t]));
// The helpers below read `targets`; the goal table points it at one round at a time.
let targets = medianTargets;
const names = Object.keys(targets).sort((a, b) => {
  const ia = order.indexOf(a), ib = order.indexOf(b);
  return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
});
fs.writeFileSync(path.join(dir, 'results.json'),
  JSON.stringify({ meta, targets: medianTargets, ...(rounds.length > 1 ? { rounds } : {}) }, null, 2) + '\n');

// --- helpers ---
const get = (obj, ...keys) => {
  let v = obj;
  for (const k of keys) {
    if (v === undefined || v === null) return undefined;
    v = v[k];
  }
  return v;
};
const rowsOf = (t, sc) => { const v = get(targets[t], 'scenarios', sc); return Array.isArray(v) ? v : []; };
const sweepOf = (t) => get(targets[t], 'scenarios', 's4', 'rate_sweep') || [];  // --s4-sweep rows
const s1Row = (t, conns) => rowsOf(t, 's1').find((r) => r.conns === conns);
const s2Row = (t, size) => rowsOf(t, 's2').find((r) => r.room_size === size);
const num = (v, digits) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  if (digits !== undefined) return v.toFixed(digits);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
};
const table = (header, rows) =>
  [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
const err = (t, s) => get(targets[t], 'scenarios', s, 'error');

// --- targets of issue 4 ---
// kind 'min': measured must be >= goal; 'max': <= goal.
function verdict(measured, goal, kind) {
  if (typeof measured !== 'number' || !Number.isFinite(measured)) return { met: 'n/a', margin: 'not measured' };
  const met = kind === 'min' ? measured >= goal : measured <= goal;
  let margin;
  const pct = (x) => num(x * 100, Math.abs(x) < 0.1 ? 1 : 0);  // small margins keep a decimal
  const fac = (x) => num(x, x < 1.1 ? 3 : 2);
  if (kind === 'min') {
    margin = met ? `+${pct(measured / goal - 1)} % above` : `${pct(1 - measured / goal)} % short (needs ×${fac(goal / measured)})`;
  } else {
    margin = met ? `${pct(1 - measured / goal)} % under` : `${pct(measured / goal - 1)} % over (needs ÷${fac(measured / goal)})`;
  }
  return { met: met ? '**met**' : '**missed**', margin };
}

const sbNames = names.filter((n) => n.startsWith('switchboard'));
const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? a / b : undefined);
const goals = [
  {
    name: 'S2 fan-out, rooms of 100: deliveries/s vs Node `ws`', goal: 8, kind: 'min', unit: '×',
    measure: (t) => ratio(s2Row(t, 100)?.deliveries_per_s, s2Row('node-ws', 100)?.deliveries_per_s),
    detail: (t) => `${num(s2Row(t, 100)?.deliveries_per_s)} vs ${num(s2Row('node-ws', 100)?.deliveries_per_s)}/s`,
  },
  {
    name: 'S2 fan-out, rooms of 100: deliveries/s vs Pushpin', goal: 1, kind: 'min', unit: '×', strict: true,
    measure: (t) => ratio(s2Row(t, 100)?.deliveries_per_s, s2Row('pushpin', 100)?.deliveries_per_s),
    detail: (t) => `${num(s2Row(t, 100)?.deliveries_per_s)} vs ${num(s2Row('pushpin', 100)?.deliveries_per_s)}/s`,
  },
  {
    name: 'S2 p99 delivery latency at half load, rooms of 100 (sends room by room)', goal: 5000, kind: 'max', unit: 'µs',
    measure: (t) => s2Row(t, 100)?.half_load?.latency?.p99_us,
    detail: (t) => `p50 ${num(s2Row(t, 100)?.half_load?.latency?.p50_us)} µs at ${num(s2Row(t, 100)?.half_load?.sends_per_s_offered)} sends/s` +
      (s2Row(t, 100)?.half_load?.latency_at_loop ? `; p99 ${num(s2Row(t, 100).half_load.latency_at_loop.p99_us)} µs when the bench read it` : ''),
  },
  {
    // The same rate with consecutive sends in different rooms: every server pass writes every socket.
    name: 'S2 p99 delivery latency at half load, rooms of 100 (sends interleaved across rooms)', goal: 5000, kind: 'max', unit: 'µs',
    measure: (t) => s2Row(t, 100)?.half_load_interleaved?.latency?.p99_us,
    detail: (t) => `p50 ${num(s2Row(t, 100)?.half_load_interleaved?.latency?.p50_us)} µs at ${num(s2Row(t, 100)?.half_load_interleaved?.sends_per_s_offered)} sends/s`,
  },
  ...[100, 500].map((c) => ({
    name: `S1 echo, ${c} connections: msgs/s vs Node \`ws\` direct`, goal: 1.5, kind: 'min', unit: '×',
    measure: (t) => ratio(s1Row(t, c)?.msgs_per_s, s1Row('node-ws', c)?.msgs_per_s),
    detail: (t) => `${num(s1Row(t, c)?.msgs_per_s)} vs ${num(s1Row('node-ws', c)?.msgs_per_s)}/s`,
  })),
  {
    name: 'S3 active echo rate with 19 000 idle sockets vs without', goal: 0.9, kind: 'min', unit: '×',
    measure: (t) => get(targets[t], 'scenarios', 's3', 'rate_ratio'),
    detail: (t) => {
      const s = get(targets[t], 'scenarios', 's3') || {};
      return `${num(s.without_idle?.msgs_per_s)} → ${num(s.with_idle?.msgs_per_s)}/s, ${num(s.idle_open)} idle open`;
    },
  },
  {
    name: 'S3 gateway memory per idle socket', goal: 1536, kind: 'max', unit: 'B',
    measure: (t) => get(targets[t], 'scenarios', 's3', 'rss_bytes_per_idle_socket'),
    detail: (t) => {
      const s = get(targets[t], 'scenarios', 's3') || {};
      return `RSS ${num(s.rss_before_kib)} → ${num(s.rss_after_kib)} KiB`;
    },
  },
  {
    name: 'S4 one-connection round trip p50', goal: 150, kind: 'max', unit: 'µs',
    measure: (t) => get(targets[t], 'scenarios', 's4', 'round_trip', 'latency', 'p50_us'),
    detail: (t) => `p99 ${num(get(targets[t], 'scenarios', 's4', 'round_trip', 'latency', 'p99_us'))} µs`,
  },
  {
    name: 'S4 p99 at 20 000 msgs/s (open loop)', goal: 1000, kind: 'max', unit: 'µs',
    measure: (t) => get(targets[t], 'scenarios', 's4', 'fixed_rate', 'latency', 'p99_us'),
    detail: (t) => `achieved ${num(get(targets[t], 'scenarios', 's4', 'fixed_rate', 'msgs_per_s'))} msgs/s, p50 ${num(get(targets[t], 'scenarios', 's4', 'fixed_rate', 'latency', 'p50_us'))} µs` +
      (get(targets[t], 'scenarios', 's4', 'fixed_rate', 'latency_at_loop') ? `; p99 ${num(get(targets[t], 'scenarios', 's4', 'fixed_rate', 'latency_at_loop', 'p99_us'))} µs when the bench read it` : '') +
      (sweepOf(t).length ? '; p99 at ' + sweepOf(t).map((r) => `${num(r.rate_offered)}/s ${num(r.latency?.p99_us)} µs`).join(', ') : ''),
  },
  {
    name: 'S5 connect storm: sockets/s reaching `Status`', goal: 10000, kind: 'min', unit: '/s',
    measure: (t) => get(targets[t], 'scenarios', 's5', 'sockets_per_s'),
    detail: (t) => `p99 time to Status ${num(get(targets[t], 'scenarios', 's5', 'time_to_status', 'p99_us') / 1000)} ms`,
  },
  {
    name: 'S6 healthy sockets\' rate with 10 % stalled vs none', goal: 0.9, kind: 'min', unit: '×',
    measure: (t) => get(targets[t], 'scenarios', 's6', 'rate_ratio'),
    detail: (t) => {
      const s = get(targets[t], 'scenarios', 's6') || {};
      return `${num(s.all_reading?.healthy_deliveries_per_s)} → ${num(s.with_stalled?.healthy_deliveries_per_s)}/s`;
    },
  },
  {
    name: 'S6 gateway memory growth under the queue cap', goal: 1, kind: 'max', unit: '× cap',
    measure: (t) => {
      const s = get(targets[t], 'scenarios', 's6');
      return s ? ratio(s.rss_growth_kib, s.queue_cap_kib_total) : undefined;
    },
    detail: (t) => {
      const s = get(targets[t], 'scenarios', 's6') || {};
      return `+${num(s.rss_growth_kib)} KiB (cap ${num(s.queue_cap_kib_total)} KiB), ${num(s.stalled_closed_4008)} closed 4008`;
    },
  },
];

const fmtMeasure = (v, unit) => {
  if (typeof v !== 'number') return '–';
  if (unit === '×' || unit === '× cap') return `${num(v, v < 2 ? 3 : 2)}${unit === '×' ? '×' : '× cap'}`;
  return `${num(v)} ${unit}`;
};
const goalText = (g) =>
  `${g.kind === 'min' ? (g.strict ? '>' : '≥') : '≤'} ${g.unit === '×' ? `${g.goal}×` : g.unit === '× cap' ? 'cap' : `${num(g.goal)} ${g.unit}`}`;

const lines = [];
lines.push(`# Switchboard benchmark report — ${meta.date}`);
lines.push('');
lines.push(`Mode **${meta.mode}**${(meta.rounds ?? 1) > 1 ? ` × ${meta.rounds} rounds` : ''}, commit \`${meta.commit}\`${meta.tree_dirty ? ' (with uncommitted gateway/backend changes)' : ''}, ` +
  `${meta.machine.cores} cores, ${meta.machine.memory_gib} GiB, kernel ${meta.machine.kernel}; ${meta.seconds} s in all; ` +
  `load average ${meta.load_before ?? '?'} before, ${meta.load_after ?? '?'} after (other work on the machine skews the figures).`);
lines.push('');
lines.push(`Reproduce: \`${meta.command}\` (bench flags: \`${meta.bench_args.trim()}\`).`);
lines.push('Everything ran on this one 2-core machine over loopback, one target after the other, the load generator ' +
  '(`switchboard-bench`, one thread) included: absolute numbers drift from run to run, ratios hold better. ' +
  `CPU placement: ${meta.placement ?? 'not pinned'}. ` +
  `Switchboard's pool (gateway to workers): ${meta.pool === 'ipc' ? 'ZeroMQ over a Unix socket (ipc://), as for workers on the gateway\'s host' : 'ZeroMQ over loopback TCP'}` +
  `${meta.pool_server ? `, served by ${meta.pool_server === 'zmtp' ? 'the gateway\'s own ZMTP on its loop' : 'a libzmq ROUTER'} and ${meta.pool_client === 'zmtp' ? 'the workers\' own ZMTP on theirs' : 'libzmq DEALERs'}` : ''}. ` +
  `Loopback netfilter: ${meta.netfilter ?? 'not recorded'}${/\bnat\b/.test(meta.netfilter ?? '') ? ' (the nat table puts connection tracking on every loopback packet: a few per cent slower)' : ''}. ` +
  'CPU-µs per message is the CPU time of the whole system under test (gateway + workers; Node process; ' +
  'Pushpin\'s condure + zurl + proxy + handler + the GRIP origin) divided by messages delivered. ' +
  (Object.values(targets).some((r) => r?.config?.receive_time === 'kernel')
    ? 'Latencies run from a message\'s scheduled send time to its arrival at the client socket (the kernel\'s receive ' +
      'timestamp): one bench thread reading 1 000 sockets takes its own time to get to each, and that wait is the ' +
      'load generator\'s, not the server\'s; the open-loop tables also give the same deliveries timed when the bench read them.'
    : 'Latencies run from a message\'s scheduled send time to when the bench read it.'));
lines.push('');
lines.push('## Targets of issue 4');
lines.push('');
const goalHeader = ['target', 'goal'];
for (const t of sbNames) goalHeader.push(t, 'met?', 'margin');
// Per round, so that a ratio to a peer pairs the two measured in the same round.
const perRound = (g, t) => rounds.map((r) => { targets = r; return g.measure(t); }).filter((v) => typeof v === 'number' && Number.isFinite(v));
const goalRows = goals.map((g) => {
  const row = [g.name, goalText(g)];
  for (const t of sbNames) {
    const values = perRound(g, t);
    targets = medianTargets;
    const m = rounds.length > 1 ? (values.length ? median(values) : undefined) : g.measure(t);
    let v = verdict(m, g.goal, g.kind);
    if (g.strict && typeof m === 'number' && m === g.goal) v = { met: '**missed**', margin: 'equal' };
    const spread = rounds.length > 1 && values.length ? `; rounds: ${values.map((x) => fmtMeasure(x, g.unit)).join(', ')}` : '';
    row.push(`${fmtMeasure(m, g.unit)} (${g.detail(t)}${spread})`, v.met, v.margin);
  }
  return row;
});
targets = medianTargets;
if (rounds.length > 1) {
  lines.push(`Every figure is the **median of ${rounds.length} rounds** (all targets ran once per round, round after ` +
    'round); each row lists the value of every round, and a ratio to a peer is taken within a round.');
  lines.push('');
}
lines.push(table(goalHeader, goalRows));
lines.push('');

// --- the machine itself (run.sh: switchboard-bench --scenario host before each round, after the last) ---
// host-before.json (one round) or host-before.rK.json (round K), then host-after.json.
const hostFiles = fs.readdirSync(dir).map((f) => {
  const m = f.match(/^host-(before|after)(?:\.r(\d+))?\.json$/);
  if (!m) return null;
  const round = m[2] ? Number(m[2]) : 0;
  const when = m[1] === 'after' ? 'after the rounds' : round ? `before round ${round}` : 'before the rounds';
  return { f, when, key: m[1] === 'after' ? Infinity : round };
}).filter(Boolean).sort((a, b) => a.key - b.key);
const hostRuns = hostFiles
  .map(({ f, when }) => {
    try { return [when, JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')).scenarios.host]; } catch { return [when, undefined]; }
  })
  .filter(([, h]) => h && !h.error);
if (hostRuns.length) {
  lines.push('## This machine, with no target running');
  lines.push('');
  lines.push('How promptly this VM runs a thread (`switchboard-bench --scenario host`): one thread waking another through ' +
    'an eventfd every 1 ms (a hand-off, as when a message wakes the next loop on its path); a thread sleeping 1 ms at a ' +
    'time (how late its timer wakes it); a thread that never sleeps (how much of its time the CPU is taken away). Every ' +
    'tail latency above sits on these: one round trip through Switchboard wakes a sleeping thread up to four times ' +
    '(bench → gateway loop → worker, and back; both speak ZMTP on their own loops, no libzmq I/O threads), through ' +
    'Node twice.');
  lines.push('');
  const q = (l) => `${num(l?.p50_us)} / ${num(l?.p99_us)} / ${num(l?.p999_us)} / ${num(l?.max_us)}`;
  lines.push(table(['when', 'hand-off µs p50 / p99 / p99.9 / max', '1 ms sleep, late by µs p50 / p99 / p99.9 / max',
    'sleeps late > 0.5 ms, per 10 000', 'spinning thread: time lost in gaps > 50 µs', 'its worst gap µs'],
  hostRuns.map(([when, h]) => [when, q(h.handoff?.wake), q(h.sleep?.late), num(h.sleep?.late_over_500us_per_10k),
    `${num(h.spin?.lost_pct)} %`, num(h.spin?.worst_gap_us)])));
  lines.push('');
}

// --- side by side ---
lines.push('## Side by side');
lines.push('');
lines.push('### S1 echo (closed loop, one message in flight per connection)');
lines.push('');
{
  const rows = [];
  for (const c of [100, 500]) {
    for (const t of names) {
      const r = s1Row(t, c);
      if (err(t, 's1')) { rows.push([c, t, `error: ${err(t, 's1')}`, '', '', '', '']); continue; }
      rows.push([c, t, num(r?.msgs_per_s), num(r?.latency?.p50_us), num(r?.latency?.p99_us), num(r?.server_cpu_us_per_msg), num(r?.bench_cpu_pct)]);
    }
  }
  lines.push(table(['conns', 'target', 'msgs/s', 'p50 µs', 'p99 µs', 'server CPU-µs/msg', 'bench CPU %'], rows));
}
lines.push('');
lines.push('### S2 room fan-out (every member sending; saturation = closed loop, ~50 000 deliveries in flight in all)');
lines.push('');
{
  const rows = [];
  const sizes = [...new Set(names.flatMap((t) => rowsOf(t, 's2').map((r) => r.room_size)))].sort((a, b) => a - b);
  // One room has no other order; reports before the interleaved phase did not run it.
  const noMix = (row) => (row.rooms === 1 ? 'one room' : 'not measured');
  for (const size of sizes) {
    for (const t of names) {
      const r = s2Row(t, size);
      if (!r) { rows.push([size, t, err(t, 's2') ? `error: ${err(t, 's2')}` : '–', '', '', '', '', '', '', '', '', '']); continue; }
      const mixed = r.half_load_interleaved;
      rows.push([size, t, num(r.deliveries_per_s), num(r.server_cpu_us_per_delivery), num(r.saturated_latency?.p99_us),
        num(r.half_load?.sends_per_s_offered), num(r.half_load?.latency?.p50_us), num(r.half_load?.latency?.p99_us),
        num(r.half_load?.latency_at_loop?.p99_us), mixed ? num(mixed.latency?.p50_us) : noMix(r),
        mixed ? num(mixed.latency?.p99_us) : noMix(r), num(r.bench_cpu_pct)]);
    }
  }
  lines.push(table(['room', 'target', 'deliveries/s', 'server CPU-µs/delivery', 'saturated p99 µs', 'half load sends/s',
    'half load p50 µs', 'half load p99 µs', 'half load p99 µs when the bench read it', 'interleaved p50 µs',
    'interleaved p99 µs', 'bench CPU %'], rows));
  lines.push('');
  lines.push('Half load sends room by room as the senders are listed (about a room\'s size of consecutive sends go to one ' +
    'room, so a server pass writes that room\'s members); "interleaved" runs the same rate again with consecutive ' +
    'sends in different rooms, so every pass writes every socket.');
}
lines.push('');
lines.push('![throughput vs room size](fanout.png)');
lines.push('');
lines.push('![latency distribution](latency.png)');
lines.push('');
lines.push('### S3 idle sockets (100 active echo sockets, then the same with the idle ones open)');
lines.push('');
{
  const rows = names.map((t) => {
    const s = get(targets[t], 'scenarios', 's3') || {};
    if (s.error) return [t, `error: ${s.error}`, '', '', '', '', ''];
    return [t, num(s.idle_open), num(s.without_idle?.msgs_per_s), num(s.with_idle?.msgs_per_s), num(s.rate_ratio, 2),
      num(s.rss_bytes_per_idle_socket), num(s.idle_open_seconds)];
  });
  lines.push(table(['target', 'idle open', 'msgs/s without', 'msgs/s with', 'ratio', 'RSS B per idle socket', 'seconds to open'], rows));
}
lines.push('');
lines.push('### S4 one connection');
lines.push('');
{
  const rows = names.map((t) => {
    const s = get(targets[t], 'scenarios', 's4') || {};
    if (s.error) return [t, `error: ${s.error}`, '', '', '', '', '', '', '', ''];
    return [t, num(s.round_trip?.latency?.p50_us), num(s.round_trip?.latency?.p99_us), num(s.round_trip?.msgs_per_s),
      num(s.fixed_rate?.msgs_per_s) + (s.fixed_rate?.drained === false ? ' (not all delivered within the phase + 30 s)' : ''),
      num(s.fixed_rate?.latency?.p50_us), num(s.fixed_rate?.latency?.p99_us),
      num(s.fixed_rate?.latency_at_loop?.p99_us),
      s.fixed_rate?.windows_10ms ? `${num(s.fixed_rate.tail_windows_10ms)} of ${num(s.fixed_rate.windows_10ms)}` : '',
      num(s.fixed_rate?.bench_send_lag_p99_us)];
  });
  lines.push(table(['target', 'RTT p50 µs', 'RTT p99 µs', 'closed-loop msgs/s', 'fixed-rate msgs/s achieved', 'fixed-rate p50 µs',
    'fixed-rate p99 µs', 'fixed-rate p99 µs when the bench read it', '10 ms windows holding the slowest 1 %', 'bench send lag p99 µs'], rows));
  lines.push('');
  lines.push('Open-loop latency is measured from the *scheduled* send time, so the load generator\'s own lateness ' +
    '(timer wake-up on this VM, CPU shared with the server) is included; "bench send lag" shows that floor. ' +
    'The windows column says how the slowest 1 % is spread over the phase: in most windows when messages are ' +
    'slow one by one, in few when the tail is a handful of stalls of a few ms each (a CPU taken away, a queue ' +
    'that built up and drained).');
  // --s4-sweep: the same open-loop phase at lower rates, so a missed p99 shows whether it comes
  // from load (it falls with the rate) or from the path itself (it stays).
  const ratesOf = (t) => [...sweepOf(t),
    ...(get(targets[t], 'scenarios', 's4', 'fixed_rate') ? [get(targets[t], 'scenarios', 's4', 'fixed_rate')] : [])];
  const rates = [...new Set(names.flatMap((t) => ratesOf(t).map((r) => r.rate_offered)))].sort((a, b) => a - b);
  if (names.some((t) => sweepOf(t).length)) {
    lines.push('');
    lines.push('p99 µs (server CPU-µs per message) against the offered rate, each a phase as long as the fixed-rate one:');
    lines.push('');
    const rows = names.map((t) => [t, ...rates.map((rate) => {
      const r = ratesOf(t).find((x) => x.rate_offered === rate);
      if (!r) return '';
      if (!r.msgs_per_s) return 'none delivered within the phase + 30 s';
      return `${num(r.latency?.p99_us)} (${num(r.server_cpu_us_per_msg)})`;
    })]);
    lines.push(table(['target', ...rates.map((r) => `${num(r)}/s`)], rows));
  }
}
lines.push('');
lines.push('### S5 connect storm (chat app; `Status` is the first server message)');
lines.push('');
{
  const rows = names.map((t) => {
    const s = get(targets[t], 'scenarios', 's5') || {};
    if (s.error) return [t, `error: ${s.error}`, '', '', '', '', ''];
    return [t, num(s.sockets), num(s.reached_first_message), num(s.failed), num(s.sockets_per_s),
      num(s.time_to_status?.p50_us / 1000), num(s.time_to_status?.p99_us / 1000), num(s.server_cpu_us_per_socket)];
  });
  lines.push(table(['target', 'sockets', 'reached Status', 'failed', 'sockets/s', 'p50 ms', 'p99 ms', 'server CPU-µs/socket'], rows));
}
lines.push('');
lines.push('### S6 slow consumers (a room of 1 000, 10 % stop reading; the healthy 900 send in a closed loop)');
lines.push('');
{
  const rows = names.map((t) => {
    const s = get(targets[t], 'scenarios', 's6') || {};
    if (s.error) return [t, `error: ${s.error}`, '', '', '', '', ''];
    return [t, num(s.all_reading?.healthy_deliveries_per_s), num(s.with_stalled?.healthy_deliveries_per_s), num(s.rate_ratio, 2),
      num(s.rss_before_kib), num(s.rss_growth_kib), num(s.stalled_closed_by_server), num(s.stalled_closed_4008)];
  });
  lines.push(table(['target', 'healthy deliveries/s, all reading', 'with 10 % stalled', 'ratio', 'RSS before KiB', 'RSS growth KiB',
    'stalled closed by server', 'of which 4008'], rows));
}
lines.push('');
lines.push('### CPU cost per message (server side, whole system under test)');
lines.push('');
{
  const rows = names.map((t) => [t,
    num(s1Row(t, 100)?.server_cpu_us_per_msg), num(s1Row(t, 500)?.server_cpu_us_per_msg),
    num(s2Row(t, 10)?.server_cpu_us_per_delivery), num(s2Row(t, 100)?.server_cpu_us_per_delivery),
    num(s2Row(t, 1000)?.server_cpu_us_per_delivery)]);
  lines.push(table(['target', 'S1 echo 100', 'S1 echo 500', 'S2 room 10 (per delivery)', 'S2 room 100', 'S2 room 1000'], rows));
}
lines.push('');
const benchBusy = names.flatMap((t) => [...rowsOf(t, 's1'), ...rowsOf(t, 's2')]
  .filter((r) => r && r.bench_cpu_pct > 85).map((r) => `${t} ${r.conns ? `S1 ${r.conns}` : `S2 room ${r.room_size}`} (${num(r.bench_cpu_pct)} %)`));
if (benchBusy.length) {
  lines.push(`Load generator near one full core (its limit) in: ${benchBusy.join(', ')}. There the measured rate is a lower bound ` +
    'of the server\'s, and the server and the bench share 2 cores.');
  lines.push('');
}
const notes = path.join(dir, 'notes.md');
if (fs.existsSync(notes)) {
  lines.push(fs.readFileSync(notes, 'utf8').trim());
  lines.push('');
}
fs.writeFileSync(path.join(dir, 'REPORT.md'), lines.join('\n'));

// --- plots ---
const gp = spawnSync('gnuplot', ['--version']);
if (gp.status !== 0) {
  console.error('report: gnuplot not found: no PNG plots (bench/run.sh installs gnuplot-nox)');
  process.exit(0);
}
const sizes = [10, 100, 1000];
const fanData = sizes.map((s) => [s, ...names.map((t) => s2Row(t, s)?.deliveries_per_s ?? NaN)].join(' ')).join('\n');
fs.writeFileSync(path.join(dir, 'fanout.dat'), `# room ${names.join(' ')}\n${fanData}\n`);
const curves = [];
for (const t of names) {
  const c2 = s2Row(t, 100)?.half_load?.latency_curve;
  const c4 = get(targets[t], 'scenarios', 's4', 'fixed_rate', 'latency_curve');
  for (const [key, c] of [['s2', c2], ['s4', c4]]) {
    if (!Array.isArray(c) || !c.some(([, v]) => v > 0)) continue;  // nothing delivered: no curve
    const file = `latency-${key}-${t}.dat`;
    // x = 1/(1-p): percentiles spread out on a log axis (p100 is left off: infinite).
    fs.writeFileSync(path.join(dir, file), c.filter(([p]) => p < 100).map(([p, v]) => `${1 / (1 - p / 100)} ${Math.max(v, 0.1)} ${p}`).join('\n') + '\n');
    curves.push({ key, t, file });
  }
}
const plotLines = (key) => curves.filter((c) => c.key === key)
  .map((c) => `'${c.file}' using 1:2 with linespoints title '${c.t}'`).join(', ');
const script = `
set terminal pngcairo size 900,560 font 'DejaVu Sans,10'
set output 'fanout.png'
set title 'S2 room fan-out at saturation: deliveries/s vs room size'
set logscale xy
set xlabel 'members per room (every member sending)'
set ylabel 'deliveries per second'
set xtics (10, 100, 1000)
set xrange [8:1250]
set grid
set key top left
plot ${names.map((t, i) => `'fanout.dat' using 1:${i + 2} with linespoints lw 2 title '${t}'`).join(', ')}
set output 'latency.png'
set key bottom right
set multiplot layout 1,2 title 'Latency distribution (open loop, measured from the scheduled send time)'
set logscale xy
set xlabel 'percentile'
set ylabel 'latency (µs)'
set xtics ('50' 2, '90' 10, '99' 100, '99.9' 1000, '99.99' 10000)
set xrange [1:20000]
unset title
set title 'S2 rooms of 100 at half of saturation'
plot ${plotLines('s2') || "1/0 title 'no data'"}
set title 'S4 one connection at a fixed rate'
plot ${plotLines('s4') || "1/0 title 'no data'"}
unset multiplot
`;
fs.writeFileSync(path.join(dir, 'plots.gnuplot'), script);
const res = spawnSync('gnuplot', ['plots.gnuplot'], { cwd: dir, encoding: 'utf8' });
if (res.status !== 0) console.error(`report: gnuplot failed: ${res.stderr}`);
