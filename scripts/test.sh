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
set +e
meson test -C "$builddir" --print-errorlogs --num-processes 2 "$@" | tee "$builddir/test-summary.txt"
rc=${PIPESTATUS[0]}
set -e
count() { awk -v k="$1" '$1 == k {print $2; exit}' "$builddir/test-summary.txt"; }
ok=$(count "Ok:"); fail=$(count "Fail:"); timeout=$(count "Timeout:"); skipped=$(count "Skipped:")
echo "tests: ${ok:-0} passed, $(( ${fail:-0} + ${timeout:-0} )) failed, ${skipped:-0} skipped"
exit "$rc"
