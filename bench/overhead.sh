#!/usr/bin/env bash
# The gateway's own cost in front of an instant upstream, per path (issue 19's table):
# OpenAI-compatible upstream and Bedrock (Converse / ConverseStream), buffered and streamed
# (CHUNKS content chunks per answer), against the same upstream called directly.
#
#   - the gateway (`pennyworth serve`, release build, PENNYWORTH_LOG=warn) pinned to CPU 0,
#     the upstream (bench/instant_upstream.rs: every answer encoded once, sent as one body)
#     and the load generator (oha) pinned to CPU 1;
#   - closed loop: oha with 50 connections for DURATION, throughput;
#   - gateway CPU per request: its user + system time (/proc/<pid>/stat) over the run divided
#     by the requests answered; this holds on a busy machine, throughput does not;
#   - open loop: oha at RATE req/s over 50 connections with --latency-correction, p99, through
#     the gateway and directly (the gateway's added p99 is the difference);
#   - CPU per streamed chunk: (streamed − buffered CPU per request) / CHUNKS.
#
# Usage: bash bench/overhead.sh            (defaults: 5 s per run, 20 chunks, 1,000 req/s)
# Environment: BENCH_PROFILE (the Cargo profile of the gateway: `release`, the default, or
# `lambda`, the fat-LTO build of the Lambda package; symbols stripped, so no BENCH_PERF_DIR
# profiles with it), BENCH_DURATION (5s), BENCH_RATE (1000), BENCH_CHUNKS (20), BENCH_CONNECTIONS
# (50), BENCH_PATHS ("openai openai-stream bedrock bedrock-stream"), BENCH_GATEWAY (a
# pennyworth binary to measure instead of building this tree's), BENCH_UP_PORT (9201),
# BENCH_GW_PORT (9202), OHA, BENCH_PERF_DIR (record `perf record -g` profiles of the gateway
# during its runs there, `<path>.data` closed loop and `<path>-open.data` open loop), BENCH_UPSTREAM (`instant`, the
# default, or `nginx`: one nginx worker serving the same answers as static files, the
# upstream of the issue's table; installed with apt-get when missing and running as root),
# BENCH_AWAKE (1: a busy loop at idle priority, `chrt --idle`, on the gateway's CPU for the
# whole run, so that CPU never halts between requests: a diagnostic of what halting costs the
# open-loop latency in a VM, where each halt is an exit to the hypervisor; it takes no CPU
# from the gateway, which preempts it at once. Not on CPU 1: there it gives streamed answers
# a 4 ms tail of its own, through the gateway and not directly).
# Needs taskset, python3; installs oha into ~/.cache/oha if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${BENCH_DURATION:-5s}"
RATE="${BENCH_RATE:-1000}"
CHUNKS="${BENCH_CHUNKS:-20}"
CONNS="${BENCH_CONNECTIONS:-50}"
PATHS="${BENCH_PATHS:-openai openai-stream bedrock bedrock-stream}"
UP_PORT="${BENCH_UP_PORT:-9201}"
UPSTREAM="${BENCH_UPSTREAM:-instant}"
PROFILE="${BENCH_PROFILE:-release}"
GW_PORT="${BENCH_GW_PORT:-9202}"
target="${CARGO_TARGET_DIR:-target}"

if [ "$(nproc)" -lt 2 ]; then
  echo "needs at least 2 CPUs (the gateway on one, upstream and load generator on another)" >&2
  exit 1
fi
# One build command for both: the same feature set as other release builds with the helpers
# (two separate commands would build some dependencies twice).
cargo build --release --quiet --bin pennyworth --example instant_upstream
if [ -z "${BENCH_GATEWAY:-}" ] && [ "$PROFILE" != release ]; then
  cargo build --profile "$PROFILE" --quiet --bin pennyworth
fi
gateway="${BENCH_GATEWAY:-$target/$PROFILE/pennyworth}"
OHA="${OHA:-$(command -v oha || echo "$HOME/.cache/oha/bin/oha")}"
if [ ! -x "$OHA" ]; then
  cargo install oha --locked --root "$HOME/.cache/oha" >&2
  OHA="$HOME/.cache/oha/bin/oha"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ "${BENCH_AWAKE:-0}" = 1 ]; then
  taskset -c 0 chrt --idle 0 sh -c 'while :; do :; done' &
  pids+=($!)
fi

if [ "$UPSTREAM" = nginx ]; then
  if ! command -v nginx > /dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null; then
      apt-get update -qq >&2 && apt-get install -y -qq nginx-light >&2
    else
      echo "nginx is required for BENCH_UPSTREAM=nginx (apt-get install -y nginx-light)" >&2
      exit 1
    fi
  fi
  "$target/release/examples/instant_upstream" --chunks "$CHUNKS" --dump "$work/www"
  mkdir -p "$work/nginx"
  # POST to a static file is a 405 in nginx; `error_page 405 =200 $uri` serves the file.
  cat > "$work/nginx.conf" <<EOF
worker_processes 1;
$( [ "$(id -u)" -eq 0 ] && echo "user root;" )
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  tcp_nodelay on;
  open_file_cache max=16;
  server {
    listen 127.0.0.1:$UP_PORT;
    root $work/www;
    error_page 405 =200 \$uri;
    location = /v1/chat/completions { default_type application/json; }
    location = /stream/v1/chat/completions { default_type text/event-stream; }
    location = /model/bench-model/converse { default_type application/json; }
    location = /model/bench-model/converse-stream { default_type application/vnd.amazon.eventstream; }
  }
}
EOF
  taskset -c 1 nginx -c "$work/nginx.conf" -p "$work/nginx" -g 'daemon off;' > "$work/up.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -s -o /dev/null -X POST "http://127.0.0.1:$UP_PORT/v1/chat/completions" && break
    sleep 0.05
  done
else
  taskset -c 1 "$target/release/examples/instant_upstream" --port "$UP_PORT" --chunks "$CHUNKS" \
    > "$work/up.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$work/up.log" && break; sleep 0.05; done
fi

mkdir -p "$work/config/policies"
cp routes.yaml "$work/config/"
cp policies/* "$work/config/policies/"
cat > "$work/config/models.yaml" <<EOF
models:
  oa:
    provider: openai
    upstream: bench-upstream
    base_url: http://127.0.0.1:$UP_PORT/v1
    groups: [standard]
  oa-stream:
    provider: openai
    upstream: bench-upstream
    base_url: http://127.0.0.1:$UP_PORT/stream/v1
    groups: [standard]
  br:
    provider: bedrock
    upstream: bench-model
    region: us-east-1
    endpoint_url: http://127.0.0.1:$UP_PORT
    groups: [standard]
EOF
key="$("$gateway" init --data-dir "$work/data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
env -i PATH="$PATH" HOME="$work" AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true PENNYWORTH_LOG=warn \
  taskset -c 0 "$gateway" serve --config "$work/config" --data-dir "$work/data" \
  --listen "127.0.0.1:$GW_PORT" > "$work/gw.out" 2> "$work/gw.log" &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 200); do grep -q listening "$work/gw.out" && break; sleep 0.05; done
grep -q listening "$work/gw.out" || { cat "$work/gw.log" >&2; echo "gateway did not start" >&2; exit 1; }

msg='[{"role":"user","content":"Say hello to the benchmark."}]'
echo "{\"model\":\"oa\",\"messages\":$msg}" > "$work/openai.json"
echo "{\"model\":\"oa-stream\",\"messages\":$msg,\"stream\":true}" > "$work/openai-stream.json"
echo "{\"model\":\"br\",\"messages\":$msg}" > "$work/bedrock.json"
echo "{\"model\":\"br\",\"messages\":$msg,\"stream\":true}" > "$work/bedrock-stream.json"
echo "{\"model\":\"bench-upstream\",\"messages\":$msg}" > "$work/direct-openai.json"
echo "{\"model\":\"bench-upstream\",\"messages\":$msg,\"stream\":true}" > "$work/direct-openai-stream.json"
echo '{"messages":[{"role":"user","content":[{"text":"Say hello to the benchmark."}]}]}' > "$work/direct-bedrock.json"
cp "$work/direct-bedrock.json" "$work/direct-bedrock-stream.json"

gw_url="http://127.0.0.1:$GW_PORT/v1/chat/completions"
direct_url() {
  case "$1" in
    openai) echo "http://127.0.0.1:$UP_PORT/v1/chat/completions" ;;
    openai-stream) echo "http://127.0.0.1:$UP_PORT/stream/v1/chat/completions" ;;
    bedrock-stream) echo "http://127.0.0.1:$UP_PORT/model/bench-model/converse-stream" ;;
    bedrock) echo "http://127.0.0.1:$UP_PORT/model/bench-model/converse" ;;
  esac
}
ticks() { awk '{ print $14 + $15 }' "/proc/$gw_pid/stat"; }
HZ="$(getconf CLK_TCK)"

# oha run: url body auth(0/1) [rate] -> sets R_* from bench/oha_summary.py
run() {
  local url="$1" body="$2" auth="$3" rate="${4:-}"
  local args=(--no-tui -w -c "$CONNS" -m POST -T application/json -D "$body")
  [ "$auth" = 1 ] && args+=(-H "authorization: Bearer $key")
  [ -n "$rate" ] && args+=(-q "$rate" --latency-correction)
  taskset -c 1 "$OHA" "${args[@]}" -z 1s --output-format quiet "$url" > /dev/null 2>&1 || true
  local t0 t1 perf_pid=""
  if [ -n "${BENCH_PERF_DIR:-}" ] && [ "$auth" = 1 ]; then
    mkdir -p "$BENCH_PERF_DIR"
    perf record -q -F 1999 -g -p "$gw_pid" -o "$BENCH_PERF_DIR/$PATH_NAME${rate:+-open}.data" > /dev/null 2>&1 &
    perf_pid=$!
  fi
  t0="$(ticks)"
  taskset -c 1 "$OHA" "${args[@]}" -z "$DURATION" --output-format json -o "$work/oha.json" "$url" > /dev/null 2>&1
  t1="$(ticks)"
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
  local kv
  for kv in $(python3 bench/oha_summary.py "$work/oha.json"); do printf -v "R_${kv%%=*}" '%s' "${kv#*=}"; done
  # shellcheck disable=SC2154  # set above
  R_cpu_us="$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$R_ok" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')"
}
ms() { awk -v u="$1" 'BEGIN { if (u == "-") print "-"; else printf "%.3f", u / 1000 }'; }

declare -A CPU RPS DRPS P99 DP99 OCPU BAD
for p in $PATHS; do
  PATH_NAME="$p"
  run "$(direct_url "$p")" "$work/direct-$p.json" 0
  DRPS[$p]="$R_rps"
  run "$gw_url" "$work/$p.json" 1
  RPS[$p]="$R_rps"; CPU[$p]="$R_cpu_us"; BAD[$p]="$((R_non2xx + R_errors))"
  run "$(direct_url "$p")" "$work/direct-$p.json" 0 "$RATE"
  DP99[$p]="$R_p99_us"
  run "$gw_url" "$work/$p.json" 1 "$RATE"
  P99[$p]="$R_p99_us"; OCPU[$p]="$R_cpu_us"; BAD[$p]="$((BAD[$p] + R_non2xx + R_errors))"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
label() {
  case "$1" in
    openai) echo "OpenAI-compatible upstream, buffered" ;;
    openai-stream) echo "OpenAI-compatible upstream, stream of $CHUNKS chunks" ;;
    bedrock) echo "Bedrock Converse, buffered" ;;
    bedrock-stream) echo "Bedrock ConverseStream, $CHUNKS deltas" ;;
  esac
}
cat <<EOF
commit $(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- engine Cargo.toml || echo " (modified)"), gateway $gateway$( [ -z "${BENCH_GATEWAY:-}" ] && echo " (profile $PROFILE)")
$(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) CPUs ($(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)), load average $(cut -d' ' -f1-3 /proc/loadavg)
upstream: $UPSTREAM$( [ "${BENCH_AWAKE:-0}" = 1 ] && echo ", the gateway's CPU kept awake (BENCH_AWAKE=1)"); closed loop: $CONNS connections, $DURATION; open loop: $RATE req/s over $CONNS connections, $DURATION, --latency-correction; $(${OHA} --version)

| path | closed loop req/s (direct) | gateway/direct | gateway CPU µs/req closed (open) | open loop p99 ms (direct) | added p99 ms | not 2xx or failed |
|---|---:|---:|---:|---:|---:|---:|
EOF
for p in $PATHS; do
  added="$(awk -v a="${P99[$p]}" -v b="${DP99[$p]}" 'BEGIN { printf "%.3f", (a - b) / 1000 }')"
  echo "| $(label "$p") | ${RPS[$p]} (${DRPS[$p]}) | $(ratio "${RPS[$p]}" "${DRPS[$p]}") | ${CPU[$p]} (${OCPU[$p]}) | $(ms "${P99[$p]}") ($(ms "${DP99[$p]}")) | $added | ${BAD[$p]} |"
done
echo
for pair in "openai openai-stream" "bedrock bedrock-stream"; do
  set -- $pair
  if [ -n "${CPU[$1]:-}" ] && [ -n "${CPU[$2]:-}" ]; then
    echo "CPU per streamed chunk, $1: $(awk -v s="${CPU[$2]}" -v b="${CPU[$1]}" -v n="$CHUNKS" 'BEGIN { printf "%.2f", (s - b) / n }') µs (closed loop: (streamed − buffered) / $CHUNKS)"
  fi
done
