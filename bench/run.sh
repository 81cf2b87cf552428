#!/usr/bin/env bash
# Benchmark of `pennyworth serve` built with the Lambda profile (Cargo.toml) on this machine.
#
#   bash bench/run.sh [--duration SECS] [--warmup SECS] [--rounds N] [--startup-runs N]
#                     [--rates "R1 R2 .."] [--open-duration SECS] [--open-modes "chat stream health"]
#
# Measures (see doc/performance.md):
#   1. startup: process start to the first 200 from GET /v1/health (bench/startup.py);
#   2. closed-loop load (throughput): POST /v1/chat/completions with model `echo` at 50
#      connections with wrk (buffered and streamed), plus reference runs (1 connection;
#      GET /v1/health); then the same buffered load with the default `info` logging;
#   3. open-loop latency (added latency): the same requests with oha at fixed total rates
#      (--rates, default 1000 5000 10000 req/s) over 50 connections, with coordinated-omission
#      correction (latency counted from each request's scheduled send time); GET /v1/health at
#      the same rates as the floor set by hyper, tokio, loopback and the client;
#   4. peak RSS (VmHWM from /proc/<pid>/status) of each server after its load.
# Every measured run also reports CPU use: server, load generator and everything else.
# Progress goes to stderr; a Markdown summary goes to stdout.
#
# Builds with `cargo build --profile lambda --bin pennyworth` (the optimization production runs)
# into $CARGO_TARGET_DIR (default
# $HOME/.cache/pennyworth-bench-target, so the repository's target/ is left alone).
# Needs python3, curl, wrk (installed with apt-get when missing and running as root) and oha
# ($OHA, else `oha` on PATH, else $HOME/.cache/oha/bin/oha, else installed there with
# `cargo install oha --locked --root $HOME/.cache/oha`). Talks only to 127.0.0.1.
# The gateway in front of a Bedrock stand-in (added cost per upstream call, first chunk,
# memory with 200 streams) is measured by bench/bedrock.sh.
set -euo pipefail

DURATION=10
WARMUP=3
ROUNDS=2          # the load parts run this many times (fresh servers each round)
STARTUP_RUNS=20
CONNECTIONS=50
THREADS=2
PROMPT="hello world"
RATES="1000 5000 10000"
OPEN_DURATION=10
OPEN_MODES="chat stream health"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --startup-runs) STARTUP_RUNS="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    --open-duration) OPEN_DURATION="$2"; shift 2 ;;
    --open-modes) OPEN_MODES="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
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
if [[ -n "$RATES" ]]; then
  if [[ -z "${OHA:-}" ]]; then
    if command -v oha >/dev/null; then OHA="$(command -v oha)"
    elif [[ -x "$HOME/.cache/oha/bin/oha" ]]; then OHA="$HOME/.cache/oha/bin/oha"
    else
      log "installing oha with cargo into $HOME/.cache/oha"
      cargo install oha --locked --root "$HOME/.cache/oha" >&2
      OHA="$HOME/.cache/oha/bin/oha"
    fi
  fi
  # The flags used below (oha >= 1.5 or so); fail early instead of mis-parsing.
  OHA_HELP="$("$OHA" --help)"
  for flag in --latency-correction --output-format --no-tui --wait-ongoing-requests-after-deadline; do
    grep -q -- "$flag" <<<"$OHA_HELP" || { echo "$OHA lacks $flag; install a newer oha" >&2; exit 1; }
  done
  OHA_VERSION="$("$OHA" --version | head -1)"
fi

# --- build -------------------------------------------------------------------------------
log "building the Lambda-profile binary into $CARGO_TARGET_DIR"
(cd "$REPO" && cargo build --profile lambda --bin pennyworth >&2)
BIN="$CARGO_TARGET_DIR/lambda/pennyworth"
[[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 1; }
# The commit that was built (the working tree can move on while the benchmark runs).
tree_state() {
  local c
  c="$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
  if [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then c="$c (+ uncommitted changes)"; fi
  echo "$c"
}
COMMIT="$(tree_state)"

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

# Servers see no PENNYWORTH_* settings but the log level (so no Cognito pool: the embedded
# store), and AWS settings that keep the SDK off the network at start-up: a region (no lookup
# through the instance metadata service), metadata lookups disabled and dummy static
# credentials. The `echo` model never calls AWS.
for v in $(compgen -e | grep '^PENNYWORTH_' || true); do unset "$v"; done
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench
# A snapshot of the repository's configuration (routes.yaml, models.yaml, policies/), so an
# edit in the working tree during the run does not change what later servers load.
CONFIG="$WORK/config"
mkdir -p "$CONFIG/policies"
cp "$REPO/routes.yaml" "$REPO/models.yaml" "$CONFIG/"
cp "$REPO"/policies/* "$CONFIG/policies/"
DATA="$WORK/data"
KEY_JSON="$("$BIN" init --data-dir "$DATA" --json)"
KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$KEY_JSON")"
[[ "$KEY" == pw-* ]] || { echo "unexpected init output: $KEY_JSON" >&2; exit 1; }
# The bodies wrk sends (bench/load.lua builds the same ones).
CHAT_BODY="{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}"
STREAM_BODY="{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}],\"stream\":true}"

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
  PENNYWORTH_LOG="$level" "$BIN" serve --config "$CONFIG" --data-dir "$DATA" \
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
machine_busy_ticks() { # all CPUs: "user+nice+system+irq+softirq steal", in clock ticks
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9; exit }' /proc/stat
}
CLK_TCK="$(getconf CLK_TCK)"
NPROC="$(nproc)"

# CPU accounting around one measured run of a load generator:
#   cpu_begin; { time LOADGEN ... ; } 2>"$WORK/time"; cpu_stop; ...; cpu_end REQUESTS
# sets C_US_PER_REQ (server CPU per answered request) and C_SPLIT ("server / client /
# other / steal" CPU use in percent of one core; the machine has NPROC * 100 %). "other" is
# the machine's busy time minus the server and the load generator: the kernel's softirq work
# for loopback not charged to either, plus whatever else runs on the machine. "steal" is
# time the hypervisor ran something else on this VM's vCPUs (the steal column of /proc/stat).
TIMEFORMAT='%3U %3S'
cpu_begin() {
  C_T0="$(date +%s%N)"; C_S0="$(cpu_ticks "$SERVER_PID")"; read -r C_M0 C_ST0 < <(machine_busy_ticks)
}
cpu_stop() {
  C_T1="$(date +%s%N)"; C_S1="$(cpu_ticks "$SERVER_PID")"; read -r C_M1 C_ST1 < <(machine_busy_ticks)
}
cpu_end() {
  local client
  client="$(awk '{ print $1 + $2 }' "$WORK/time")"
  C_US_PER_REQ="$(awk -v t="$(( C_S1 - C_S0 ))" -v hz="$CLK_TCK" -v n="$1" \
    'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / hz / n; else print "-" }')"
  C_SPLIT="$(awk -v wall="$(( C_T1 - C_T0 ))" -v s="$(( C_S1 - C_S0 ))" -v m="$(( C_M1 - C_M0 ))" \
    -v st="$(( C_ST1 - C_ST0 ))" -v c="$client" -v hz="$CLK_TCK" 'BEGIN {
      w = wall / 1e9; sp = s / hz / w * 100; cp = c / w * 100; op = m / hz / w * 100 - sp - cp
      if (op < 0) op = 0
      printf "%.0f / %.0f / %.0f / %.0f", sp, cp, op, st / hz / w * 100 }')"
}

proc_kb() { # proc_kb PID FIELD -> value in kB
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

check_answers() {
  local url="http://127.0.0.1:$PORT/v1/chat/completions" body
  body="$(curl -sS --fail-with-body -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "$CHAT_BODY" "$url")"
  grep -q "\"content\":\"$PROMPT\"" <<<"$body" || { echo "unexpected chat answer: $body" >&2; exit 1; }
  body="$(curl -sS --fail-with-body -N -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "$STREAM_BODY" "$url")"
  grep -q '^data: \[DONE\]' <<<"$body" || { echo "unexpected stream answer: $body" >&2; exit 1; }
}

# run_wrk MODE CONNECTIONS: closed loop (each connection sends its next request as soon as
# the previous answer is complete); warm-up, then a measured run; sets the W_* variables.
run_wrk() {
  local mode="$1" conns="$2" threads="$THREADS" out
  if (( conns < threads )); then threads="$conns"; fi
  local url="http://127.0.0.1:$PORT"
  log "  closed loop, $mode, $conns connection(s): warm-up ${WARMUP}s, measure ${DURATION}s"
  PW_MODE="$mode" PW_KEY="$KEY" PW_PROMPT="$PROMPT" \
    wrk -t"$threads" -c"$conns" -d"${WARMUP}s" -s "$BENCH/load.lua" "$url" >/dev/null
  cpu_begin
  { time PW_MODE="$mode" PW_KEY="$KEY" PW_PROMPT="$PROMPT" \
    wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s "$BENCH/load.lua" "$url" \
    >"$WORK/wrk.out" 2>>"$WORK/loadgen.err"; } 2>"$WORK/time"
  cpu_stop
  out="$(cat "$WORK/wrk.out")"
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
  # shellcheck disable=SC2154
  cpu_end "$W_requests"
  if (( W_NON2XX > 0 || errs > 0 )); then
    log "  WARNING: $W_NON2XX non-2xx answers, $errs socket errors"
  fi
}

# run_oha MODE RATE: open loop at a fixed total rate over CONNECTIONS connections, latency
# corrected for coordinated omission; warm-up at the same rate, then a measured run; sets
# the O_* variables (see bench/oha_summary.py).
run_oha() {
  local mode="$1" rate="$2" path args=()
  case "$mode" in
    chat) path=/v1/chat/completions
      args=(-m POST -H "Authorization: Bearer $KEY" -T application/json -d "$CHAT_BODY") ;;
    stream) path=/v1/chat/completions
      args=(-m POST -H "Authorization: Bearer $KEY" -T application/json -d "$STREAM_BODY") ;;
    health) path=/v1/health ;;
    *) echo "unknown open-loop mode: $mode" >&2; exit 2 ;;
  esac
  local url="http://127.0.0.1:$PORT$path"
  local common=(--no-tui -c "$CONNECTIONS" -q "$rate" --latency-correction -w "${args[@]}")
  log "  open loop, $mode, $rate req/s over $CONNECTIONS connections: warm-up ${WARMUP}s, measure ${OPEN_DURATION}s"
  "$OHA" "${common[@]}" -z "${WARMUP}s" --output-format quiet "$url" >/dev/null 2>>"$WORK/loadgen.err"
  cpu_begin
  { time "$OHA" "${common[@]}" -z "${OPEN_DURATION}s" --output-format json -o "$WORK/oha.json" "$url" \
    >/dev/null 2>>"$WORK/loadgen.err"; } 2>"$WORK/time"
  cpu_stop
  cat "$WORK/oha.json" >>"$WORK/oha.log"
  local line kv
  line="$(python3 "$BENCH/oha_summary.py" "$WORK/oha.json")"
  for kv in $line; do printf -v "O_${kv%%=*}" '%s' "${kv#*=}"; done
  # shellcheck disable=SC2154  # set by the loop above
  cpu_end "$O_requests"
  # shellcheck disable=SC2154
  if (( O_non2xx > 0 || O_errors > 0 )); then
    log "  WARNING: $O_non2xx non-2xx answers, $O_errors failed requests"
  fi
}

ms() { if [[ "$1" == "-" ]]; then echo "-"; else awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; fi; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

ROWS=()
# add_row ROUND SCENARIO LOGGING
add_row() {
  ROWS+=("| $1 | $2 | $3 | $(printf '%.0f' "$W_rps") | $(ms "$W_p50_us") | $(ms "$W_p90_us") | $(ms "$W_p99_us") | $(ms "$W_max_us") | $C_US_PER_REQ | $C_SPLIT | $W_NON2XX / $W_ERRORS |")
}
OPEN_ROWS=()
declare -A OPEN_WORST_P99 OPEN_WORST_SUCCESS OPEN_ALL_P99
# add_open_row ROUND MODE RATE
add_open_row() {
  local label
  case "$2" in chat) label="chat" ;; stream) label="chat stream" ;; health) label="GET /v1/health (reference)" ;; esac
  OPEN_ROWS+=("| $1 | $label | $3 | $(printf '%.0f' "$O_rps") | $(ms "$O_p50_us") | $(ms "$O_p90_us") | $(ms "$O_p99_us") | $(ms "$O_p999_us") | $(ms "$O_max_us") | $O_success_pct % | $C_US_PER_REQ | $C_SPLIT |")
  local k="$2:$3"
  if [[ "$O_p99_us" == "-" ]]; then O_p99_us=999999999; fi  # nothing answered
  if [[ -z "${OPEN_WORST_P99[$k]:-}" ]] || (( O_p99_us > OPEN_WORST_P99[$k] )); then OPEN_WORST_P99[$k]="$O_p99_us"; fi
  if [[ -z "${OPEN_WORST_SUCCESS[$k]:-}" ]] || awk -v a="$O_success_pct" -v b="${OPEN_WORST_SUCCESS[$k]}" 'BEGIN { exit !(a < b) }'; then
    OPEN_WORST_SUCCESS[$k]="$O_success_pct"
  fi
  OPEN_ALL_P99[$k]="${OPEN_ALL_P99[$k]:+${OPEN_ALL_P99[$k]}, }$(ms "$O_p99_us")"
}
RSS_ROWS=()

LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. startup --------------------------------------------------------------------------
log "startup: $STARTUP_RUNS runs"
STARTUP_JSON="$(PENNYWORTH_LOG=warn python3 "$BENCH/startup.py" --bin "$BIN" --config "$CONFIG" \
  --data-dir "$DATA" --runs "$STARTUP_RUNS")"
read -r S_MIN S_MED S_MAX < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["min_ms"], d["median_ms"], d["max_ms"])' "$STARTUP_JSON")
log "startup: min $S_MIN ms, median $S_MED ms, max $S_MAX ms"

# --- 2./3./4. load and memory ------------------------------------------------------------
declare -A PRIMARY_P99 PRIMARY_RPS STREAM_RPS PRIMARY_HWM
for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS: server with PENNYWORTH_LOG=warn"
  start_server warn "$WORK/server-warn.err"
  check_answers
  IDLE_KB="$(proc_kb "$SERVER_PID" VmRSS)"
  run_wrk chat "$CONNECTIONS"; add_row "$round" "chat, $CONNECTIONS conns" warn
  PRIMARY_P99[$round]="$W_p99_us"; PRIMARY_RPS[$round]="$(printf '%.0f' "$W_rps")"
  run_wrk stream "$CONNECTIONS"; add_row "$round" "chat stream, $CONNECTIONS conns" warn
  STREAM_RPS[$round]="$(printf '%.0f' "$W_rps")"
  run_wrk chat 1; add_row "$round" "chat, 1 conn (reference)" warn
  run_wrk health "$CONNECTIONS"; add_row "$round" "GET /v1/health, $CONNECTIONS conns (reference)" warn
  for mode in $OPEN_MODES; do
    for rate in $RATES; do
      run_oha "$mode" "$rate"; add_open_row "$round" "$mode" "$rate"
    done
  done
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
if [[ -s "$WORK/loadgen.err" ]]; then
  log "note: the load generators wrote to stderr:"
  sort "$WORK/loadgen.err" | uniq -c | head -10 >&2
fi

# --- summary -----------------------------------------------------------------------------
verdict() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; then echo met; else echo "**missed**"; fi; }
WORST_P99=0; WORST_HWM=0; ALL_P99=""; ALL_RPS=""; ALL_STREAM_RPS=""
for r in $(seq 1 "$ROUNDS"); do
  if (( PRIMARY_P99[$r] > WORST_P99 )); then WORST_P99="${PRIMARY_P99[$r]}"; fi
  if (( PRIMARY_HWM[$r] > WORST_HWM )); then WORST_HWM="${PRIMARY_HWM[$r]}"; fi
  ALL_P99="${ALL_P99:+$ALL_P99, }$(ms "${PRIMARY_P99[$r]}")"
  ALL_RPS="${ALL_RPS:+$ALL_RPS, }${PRIMARY_RPS[$r]}"
  ALL_STREAM_RPS="${ALL_STREAM_RPS:+$ALL_STREAM_RPS, }${STREAM_RPS[$r]}"
done

TARGET_ROWS=()
for mode in chat stream; do
  [[ " $OPEN_MODES " == *" $mode "* ]] || continue
  label="chat"; [[ "$mode" == stream ]] && label="chat stream"
  for rate in $RATES; do
    k="$mode:$rate"
    v="$(verdict "${OPEN_WORST_P99[$k]}" 1000)"
    if [[ "$v" == met ]] && ! awk -v s="${OPEN_WORST_SUCCESS[$k]}" 'BEGIN { exit !(s >= 100) }'; then
      v="**missed** (failed requests)"
    fi
    TARGET_ROWS+=("| added latency: $label \`echo\` p99, open loop, $rate req/s over $CONNECTIONS conns | < 1 ms | ${OPEN_ALL_P99[$k]} ms (success ≥ ${OPEN_WORST_SUCCESS[$k]} %) | $v |")
  done
done

COMMIT_END="$(tree_state)"
if [[ "$COMMIT_END" != "$COMMIT" ]]; then
  log "WARNING: the tree changed during the run (built $COMMIT, now $COMMIT_END); servers read the config at start"
  COMMIT="$COMMIT (tree at the end: $COMMIT_END)"
fi
CPU_MODEL="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"

cat <<EOF
# Pennyworth benchmark

| | |
| --- | --- |
| commit | \`$COMMIT\` |
| date (UTC) | $(date -u '+%Y-%m-%d %H:%M') |
| nproc | $NPROC |
| CPU | $CPU_MODEL |
| memory | $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) |
| kernel | $(uname -r) |
| rustc | $(rustc --version 2>/dev/null | cut -d' ' -f2-) |
| closed-loop load generator | $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), $THREADS threads, ${DURATION} s after a ${WARMUP} s warm-up |
| open-loop load generator | ${OHA_VERSION:-not run}, rates ${RATES:-none} req/s, ${OPEN_DURATION} s after a ${WARMUP} s warm-up at the same rate, \`--latency-correction\` |
| load average (1/5/15 min) | start $LOADAVG_START, end $LOADAVG_END |

## Targets

| what | target | measured (each round) | verdict |
| --- | --- | --- | --- |
| startup to first \`GET /v1/health\` 200 (median of $STARTUP_RUNS) | < 20 ms | $S_MED ms | $(verdict "$S_MED" 20) |
$(printf '%s\n' "${TARGET_ROWS[@]}")
| chat \`echo\` p99, closed loop at $CONNECTIONS conns (saturated: queueing, not added latency) | (< 1 ms) | $ALL_P99 ms | $(verdict "$WORST_P99" 1000) |
| throughput, chat \`echo\`, closed loop at $CONNECTIONS conns | reported | $ALL_RPS req/s (streamed: $ALL_STREAM_RPS) | - |
| peak RSS after load, warn logging (worst round) | < 30 MB | $(mb "$WORST_HWM") MiB | $(verdict "$WORST_HWM" $((30 * 1024))) |

A latency verdict is "met" only when every round's p99 is below 1 ms (and, open loop, every
request got a 2xx answer).

## Startup

Process start (\`subprocess.Popen\`) to the first 200 from \`GET /v1/health\`, polling every
0.2 ms, pre-initialized data dir, \`PENNYWORTH_LOG=warn\`: min **$S_MIN ms**, median
**$S_MED ms**, max $S_MAX ms over $STARTUP_RUNS runs.

## Closed loop (throughput)

\`POST /v1/chat/completions\`, model \`echo\`, prompt "$PROMPT", API key auth. wrk keeps every
connection busy: the next request goes out as soon as the previous answer is complete, so at
$CONNECTIONS connections the machine is saturated and latency is mostly queueing (Little's law:
mean latency ≈ connections / throughput). Latency is wrk's, from sending a request to the end
of its answer. "server CPU µs/req" = the server's user + system CPU time during the measured
run (from /proc/<pid>/stat, 10 ms ticks) divided by the requests answered. "CPU %" = server /
wrk / everything else (kernel work not charged to either, other processes) / steal (vCPU time
the hypervisor gave to someone else), in percent of one core; the machine has $NPROC cores
($((NPROC * 100)) %). "bad" = non-2xx answers / socket errors.

| round | scenario | logging | req/s | p50 ms | p90 ms | p99 ms | max ms | server CPU µs/req | CPU % server / wrk / other / steal | bad |
| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
$(printf '%s\n' "${ROWS[@]}")

## Open loop (added latency)

The same requests (warn logging, the round's first server, after its closed-loop runs) sent
by oha at a fixed total rate over $CONNECTIONS connections, ${OPEN_DURATION} s per rate after a
${WARMUP} s warm-up at that rate. With \`--latency-correction\` a request's latency runs from
its scheduled send time (not from when a connection was free), so waiting behind a slow
request counts (no coordinated omission). Latency ends with the last byte of the answer. The
\`echo\` model has no upstream, so this is what the gateway adds in front of a model, plus
loopback and client. "success" = 2xx answers / requests sent. CPU columns as above, with oha
as the client.

| round | scenario | rate req/s | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | success | server CPU µs/req | CPU % server / oha / other / steal |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$(printf '%s\n' "${OPEN_ROWS[@]}")

## Memory

| round | logging | RSS idle (MiB) | RSS after load (MiB) | peak RSS, VmHWM (MiB) |
| --- | --- | ---: | ---: | ---: |
$(printf '%s\n' "${RSS_ROWS[@]}")
EOF
