#!/usr/bin/env bash
# Installs the Debian 12 packages Switchboard needs to build and test, and only the missing
# ones: runs `apt-get update` once, and only when something has to be installed.
# Idempotent; touches no network besides apt (npm packages are installed by tests/run.sh).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libwebsockets-dev libwebsockets-evlib-ev libev-dev
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev liburing-dev
  libboost-program-options-dev doctest-dev libsqlite3-dev nlohmann-json3-dev
  chromium
  sqlite3  # the fault tests read the shared store with the CLI
)
# Node.js for the end-to-end and browser tests: only when there is none (any install is fine).
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
