#!/usr/bin/env bash
# Installs dependencies, builds (RelWithDebInfo) and runs every test through ctest.
# BUILD_DIR overrides the build directory (default: build/ in the repository).
# The exit code is ctest's.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
jobs=$(nproc 2>/dev/null || echo 2)

"$root/deploy/install-deps.sh"

cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build_dir" -j "$jobs"

# npm packages for the e2e and browser tests, from the committed lock file; reinstalled only
# when node_modules is missing or was installed from a different lock file.
tests_dir=$root/tests
stamp=$tests_dir/node_modules/.sb-package-lock.sha256
want=$(sha256sum "$tests_dir/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  (cd "$tests_dir" && npm ci --no-audit --no-fund)
  echo "$want" > "$stamp"
fi

cd "$build_dir"
set +e
ctest --output-on-failure --timeout 600
rc=$?
set -e
exit $rc
