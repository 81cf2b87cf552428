#!/usr/bin/env bash
# Benchmark of a release build of `pennyworth serve` on this machine.
#
#   bash bench/run.sh [--duration SECS] [--warmup SECS] [--rounds N] [--startup-runs N]
#
# Measures (see doc/performance.md):
#   1. startup: process start to the first 200 from GET /v1/health (bench/startup.py);
#   2. load: POST /v1/chat/completions with model `echo` at 50 connections with wrk
#      (buffered and streamed), plus reference runs (1 connection; GET /v1/health);
#      then the same buffered load with the default `info` logging (stderr to /dev/null);
#   3. peak RSS (VmHWM from /proc/<pid>/status) of each server after its load.
# Progress goes to stderr; a Markdown summary goes to stdout.
#
# Builds with `cargo build --release --bin pennyworth` into $CARGO_TARGET_DIR (default
# $HOME/.cache/pennyworth-bench-target, so the repository's target/ is left alone).
# Needs python3, curl and wrk (wrk is installed with apt-get when missing and running as root).
# Talks only to 127.0.0.1.
set -euo pipefail

DURATION=10
WARMUP=3
ROUNDS=2          # the load part runs this many times (fresh servers each round)
STARTUP_RUNS=20
CONNECTIONS=50
THREADS=2
PROMPT="hello world"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --startup-runs) STARTUP_RUNS="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$REPO/bench"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pennyworth-bench-target}"

log() { echo "[bench] $*" >&2; }

# --- tools -------------------------------------------------------------------------------
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
if ! command -v wrk >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing wrk with apt-get"
    apt-get update -qq >&2 && apt-get install -y -qq wrk >&2
  else
    echo "wrk is required (Debian/Ubuntu: apt-get install -y wrk)" >&2
    exit 1
  fi
fi

# --- build -------------------------------------------------------------------------------
log "building release binary into $CARGO_TARGET_DIR"
(cd "$REPO" && cargo build --release --bin pennyworth >&2)
BIN="$CARGO_TARGET_DIR/release/pennyworth"
[[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 1; }

# --- scratch and cleanup -----------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pennyworth-bench.XXXXXX")"
SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DATA="$WORK/data"
KEY_JSON="$("$BIN" init --data-dir "$DATA" --json)"
KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$KEY_JSON")"
[[ "$KEY" == pw-* ]] || { echo "unexpected init output: $KEY_JSON" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server LOGLEVEL STDERR_FILE: starts a server, waits for its ready line, sets
# SERVER_PID and PORT.
start_server() {
  local level="$1" errfile="$2"
  PORT="$(free_port)"
  local out="$WORK/stdout.$PORT"
  : >"$out"
  PENNYWORTH_LOG="$level" "$BIN" serve --config "$REPO" --data-dir "$DATA" \
    --listen "127.0.0.1:$PORT" >"$out" 2>"$errfile" &
  SERVER_PID=$!
  local _
  for _ in $(seq 1 500); do
    if grep -q "pennyworth listening on http://" "$out"; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; stderr:" >&2; cat "$errfile" >&2 || true; exit 1; }
    sleep 0.01
  done
  echo "server did not become ready" >&2
  exit 1
}

cpu_ticks() { # cpu_ticks PID -> utime + stime of the process, in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
CLK_TCK="$(getconf CLK_TCK)"

proc_kb() { # proc_kb PID FIELD -> value in kB
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

check_answers() {
  local url="http://127.0.0.1:$PORT/v1/chat/completions" body
  body="$(curl -sS --fail-with-body -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}" "$url")"
  grep -q "\"content\":\"$PROMPT\"" <<<"$body" || { echo "unexpected chat answer: $body" >&2; exit 1; }
  body="$(curl -sS --fail-with-body -N -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}],\"stream\":true}" "$url")"
  grep -q '^data: \[DONE\]' <<<"$body" || { echo "unexpected stream answer: $body" >&2; exit 1; }
}

# run_wrk MODE CONNECTIONS: warm-up, then a measured run; sets the W_* variables.
run_wrk() {
  local mode="$1" conns="$2" threads="$THREADS" out
  if (( conns < threads )); then threads="$conns"; fi
  local url="http://127.0.0.1:$PORT"
  log "  $mode, $conns connection(s): warm-up ${WARMUP}s, measure ${DURATION}s"
  PW_MODE="$mode" PW_KEY="$KEY" PW_PROMPT="$PROMPT" \
    wrk -t"$threads" -c"$conns" -d"${WARMUP}s" -s "$BENCH/load.lua" "$url" >/dev/null
  local ticks0 ticks1
  ticks0="$(cpu_ticks "$SERVER_PID")"
  out="$(PW_MODE="$mode" PW_KEY="$KEY" PW_PROMPT="$PROMPT" \
    wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s "$BENCH/load.lua" "$url")"
  ticks1="$(cpu_ticks "$SERVER_PID")"
  echo "$out" >>"$WORK/wrk.log"
  local line
  line="$(grep '^BENCH ' <<<"$out")" || { echo "no BENCH line from wrk:" >&2; echo "$out" >&2; exit 1; }
  W_NON2XX="$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' <<<"$out")"
  W_NON2XX="${W_NON2XX:-0}"
  # BENCH key=value ... -> W_key variables (W_requests, W_rps, W_p50_us, ..., W_timeout_err).
  local kv
  for kv in ${line#BENCH }; do printf -v "W_${kv%%=*}" '%s' "${kv#*=}"; done
  # shellcheck disable=SC2154  # set by the loop above
  local errs=$(( W_connect_err + W_read_err + W_write_err + W_timeout_err ))
  W_ERRORS="$errs"
  # Server CPU time (user + system, all threads) per answered request during the run.
  # shellcheck disable=SC2154
  W_CPU_US="$(awk -v t="$(( ticks1 - ticks0 ))" -v hz="$CLK_TCK" -v n="$W_requests" \
    'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / hz / n; else print "-" }')"
  if (( W_NON2XX > 0 || errs > 0 )); then
    log "  WARNING: $W_NON2XX non-2xx answers, $errs socket errors"
  fi
}

ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

ROWS=()
# add_row ROUND SCENARIO LOGGING
add_row() {
  ROWS+=("| $1 | $2 | $3 | $(printf '%.0f' "$W_rps") | $(ms "$W_p50_us") | $(ms "$W_p90_us") | $(ms "$W_p99_us") | $(ms "$W_max_us") | $W_CPU_US | $W_NON2XX / $W_ERRORS |")
}
RSS_ROWS=()

LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. startup --------------------------------------------------------------------------
log "startup: $STARTUP_RUNS runs"
STARTUP_JSON="$(PENNYWORTH_LOG=warn python3 "$BENCH/startup.py" --bin "$BIN" --config "$REPO" \
  --data-dir "$DATA" --runs "$STARTUP_RUNS")"
read -r S_MIN S_MED S_MAX < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["min_ms"], d["median_ms"], d["max_ms"])' "$STARTUP_JSON")
log "startup: min $S_MIN ms, median $S_MED ms, max $S_MAX ms"

# --- 2./3. load and memory ---------------------------------------------------------------
declare -A PRIMARY_P99 PRIMARY_HWM
for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS: server with PENNYWORTH_LOG=warn"
  start_server warn "$WORK/server-warn.err"
  check_answers
  IDLE_KB="$(proc_kb "$SERVER_PID" VmRSS)"
  run_wrk chat "$CONNECTIONS"; add_row "$round" "chat, $CONNECTIONS conns" warn
  PRIMARY_P99[$round]="$W_p99_us"
  run_wrk stream "$CONNECTIONS"; add_row "$round" "chat stream, $CONNECTIONS conns" warn
  run_wrk chat 1; add_row "$round" "chat, 1 conn (reference)" warn
  run_wrk health "$CONNECTIONS"; add_row "$round" "GET /v1/health, $CONNECTIONS conns (reference)" warn
  HWM_KB="$(proc_kb "$SERVER_PID" VmHWM)"; RSS_KB="$(proc_kb "$SERVER_PID" VmRSS)"
  PRIMARY_HWM[$round]="$HWM_KB"
  WARN_LINES="$(wc -l <"$WORK/server-warn.err")"
  RSS_ROWS+=("| $round | warn | $(mb "$IDLE_KB") | $(mb "$RSS_KB") | $(mb "$HWM_KB") |")
  stop_server
  if (( WARN_LINES > 0 )); then
    log "  note: the warn-level server wrote $WARN_LINES line(s) to stderr:"
    head -5 "$WORK/server-warn.err" >&2
  fi

  log "round $round/$ROUNDS: server with default logging (info), stderr to /dev/null"
  start_server info /dev/null
  IDLE_KB="$(proc_kb "$SERVER_PID" VmRSS)"
  run_wrk chat "$CONNECTIONS"; add_row "$round" "chat, $CONNECTIONS conns" "info (default)"
  HWM_KB="$(proc_kb "$SERVER_PID" VmHWM)"; RSS_KB="$(proc_kb "$SERVER_PID" VmRSS)"
  RSS_ROWS+=("| $round | info (default) | $(mb "$IDLE_KB") | $(mb "$RSS_KB") | $(mb "$HWM_KB") |")
  stop_server
done
LOADAVG_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- summary -----------------------------------------------------------------------------
verdict() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; then echo met; else echo "**missed**"; fi; }
WORST_P99=0; WORST_HWM=0
for r in "${!PRIMARY_P99[@]}"; do
  if (( PRIMARY_P99[$r] > WORST_P99 )); then WORST_P99="${PRIMARY_P99[$r]}"; fi
  if (( PRIMARY_HWM[$r] > WORST_HWM )); then WORST_HWM="${PRIMARY_HWM[$r]}"; fi
done

COMMIT="$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then COMMIT="$COMMIT (+ uncommitted changes)"; fi
CPU_MODEL="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"

cat <<EOF
# Pennyworth benchmark

| | |
| --- | --- |
| commit | \`$COMMIT\` |
| date (UTC) | $(date -u '+%Y-%m-%d %H:%M') |
| nproc | $(nproc) |
| CPU | $CPU_MODEL |
| memory | $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) |
| kernel | $(uname -r) |
| rustc | $(rustc --version 2>/dev/null | cut -d' ' -f2-) |
| load generator | $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), $THREADS threads, ${DURATION} s after a ${WARMUP} s warm-up |
| load average (1/5/15 min) | start $LOADAVG_START, end $LOADAVG_END |

## Targets

| what | target | measured | verdict |
| --- | --- | --- | --- |
| startup to first \`GET /v1/health\` 200 (median of $STARTUP_RUNS) | < 20 ms | $S_MED ms | $(verdict "$S_MED" 20) |
| chat \`echo\` p99 at $CONNECTIONS connections, warn logging (worst round) | < 1 ms | $(ms "$WORST_P99") ms | $(verdict "$WORST_P99" 1000) |
| peak RSS after load, warn logging (worst round) | < 30 MB | $(mb "$WORST_HWM") MiB | $(verdict "$WORST_HWM" $((30 * 1024))) |

## Startup

Process start (\`subprocess.Popen\`) to the first 200 from \`GET /v1/health\`, polling every
0.2 ms, pre-initialized data dir, \`PENNYWORTH_LOG=warn\`: min **$S_MIN ms**, median
**$S_MED ms**, max $S_MAX ms over $STARTUP_RUNS runs.

## Load

\`POST /v1/chat/completions\`, model \`echo\`, prompt "$PROMPT", API key auth. Latency is
wrk's, from sending a request to the end of its answer (the echo model has no upstream, so
all of it is gateway plus loopback plus client). "server CPU µs/req" = the server's user +
system CPU time during the measured run (from /proc/<pid>/stat, 10 ms ticks) divided by the
requests answered. "bad" = non-2xx answers / socket errors.

| round | scenario | logging | req/s | p50 ms | p90 ms | p99 ms | max ms | server CPU µs/req | bad |
| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
$(printf '%s\n' "${ROWS[@]}")

## Memory

| round | logging | RSS idle (MiB) | RSS after load (MiB) | peak RSS, VmHWM (MiB) |
| --- | --- | ---: | ---: | ---: |
$(printf '%s\n' "${RSS_ROWS[@]}")
EOF
