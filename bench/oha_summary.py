#!/usr/bin/env python3
"""Summarize one `oha --output-format json` result for bench/run.sh.

    python3 bench/oha_summary.py RESULT.json

Prints one line of key=value pairs (no spaces in values):
  requests ok non2xx errors success_pct rps p50_us p90_us p99_us p999_us max_us

- requests: answers received (any status) plus requests that failed (errorDistribution);
- ok: answers with a 2xx status; non2xx: the other answers; errors: failed requests
  (connection errors, timeouts, requests aborted at the deadline);
- success_pct: ok / requests in percent (oha's own successRate counts any answer as a
  success, whatever its status, so it is not used);
- latencies in microseconds, from oha's latencyPercentiles (exact percentiles over all
  answered requests; with --latency-correction measured from each request's scheduled
  send time, not from when a connection became free to send it).
"""

from __future__ import annotations

import json
import sys


def us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:.0f}"


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        d = json.load(f)
    codes = {int(k): int(v) for k, v in (d.get("statusCodeDistribution") or {}).items()}
    answered = sum(codes.values())
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    errors = sum(int(v) for v in (d.get("errorDistribution") or {}).values())
    requests = answered + errors
    lp = d.get("latencyPercentiles") or {}
    summary = d.get("summary") or {}
    fields = {
        "requests": requests,
        "ok": ok,
        "non2xx": answered - ok,
        "errors": errors,
        "success_pct": f"{100.0 * ok / requests:.2f}" if requests else "0",
        "rps": f"{summary.get('requestsPerSec') or 0:.1f}",
        "p50_us": us(lp.get("p50")),
        "p90_us": us(lp.get("p90")),
        "p99_us": us(lp.get("p99")),
        "p999_us": us(lp.get("p99.9")),
        "max_us": us(summary.get("slowest")),
    }
    print(" ".join(f"{k}={v}" for k, v in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
