#!/usr/bin/env python3
"""Startup time of `pennyworth serve`: process start to the first successful GET /v1/health.

Each run picks a free loopback port, starts the server with `subprocess.Popen` and polls
the port in a tight loop (a new TCP connect every --interval-us microseconds while it is
refused); once a connection is accepted it sends `GET /v1/health` and stops the clock when
the answer's status line says 200. The clock is `time.perf_counter()` read just before
`Popen`, so a run includes fork/exec, the dynamic loader, config compilation (YAML, Cedar),
opening the SQLite store, binding the port and answering one request.

The data directory must already be initialized (`pennyworth init`), so no run includes key
generation. One untimed warm-up run comes first (page cache).

Prints one JSON object to stdout:
  {"runs": N, "min_ms": .., "median_ms": .., "mean_ms": .., "max_ms": .., "all_ms": [..]}
Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

REQUEST = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_ok(sock: socket.socket) -> bool:
    """Sends the health request on a connected socket; True on a 200 status line."""
    sock.sendall(REQUEST)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.startswith(b"HTTP/1.1 200 ") or data.startswith(b"HTTP/1.0 200 ")


def one_run(args: argparse.Namespace, env: dict[str, str]) -> float:
    """Returns seconds from process start to the first 200 from /v1/health."""
    port = free_port()
    cmd = [
        args.bin, "serve",
        "--config", args.config,
        "--data-dir", args.data_dir,
        "--listen", f"127.0.0.1:{port}",
    ]
    interval = args.interval_us / 1e6
    addr = ("127.0.0.1", port)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = t0 + args.timeout
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.settimeout(args.timeout)
                s.connect(addr)
                if health_ok(s):
                    t1 = time.perf_counter()
                    return t1 - t0
            except OSError as e:
                if e.errno not in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE):
                    raise
            finally:
                s.close()
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise SystemExit(f"server exited with {proc.returncode} before answering:\n{err}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"no answer from /v1/health within {args.timeout} s")
            time.sleep(interval)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, help="pennyworth binary")
    p.add_argument("--config", required=True, help="config directory (routes.yaml, models.yaml, policies/)")
    p.add_argument("--data-dir", required=True, help="initialized data directory")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--interval-us", type=float, default=200.0, help="poll interval (default 200 us)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a run fails")
    args = p.parse_args()

    env = dict(os.environ)
    env.setdefault("PENNYWORTH_LOG", "warn")

    one_run(args, env)  # warm-up, not counted
    times_ms = [one_run(args, env) * 1000.0 for _ in range(args.runs)]
    print(json.dumps({
        "runs": len(times_ms),
        "min_ms": round(min(times_ms), 3),
        "median_ms": round(statistics.median(times_ms), 3),
        "mean_ms": round(statistics.fmean(times_ms), 3),
        "max_ms": round(max(times_ms), 3),
        "all_ms": [round(t, 3) for t in times_ms],
    }))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
