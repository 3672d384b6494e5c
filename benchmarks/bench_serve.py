#!/usr/bin/env python3
"""`decoder serve` under load: sustained requests/s, time to 2xx, memory.

    .venv/bin/python benchmarks/bench_serve.py                 # both rate runs, ~2 min
    .venv/bin/python benchmarks/bench_serve.py --memory        # + 1,000,000 messages RSS check (~4 min more)

The load generator is `wrk` (Debian: ``apt-get install wrk``), a C program
in a process of its own, so the server, not the client, is what is measured
on a 2-core machine: 50 connections (``-c 50``, two threads), each posting
one uplink per request and waiting for the answer (keep-alive), bodies cycled
from a pool of --pool distinct generated uplinks (samples/generate.py, its
default mix: half Firefly packets, a quarter Helium device events, a quarter
Helium integration bodies), with ``Authorization: Bearer``.

Runs (each on a fresh server and output directory):

1. defaults: ``--max-delay 1.0``, --seconds of load;
2. a shorter ``--max-delay 0.25``, the same;
3. memory (--memory): defaults, load in slices until the server has taken
   --memory-n messages; the server's VmRSS after start-up and after each slice.

Each run prints requests/s (wrk's count over its duration), p50 / p99 / max
time to the answer (wrk's latency: from writing the request to reading the
2xx), non-2xx answers (must be 0), the rows found in the Parquet files after
a SIGTERM (must be at least the 2xx count), and the load average before and
after. The target: 5,000 uplinks/s sustained with p99 under max-delay + 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
LUA = """
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")}
local i = math.random(#bodies)
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/uplinks", headers, bodies[i])
end
"""


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_bodies(path: Path, n: int) -> None:
    subprocess.run([sys.executable, str(ROOT / "samples" / "generate.py"), "-n", str(n), "-o", str(path)], check=True)


class Server:
    """`decoder serve` in a process of its own, on a free port."""

    def __init__(self, out: Path, *args: str) -> None:
        env = {**os.environ, "DECODER_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        cls = str(ROOT / "samples" / "classes" / "test_device_class.json")
        cmd = [sys.executable, "-m", "decoder", "serve", "--classes", cls, "-o", str(out), "--port", "0", *args]
        self.errors = open(out.parent / f"{out.name}.errors.jsonl", "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.errors, stderr=subprocess.PIPE, text=True)
        self.url = ""
        self.log: list[str] = []
        deadline = time.monotonic() + 180
        while not self.url:
            line = self.proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise SystemExit(f"decoder serve did not start:\n{''.join(self.log)}")
            self.log.append(line)
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                self.url = found.group(1)

    def messages(self) -> int:
        import httpx

        text = httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        return int(re.search(r"^decoder_messages_total (\d+)", text, re.M).group(1))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rest = self.proc.communicate(timeout=300)[1]
        self.log.append(rest)
        self.errors.close()
        return self.proc.returncode


def wrk(url: str, seconds: float, script: Path, bodies: Path) -> dict:
    env = {**os.environ, "BENCH_BODIES": str(bodies), "BENCH_TOKEN": TOKEN}
    cmd = [
        "wrk",
        "-t2",
        "-c50",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + "/uplinks",
    ]
    text = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout

    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
        return float(number) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[unit]

    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)", text, re.M))
    return {
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50_ms": ms(pct["50"]),
        "p99_ms": ms(pct["99"]),
        "max_ms": ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text).group(1)),
        "non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0,
        "socket_errors": (m.group(0) if (m := re.search(r"Socket errors:.*", text)) else ""),
    }


def parquet_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in out.rglob("part-*.parquet"))


def rate_run(work: Path, name: str, seconds: float, script: Path, bodies: Path, *args: str) -> dict:
    out = work / name
    server = Server(out, *args)
    before = load()
    result = wrk(server.url, seconds, script, bodies)
    result.update(load_before=before, load_after=load(), rss_mb=round(rss_mb(server.proc.pid), 1))
    result["exit"] = server.stop()
    result["rows"] = parquet_rows(out)
    return result


def memory_run(work: Path, script: Path, bodies: Path, n: int, slice_seconds: float) -> dict:
    out = work / "memory"
    server = Server(out)
    samples = [(0, round(rss_mb(server.proc.pid), 1), load())]
    rates = []
    while samples[-1][0] < n:
        result = wrk(server.url, slice_seconds, script, bodies)
        rates.append(result["per_second"])
        samples.append((server.messages(), round(rss_mb(server.proc.pid), 1), load()))
        print(f"  {samples[-1][0]:>10,} messages  RSS {samples[-1][1]:7.1f} MB  load {samples[-1][2]}", flush=True)
    code = server.stop()
    first = samples[1][1]
    return {
        "samples": samples,
        "rates": rates,
        "growth_after_first_slice_pct": round((samples[-1][1] / first - 1) * 100, 1),
        "exit": code,
        "rows": parquet_rows(out),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30, help="load per rate run (default 30)")
    ap.add_argument("--pool", type=int, default=20_000, help="distinct uplinks cycled by the load (default 20,000)")
    ap.add_argument("--memory", action="store_true", help="also run the memory check")
    ap.add_argument("--memory-n", type=int, default=1_000_000, help="messages for the memory check")
    ap.add_argument("--json", metavar="FILE", help="write the results here as JSON too")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench_serve.py needs wrk as its load generator (Debian: apt-get install wrk)")
    results: dict = {"cpus": os.cpu_count(), "load_generator": "wrk -t2 -c50 (keep-alive, one uplink a request)"}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        bodies, script = work / "bodies.jsonl", work / "post.lua"
        write_bodies(bodies, args.pool)
        script.write_text(LUA)
        for name, extra in (("defaults", ()), ("max-delay 0.25", ("--max-delay", "0.25"))):
            r = rate_run(work, name.replace(" ", "-"), args.seconds, script, bodies, *extra)
            results[name] = r
            print(
                f"{name:<15} {r['per_second']:>8,.0f} req/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  "
                f"max {r['max_ms']:.0f} ms  non-2xx {r['non_2xx']}  rows {r['rows']:,} of {r['requests']:,} "
                f"answered  RSS {r['rss_mb']} MB  exit {r['exit']}  load {r['load_before']} -> {r['load_after']}",
                flush=True,
            )
        if args.memory:
            print(f"memory: {args.memory_n:,} messages at the defaults", flush=True)
            results["memory"] = memory_run(work, script, bodies, args.memory_n, slice_seconds=20)
            m = results["memory"]
            print(f"  growth after the first slice: {m['growth_after_first_slice_pct']}%  rows {m['rows']:,}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
