#!/usr/bin/env bash
# Thor's bulk throughput and time to first byte through one `thor up` network, quickly and without
# the full comparison of bench/run.py: the loop to run while optimising the hot path.
#
#   bash bench/throughput.sh [--thor PATH] [--size MiB] [--streams N] [--stream-size MiB]
#                            [--reps N] [--ttfb N] [--server nginx|python] [--keep]
#
# Brings up, on 127.0.0.1 only: a file server (nginx with sendfile when installed, else
# `python3 -m http.server`) serving random files from /dev/shm, and `thor up --relays 3`. Then, per
# repetition: one curl download of --size MiB (MB/s from curl's own timing, SHA-256 checked),
# --streams concurrent curl downloads of --stream-size MiB (aggregate MB/s over the wall time, every
# SHA-256 checked), and --ttfb small requests on fresh SOCKS connections (curl's time_starttransfer,
# median and p99). It also prints the CPU seconds each Thor process (proxy, relays) spent per GiB
# carried, which is where to look first when a change does not help. Everything is torn down at the
# end; --keep keeps the folder with the logs.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
thor="$here/build-release/app/thor"
size_mib=256
streams=16
stream_mib=64
reps=1
ttfb_n=50
server=auto
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --thor) thor=$2; shift 2 ;;
    --size) size_mib=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --stream-size) stream_mib=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --ttfb) ttfb_n=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "throughput.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$thor" ] || { echo "throughput.sh: no thor binary at $thor (build with -Dbuildtype=release, or pass --thor)" >&2; exit 2; }
if [ "$server" = auto ]; then
  if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then server=nginx; else server=python; fi
fi

work=$(mktemp -d /dev/shm/thor-throughput.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {  # port seconds
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "throughput.sh: nothing listens on 127.0.0.1:$1 after $2 s" >&2
  return 1
}

mkdir -p "$work/www" "$work/out"
head -c $((size_mib << 20)) /dev/urandom > "$work/www/big.bin"
head -c $((stream_mib << 20)) /dev/urandom > "$work/www/mid.bin"
head -c 1024 /dev/urandom > "$work/www/small.bin"
big_sha=$(sha256sum "$work/www/big.bin" | cut -d' ' -f1)
mid_sha=$(sha256sum "$work/www/mid.bin" | cut -d' ' -f1)

http_port=$(free_port)
if [ "$server" = nginx ]; then
  mkdir -p "$work/nginx"
  user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
  cat > "$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$user_line
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_timeout 0;
  default_type application/octet-stream;
  client_body_temp_path $work/nginx/b; proxy_temp_path $work/nginx/p; fastcgi_temp_path $work/nginx/f;
  uwsgi_temp_path $work/nginx/u; scgi_temp_path $work/nginx/s;
  server { listen 127.0.0.1:$http_port; root $work/www; }
}
EOF
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  "$nginx_bin" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
else
  (cd "$work/www" && exec python3 -m http.server --bind 127.0.0.1 "$http_port" >"$work/http.log" 2>&1) &
fi
pids+=($!)
wait_port "$http_port" 10

socks_port=$(free_port)
"$thor" up --relays 3 --socks "127.0.0.1:$socks_port" --dir "$work/thor" >"$work/thor-up.out" 2>"$work/thor-up.err" &
up_pid=$!
pids+=($up_pid)
for ((i = 0; i < 600; i++)); do
  grep -q "Press Ctrl-C to stop." "$work/thor-up.out" 2>/dev/null && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$work/thor-up.err" >&2; exit 1; }
  sleep 0.05
done
grep -q "Press Ctrl-C to stop." "$work/thor-up.out" || { echo "thor up did not come up" >&2; cat "$work/thor-up.err" >&2; exit 1; }
echo "thor up ready ($(grep -o 'ready in [0-9.]* s' "$work/thor-up.out" || echo '?')), server: $server"

# The daemons are children of `thor up`; name each by its subcommand.
children=$(pgrep -P "$up_pid" || true)
role() { tr '\0' ' ' < "/proc/$1/cmdline" | awk '{print $2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A cpu0
snapshot() { for p in $children; do cpu0[$p]=$(cpu_ticks "$p"); done; }
report_cpu() {  # bytes carried
  local hz; hz=$(getconf CLK_TCK)
  local line="  CPU s/GiB:"
  for p in $children; do
    local r; r=$(role "$p")
    [ "$r" = directory ] && continue
    local d=$(( $(cpu_ticks "$p") - ${cpu0[$p]} ))
    line+=" $(awk -v t="$d" -v hz="$hz" -v b="$1" -v r="$r" 'BEGIN{printf "%s %.2f", r, t/hz/(b/1073741824)}')"
  done
  echo "$line"
}

url() { echo "http://127.0.0.1:$http_port/$1"; }
curl_socks=(curl -sS --fail --proxy "socks5h://127.0.0.1:$socks_port" --noproxy '')

for ((rep = 1; rep <= reps; rep++)); do
  echo "repetition $rep/$reps"
  # Warm the circuit and the page cache.
  "${curl_socks[@]}" -o /dev/null "$(url small.bin)"

  snapshot
  t=$("${curl_socks[@]}" -o "$work/out/big.bin" -w '%{time_total}' "$(url big.bin)")
  got=$(sha256sum "$work/out/big.bin" | cut -d' ' -f1)
  [ "$got" = "$big_sha" ] || { echo "single stream: SHA-256 mismatch" >&2; exit 1; }
  echo "  single stream: ${size_mib} MiB in ${t}s = $(awk -v b=$((size_mib << 20)) -v t="$t" 'BEGIN{printf "%.1f", b/t/1e6}') MB/s (SHA-256 ok)"
  report_cpu $((size_mib << 20))
  rm -f "$work/out/big.bin"

  if [ "$streams" -gt 0 ]; then
    snapshot
    start=$(date +%s.%N)
    cpids=()
    for ((i = 0; i < streams; i++)); do
      "${curl_socks[@]}" -o "$work/out/mid.$i" "$(url mid.bin)" & cpids+=($!)
    done
    for p in "${cpids[@]}"; do wait "$p" || { echo "a concurrent download failed" >&2; exit 1; }; done
    end=$(date +%s.%N)
    for ((i = 0; i < streams; i++)); do
      got=$(sha256sum "$work/out/mid.$i" | cut -d' ' -f1)
      [ "$got" = "$mid_sha" ] || { echo "stream $i: SHA-256 mismatch" >&2; exit 1; }
    done
    total=$((streams * (stream_mib << 20)))
    echo "  $streams streams: $((streams * stream_mib)) MiB in $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}')s = $(awk -v n=$total -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", n/(b-a)/1e6}') MB/s aggregate (all SHA-256 ok)"
    report_cpu "$total"
    rm -f "$work"/out/mid.*
  fi

  if [ "$ttfb_n" -gt 0 ]; then
    for ((i = 0; i < 5; i++)); do "${curl_socks[@]}" -o /dev/null "$(url small.bin)"; done
    for ((i = 0; i < ttfb_n; i++)); do
      "${curl_socks[@]}" -o /dev/null -w '%{time_starttransfer}\n' "$(url small.bin)"
    done | sort -n | awk '{v[NR]=$1} END{m=v[int((NR+1)/2)]; p=v[int(NR*0.99+0.999)]; printf "  first byte (curl, fresh SOCKS connection): median %.2f ms, p99 %.2f ms over %d\n", m*1000, p*1000, NR}'
  fi
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
