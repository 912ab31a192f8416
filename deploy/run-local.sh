#!/usr/bin/env bash
# One command to a working chat on this machine: installs dependencies, builds Release into
# build-release/, starts one gateway and two backend workers on the embedded SQLite store,
# prints the chat URL and runs until Ctrl-C, which stops everything.
# The pool listens on TCP for workers started elsewhere and on a Unix socket (ipc://) for the two
# started here, which skips the TCP stack.
# Overrides: SB_LISTEN (127.0.0.1:8080), SB_POOL (tcp://127.0.0.1:5555),
#            SB_IPC_POOL (ipc://./var/pool.ipc; empty: the local workers use SB_POOL),
#            SB_STORE (sqlite:./var/switchboard.db), SB_WORKERS (2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
listen=${SB_LISTEN:-127.0.0.1:8080}
pool=${SB_POOL:-tcp://127.0.0.1:5555}
ipc_pool=${SB_IPC_POOL-ipc://./var/pool.ipc}
store=${SB_STORE:-sqlite:./var/switchboard.db}
workers=${SB_WORKERS:-2}
build_dir=$root/build-release

deploy/install-deps.sh
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j "$(nproc 2>/dev/null || echo 2)" --target switchboard-gateway switchboard-backend
mkdir -p var

# Job control puts each child in its own process group, so one kill reaches a child and
# everything it forked (the backend forks its workers), and Ctrl-C reaches only this script.
set -m
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "run-local: stopping"
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do  # up to 5 s for a clean shutdown, then SIGKILL
    alive=0
    for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

"$build_dir/gateway/switchboard-gateway" --listen "$listen" --pool "$pool${ipc_pool:+,$ipc_pool}" &
pids+=($!)
"$build_dir/backend/switchboard-backend" --gateway "${ipc_pool:-$pool}" --workers "$workers" --store "$store" &
pids+=($!)

# Wait (bounded) for /healthz to report a worker, using bash's /dev/tcp: no curl needed.
host=${listen%:*}
port=${listen##*:}
[ "$host" = "0.0.0.0" ] && host=127.0.0.1
ready=0
for _ in $(seq 100); do
  status=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1" &&
    printf "GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n" "$0" >&3 && head -n1 <&3' "$host" "$port" 2>/dev/null || true)
  case $status in *" 200"*) ready=1; break ;; esac
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "run-local: a process exited during start-up" >&2; exit 1; }
  done
  sleep 0.1
done
if [ $ready -eq 1 ]; then
  echo
  echo "Switchboard chat: http://$host:$port/   (Ctrl-C stops the gateway and the workers)"
else
  echo "run-local: /healthz not ready after 10 s; still running, see the logs above" >&2
fi

# Run until Ctrl-C or until either process exits.
set +e
wait -n "${pids[@]}"
rc=$?
set -e
echo "run-local: a process exited (status $rc)" >&2
exit "$rc"
