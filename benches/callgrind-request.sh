#!/usr/bin/env bash
# Instructions per request of one `loadlab serve` path, counted by callgrind.
#
# Instruction counts, unlike requests/s, repeat from run to run whatever else the
# machine is doing, so they show what a change to the request path costs or saves
# when timings are too noisy to tell (the load-test harness on a shared 2-core
# machine moves by +-10% between runs). Kernel work (syscalls, TCP) is not counted:
# this measures loadlab's own code only.
#
# Usage: benches/callgrind-request.sh front|shard [healthz|insert] [extra serve flags...]
#   front: wrk on the front (:4200), which reaches the shards in-process by default
#   shard: `--no-front`, wrk on shard 0 (:4100)
# Needs valgrind (callgrind_control), wrk and curl; builds the release binary first.
# Prints the requests served while counting and the instructions per request; the
# full profile is left in callgrind.<path>.<scenario>.out for callgrind_annotate.
set -euo pipefail

path=${1:?front or shard}
scenario=${2:-healthz}
shift $(($# < 2 ? $# : 2))
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/loadlab"
out="$PWD/callgrind.$path.$scenario.out"
dir=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT

case $path in
  front) url=http://127.0.0.1:4200; flags=(--bind 127.0.0.1:4200) ;;
  shard) url=http://127.0.0.1:4100; flags=(--no-front) ;;
  *) echo "path must be front or shard" >&2; exit 2 ;;
esac
case $scenario in
  healthz) load=("$url/healthz") ;;
  insert) load=(-s "$root/benches/wrk/insert.lua" "$url/app/insert") ;;
  *) echo "scenario must be healthz or insert" >&2; exit 2 ;;
esac

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
  "$bin" serve --shards 2 --shard-base-port 4100 --db "$dir/mega.db" "${flags[@]}" "$@" \
  >"$dir/serve.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  curl -sf "$url/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "$url/readyz" >/dev/null || { cat "$dir/serve.log" >&2; exit 1; }

wrk -t1 -c8 -d2s "${load[@]}" >/dev/null # warm-up, not counted
callgrind_control -i on "$pid" >/dev/null
requests=$(wrk -t1 -c8 -d6s "${load[@]}" | awk '/requests in/ {print $1}')
callgrind_control -i off "$pid" >/dev/null
kill -TERM "$pid"
wait "$pid" || true
total=$(awk '/^totals:/ {print $2}' "$out")
echo "$path $scenario: $requests requests, $((total / requests)) instructions per request ($out)"
