#!/usr/bin/env bash
# Abuse load test of `pennyworth serve` (release build): the server held at its measured
# capacity (wrk closed loop, chat with model `echo`) while 500 slow stream readers, 100
# slow-body clients and a burst of forged keys run; reports /v1/health p50/p99 and RSS before,
# during and after (issue 16; figures in doc/performance.md, "Under abuse").
#
#   bash bench/abuse.sh [--window SECS] [--streams N] [--slow-bodies N] [--bogus N]
#                       [--connections N] [--after SECS] [--prompt-words N]
#
# Defaults: 15 s windows, 500 streams, 100 slow bodies, 2000 forged keys, 50 wrk connections,
# 10 s of quiet after the attack; about 1.5 minutes after the build. Builds with
# `cargo build --release --bin pennyworth` into $CARGO_TARGET_DIR (default
# $HOME/.cache/pennyworth-bench-target). Needs python3 and wrk (installed with apt-get when
# missing and running as root). PENNYWORTH_BIN=path skips the build and runs that binary.
# Talks only to 127.0.0.1. Markdown on stdout, progress on stderr.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pennyworth-bench-target}"
log() { echo "[abuse] $*" >&2; }

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
# More connections than the default 1024 descriptors allow, with room to spare.
ulimit -n 8192 2>/dev/null || true

if [[ -n "${PENNYWORTH_BIN:-}" ]]; then
  BIN="$PENNYWORTH_BIN"   # a binary built elsewhere (skips the build)
else
  log "building (release)"
  (cd "$REPO" && cargo build --release --bin pennyworth >&2)
  BIN="$CARGO_TARGET_DIR/release/pennyworth"
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The embedded store and the `echo` model: no PENNYWORTH_* settings but the log level, and
# AWS settings that keep the SDK off the network.
for v in $(compgen -e | grep '^PENNYWORTH_' || true); do unset "$v"; done
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench
CONFIG="$WORK/config"
mkdir -p "$CONFIG/policies"
cp "$REPO/routes.yaml" "$REPO/models.yaml" "$CONFIG/"
cp "$REPO"/policies/* "$CONFIG/policies/"
DATA="$WORK/data"
KEY_JSON="$("$BIN" init --data-dir "$DATA" --json)"
KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$KEY_JSON")"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
PENNYWORTH_LOG=warn "$BIN" serve --config "$CONFIG" --data-dir "$DATA" \
  --listen "127.0.0.1:$PORT" >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!
for _ in $(seq 1 500); do
  grep -q "pennyworth listening on http://" "$WORK/stdout" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/stderr" >&2; exit 1; }
  sleep 0.01
done

COMMIT="$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
REPORT="$(python3 "$REPO/bench/abuse.py" --port "$PORT" --pid "$SERVER_PID" --key "$KEY" \
  --workdir "$WORK" "$@")"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "commit \`$COMMIT\`, $(date -u '+%Y-%m-%d %H:%M') UTC, nproc $(nproc), load average (1/5/15 min) start $LOAD_BEFORE, end $LOAD_AFTER"
echo
echo "$REPORT"
