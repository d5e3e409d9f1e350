#!/usr/bin/env bash
# The README's test command: installs what is missing, builds from nothing, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-packages.sh test

builddir=${THOR_TEST_BUILDDIR:-build-test}
werror=false
[ "${CI:-}" = "true" ] && werror=true
if [ ! -f "$builddir/build.ninja" ]; then
  meson setup "$builddir" -Dwerror="$werror" -Dbuildtype=debugoptimized
fi
ninja -C "$builddir"
meson test -C "$builddir" --print-errorlogs --num-processes 2
