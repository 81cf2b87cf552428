#!/usr/bin/env python3
"""Abuse load test of a running `pennyworth serve` (driven by bench/abuse.sh).

  python3 bench/abuse.py --port PORT --pid PID --key KEY [--window SECS] [--streams N]
                         [--slow-bodies N] [--bogus N] [--connections N] [--after SECS]

Phases, one after the other on the same server:
  1. warm-up, then capacity: wrk closed loop (chat, model `echo`, --connections) for a few
     seconds; its req/s is the measured capacity;
  2. idle: RSS of the quiet, warmed-up server ("before");
  3. baseline (--window s): wrk holds the server at capacity while a separate probe process
     sends GET /v1/health every 10 ms on its own connection;
  4. attack (--window s): the same wrk load and probe, plus --streams slow stream readers
     (streamed echo of a long prompt, each read at ~5 kB/s through a 4 kB receive buffer),
     --slow-bodies clients trickling a declared 6 MB body at 1 kB/s with a valid key, and a
     burst of --bogus requests with distinct forged keys;
  5. after: every attacker closed, --after s of quiet, then RSS again and a health probe.
RSS is sampled from /proc/PID/status every 50 ms; CPU is the server's and the whole
machine's busy time over a phase (% of one core; the machine has nproc x 100 %: what the
server did not use went to wrk, the probe, the attackers and anything else running).
Prints a Markdown report on stdout.
Talks only to 127.0.0.1.
"""

import argparse
import asyncio
import base64
import http.client
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Sampler:
    """RSS every 50 ms in a thread; `peak()` since the last `reset()`."""

    def __init__(self, pid):
        self.pid = pid
        self.lock = threading.Lock()
        self.max = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                r = rss_kib(self.pid)
            except OSError:
                return
            with self.lock:
                self.max = max(self.max, r)
            time.sleep(0.05)

    def reset(self):
        with self.lock:
            self.max = 0

    def peak(self):
        with self.lock:
            return self.max


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks():
    """Busy and total ticks of all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


class Cpu:
    """Server CPU and machine busy share over a phase, in % of one core."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = time.time()
        self.s0 = cpu_ticks(pid)
        self.m0 = machine_ticks()

    def done(self):
        hz = os.sysconf("SC_CLK_TCK")
        wall = time.time() - self.t0
        s = (cpu_ticks(self.pid) - self.s0) / hz / wall * 100
        busy, total = machine_ticks()
        m = (busy - self.m0[0]) / max(1, total - self.m0[1]) * 100 * os.cpu_count()
        return f"{s:.0f} % / {m:.0f} %"


def quiet_rss(pid, secs=2.0):
    """Median RSS over `secs` of quiet."""
    samples = []
    end = time.time() + secs
    while time.time() < end:
        samples.append(rss_kib(pid))
        time.sleep(0.1)
    return statistics.median(samples)


# ---------------------------------------------------------------- health probe (own process)


def probe_main(port, secs, out):
    """GET /v1/health every 10 ms on one keep-alive connection; latencies (ms) to `out`."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    lat = []
    errors = 0
    end = time.time() + secs
    next_at = time.perf_counter()
    while time.time() < end:
        t0 = time.perf_counter()
        try:
            conn.request("GET", "/v1/health")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            continue
        lat.append((time.perf_counter() - t0) * 1000.0)
        next_at += 0.01
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.perf_counter()
    with open(out, "w") as f:
        f.write(f"errors {errors}\n")
        f.writelines(f"{x:.4f}\n" for x in lat)


def start_probe(port, secs, out):
    return subprocess.Popen(
        [sys.executable, __file__, "--probe", str(port), str(secs), out]
    )


def read_probe(out):
    with open(out) as f:
        lines = f.read().split()
    errors = int(lines[1])
    lat = sorted(float(x) for x in lines[2:])
    if not lat:
        return {"n": 0, "errors": errors}

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))]

    return {
        "n": len(lat),
        "errors": errors,
        "p50": pct(50),
        "p99": pct(99),
        "max": lat[-1],
    }


# ---------------------------------------------------------------- wrk (capacity load)


def start_wrk(args, secs):
    env = dict(os.environ, PW_MODE="chat", PW_KEY=args.key)
    return subprocess.Popen(
        [
            "wrk",
            "-t2",
            f"-c{args.connections}",
            f"-d{secs}s",
            "-s",
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "load.lua"),
            f"http://{HOST}:{args.port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wrk_result(proc):
    out, _ = proc.communicate()
    non2xx = 0
    for line in out.splitlines():
        if "Non-2xx" in line:
            non2xx = int(line.split()[-1])
        if line.startswith("BENCH "):
            fields = dict(kv.split("=") for kv in line.split()[1:])
            return {
                "rps": float(fields["rps"]),
                "p99_ms": int(fields["p99_us"]) / 1000.0,
                "non2xx": non2xx,
            }
    return {"rps": 0.0, "p99_ms": 0.0, "non2xx": non2xx, "raw": out[-500:]}


# ---------------------------------------------------------------- attackers (asyncio)


def request_head(method, path, key, length, extra=""):
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    return (
        f"{method} {path} HTTP/1.1\r\nhost: {HOST}\r\n{auth}content-type: application/json\r\n"
        f"content-length: {length}\r\n{extra}\r\n"
    ).encode()


async def slow_stream(args, stop, stats):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (HOST, args.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        prompt = " ".join(["lorem"] * args.prompt_words)
        body = (
            '{"model":"echo","stream":true,"messages":[{"role":"user","content":"%s"}]}'
            % prompt
        ).encode()
        writer.write(request_head("POST", "/v1/chat/completions", args.key, len(body)) + body)
        await writer.drain()
        stats["streams_open"] += 1
        while not stop.is_set():
            data = await reader.read(512)
            if not data:
                stats["streams_ended"] += 1
                break
            stats["stream_bytes"] += len(data)
            await asyncio.sleep(0.1)
        writer.close()
    except (OSError, asyncio.IncompleteReadError):
        stats["stream_errors"] += 1
    finally:
        sock.close()


async def slow_body(args, stop, stats):
    try:
        reader, writer = await asyncio.open_connection(HOST, args.port)
        writer.write(request_head("POST", "/v1/chat/completions", args.key, 6_000_000))
        await writer.drain()
        stats["bodies_open"] += 1
        chunk = b" " * 1024
        while not stop.is_set():
            writer.write(chunk)
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(64), timeout=1.0)
                if data:
                    stats["bodies_answered"] += 1
                    break
                break
            except asyncio.TimeoutError:
                pass
        writer.close()
    except OSError:
        stats["bodies_cut"] += 1


def forged_key():
    owner = base64.urlsafe_b64encode(f"ghost{secrets.token_hex(4)}".encode()).rstrip(b"=")
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=")
    return f"pw-{owner.decode()}.{secrets.token_hex(8)}.{secret.decode()}"


async def bogus_burst(args, stats):
    queue = asyncio.Queue()
    for _ in range(args.bogus):
        queue.put_nowait(forged_key())

    async def worker():
        reader = writer = None
        while not queue.empty():
            key = queue.get_nowait()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, args.port)
                writer.write(request_head("GET", "/v1/models", key, 0))
                await writer.drain()
                status = (await reader.readline()).split()[1].decode()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    if name.lower() == "connection" and "close" in value.lower():
                        writer = None
                await reader.readexactly(length)
                stats[f"bogus_{status}"] = stats.get(f"bogus_{status}", 0) + 1
            except (OSError, asyncio.IncompleteReadError, IndexError):
                stats["bogus_errors"] = stats.get("bogus_errors", 0) + 1
                writer = None

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(50)))
    stats["bogus_secs"] = time.perf_counter() - t0


async def attack(args, stats, window):
    stop = asyncio.Event()
    tasks = [asyncio.create_task(slow_stream(args, stop, stats)) for _ in range(args.streams)]
    tasks += [asyncio.create_task(slow_body(args, stop, stats)) for _ in range(args.slow_bodies)]
    await asyncio.sleep(min(2.0, window / 4))
    await bogus_burst(args, stats)
    remaining = window - (time.perf_counter() - stats["t0"])
    if remaining > 0:
        await asyncio.sleep(remaining)
    stop.set()
    await asyncio.wait(tasks, timeout=5)
    for t in tasks:
        t.cancel()


# ---------------------------------------------------------------- orchestration


def mib(kib):
    return kib / 1024.0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        probe_main(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
        return
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--window", type=float, default=15)
    p.add_argument("--capacity-secs", type=int, default=5)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--slow-bodies", type=int, default=100)
    p.add_argument("--bogus", type=int, default=2000)
    p.add_argument("--prompt-words", type=int, default=4000)
    p.add_argument("--after", type=float, default=10)
    p.add_argument("--workdir", default="/tmp")
    args = p.parse_args()
    log = lambda m: print(f"[abuse] {m}", file=sys.stderr, flush=True)  # noqa: E731
    sampler = Sampler(args.pid)
    out = lambda name: os.path.join(args.workdir, f"probe-{name}.txt")  # noqa: E731

    log("warm-up")
    start_probe(args.port, 1, out("warm")).wait()
    wrk_result(start_wrk(args, 2))
    rss_start = quiet_rss(args.pid)

    log(f"capacity: wrk {args.connections} connections, {args.capacity_secs} s")
    capacity = wrk_result(start_wrk(args, args.capacity_secs))
    time.sleep(2)
    rss_before = quiet_rss(args.pid)
    probe_idle = start_probe(args.port, 3, out("idle"))
    probe_idle.wait()
    idle = read_probe(out("idle"))

    window = int(args.window)
    log(f"baseline: {window} s at capacity with the health probe")
    sampler.reset()
    cpu = Cpu(args.pid)
    w = start_wrk(args, window)
    probe = start_probe(args.port, window - 1, out("baseline"))
    probe.wait()
    baseline_wrk = wrk_result(w)
    baseline_cpu = cpu.done()
    baseline = read_probe(out("baseline"))
    baseline_peak = sampler.peak()
    time.sleep(2)

    log(
        f"attack: {window} s at capacity + {args.streams} slow streams, "
        f"{args.slow_bodies} slow bodies, {args.bogus} forged keys"
    )
    sampler.reset()
    stats = {
        "streams_open": 0,
        "streams_ended": 0,
        "stream_bytes": 0,
        "stream_errors": 0,
        "bodies_open": 0,
        "bodies_answered": 0,
        "bodies_cut": 0,
        "t0": time.perf_counter(),
    }
    cpu = Cpu(args.pid)
    w = start_wrk(args, window)
    probe = start_probe(args.port, window - 1, out("attack"))
    asyncio.run(attack(args, stats, window))
    probe.wait()
    attack_wrk = wrk_result(w)
    attack_cpu = cpu.done()
    during = read_probe(out("attack"))
    attack_peak = sampler.peak()

    log(f"after: {args.after} s of quiet")
    time.sleep(args.after)
    rss_after = quiet_rss(args.pid)
    threads_after = len(os.listdir(f"/proc/{args.pid}/task"))
    start_probe(args.port, 3, out("after")).wait()
    after = read_probe(out("after"))
    sampler.stop = True
    hwm = hwm_kib(args.pid)

    def row(name, probe_stats, load, peak, cpu="-"):
        return (
            f"| {name} | {load} | {probe_stats.get('p50', 0):.2f} | {probe_stats.get('p99', 0):.2f} "
            f"| {probe_stats.get('max', 0):.2f} | {probe_stats['n']} / {probe_stats['errors']} | {peak} | {cpu} |"
        )

    def load_cell(r):
        return f"{r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, non-2xx {r['non2xx']}"

    ratio = rss_after / rss_before if rss_before else 0
    print("| phase | chat load (wrk) | health p50 ms | health p99 ms | health max ms | probes / errors | peak RSS MiB | CPU server / machine |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | --- |")
    print(row("idle (warmed up)", idle, "none", f"{mib(rss_before):.1f}"))
    print(row("baseline", baseline, load_cell(baseline_wrk), f"{mib(baseline_peak):.1f}", baseline_cpu))
    print(row("attack", during, load_cell(attack_wrk), f"{mib(attack_peak):.1f}", attack_cpu))
    print(row(f"after (+{args.after:.0f} s)", after, "none", f"{mib(rss_after):.1f}"))
    print()
    print(f"- capacity (wrk, {args.connections} connections, {args.capacity_secs} s): "
          f"{capacity['rps']:.0f} req/s, chat p99 {capacity['p99_ms']:.1f} ms")
    print(f"- RSS: start {mib(rss_start):.1f} MiB, idle before the attack {mib(rss_before):.1f} MiB, "
          f"peak during {mib(attack_peak):.1f} MiB, after {mib(rss_after):.1f} MiB "
          f"({(ratio - 1) * 100:+.1f} % of idle), high-water mark {mib(hwm):.1f} MiB; "
          f"{threads_after} threads after")
    print(f"- slow streams: {stats['streams_open']} opened, {stats['streams_ended']} ended early, "
          f"{stats['stream_errors']} errors, {stats['stream_bytes'] / 1e6:.1f} MB read in all")
    print(f"- slow bodies: {stats['bodies_open']} opened, {stats['bodies_answered']} answered, "
          f"{stats['bodies_cut']} cut")
    bogus = ", ".join(f"{k[6:]}: {v}" for k, v in sorted(stats.items()) if k.startswith("bogus_") and k != "bogus_secs")
    print(f"- forged keys: {args.bogus} in {stats.get('bogus_secs', 0):.2f} s ({bogus})")
    target_p99 = during.get("p99", 1e9) < 10.0
    target_rss = ratio <= 1.10
    print(f"- targets: health p99 under attack < 10 ms: {'met' if target_p99 else '**missed**'}; "
          f"RSS after within 10 % of idle: {'met' if target_rss else '**missed**'}")


if __name__ == "__main__":
    main()
