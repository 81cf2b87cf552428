#!/usr/bin/env bash
# Cold start of the Lambda binary (`bootstrap`, the `lambda` profile of Cargo.toml): process start to the first
# invocation answered, against the Runtime API stand-in of tests/support/lambda_runtime.rs on
# 127.0.0.1 (bench/lambda_cold_start.rs), plus the binary's size stripped and zipped (the
# deployment package). The driver itself is a debug build: it only serves one event and reads
# the clock; the process measured is the Lambda-profile binary.
#   bash bench/lambda_cold_start.sh [RUNS] [--xray]   (default 30 runs per event; --xray: each
#   run again with X-Ray tracing on, alternating, reported under "xray")
#   PROFILE=release bash bench/lambda_cold_start.sh ...   (the release profile: no fat LTO, a
#   shorter build; default: lambda)
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-30}"
shift || true
target="${CARGO_TARGET_DIR:-target}"
profile="${PROFILE:-lambda}"

cargo build --profile "$profile" --locked --quiet --bin bootstrap
cargo build --locked --quiet --example lambda_cold_start
bin="$target/$profile/bootstrap"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# What `sam build` packages: the binary as `bootstrap` beside the config files.
mkdir -p "$work/pkg/policies"
cp "$bin" "$work/pkg/bootstrap"
cp routes.yaml models.yaml "$work/pkg/"
cp policies/* "$work/pkg/policies/"
(cd "$work/pkg" && python3 -c '
import os, zipfile
with zipfile.ZipFile("../package.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk("."):
        for f in files:
            z.write(os.path.join(root, f))
')
echo "binary: $(stat -c %s "$bin") bytes; deployment zip: $(stat -c %s "$work/package.zip") bytes"
echo "machine: $(nproc) cores, $(uname -m), $(uname -r)"
"$target/debug/examples/lambda_cold_start" --bin "$bin" --runs "$runs" "$@"
