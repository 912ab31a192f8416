#!/usr/bin/env bash
# Runs the whole Switchboard stack in Docker for local testing (deploy/docker/).
#   deploy/compose.sh [up] [compose up options]   base image if missing, app image from
#                                                 `git archive HEAD`, start, wait for /healthz
#   deploy/compose.sh up --scale backend=2        two backend containers (2 workers each)
#   deploy/compose.sh down [-v]                   stop and remove (-v also drops the SQLite volume)
#   deploy/compose.sh build                       only (re)build the images
#   deploy/compose.sh smoke [--min-workers N]     /healthz + a chat round trip across workers and
#                                                 an echo, from this host (node + tests/node_modules)
#   deploy/compose.sh ps | logs -f | ...          anything else goes to docker-compose as is
# The image holds the committed tree only (HEAD): uncommitted edits are not in it.
# Overrides: SB_GIT_REF (HEAD), SB_IMAGE (switchboard/switchboard:latest),
#            SB_BASE_IMAGE (switchboard/debian:bookworm), SB_HTTP_PORT (8080), SB_WORKERS (2),
#            SB_LOG_LEVEL (info), SB_UNIT_TESTS (0; 1 runs the unit tests in the image build).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
compose_file=$root/deploy/docker/docker-compose.yml
export SB_IMAGE=${SB_IMAGE:-switchboard/switchboard:latest}
export SB_BASE_IMAGE=${SB_BASE_IMAGE:-switchboard/debian:bookworm}
export SB_HTTP_PORT=${SB_HTTP_PORT:-8080}
git_ref=${SB_GIT_REF:-HEAD}

# docker-compose (v1, Debian's package) or the `docker compose` plugin, whichever exists.
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "compose: neither docker-compose nor 'docker compose' found (apt-get install docker-compose)" >&2
  exit 1
fi
compose+=(-p switchboard -f "$compose_file")

docker info >/dev/null 2>&1 || { echo "compose: the Docker daemon is not reachable (is dockerd running?)" >&2; exit 1; }

build_images() {
  "$root/deploy/docker/make-base-image.sh"
  local rev
  rev=$(git -C "$root" rev-parse --verify "$git_ref^{commit}")
  if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    echo "compose: note: uncommitted changes are not in the image (it is built from $git_ref = ${rev:0:12})"
  fi
  echo "compose: building $SB_IMAGE from $git_ref (${rev:0:12})"
  # The context is exactly the committed tree: no build dirs, node_modules or stray files.
  git -C "$root" archive --format=tar "$rev" |
    docker build -f deploy/docker/Dockerfile \
      --build-arg "BASE=$SB_BASE_IMAGE" \
      --build-arg "SB_REVISION=$rev" \
      --build-arg "SB_UNIT_TESTS=${SB_UNIT_TESTS:-0}" \
      -t "$SB_IMAGE" -
  prune_images
}

# Superseded images: untagged app images no container uses any more, and every build stage
# but the newest, which is the cache for the next build (its apt layer saves minutes).
# `docker image ls` lists newest first; an image still in use is refused and kept.
prune_images() {
  local old
  old=$(docker image ls -q --filter dangling=true --filter label=switchboard.stage=build | tail -n +2
        docker image ls -q --filter dangling=true --filter label=switchboard.stage=runtime)
  local id
  for id in $old; do docker image rm "$id" >/dev/null 2>&1 || true; done
}

# Bounded wait for the gateway to report a live worker; prints the last /healthz body.
wait_healthy() {
  local body=""
  for _ in $(seq 120); do
    body=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
      printf "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' "$SB_HTTP_PORT" 2>/dev/null || true)
    case $body in
      "HTTP/1."?" 200 "*)
        echo "compose: /healthz ${body##*$'\r\n\r\n'}"
        return 0 ;;
    esac
    sleep 0.5
  done
  echo "compose: /healthz not 200 after 60 s; see: deploy/compose.sh logs" >&2
  [ -n "$body" ] && echo "compose: last answer: ${body%%$'\r'*}" >&2
  return 1
}

cmd=${1:-up}
[ $# -gt 0 ] && shift
case $cmd in
  up)
    build_images
    "${compose[@]}" up -d "$@"
    prune_images
    wait_healthy
    echo
    echo "Switchboard chat: http://127.0.0.1:$SB_HTTP_PORT/   (deploy/compose.sh logs -f; deploy/compose.sh down)"
    ;;
  build)
    build_images
    ;;
  down)
    "${compose[@]}" down "$@"
    ;;
  smoke)
    command -v node >/dev/null 2>&1 || { echo "compose: smoke needs node (deploy/install-deps.sh)" >&2; exit 1; }
    timeout 120 node "$root/deploy/docker/smoke-test.mjs" --url "http://127.0.0.1:$SB_HTTP_PORT" "$@"
    ;;
  *)
    "${compose[@]}" "$cmd" "$@"
    ;;
esac
