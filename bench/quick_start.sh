#!/usr/bin/env bash
# README quick start, command 1, timed from an empty target directory: `cargo run -- serve` until
# the first `GET /v1/health` answers 200. Crates must already be downloaded (`cargo fetch`);
# the figure is compile time, not download time. Prints the elapsed time, the CPU time of the
# build (on a busy machine the better guide: wall time on 2 quiet cores is a bit over half of
# it), the peak memory (the largest single process, usually a rustc or the linker) and the
# target size.
#   bash bench/quick_start.sh [TARGET_DIR]        (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-$(mktemp -d)}"
if [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
  echo "error: $target is not empty; the measurement starts from an empty target directory" >&2
  exit 2
fi
data="$(mktemp -d)"
port="${PENNYWORTH_BENCH_PORT:-18080}"
log="$target.serve.log"
cargo fetch --locked --quiet

start=$(date +%s)
# /usr/bin/time -v reports the largest resident set of cargo and every process it waited for.
CARGO_TARGET_DIR="$target" /usr/bin/time -v -o "$target.time" \
  cargo run --locked --quiet -- serve --data-dir "$data" --listen "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
trap 'rm -rf "$data"' EXIT
until curl -fsS "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: cargo run exited; see $log" >&2
    exit 1
  fi
  sleep 1
done
end=$(date +%s)
elapsed=$((end - start))
# cargo run execs the binary, so the server is time's child: stop it (time then exits).
serve_pid="$(pgrep -P "$pid" | head -1)"
kill -INT "$serve_pid"
wait "$pid" || true

printf 'first /v1/health 200 after %d min %02d s\n' $((elapsed / 60)) $((elapsed % 60))
grep -E 'Maximum resident set size|User time|System time' "$target.time" | sed 's/^[[:space:]]*//'
echo "target: $(du -sh "$target" | cut -f1)"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine slows the build)"
