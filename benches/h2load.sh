#!/usr/bin/env bash
# HTTP/2 over TLS through a front: loadlab's against nginx's and HAProxy's, in one run,
# to the same two shards, with h2load (Debian's nghttp2-client).
#
# One `loadlab serve --no-front --shards 2` process holds the shards; each front runs
# on one thread (loadlab: `loadlab front --front-threads 1`, the TCP path; nginx:
# `worker_processes 1`; HAProxy: `nbthread 1`), all with the same self-signed
# certificate and keep-alive connections to the shards. `front-h2-inproc` is `loadlab
# serve --front-threads 1` with its own two shards reached in-process (a process of its
# own, so not the same shards: shown for the path, not the comparison).
#
# Each front gets a separate short warm-up run (h2load's own --warm-up-time reported
# 0 req/s here), then the measured runs, interleaved: every front once per round.
# Besides requests/s, each run reports the CPU time per answered request of the front's
# process(es) and of the shards (from /proc), and the front's user time alone: on a
# small shared machine requests/s swings with how the cores were shared, CPU time per
# request much less.
#
# Usage: [BIN=target/release/loadlab] benches/h2load.sh [rounds=2] [duration=4] [path=/healthz]
# Needs h2load, nginx (nginx-light has ssl and http_v2), haproxy, openssl, curl; builds
# the release binary first. Writes benches/results/<UTC stamp>-h2/report.md.
set -euo pipefail

rounds=${1:-2}
duration=${2:-4}
path=${3:-/healthz}
root=$(cd "$(dirname "$0")/.." && pwd)
# BIN=path: measure that binary instead of building one (e.g. the one `cargo bench`
# built: a plain `cargo build --release` after it rebuilds every dependency).
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  bin="$root/target/release/loadlab"
fi
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
out="$root/benches/results/$stamp-h2"
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

shard_base=4300
declare -A port=([front-h2]=4310 [nginx-h2]=4311 [haproxy-h2]=4312 [front-h2-inproc]=4313)
order=(front-h2 nginx-h2 haproxy-h2 front-h2-inproc)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
cat "$dir/cert.pem" "$dir/key.pem" >"$dir/haproxy.pem"

wait_for() { # url
  for _ in $(seq 1 200); do
    curl -ksf -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "not ready: $1" >&2
  exit 1
}

"$bin" serve --no-front --shards 2 --shard-base-port $shard_base --db "$dir/mega.db" \
  >"$dir/shards.log" 2>&1 &
pids+=($!)
shards_pid=$!
# The process(es) whose CPU time is each front's (nginx and HAProxy: their children too).
declare -A front_pid
wait_for "http://127.0.0.1:$shard_base/healthz"
wait_for "http://127.0.0.1:$((shard_base + 1))/healthz"

cat >"$dir/front.toml" <<EOF
[[pools]]
name = "shards"
upstreams = [{ addr = "127.0.0.1:$shard_base" }, { addr = "127.0.0.1:$((shard_base + 1))" }]
EOF
"$bin" front --config "$dir/front.toml" --bind "127.0.0.1:${port[front-h2]}" --front-threads 1 \
  --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" >"$dir/front.log" 2>&1 &
pids+=($!)
front_pid[front-h2]=$!

"$bin" serve --shards 2 --shard-base-port $((shard_base + 20)) --front-threads 1 \
  --bind "127.0.0.1:${port[front-h2-inproc]}" --db "$dir/mega-inproc.db" \
  --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" >"$dir/inproc.log" 2>&1 &
pids+=($!)
front_pid[front-h2-inproc]=$!

mkdir -p "$dir/nginx"
cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/nginx;
  proxy_temp_path $dir/nginx;
  fastcgi_temp_path $dir/nginx;
  uwsgi_temp_path $dir/nginx;
  scgi_temp_path $dir/nginx;
  upstream shards {
    server 127.0.0.1:$shard_base;
    server 127.0.0.1:$((shard_base + 1));
    # As many idle upstream connections as streams in flight (16 x 8): fewer churn.
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port[nginx-h2]} ssl http2;
    ssl_certificate $dir/cert.pem;
    ssl_certificate_key $dir/key.pem;
    # nginx 1.22 offers TLS 1.3 only when told (loadlab's front and HAProxy do by default).
    ssl_protocols TLSv1.2 TLSv1.3;
    # h2load keeps its connections: nginx's default (1000) would end them early.
    keepalive_requests 10000000;
    location / {
      proxy_pass http://shards;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$dir/nginx.conf" -p "$dir" &
pids+=($!)
front_pid[nginx-h2]=$!

cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:${port[haproxy-h2]} ssl crt $dir/haproxy.pem alpn h2,http/1.1
  default_backend shards
backend shards
  balance roundrobin
  server s0 127.0.0.1:$shard_base
  server s1 127.0.0.1:$((shard_base + 1))
EOF
haproxy -f "$dir/haproxy.cfg" -db >"$dir/haproxy.log" 2>&1 &
pids+=($!)
front_pid[haproxy-h2]=$!

for name in "${order[@]}"; do
  wait_for "https://127.0.0.1:${port[$name]}$path"
done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# The hypervisor's steal (field 9 of /proc/stat's `cpu` line) and the total CPU time,
# clock ticks: a virtual machine's figures swing with the steal, which nothing else shows.
cpu_times() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
read -r steal0 total0 < <(cpu_times)

# CPU time (clock ticks) of process $1 and its children, all threads: user + system,
# or user alone when $2 is `user`.
ticks() {
  local total=0 pid fields='$14 + $15'
  [ "${2:-}" = user ] && fields='$14'
  for pid in "$1" $(pgrep -P "$1"); do
    # Fields 14 (user) and 15 (system) of /proc/PID/stat (the name in field 2 has no
    # spaces here).
    total=$((total + $(awk "{ print $fields }" "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
tick_us=$((1000000 / $(getconf CLK_TCK)))

run() { # name seconds -> requests/s (only answered 2xx count), TLS version, CPU
  # microseconds per answered request of the front's process(es) and of the shards, and
  # the front's user time alone
  local front0 user0 shards0
  front0=$(ticks "${front_pid[$1]}") user0=$(ticks "${front_pid[$1]}" user)
  shards0=$(ticks "$shards_pid")
  h2load -c 16 -m 8 -D "$2" "https://127.0.0.1:${port[$1]}$path" >"$dir/h2load-$1.txt" 2>&1
  local front_cpu=$(($(ticks "${front_pid[$1]}") - front0)) shards_cpu=$(($(ticks "$shards_pid") - shards0))
  local user_cpu=$(($(ticks "${front_pid[$1]}" user) - user0))
  awk -v fc="$front_cpu" -v sc="$shards_cpu" -v uc="$user_cpu" -v us="$tick_us" \
    '/^TLS Protocol:/ { tls = $3 } /^Application protocol:/ { alpn = $3 }
    /^finished in/ { secs = $3 + 0 } /^status codes:/ { ok = $3 + 0 }
    END { if (alpn != "h2") { print "not-h2"; exit }
      printf "%.0f %s %.1f %.1f %.1f\n", ok / secs, tls, fc * us / ok, sc * us / ok, uc * us / ok }' \
    "$dir/h2load-$1.txt"
}

declare -A results tls front_us shards_us user_us
for name in "${order[@]}"; do run "$name" 1 >/dev/null; done
for round in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do
    read -r rps version fus sus uus < <(run "$name" "$duration")
    results[$name]+="$rps "
    front_us[$name]+="$fus "
    user_us[$name]+="$uus "
    shards_us[$name]+="$sus "
    tls[$name]=$version
    echo "round $round: $name $rps req/s ($version), CPU per request: front $fus us (user $uus), shards $sus us"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2);
  if (NR % 2) printf "%.1f", v[m]; else printf "%.1f", (v[m] + v[m + 1]) / 2 }'; }
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
read -r steal1 total1 < <(cpu_times)
steal=$(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) \
  'BEGIN { if (t > 0) printf "%.1f%%", 100 * s / t; else print "not measured" }')

mkdir -p "$out"
{
  echo "# h2load over TLS through one-thread fronts, $stamp"
  echo
  echo "\`h2load -c 16 -m 8 -D $duration https://127.0.0.1:PORT$path\`, $rounds interleaved rounds"
  echo "after a 1 s warm-up run each; every front has one thread and the same certificate"
  echo "(ECDSA P-256), h2 by ALPN, HTTP/1.1 keep-alive to the same two loadlab shards"
  echo "(\`front-h2-inproc\`: its own shards, in-process). Machine: $(nproc) cores,"
  echo "$(uname -sr), h2load on the same machine; shared with other work while it ran."
  echo
  echo "Load average (1, 5, 15 min): $load_before before the runs, $load_after after."
  echo "Hypervisor steal during the runs: $steal of the machine's CPU time (/proc/stat)."
  echo
  echo "| front | requests/s per round (2xx answers) | mean | TLS |"
  echo "|---|---|---|---|"
  for name in "${order[@]}"; do
    mean=$(echo "${results[$name]}" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF }')
    echo "| $name | ${results[$name]% } | $mean | ${tls[$name]} |"
  done
  echo
  echo 'CPU time per answered request (user + system, all threads, from /proc; median of'
  echo 'the rounds, in microseconds): the front'"'"'s own process(es) (nginx and HAProxy with'
  echo 'their children; `front-h2-inproc` includes its own shards), and the shards'
  echo 'process shared by the other three (not used by `front-h2-inproc`). Unlike'
  echo 'requests/s, this does not depend on how the two cores were shared at the time.'
  echo 'The front'"'"'s user time alone is given apart: the system time is mostly the'
  echo 'sends and receives every front makes alike.'
  echo
  echo "| front | front CPU per request, us (per round) | median | of which user, median | shards CPU per request, us | median |"
  echo "|---|---|---|---|---|---|"
  for name in "${order[@]}"; do
    echo "| $name | ${front_us[$name]% } | $(echo "${front_us[$name]}" | median) | $(echo "${user_us[$name]}" | median) | ${shards_us[$name]% } | $(echo "${shards_us[$name]}" | median) |"
  done
  echo
  echo "Versions: $("$bin" --version), $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(h2load --version | head -1)."
  echo "Script: benches/h2load.sh $rounds $duration $path"
} >"$out/report.md"
cat "$out/report.md"
