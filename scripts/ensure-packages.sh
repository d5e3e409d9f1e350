#!/usr/bin/env bash
# Installs the Debian 12 packages Thor needs, only those missing. Sourced by the README's commands.
# Usage: ensure-packages.sh build|test|demo|bench
set -euo pipefail

build_pkgs=(g++ meson ninja-build pkg-config libuv1-dev libsodium-dev nlohmann-json3-dev doctest-dev
            libcli11-dev libhttp-parser-dev)
# Real clients the end-to-end tests drive through Thor (tests/e2e/), and iproute2 for the tests'
# network namespaces.
test_pkgs=(curl python3 python3-requests python3-socks torsocks proxychains4 chromium iproute2)
demo_pkgs=(curl python3)
# The peers bench/run.py measures Thor against, and its file server.
bench_pkgs=(tor microsocks nginx-light curl python3)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  test) want+=("${test_pkgs[@]}") ;;
  demo) want+=("${demo_pkgs[@]}") ;;
  bench) want+=("${bench_pkgs[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "Installing missing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
