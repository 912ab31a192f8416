#!/usr/bin/env bash
# Runs the issue-4 benchmark: every scenario (S1..S6) of switchboard-bench against Switchboard
# (gateway + 1 worker, gateway + 2 workers) and its peers (Node `ws`, Pushpin), one after the
# other on this machine, in one run, on free loopback ports; before each round and after the last,
# how promptly the machine itself wakes a thread (switchboard-bench --scenario host). Writes
# bench/results/<date>/ with results.json, REPORT.md and PNG plots.
#
#   bench/run.sh [--quick | --full] [--rounds N] [--targets LIST] [--out DIR] [--pin] [--no-install] [--no-build]
#
#   --quick        short phases (2 s), a few minutes in all (default)
#   --full         longer phases (10 s) and a bigger connect storm
#   --tiny         a few sockets, sub-second phases: checks the harness, the figures mean nothing
#   --rounds N     run every target N times, round after round; the report gives medians and
#                  every round's value (single phases here swing by 15-25 %)
#   --targets      comma list of: switchboard-1w, switchboard-2w, node-ws, pushpin (default: all)
#   --out DIR      results directory (default bench/results/<UTC date-time>)
#   --pin          the load generator on CPU 0, every target's processes on the other CPUs
#                  (default: the scheduler places everything)
#   --no-install   do not apt-get/npm install anything
#   --no-build     use the binaries already in build-bench/
# Environment: SB_BENCH_BUILD_DIR (default build-bench), SB_BENCH_EXTRA (extra switchboard-bench flags),
#              SB_BENCH_POOL (ipc, the default: Switchboard's pool over a Unix socket; tcp: loopback TCP),
#              SB_BENCH_COMMIT (commit to name in the report when the tree is an export, not a clone).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_dir=$root/bench
build_dir=${SB_BENCH_BUILD_DIR:-$root/build-bench}
mode=quick
rounds=1
targets=switchboard-1w,switchboard-2w,node-ws,pushpin
out=""
install=1
build=1
pin=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) mode=quick ;;
    --full) mode=full ;;
    --tiny) mode=tiny ;;
    --targets) targets=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --out) out=$2; shift ;;
    --pin) pin=1 ;;
    --no-install) install=0 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
pool_transport=${SB_BENCH_POOL:-ipc}
# Who speaks ZMTP on both ends of the pool: the gateway's and workers' own loops (zmtp, the
# default) or libzmq sockets (SB_BENCH_POOL_IMPL=libzmq, as before 2026-11-23's change).
pool_impl=${SB_BENCH_POOL_IMPL:-zmtp}
[[ $pool_transport =~ ^(ipc|tcp)$ ]] || { echo "run.sh: SB_BENCH_POOL must be ipc or tcp, got '$pool_transport'" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds needs a positive integer, got '$rounds'" >&2; exit 2; }
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
[ -n "$out" ] || out=$bench_dir/results/$stamp
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-bench-XXXXXX")
log() { echo "[run.sh $(date -u +%H:%M:%S)] $*" >&2; }

# --- dependencies ---
if [ $install -eq 1 ]; then
  "$root/deploy/install-deps.sh"
  need=()
  for p in pushpin condure zurl gnuplot-nox curl; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = "installed" ] || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${need[@]}"
  fi
  (cd "$bench_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- build ---
# The tree the binaries are built from (edits made while the run goes on are not in them).
commit=${SB_BENCH_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
dirty=$(git -C "$root" status --porcelain -- gateway backend proto common 2>/dev/null | head -1 || true)
if [ $build -eq 1 ]; then
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build_dir" -j "$(nproc)" --target switchboard-gateway switchboard-backend switchboard-bench
fi
gateway_bin=$build_dir/gateway/switchboard-gateway
backend_bin=$build_dir/backend/switchboard-backend
bench_bin=$build_dir/bench/switchboard-bench
for b in "$gateway_bin" "$backend_bin" "$bench_bin"; do
  [ -x "$b" ] || { echo "run.sh: missing $b (build first)" >&2; exit 1; }
done

# Up to 19 100 sockets on each side: every process started from here inherits the hard limit.
ulimit -n "$(ulimit -Hn)"

# --- CPU placement ---
# --pin: the load generator gets CPU 0 to itself and every target the other CPUs, alike. On
# this VM a wake-up that crosses cores costs more than one that stays: gateway + worker on one
# core need ~14 instead of ~17 CPU-us per echo (S1, 100 sockets) and S4's p99 at 20 000/s
# drops, but a target whose core has gone idle wakes slower (S4's closed-loop p50 roughly
# doubled) and the storm and fan-out phases get one core instead of two. Not the default.
# taskset execs the command, so a started process keeps the pid the bench measures.
on_bench_cpus=() on_target_cpus=()
if [ $pin -eq 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  on_bench_cpus=(taskset -c 0)
  on_target_cpus=(taskset -c "1-$(($(nproc) - 1))")
  placement="load generator on CPU 0, each target on CPU 1-$(($(nproc) - 1)) (taskset)"
else
  placement="not pinned: load generator and targets share all $(nproc) CPUs"
fi

# --- loopback netfilter ---
# Tables left by a Docker engine (nat) put connection tracking on every loopback packet: a few
# per cent of each send and receive here. A fresh machine has none; the report says which.
netfilter=none
if command -v iptables-save >/dev/null; then
  tables=$(iptables-save 2>/dev/null | sed -n 's/^\*//p' | tr '\n' ' ')
  [ -n "$tables" ] && netfilter="iptables tables: ${tables% }"
fi

# --- sizes ---
case $mode in
  full) sizes=(--duration 10 --warmup 1 --s5-sockets 10000) ;;
  quick) sizes=(--duration 2 --warmup 0.5 --s5-sockets 5000 --s3-duration 5 --s4-duration 5 --s6-duration 5) ;;
esac
if [ "$mode" = tiny ]; then  # checks the harness itself in seconds; the figures mean nothing
  sizes=(--duration 0.3 --warmup 0.1 --s1-conns 2,4 --s2-rooms 10,100 --s2-clients 100 --s3-idle 50 --s3-active 2
         --s4-rate 500 --s4-sweep 100,300 --s5-sockets 20 --s5-concurrency 10 --s5-room-size 2 --s6-room 20 --s6-stalled-pct 10)
else
  sizes+=(--s1-conns 100,500 --s2-rooms 10,100,1000 --s2-clients 1000 --s3-idle 19000 --s3-active 100
          --s4-rate 20000 --s4-sweep 5000,10000,15000 --s5-concurrency 500 --s5-room-size 10 --s6-room 1000 --s6-stalled-pct 10)
fi
# shellcheck disable=SC2206
extra=(${SB_BENCH_EXTRA:-})

free_ports() {
  node -e '
    const net = require("net"); const n = Number(process.argv[1]); const s = [];
    (async () => { for (let i = 0; i < n; i++) { const v = net.createServer();
      await new Promise((r) => v.listen(0, "127.0.0.1", r)); s.push(v); }
      console.log(s.map((v) => v.address().port).join(" ")); s.forEach((v) => v.close()); })();' "$1"
}

# Each target runs in its own process groups; everything started is stopped on exit.
groups=()
started_pid=0
# Job control: every background job gets its own process group (killed as one), in this same
# session. Not setsid: a new session is also a new scheduling autogroup
# (kernel.sched_autogroup_enabled=1 here), so the kernel would share the CPUs between the
# server's and the load generator's groups instead of between their threads; that added
# 10-15 us to a one-connection round trip here. Started from one shell, they are peers.
set -m
start_group() {  # name, command...; sets started_pid (no subshell, so groups stays in this shell)
  local name=$1; shift
  "${on_target_cpus[@]}" "$@" >"$work/$name.log" 2>&1 &
  started_pid=$!
  disown "$started_pid"  # no job notices; stop_groups tracks it
  groups+=("$started_pid")
}
stop_groups() {
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for g in "${groups[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
  groups=()
}
cleanup() { stop_groups; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {  # url, jq-free check string, seconds
  local url=$1 want=$2 limit=$3
  for _ in $(seq $((limit * 10))); do
    body=$(curl -s -m 1 "$url" 2>/dev/null || true)
    case $body in *"$want"*) return 0 ;; esac
    sleep 0.1
  done
  return 1
}
wait_port() {
  for _ in $(seq $(($2 * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

run_target() {  # target, round
  local target=$1 round=$2 tag=""
  [ "$rounds" -gt 1 ] && tag=".r$round"
  [ "$round" -eq 1 ] && rm -f "$out/$target.txt"
  bench_target "$target" s1,s2,s4,s6,s5 "$tag" || return 1
  # S3 judges memory per idle socket by RSS growth, so it gets a fresh server: memory that
  # earlier scenarios freed (S5 closes thousands of sockets) would be reused and flatter it.
  bench_target "$target" s3 "-s3$tag"
}

bench_target() {  # target, scenario list, suffix of the JSON file
  local target=$1 scenarios=$2 suffix=$3 pids gw_pids url
  case $target in
    switchboard-1w|switchboard-2w)
      local workers=${target#switchboard-}; workers=${workers%w}
      local pool
      read -r http pool < <(free_ports 2)
      # Gateway and workers share this host: the pool runs over a Unix socket (SB_BENCH_POOL=tcp
      # for loopback TCP, as workers on other hosts would use).
      if [ "$pool_transport" = ipc ]; then pool="ipc://$work/$target.pool"; else pool="tcp://127.0.0.1:$pool"; fi
      local g b
      start_group "$target-gateway" "$gateway_bin" --listen "127.0.0.1:$http" --pool "$pool" \
            --gateway-id bench --max-sockets 19500 --log-level warn --pool-server "$pool_impl"
      g=$started_pid
      start_group "$target-backend" "$backend_bin" --gateway "$pool" --workers "$workers" \
            --store "sqlite:$work/$target.db" --log-level warn --pool-client "$pool_impl"
      b=$started_pid
      wait_http "http://127.0.0.1:$http/healthz" "\"workers\":$workers" 30 || { log "$target did not start"; return 1; }
      pids="$g,$b"; gw_pids=$g; url=ws://127.0.0.1:$http ;;
    node-ws)
      read -r http < <(free_ports 1)
      local n
      start_group node-ws node "$bench_dir/peers/ws-server.mjs" --port "$http"
      n=$started_pid
      wait_http "http://127.0.0.1:$http/healthz" '"ok"' 30 || { log "node-ws did not start"; return 1; }
      pids=$n; gw_pids=$n; url=ws://127.0.0.1:$http ;;
    pushpin)
      read -r http origin publish push sub cmd < <(free_ports 6)
      local o p
      start_group grip-origin node "$bench_dir/peers/grip-backend.mjs" --port "$origin" \
            --publish "http://127.0.0.1:$publish/publish/"
      o=$started_pid
      start_group pushpin "$bench_dir/peers/pushpin-peer.sh" "$work/pushpin" "$http" "$origin" "$publish" "$push" "$sub" "$cmd"
      p=$started_pid
      wait_http "http://127.0.0.1:$origin/healthz" '"ok"' 30 && wait_port "$http" 30 && wait_port "$publish" 30 \
        || { log "pushpin did not start"; return 1; }
      sleep 1  # the runner starts its services one by one; the ports open before all are linked
      pids="$p,$o"
      gw_pids=$p  # the runner; the bench adds its children: condure, zurl, proxy, handler
      url=ws://127.0.0.1:$http ;;
    *) log "unknown target $target"; return 1 ;;
  esac
  # Pushpin answers 502 when too many handshakes reach its origin hop at once: fewer in flight.
  local own=()
  # It also takes tens of seconds to settle after thousands of sockets close.
  # Its echo tops out under 1 000 msgs/s, so S4's extra fixed rates would only wait out their drain.
  [ "$target" = pushpin ] && own=(--max-pending 64 --s5-concurrency 64 --quiesce-max 60 --s4-sweep "")
  log "$target ($scenarios): $url (server pids $pids)"
  "${on_bench_cpus[@]}" "$bench_bin" --url "$url" --label "$target" --server-pids "$pids" --gateway-pid "$gw_pids" --scenario "$scenarios" \
    "${sizes[@]}" "${own[@]}" "${extra[@]}" --json-out "$out/$target$suffix.json" -v 2>"$work/$target$suffix-bench.log" \
    | tee -a "$out/$target.txt" || log "$target: bench exited non-zero (see $out/$target.txt)"
  cp "$work/$target$suffix-bench.log" "$out/$target$suffix-bench.log" 2>/dev/null || true
  stop_groups
}

# How promptly this machine runs a thread, with no target running (before each round and after
# the last): the floor under every tail latency in the report, and how it drifts between rounds.
probe_host() {  # file name
  log "host probe ($1)"
  "${on_bench_cpus[@]}" "$bench_bin" --scenario host --label host --host-duration "$host_seconds" \
    --json-out "$out/$1" 2>>"$out/host-bench.log" | tee -a "$out/host.txt" || log "host probe failed (see $out/host-bench.log)"
}
case $mode in full) host_seconds=10 ;; tiny) host_seconds=0.2 ;; *) host_seconds=5 ;; esac

started=$(date -u +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rm -f "$out/host.txt"
IFS=, read -r -a target_list <<<"$targets"
for ((round = 1; round <= rounds; round++)); do
  [ "$rounds" -gt 1 ] && log "round $round of $rounds"
  if [ "$rounds" -gt 1 ]; then probe_host "host-before.r$round.json"; else probe_host host-before.json; fi
  for t in "${target_list[@]}"; do
    run_target "$t" "$round" || true
    stop_groups
  done
done
probe_host host-after.json

cat >"$out/meta.json" <<EOF
{"date":"$stamp","mode":"$mode","commit":"$commit","tree_dirty":$([ -n "$dirty" ] && echo true || echo false),
 "command":"bench/run.sh --$mode$([ "$rounds" -gt 1 ] && echo " --rounds $rounds") --targets $targets$([ $pin -eq 1 ] && echo " --pin")","rounds":$rounds,
 "placement":"$placement","pool":"$pool_transport","pool_server":"$pool_impl","pool_client":"$pool_impl","netfilter":"$netfilter","seconds":$(( $(date -u +%s) - started )),
 "machine":{"cores":$(nproc),"kernel":"$(uname -r)","memory_gib":$(awk '/MemTotal/{printf "%.0f", $2/1048576}' /proc/meminfo)},
 "load_before":"$load_before","load_after":"$(cut -d' ' -f1-3 /proc/loadavg)",
 "bench_args":"$(printf '%s ' "${sizes[@]}" "${extra[@]}")"}
EOF
node "$bench_dir/report.mjs" "$out"
log "report: $out/REPORT.md"
