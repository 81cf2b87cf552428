#!/usr/bin/env bash
# Benchmarks `pennyworth serve` in front of an instant Bedrock upstream (bench/bedrock_stub.rs,
# the test server of tests/support/bedrock.rs) on loopback, with wrk as the load generator:
#   - latency p50/p99 and throughput of buffered and streamed chat at 50 and 200 connections,
#     through the gateway and straight to the stub (the difference is the gateway's cost);
#   - time to the first content chunk through the gateway and straight from the stub;
#   - open loop with oha at fixed rates (BENCH_RATES, default 1000 2000 req/s) over 50 and 200
#     connections, latency from each request's scheduled send time: the added latency;
#   - peak RSS of the gateway while 200 streams of 5 s each are open.
# Everything runs on 127.0.0.1 and stops by itself. Needs `wrk` (apt), `bc`, oha (installed
# with cargo into ~/.cache/oha when missing); builds the gateway with the Lambda profile (what
# production runs) and the stub and client with --release.
# Usage: bash bench/bedrock.sh (BENCH_DURATION, BENCH_OPEN_DURATION, BENCH_RATES,
# BENCH_CONNECTIONS, BENCH_STUB_PORT, BENCH_GW_PORT in the environment). The engine benchmark (start-up, `echo` model closed and open loop, memory) is
# bench/run.sh; figures of both in doc/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-10s}"
STUB_PORT="${BENCH_STUB_PORT:-9101}"
GW_PORT="${BENCH_GW_PORT:-9102}"
target="${CARGO_TARGET_DIR:-target}"

cargo build --profile lambda --quiet --bin pennyworth
cargo build --release --quiet --example bedrock_stub --example ttfb
bin="$target/release"
gateway="$target/lambda/pennyworth"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start_stub() {
  "$bin/examples/bedrock_stub" --port "$STUB_PORT" "$@" > "$work/stub.log" 2>&1 &
  stub_pid=$!
  pids+=("$stub_pid")
  for _ in $(seq 100); do grep -q listening "$work/stub.log" && return; sleep 0.05; done
  echo "stub did not start" >&2; exit 1
}
stop_stub() { kill "$stub_pid"; wait "$stub_pid" 2>/dev/null || true; }

mkdir -p "$work/config/policies"
cp routes.yaml "$work/config/"
cp policies/* "$work/config/policies/"
cat > "$work/config/models.yaml" <<EOF
models:
  echo:
    provider: echo
    groups: [standard]
  bench:
    provider: bedrock
    upstream: bench-model
    region: us-east-1
    endpoint_url: http://127.0.0.1:$STUB_PORT
    groups: [standard]
EOF
key="$("$gateway" init --data-dir "$work/data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"

start_stub
env -i PATH="$PATH" HOME="$work" AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true PENNYWORTH_LOG=info \
  "$gateway" serve --config "$work/config" --data-dir "$work/data" \
  --listen "127.0.0.1:$GW_PORT" > "$work/gw.out" 2> "$work/gw.log" &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 100); do grep -q listening "$work/gw.out" && break; sleep 0.05; done

msg='[{"role":"user","content":"Say hello to the benchmark."}]'
echo "{\"model\":\"bench\",\"messages\":$msg}" > "$work/buffered.json"
echo "{\"model\":\"echo\",\"messages\":$msg}" > "$work/echo.json"
echo "{\"model\":\"bench\",\"messages\":$msg,\"stream\":true}" > "$work/stream.json"
echo '{"messages":[{"role":"user","content":[{"text":"Say hello to the benchmark."}]}]}' > "$work/converse.json"
cat > "$work/post.lua" <<'EOF'
local f = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then wrk.headers["authorization"] = "Bearer " .. key end
EOF

run_wrk() { # label connections url body key
  local out
  local threads=2
  [ "$2" -lt 2 ] && threads=1
  out="$(BENCH_BODY="$4" BENCH_KEY="$5" wrk -t"$threads" -c"$2" -d"$DURATION" --latency -s "$work/post.lua" "$3")"
  local p50 p99 rps errors
  p50="$(awk '$1=="50%"{print $2}' <<<"$out")"
  p99="$(awk '$1=="99%"{print $2}' <<<"$out")"
  rps="$(awk '/Requests\/sec/{print $2}' <<<"$out")"
  errors="$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' || true)"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$p50" "$p99" "$rps" "${errors:-none}"
}

echo "| run | connections | p50 | p99 | requests/s | errors |"
echo "|---|---|---|---|---|---|"
for c in ${BENCH_CONNECTIONS:-1 50 200}; do
  run_wrk "built-in echo model (no upstream), gateway" "$c" "http://127.0.0.1:$GW_PORT/v1/chat/completions" "$work/echo.json" "$key"
  run_wrk "buffered, direct to stub" "$c" "http://127.0.0.1:$STUB_PORT/model/bench-model/converse" "$work/converse.json" ""
  run_wrk "buffered, through gateway" "$c" "http://127.0.0.1:$GW_PORT/v1/chat/completions" "$work/buffered.json" "$key"
  run_wrk "streamed, direct to stub" "$c" "http://127.0.0.1:$STUB_PORT/model/bench-model/converse-stream" "$work/converse.json" ""
  run_wrk "streamed, through gateway" "$c" "http://127.0.0.1:$GW_PORT/v1/chat/completions" "$work/stream.json" "$key"
done

# Open loop (added latency): oha sends at a fixed total rate over C connections and counts
# each request's latency from its scheduled send time (--latency-correction), so waiting
# behind a slow answer counts; the gateway's added latency is the difference between the
# "through gateway" and "direct to stub" rows at the same rate and connections.
OHA="${OHA:-$(command -v oha || echo "$HOME/.cache/oha/bin/oha")}"
if [ ! -x "$OHA" ]; then
  cargo install oha --locked --root "$HOME/.cache/oha" >&2
  OHA="$HOME/.cache/oha/bin/oha"
fi
RATES="${BENCH_RATES:-1000 2000}"
OPEN_DURATION="${BENCH_OPEN_DURATION:-10s}"
run_oha() { # label connections rate url body key
  local auth=()
  [ -n "$6" ] && auth=(-H "authorization: Bearer $6")
  local common=(--no-tui -c "$2" -q "$3" --latency-correction -m POST -T application/json -D "$5" "${auth[@]}")
  "$OHA" "${common[@]}" -z 2s --output-format quiet "$4" > /dev/null 2>&1
  "$OHA" "${common[@]}" -z "$OPEN_DURATION" --output-format json -o "$work/oha.json" "$4" > /dev/null 2>&1
  local line kv
  line="$(python3 bench/oha_summary.py "$work/oha.json")"
  for kv in $line; do printf -v "O_${kv%%=*}" '%s' "${kv#*=}"; done
  # shellcheck disable=SC2154  # set by the loop above
  printf '| %s | %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %s %% |\n' "$1" "$2" "$3" "$O_rps" \
    "$(bc -l <<<"$O_p50_us/1000")" "$(bc -l <<<"$O_p90_us/1000")" "$(bc -l <<<"$O_p99_us/1000")" \
    "$(bc -l <<<"$O_p999_us/1000")" "$O_success_pct"
}
echo
echo "open loop ($OPEN_DURATION per run after a 2 s warm-up at the same rate; latency in ms):"
echo
echo "| run | connections | rate req/s | achieved req/s | p50 | p90 | p99 | p99.9 | success |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in 50 200; do
  for r in $RATES; do
    run_oha "buffered, direct to stub" "$c" "$r" "http://127.0.0.1:$STUB_PORT/model/bench-model/converse" "$work/converse.json" ""
    run_oha "buffered, through gateway" "$c" "$r" "http://127.0.0.1:$GW_PORT/v1/chat/completions" "$work/buffered.json" "$key"
    run_oha "streamed, direct to stub" "$c" "$r" "http://127.0.0.1:$STUB_PORT/model/bench-model/converse-stream" "$work/converse.json" ""
    run_oha "streamed, through gateway" "$c" "$r" "http://127.0.0.1:$GW_PORT/v1/chat/completions" "$work/stream.json" "$key"
  done
done

echo
echo "time to first content chunk (sequential, a new connection each):"
"$bin/examples/ttfb" "http://127.0.0.1:$STUB_PORT/model/bench-model/converse-stream" "$work/converse.json" "word" 500 | sed 's/^/  direct to stub:    /'
"$bin/examples/ttfb" "http://127.0.0.1:$GW_PORT/v1/chat/completions" "$work/stream.json" '"content":"word' 500 "authorization: Bearer $key" | sed 's/^/  through gateway:   /'

echo
stop_stub
start_stub --events 100 --pause-ms 50
BENCH_BODY="$work/stream.json" BENCH_KEY="$key" wrk -t2 -c200 -d8s --timeout 10s -s "$work/post.lua" \
  "http://127.0.0.1:$GW_PORT/v1/chat/completions" > "$work/rss-wrk.txt" &
wrk_pid=$!
peak=0
while kill -0 "$wrk_pid" 2>/dev/null; do
  rss="$(awk '/VmRSS/{print $2}' "/proc/$gw_pid/status")"
  [ "$rss" -gt "$peak" ] && peak="$rss"
  sleep 0.2
done
wait "$wrk_pid" || true
hwm="$(awk '/VmHWM/{print $2}' "/proc/$gw_pid/status")"
echo "200 concurrent 5-second streams: gateway RSS peak sampled ${peak} kB; VmHWM over the whole run ${hwm} kB"
grep -E 'requests in|Non-2xx|Socket errors' "$work/rss-wrk.txt" | sed 's/^/  /'
