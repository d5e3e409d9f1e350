#!/usr/bin/env bash
# Brings up a Thor network across several hosts: a directory on the first, a relay on each of the
# others, started over ssh, and then the proxy on this machine.
#
# For VPS hosts (Debian 12, reachable with ssh keys: ssh-copy-id root@HOST first; TCP ports
# 50051 and 9001 open between them):
#
#   examples/multi-host.sh [options] DIRECTORY_HOST RELAY_HOST RELAY_HOST RELAY_HOST...
#       e.g. examples/multi-host.sh --copy-thor build/app/thor root@203.0.113.5 root@198.51.100.7 \
#                root@198.51.100.8 root@192.0.2.44
#   examples/multi-host.sh --down DIRECTORY_HOST RELAY_HOST...     stops what the script started
#
# Each host keeps its keys, logs and pid files in ~/thor-net. The directory's public key is copied
# from the directory host to every relay and to ./thor-net-directory.pub here; the script ends by
# printing (or, with --proxy, running) the `thor proxy` command for this machine.
#
# The same steps run on this machine alone, with network namespaces standing in for the hosts
# (root needed; nothing outside the namespaces is touched):
#
#   sudo examples/multi-host.sh --local [--relays 3] [--check]
#
# --local makes one namespace per host (NAME-dir, NAME-r1..., NAME-client) joined by a bridge in
# NAME-hub on 10.232.0.0/24, runs every ssh step as `ip netns exec`, starts the proxy in NAME-client
# and a web server on the directory host, and fetches a page through the network. --check then stops
# everything and exits 0 only if the page arrived intact; otherwise it waits for Ctrl-C.
#
# Options:
#   --thor PATH           thor on this machine (default: build/app/thor, else `thor` on PATH)
#   --copy-thor PATH      copy this binary to each host as ~/thor-net/thor (default: hosts run `thor`)
#   --exit-policy RULES   the relays' exit policy (default: "accept *:80, accept *:443, reject *:*")
#   --directory-port N    the directory's relay port (default 50051)
#   --relay-port N        each relay's port (default 9001)
#   --socks HOST:PORT     where the proxy listens (default 127.0.0.1:9050)
#   --proxy               run `thor proxy` here in the foreground when the network is up
#   --local, --relays N, --check, --name NAME (namespace prefix, default thormh)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
thor_local=""
copy_thor=""
exit_policy="accept *:80, accept *:443, reject *:*"
dir_port=50051
relay_port=9001
socks=127.0.0.1:9050
run_proxy=false
local_mode=false
local_relays=3
check=false
down=false
name=thormh
hosts=()

die() { echo "multi-host.sh: $*" >&2; exit 1; }
q() { printf '%q ' "$@"; }  # quotes words for a remote shell

while (($#)); do
  case "$1" in
    --thor) thor_local=$2; shift 2 ;;
    --copy-thor) copy_thor=$2; shift 2 ;;
    --exit-policy) exit_policy=$2; shift 2 ;;
    --directory-port) dir_port=$2; shift 2 ;;
    --relay-port) relay_port=$2; shift 2 ;;
    --socks) socks=$2; shift 2 ;;
    --proxy) run_proxy=true; shift ;;
    --local) local_mode=true; shift ;;
    --relays) local_relays=$2; shift 2 ;;
    --check) check=true; shift ;;
    --name) name=$2; shift 2 ;;
    --down) down=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) hosts+=("$1"); shift ;;
  esac
done

if [ -z "$thor_local" ]; then
  if [ -x "$here/build/app/thor" ]; then thor_local="$here/build/app/thor"; else thor_local=$(command -v thor || true); fi
fi

# --- How a step reaches a host: ssh, or a network namespace on this machine --------------------------
# Every host-side command runs in that host's folder (~/thor-net over ssh).

if $local_mode; then
  [ "$(id -u)" -eq 0 ] || die "--local needs root (it creates network namespaces)"
  command -v ip >/dev/null || die "--local needs the ip command (Debian package iproute2)"
  [ -x "$thor_local" ] || die "no thor binary: build it (ninja -C build) or pass --thor PATH"
  work=$(mktemp -d "/tmp/$name-XXXXXX")
  host_dir() { echo "$work/hosts/$1"; }
  on() { local h=$1; shift; ip netns exec "$name-$h" sh -c "cd $(q "$(host_dir "$h")") && $*"; }
  put() { cp "$1" "$(host_dir "$2")/$3"; }
  get() { cp "$(host_dir "$1")/$2" "$3"; }
else
  command -v ssh >/dev/null || die "ssh is not installed"
  ssh_opts=(-o BatchMode=yes -o ConnectTimeout=10)
  on() { local h=$1; shift; ssh "${ssh_opts[@]}" "$h" "mkdir -p thor-net && cd thor-net && $*"; }
  put() { scp -q "${ssh_opts[@]}" "$1" "$2:thor-net/$3"; }
  get() { scp -q "${ssh_opts[@]}" "$1:thor-net/$2" "$3"; }
fi

# A host's address as the others reach it.
address_of() {
  if $local_mode; then echo "${addr[$1]}"; return; fi
  local h=${1#*@}
  if [[ $h =~ ^[0-9.]+$ ]]; then echo "$h"; return; fi
  getent ahostsv4 "$h" | awk 'NR==1 {print $1}' | grep . || die "cannot resolve $h"
}

# Starts `thor ARGS...` on a host in the background, its log in NAME.log and its pid in NAME.pid.
start() {
  local h=$1 role=$2; shift 2
  on "$h" "{ nohup $thor_remote $(q "$@") > $role.log 2>&1 < /dev/null & echo \$! > $role.pid; }"
}

# Stops what start() started there (by the pids it recorded), waiting up to 5 s for each to exit
# (an exited daemon whose zombie init has not reaped yet counts as gone).
stop_host() {
  on "$1" 'for f in *.pid; do
             [ -f "$f" ] || continue
             p=$(cat "$f"); kill "$p" 2>/dev/null
             for _ in $(seq 50); do
               s=$(sed "s/.*) //" "/proc/$p/stat" 2>/dev/null | cut -d" " -f1)
               [ -n "$s" ] && [ "$s" != Z ] || break
               sleep 0.1
             done
             rm -f "$f"
           done'
}

# --- Local mode: the namespaces ---------------------------------------------------------------------

declare -A addr
local_teardown() {
  set +e
  # The proxy and relays before the directory, so none of them spends its last seconds rejoining.
  for ((j = ${#hosts[@]} - 1; j >= 0; j--)); do
    h=${hosts[j]}
    [ -d "$(host_dir "$h")" ] && ip netns exec "$name-$h" true 2>/dev/null && stop_host "$h"
  done
  for h in "${hosts[@]}" hub; do ip netns del "$name-$h" 2>/dev/null; done
  rm -rf "$work"
}

local_setup() {
  hosts=(dir)
  for i in $(seq 1 "$local_relays"); do hosts+=("r$i"); done
  hosts+=(client)
  for h in "${hosts[@]}" hub; do
    [ ! -e "/run/netns/$name-$h" ] || die "namespace $name-$h exists already (another run?); pick another --name or remove it: ip netns del $name-$h"
  done
  trap local_teardown EXIT
  trap 'exit 130' INT TERM HUP PIPE
  ip netns add "$name-hub"
  ip -n "$name-hub" link add br0 type bridge
  ip -n "$name-hub" link set br0 up
  local i=1
  for h in "${hosts[@]}"; do
    addr[$h]=10.232.0.$i
    ip netns add "$name-$h"
    # Made inside the namespaces, so no interface name can clash with this machine's.
    ip link add eth0 netns "$name-$h" type veth peer name "p$i" netns "$name-hub"
    ip -n "$name-hub" link set "p$i" master br0 up
    ip -n "$name-$h" addr add "${addr[$h]}/24" dev eth0
    ip -n "$name-$h" link set eth0 up
    ip -n "$name-$h" link set lo up
    mkdir -p "$(host_dir "$h")"
    i=$((i + 1))
  done
  echo "Hosts (network namespaces): $(for h in "${hosts[@]}"; do printf '%s=%s ' "$name-$h" "${addr[$h]}"; done)"
}

if $down; then
  $local_mode && die "--local cleans up after itself; --down is for ssh hosts"
  ((${#hosts[@]})) || die "--down needs the hosts"
  for h in "${hosts[@]}"; do stop_host "$h" && echo "stopped Thor on $h"; done
  exit 0
fi

if $local_mode; then
  ((${#hosts[@]} == 0)) || die "--local takes no host names"
  local_setup
  # The lab's web server is on the directory host; the exits may reach the lab's subnet.
  exit_policy="accept 10.232.0.0/24:*, reject private:*, accept *:*"
else
  ((${#hosts[@]} >= 4)) || die "give a directory host and at least three relay hosts (see --help)"
fi

dir_host=${hosts[0]}
relay_hosts=("${hosts[@]:1}")
$local_mode && unset 'relay_hosts[-1]'  # the last namespace is this machine's stand-in (the client)

# --- The steps, the same over ssh and in namespaces ---------------------------------------------------

thor_remote=thor
if $local_mode; then
  thor_remote=$(q "$thor_local")
elif [ -n "$copy_thor" ]; then
  thor_remote='./thor'
  for h in "${hosts[@]}"; do on "$h" true; put "$copy_thor" "$h" thor; echo "copied thor to $h"; done
fi

dir_addr=$(address_of "$dir_host")
echo "Directory on $dir_host ($dir_addr:$dir_port)"
# keygen prints the key's fingerprint; only its errors are shown.
on "$dir_host" "{ [ -f directory.key ] || $thor_remote keygen directory.key >/dev/null 2>keygen.err || { cat keygen.err; false; }; } &&
                { [ -f directory.pub ] || $thor_remote keygen --public directory.key directory.pub >/dev/null; }"
start "$dir_host" directory directory --key directory.key --listen "0.0.0.0:$dir_port" --http 127.0.0.1:50052
pub=$(mktemp)
get "$dir_host" directory.pub "$pub"

i=0
for h in "${relay_hosts[@]}"; do
  i=$((i + 1))
  a=$(address_of "$h")
  echo "Relay $i on $h ($a:$relay_port)"
  on "$h" "[ -f relay.key ] || $thor_remote keygen relay.key >/dev/null 2>keygen.err || { cat keygen.err; false; }"
  put "$pub" "$h" directory.pub
  start "$h" relay relay --key relay.key --directory "$dir_addr:$dir_port" --directory-key directory.pub \
    --listen "0.0.0.0:$relay_port" --advertise "$a:$relay_port" --nickname "${name//[^A-Za-z0-9]/}relay$i" \
    --exit-policy "$exit_policy"
done

if ! $local_mode; then
  cp "$pub" thor-net-directory.pub
  rm -f "$pub"
  proxy_cmd=("$thor_local" proxy --directory "$dir_addr:$dir_port" --directory-key thor-net-directory.pub --socks "$socks")
  echo
  echo "The network is starting. Logs: ssh HOST cat thor-net/directory.log (or relay.log)."
  echo "Status: ssh -L 50052:127.0.0.1:50052 $dir_host, then http://127.0.0.1:50052/status"
  echo "Proxy here: $(q "${proxy_cmd[@]}")"
  echo "Then:       curl --socks5-hostname $socks https://example.com/"
  echo "Stop:       $0 --down $(q "${hosts[@]}")"
  if $run_proxy; then exec "${proxy_cmd[@]}"; fi
  exit 0
fi

# --- Local mode: proxy in the client namespace, a page fetched through the network ------------------

client=${hosts[-1]}
put "$pub" "$client" directory.pub
rm -f "$pub"
# All the lab's relays share one /16, which a real network's path selection avoids.
start "$client" proxy proxy --directory "$dir_addr:$dir_port" --directory-key directory.pub --socks "$socks" \
  --no-distinct-subnets --log-level info

www="$(host_dir "$dir_host")/www"
mkdir -p "$www"
printf '<!doctype html><title>Thor across %d hosts</title><p>Hello from %s, %s</p>\n' \
  "${#hosts[@]}" "$dir_host" "$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$www/index.html"
on "$dir_host" "{ nohup python3 -m http.server 8080 --bind $dir_addr --directory www > web.log 2>&1 < /dev/null & echo \$! > web.pid; }"

url="http://$dir_addr:8080/index.html"
echo "Fetching $url through the network from $name-$client (SOCKS $socks)..."
got=""
for _ in $(seq 1 150); do
  if got=$(on "$client" "curl --silent --fail --max-time 5 --socks5-hostname $socks $url" 2>/dev/null); then break; fi
  got=""
  sleep 0.2
done
want=$(cat "$www/index.html")
echo "$got"
grep -E "circuit .*built" "$(host_dir "$client")/proxy.log" | tail -n 1 || true
if [ "$got" = "$want" ]; then
  echo "check passed: the page arrived intact (SHA-256 $(printf '%s' "$got" | sha256sum | cut -c1-16)...)"
else
  echo "check failed: the page did not arrive intact" >&2
  for f in "$work"/hosts/*/*.log; do echo "--- $f" >&2; tail -n 5 "$f" >&2; done
  $check && exit 1
fi
$check && exit 0

echo
echo "Running. Try: ip netns exec $name-$client curl --socks5-hostname $socks $url"
echo "Press Ctrl-C to stop and remove the namespaces."
while true; do sleep 3600 & wait $! || true; done  # wait returns at once on a signal; sleep alone would not
