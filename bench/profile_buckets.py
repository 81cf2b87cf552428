#!/usr/bin/env python3
"""Where the gateway's CPU goes, from a `perf record --call-graph dwarf` profile.

    perf script -i PROFILE.data --no-inline -F ip,sym | python3 bench/profile_buckets.py

Each sample is put in one bucket: kernel samples by their leaf, the others by the first
frame (from the leaf up) that names a known part (so `malloc` called by Cedar counts as
Cedar). Prints the buckets' shares of all samples, largest first.
"""

from __future__ import annotations

import sys

# (bucket, substrings of a frame's symbol), checked in this order for each frame.
PARTS = [
    ("Cedar authorization", ["cedar_policy"]),
    ("SigV4 signing (aws-sigv4)", ["aws_sigv4", "SigV4Signer"]),
    ("event-stream decoding (SDK)", ["aws_smithy_eventstream", "event_receiver", "event_stream_serde", "EventReceiver", "Receiver<T,E>"]),
    ("SDK user agent", ["user_agent"]),
    ("SDK request/response (de)serialization", ["protocol_serde", "aws_smithy_json", "RequestSerializer", "ResponseDeserializer"]),
    ("SDK HTTP client adapter", ["aws_smithy_http_client"]),
    ("SDK orchestration (config, interceptors, retries, identity, endpoint)", ["aws_smithy_runtime", "aws_runtime", "aws_sdk_bedrockruntime", "aws_smithy_types", "aws_smithy_async", "aws_credential_types", "aws_smithy_observability", "aws_config"]),
    ("Bedrock mapping (gateway)", ["providers::bedrock"]),
    ("OpenAI upstream mapping (gateway)", ["providers::openai"]),
    ("HTTP client (hyper)", ["hyper_util::client", "hyper::client"]),
    ("stream rendering (gateway)", ["handlers::stream", "SseState", "StreamState", "TextStream", "handlers::openai::chat", "handlers::anthropic", "handlers::responses"]),
    ("usage, ledger, logging", ["pennyworth::usage", "tracing_subscriber", "rusqlite", "sqlite3"]),
    ("tracing spans and trace ids (telemetry)", ["pennyworth::telemetry", "tracing_core", "tracing::span", "tracing_opentelemetry"]),
    ("JSON parsing and writing (serde_json, gateway)", ["serde_json"]),
    ("identity, routing, handlers (gateway)", ["pennyworth::auth", "pennyworth::directory", "pennyworth::router", "pennyworth::handlers", "pennyworth::engine", "matchit"]),
    ("HTTP server (hyper)", ["hyper::proto", "hyper::server", "hyper_util::server", "pennyworth::server"]),
    ("tokio runtime", ["tokio::"]),
]


def bucket(frames: list[tuple[int, str]]) -> str:
    if not frames:
        return "unknown"
    ip, leaf = frames[0]
    if ip >= 0xFFFF000000000000:
        return "kernel (syscalls, TCP loopback, scheduling)"
    for _, sym in frames:
        for name, keys in PARTS:
            if any(k in sym for k in keys):
                return name
    if any(k in leaf for k in ("malloc", "free", "realloc", "memmove", "memcpy", "memset", "memcmp")):
        return "libc (allocation, copies) not attributed"
    return "other"


def main() -> int:
    counts: dict[str, int] = {}
    frames: list[tuple[int, str]] = []
    total = 0

    def flush() -> None:
        nonlocal frames, total
        if frames:
            b = bucket(frames)
            counts[b] = counts.get(b, 0) + 1
            total += 1
        frames = []

    for line in sys.stdin:
        s = line.strip()
        if not s:
            flush()
            continue
        parts = s.split(None, 1)
        try:
            ip = int(parts[0], 16)
        except ValueError:
            flush()  # a sample header line
            continue
        frames.append((ip, parts[1] if len(parts) > 1 else ""))
    flush()
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{100.0 * n / max(total, 1):5.1f} %  {name}")
    print(f"({total} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
