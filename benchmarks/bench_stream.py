#!/usr/bin/env python3
"""The stream stage (`decoder.StreamStage`, `decoder stream`) against decoding one message at a time.

    .venv/bin/python benchmarks/bench_stream.py              # rates + latency, ~4 min
    .venv/bin/python benchmarks/bench_stream.py --memory     # + 5,000,000 messages RSS check (~2 min more)
    .venv/bin/python benchmarks/bench_stream.py --only latency --rates 1000,20000,60000,1x6+1000x6

Input: realistic uplinks from samples/generate.py (Test Device Class devices,
its default mix: half Firefly packets, a quarter Helium device events, a
quarter Helium HTTP integration bodies) as JSON bytes lines: a pool of --pool
distinct lines in memory, cycled to the size of each run.

Sections (see benchmarks/README.md):

1. rate: messages/s of the stage at its defaults (max_rows=10_000,
   max_delay=1.0) fed by an in-memory generator (through the stage's reader
   thread and queue, as any source), the consumer taking ``batch.records``
   and counting rows, or writing them as an Arrow IPC stream to /dev/null.
   Beside it, in the same rounds: our path without the stage (the same
   normalize + decode calls on 10,000-message slices, no thread or queue),
   the stage's hand-off alone (a replica of its reader thread + bounded
   queue, decoding nothing), the CLI (``decoder stream`` with a file on
   stdin, JSON Lines to /dev/null, rate from the moment it is ready to read,
   start-up apart), and the peers, per message as they arrive:
   ``orjson.loads`` + bitstring (``Bits.unpack``, formulas in Python, the
   provider's fields picked by hand), the same with QuickJS (a TTN-style
   ``decodeUplink`` in one reused context, benchmarks/peers.py), our Engine
   per message through a ``max_rows=1`` stage, and ``engine.decode([msg])``
   per message without a stage. Rows are timed in --rounds interleaved
   rounds; rates are medians over rounds, ratios are medians of per-round
   ratios to the stage (count consumer).
2. latency: messages paced at each --rates rate (or schedule: a quiet spell,
   then a burst); for every message, the time from the generator yielding it
   to the consumer receiving its batch: p50 / p99 / p99.9 / max per rate
   (must stay below max_delay).
3. memory (--memory): --memory-n messages (or --memory-minutes) through the
   stage, VmRSS sampled every --memory-every messages; growth from the 20 %
   mark to the end.
"""

from __future__ import annotations

import argparse
import base64
import collections
import gc
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import peers  # noqa: E402

import decoder  # noqa: E402
from decoder.ingest import Reader, normalize_values  # noqa: E402

CLASSES = ROOT / "samples" / "classes" / "test_device_class.json"
CLASS_NAME = "Test Device Class"
DEFAULT_MIX = "firefly=0.5,helium_event=0.25,helium_body=0.25"


# --------------------------------------------------------------------------
# machine


def machine_info() -> dict:
    from compare_decode import machine_info as common

    info = common(("numba", "numpy", "pyarrow", "orjson", "bitstring", "quickjs", "decoder"))
    return {**info, "code": code_identity()}


def code_identity() -> str:
    """Which decoder was measured: the git commit of this tree, whether decoder/ differs
    from it, and a hash of decoder/*.py (the tree is shared and may change under a run)."""
    import hashlib

    pkg = Path(decoder.__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes())
    text = f"decoder from {pkg}, sources sha256 {h.hexdigest()[:12]}"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=pkg, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=pkg, capture_output=True, text=True, check=True
        ).stdout.strip()
        text += f", git {head}" + (" + uncommitted changes in decoder/" if dirty else " (clean)")
    except (OSError, subprocess.CalledProcessError):
        text += ", not a git checkout"
    return text


def load() -> float:
    return os.getloadavg()[0]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------
# input


def make_pool(n: int, seed: int, mix: str, work: Path) -> list[bytes]:
    """n distinct generated lines (bytes, no newline); cached under --dir."""
    path = work / f"pool_{n}_{seed}_{re.sub(r'[^a-z0-9.]+', '-', mix)}.jsonl"
    if not path.exists():
        print(f"generating {n:,} messages -> {path} ...", flush=True)
        tmp = path.with_suffix(".tmp")
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "samples" / "generate.py"),
                "-n",
                str(n),
                "-o",
                str(tmp),
                "--seed",
                str(seed),
                "--mix",
                mix,
                "--group",
                f"{CLASS_NAME}:9:1",
                "--devices",
                "1000",
            ],
            check=True,
        )
        tmp.rename(path)
    data = path.read_bytes()
    return data.rstrip(b"\n").split(b"\n")


def cycled(pool: list[bytes], n: int):
    return itertools.islice(itertools.cycle(pool), n)


def cli_input(pool: list[bytes], n: int, work: Path, tag: str) -> Path:
    path = work / f"cli_{tag}_{n}.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        tmp = path.with_suffix(".tmp")
        it = cycled(pool, n)
        with open(tmp, "wb") as f:
            while chunk := list(itertools.islice(it, 100_000)):
                f.write(b"\n".join(chunk) + b"\n")
        tmp.rename(path)
    return path


# --------------------------------------------------------------------------
# ours


def new_engine():
    return decoder.Engine(decoder.load_classes(str(CLASSES)))


def run_stage(engine, source, consumer: str, max_rows: int = 10_000, max_delay: float = 1.0) -> dict:
    """Seconds from the first pull of the source to the end of the last batch's consumer."""
    stage = decoder.StreamStage(engine, max_rows=max_rows, max_delay=max_delay)
    stage.warm_up()
    rows = 0
    sink = writer = None
    jsonl = None
    if consumer == "ipc":
        sink = open(os.devnull, "wb")
        writer = pa.ipc.new_stream(sink, engine.schema)
    elif consumer == "jsonl":  # what `decoder stream` writes to stdout
        from decoder.output import JsonlSink

        sink = open(os.devnull, "wb")
        jsonl = JsonlSink("-", engine, stdout=sink)
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    for batch in stage.batches(source):
        rec = batch.records
        rows += rec.num_rows
        if writer is not None:
            writer.write_batch(rec)
        elif jsonl is not None:
            jsonl.write(batch.chunk)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if writer is not None:
        writer.close()
    if sink is not None:
        sink.close()
    s = stage.stats
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "messages": s.messages,
        "rows": rows,
        "decoded": s.decoded,
        "batches": s.batches,
        "stage_max_latency_s": s.max_latency,
    }


def run_direct(engine, pool: list[bytes], n: int, size: int = 10_000, parts: dict | None = None) -> dict:
    """Our path without the stage: the calls StreamStage._close makes, on slices, no thread or queue."""
    reader = Reader("<bench>")
    it = cycled(pool, n)
    rows = 0
    first = 1
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        bodies = list(itertools.islice(it, size))
        if not bodies:
            break
        t1 = time.perf_counter()
        norm = normalize_values(bodies, first_line=first, reader=reader)
        t2 = time.perf_counter()
        chunk = engine.decode_uplinks(
            norm.uplinks,
            bad_lines=list(norm.bad_lines),
            skipped=collections.Counter(norm.skipped),
            lines=norm.lines,
            first_line=first,
            source="<stream>",
        )
        t3 = time.perf_counter()
        table = chunk.table
        t4 = time.perf_counter()
        rec = table.combine_chunks().to_batches()[0]  # as MicroBatch.records
        rows += rec.num_rows
        t5 = time.perf_counter()
        first += len(bodies)
        if parts is not None and len(bodies) == size:
            for k, dt in (
                ("take messages (list)", t1 - t0),
                ("normalize_values (JSON -> uplinks)", t2 - t1),
                ("engine.decode_uplinks", t3 - t2),
                ("chunk.table", t4 - t3),
                ("records (combine_chunks)", t5 - t4),
            ):
                parts.setdefault(k, []).append(dt / size)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_s": time.process_time() - cpu, "messages": n, "rows": rows, "decoded": rows}


def run_handoff(pool: list[bytes], n: int, max_rows: int = 10_000) -> dict:
    """The stage's hand-off alone, decoding nothing: its reader thread and bounded
    hand-off (``decoder.stream.handoff.ReaderThread``), drained as ``StreamStage.batches``
    does (get, then popleft until max_rows)."""
    from decoder.stream.handoff import ReaderThread as _ReaderThread

    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    reader = _ReaderThread(cycled(pool, n), max_rows)
    handoff = reader.handoff
    got = 0
    done = False
    while not done:
        entry = handoff.get(1.0)
        if not isinstance(entry, tuple):
            break
        count = 1
        while count < max_rows:
            try:
                entry = handoff.popleft()
            except IndexError:
                break
            if not isinstance(entry, tuple):
                done = True
                break
            count += 1
        got += count
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    reader.abandon()
    return {"seconds": seconds, "cpu_s": cpu, "messages": got, "rows": 0, "decoded": got}


def run_engine_per_message(engine, pool: list[bytes], n: int) -> dict:
    rows = 0
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    for line in cycled(pool, n):
        rows += engine.decode([line]).table.num_rows
    return {
        "seconds": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "messages": n,
        "rows": rows,
        "decoded": rows,
    }


# --------------------------------------------------------------------------
# peers: one message at a time, as it arrives


def pick(p: dict):
    """The provider's fields of one parsed message, picked by hand (as compare_end_to_end.py)."""
    if "gwrx" in p:
        raw = bytes.fromhex(p["payload"])
        best = max(p["gwrx"], key=lambda g: (g["rssi"], g["lsnr"]))
        return (
            raw,
            p["port"],
            {
                "provider": "firefly",
                "dev_eui": p["device_eui"],
                "received_at": str(p["received_at"]),
                "port": p["port"],
                "rssi": best["rssi"],
                "snr": best["lsnr"],
            },
        )
    data = p.get("data")
    body = data["req"]["body"] if isinstance(data, dict) and "req" in data else (data or p)
    hs = body.get("hotspots") or [body.get("hotspot")]
    best = max(hs, key=lambda h: (h["rssi"], h["snr"]))
    raw = base64.b64decode(body["payload"])
    return (
        raw,
        body["port"],
        {
            "provider": "helium",
            "dev_eui": body.get("dev_eui") or p.get("device_id"),
            "received_at": str(p.get("reported_at")),
            "port": body["port"],
            "rssi": best["rssi"],
            "snr": best["snr"],
        },
    )


def make_bitstring_peer():
    from bitstring import Bits

    fmt = peers._FMT

    def decode(line: bytes) -> dict:
        raw, port, meta = pick(orjson.loads(line))
        try:
            battery, lat, lon, alt = Bits(raw).unpack(fmt)
        except Exception as e:  # noqa: BLE001 - a short payload: an error row
            meta["error"] = str(e)
            return meta
        meta["decoded"] = peers._record(battery, lat, lon, alt)
        return meta

    return decode


def make_quickjs_peer():
    js = peers.QuickJSDecoder()

    def decode(line: bytes) -> dict:
        raw, port, meta = pick(orjson.loads(line))
        meta["decoded"] = js(raw.hex(), port)
        return meta

    return decode


def run_peer(fn, pool: list[bytes], n: int, arrow_every: int = 0) -> dict:
    """fn on each message; with arrow_every, its records also go to an Arrow
    record batch (``RecordBatch.from_pylist``) every that many messages."""
    rows = 0
    held: list = []
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    for line in cycled(pool, n):
        rec = fn(line)
        if arrow_every:
            held.append(rec)
            if len(held) == arrow_every:
                rows += pa.RecordBatch.from_pylist(held).num_rows
                held = []
        else:
            rows += 1
    if held:
        rows += pa.RecordBatch.from_pylist(held).num_rows
    return {
        "seconds": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "messages": n,
        "rows": rows,
        "decoded": rows,
    }


def check_peers(engine, pool: list[bytes], fns: dict, k: int = 1000) -> str:
    """Same values: ours (engine) against each peer on the first k messages."""
    ours = engine.decode(pool[:k]).table.column("decoded").to_pylist()
    out = []
    for name, fn in fns.items():
        bad = 0
        for line, mine in zip(pool[:k], ours):
            d = fn(line)["decoded"]
            if (
                mine["gps"] != {kk: d["gps"][kk] for kk in ("latitude", "longitude", "altitude")}
                or mine["batteryLevel"] != d["batteryLevel"]
            ):
                bad += 1
        out.append(f"{name}: {'equal' if bad == 0 else f'{bad} DIFFERENT'} on {k:,}")
    return "; ".join(out)


def consumer_costs(engine, pool: list[bytes], slices: int = 5, size: int = 10_000) -> dict:
    """us/message of what a consumer does with a decoded 10,000-message batch (median over slices)."""
    from decoder.output import JsonlSink

    reader = Reader("<bench>")
    out: dict = {}
    devnull = open(os.devnull, "wb")
    writer = pa.ipc.new_stream(devnull, engine.schema)
    jsonl = JsonlSink("-", engine, stdout=devnull)
    for k in range(slices):
        bodies = pool[(k * size) % len(pool) :][:size]
        norm = normalize_values(bodies, reader=reader)
        chunk = engine.decode_uplinks(norm.uplinks, lines=norm.lines)
        table = chunk.table
        t0 = time.perf_counter()
        rec = table.combine_chunks().to_batches()[0]
        t1 = time.perf_counter()
        writer.write_batch(rec)
        t2 = time.perf_counter()
        jsonl.write(chunk)
        t3 = time.perf_counter()
        rows = table.to_pylist()
        t4 = time.perf_counter()
        b"".join(orjson.dumps(r, default=str, option=orjson.OPT_APPEND_NEWLINE) for r in rows)
        t5 = time.perf_counter()
        for key, dt in (
            ("batch.records (combine_chunks)", t1 - t0),
            ("Arrow IPC write_batch -> /dev/null", t2 - t1),
            ("JsonlSink.write -> /dev/null (the CLI's)", t3 - t2),
            ("  of which about: table.to_pylist()", t4 - t3),
            ("  and orjson.dumps per row", t5 - t4),
        ):
            out.setdefault(key, []).append(dt / len(bodies) * 1e6)
    writer.close()
    devnull.close()
    return {k: statistics.median(v) for k, v in out.items()}


# --------------------------------------------------------------------------
# CLI


def run_cli(path: Path, n: int) -> dict:
    """``decoder stream`` with the file on stdin, JSON Lines to /dev/null.

    ready: the stderr line "reading stdin" (after start-up and warm_up);
    rate = n / (exit - ready)."""
    cmd = [sys.executable, "-m", "decoder", "stream", "--classes", str(CLASSES), "--class", CLASS_NAME]
    spawn = time.perf_counter()
    with open(path, "rb") as stdin:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = None
    lines = []

    def read_err():
        nonlocal ready
        for line in proc.stderr:
            if ready is None and b"reading stdin" in line:
                ready = time.perf_counter()
            lines.append(line.decode(errors="replace"))

    th = threading.Thread(target=read_err, daemon=True)
    th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    end = time.perf_counter()
    th.join()
    text = "".join(lines)
    if os.waitstatus_to_exitcode(status) != 0 or ready is None:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{text}")
    m = re.search(r"time\s+([\d.]+) s\s+\(([\d,]+) messages/s\)", text)
    dec = re.search(r"decoded\s+([\d,]+)", text)
    return {
        "seconds": end - ready,
        "startup_s": ready - spawn,
        "wall_s": end - spawn,
        "messages": n,
        "decoded": int(dec.group(1).replace(",", "")) if dec else None,
        "cli_reported_s": float(m.group(1)) if m else None,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "child_cpu_s": usage.ru_utime + usage.ru_stime,
    }


# --------------------------------------------------------------------------
# latency


def parse_schedule(text: str, seconds: float) -> tuple[str, list[tuple[float, float]]]:
    """ "20000" -> 20,000/s for --latency-seconds; "1x6+1000x6" -> 1/s for 6 s, then 1,000/s for 6 s."""
    phases = []
    for part in text.split("+"):
        rate, _, secs = part.partition("x")
        phases.append((float(rate), float(secs) if secs else seconds))
    label = " then ".join(f"{r:,.0f}/s" + (f" {d:g}s" if len(phases) > 1 else "") for r, d in phases)
    return label, phases


def run_latency(engine, pool: list[bytes], label: str, phases: list[tuple[float, float]]) -> dict:
    """Messages yielded on a schedule (phases of (rate, seconds)); every message's
    time from its yield to the consumer receiving its batch."""
    offsets = []
    t = 0.0
    for rate, secs in phases:
        k = max(int(rate * secs), 1)
        offsets.append(t + np.arange(k) / rate)
        t += k / rate
    offset = np.concatenate(offsets)
    n = len(offset)
    stamps = np.zeros(n)
    sched = np.zeros(n)
    recv = np.zeros(n)
    P = len(pool)

    def paced():
        t0 = time.monotonic() + 0.05
        for i in range(n):
            target = t0 + offset[i]
            d = target - time.monotonic()
            if d > 0:
                time.sleep(d)
            sched[i] = target
            stamps[i] = time.monotonic()
            yield pool[i % P]

    stage = decoder.StreamStage(engine)  # the defaults: max_rows=10_000, max_delay=1.0
    stage.warm_up()
    reasons: collections.Counter = collections.Counter()
    sizes = []
    handon = []
    gc.collect()
    for batch in stage.batches(paced()):
        now = time.monotonic()
        recv[batch.first_line - 1 : batch.last_line] = now
        batch.records.num_rows  # noqa: B018 - the consumer takes its rows
        reasons[batch.reason] += 1
        sizes.append(batch.messages)
        handon.append(now - batch.closed)
    lat = recv - stamps
    lag = stamps - sched
    span = stamps[-1] - stamps[0]
    return {
        "label": label,
        "phases": phases,
        "messages": n,
        "achieved_rate": (n - 1) / span if span > 0 and len(phases) == 1 else None,
        "latency_s": lat,
        "source_lag_p99_s": float(np.percentile(lag, 99)),
        "source_lag_max_s": float(lag.max()),
        "from_schedule_max_s": float((recv - sched).max()),
        "batches": len(sizes),
        "reasons": dict(reasons),
        "median_batch": statistics.median(sizes),
        "handon_median_s": statistics.median(handon),
        "handon_max_s": max(handon),
        "stage_max_latency_s": stage.stats.max_latency,
        "decoded": stage.stats.decoded,
    }


# --------------------------------------------------------------------------
# memory


def run_memory(engine, pool: list[bytes], n: int, every: int, minutes: float) -> dict:
    deadline = time.monotonic() + minutes * 60

    def source():
        it = itertools.cycle(pool)
        for start in range(0, n, 10_000):
            if time.monotonic() > deadline:
                return
            yield from itertools.islice(it, min(10_000, n - start))

    stage = decoder.StreamStage(engine)
    stage.warm_up()
    gc.collect()
    samples = [(0, rss_mb(), 0.0)]
    mark = every
    rows = 0
    start = time.perf_counter()
    for batch in stage.batches(source()):
        rows += batch.records.num_rows
        m = stage.stats.messages
        if m >= mark:
            samples.append((m, rss_mb(), time.perf_counter() - start))
            while mark <= m:
                mark += every
    seconds = time.perf_counter() - start
    m = stage.stats.messages
    if samples[-1][0] != m:
        samples.append((m, rss_mb(), seconds))
    at20 = next(s for s in samples if s[0] >= 0.2 * m)
    return {
        "messages": m,
        "rows": rows,
        "seconds": seconds,
        "samples": samples,
        "at20": at20,
        "end": samples[-1],
        "growth": samples[-1][1] / at20[1] - 1,
        "stage_max_latency_s": stage.stats.max_latency,
    }


# --------------------------------------------------------------------------
# main


ROWS = [  # key, label, reference of its "n" option
    ("stage_count", "ours: StreamStage defaults, consumer counts rows [ref]"),
    ("stage_ipc", "ours: StreamStage defaults, consumer Arrow IPC -> /dev/null"),
    ("stage_jsonl", "ours: StreamStage defaults, consumer JsonlSink -> /dev/null"),
    ("direct", "ours: same decode calls, 10k slices, no stage"),
    ("handoff", "the stage's reader thread + queue alone, no decoding"),
    ("cli", "ours: decoder stream < file > /dev/null (JSON Lines) *"),
    ("bitstring", "orjson.loads + bitstring Bits.unpack, per message"),
    ("bitstring_arrow", "  the same + RecordBatch.from_pylist every 10,000"),
    ("quickjs", "orjson.loads + QuickJS decodeUplink, per message"),
    ("engine1", "ours: Engine per message, StreamStage(max_rows=1)"),
    ("engine_decode1", "ours: engine.decode([msg]) per message, no stage"),
]


def main() -> int:
    a = ARGS
    work = Path(a.dir)
    work.mkdir(parents=True, exist_ok=True)
    sections = set(a.only.split(",")) if a.only else {"rate", "latency"} | ({"memory"} if a.memory else set())
    info = machine_info()
    info["loadavg_start"] = os.getloadavg()
    loads = [("start", load())]
    t_start = time.time()
    pool = make_pool(a.pool, a.seed, a.mix, work)
    engine = new_engine()
    engine.schema  # noqa: B018 - build once
    result: dict = {"machine": info, "args": vars(a)}
    rates: dict = {}
    latency: list = []
    mem = None
    check = None
    parts: dict = {}
    costs: dict = {}

    if "rate" in sections:
        fns = {"bitstring": make_bitstring_peer(), "quickjs": make_quickjs_peer()}
        check = check_peers(engine, pool, fns)
        cli_path = cli_input(pool, a.cli_n, work, f"{a.pool}_{a.seed}")
        run_cli(cli_input(pool, 2_000, work, f"{a.pool}_{a.seed}"), 2_000)  # numba cache warm, untimed
        run_engine_per_message(engine, pool, 50)
        plan = {
            "stage_count": lambda: run_stage(engine, cycled(pool, a.n), "count"),
            "stage_ipc": lambda: run_stage(engine, cycled(pool, a.n), "ipc"),
            "stage_jsonl": lambda: run_stage(engine, cycled(pool, a.n), "jsonl"),
            "direct": lambda: run_direct(engine, pool, a.n, parts=parts),
            "handoff": lambda: run_handoff(pool, a.n),
            "cli": lambda: run_cli(cli_path, a.cli_n),
            "bitstring": lambda: run_peer(fns["bitstring"], pool, a.sample),
            "bitstring_arrow": lambda: run_peer(fns["bitstring"], pool, a.sample, arrow_every=10_000),
            "quickjs": lambda: run_peer(fns["quickjs"], pool, a.quickjs_sample),
            "engine1": lambda: run_stage(engine, cycled(pool, a.engine1_sample), "count", max_rows=1),
            "engine_decode1": lambda: run_engine_per_message(engine, pool, a.engine1_sample),
        }
        runs: dict = {k: [] for k in plan}
        for rnd in range(a.rounds):
            print(f"round {rnd + 1}/{a.rounds} (load {load():.2f}) ...", flush=True)
            for key, fn in plan.items():
                r = fn()
                r["round"] = rnd
                r["load"] = load()
                if r.get("decoded") not in (None, r["messages"]):
                    print(f"  NOTE {key}: decoded {r['decoded']:,} of {r['messages']:,}", flush=True)
                runs[key].append(r)
                print(f"  {key:15} {r['messages'] / r['seconds']:12,.0f} msg/s  ({r['seconds']:.2f} s)", flush=True)
            loads.append((f"round {rnd + 1}", load()))
        for key, rs in runs.items():
            us = [r["seconds"] / r["messages"] * 1e6 for r in rs]
            ratios = [u / (ref["seconds"] / ref["messages"] * 1e6) for u, ref in zip(us, runs["stage_count"])]
            cpu = [r["cpu_s"] / r["messages"] * 1e6 for r in rs if "cpu_s" in r]
            rates[key] = {
                "us": statistics.median(us),
                "cpu_us": statistics.median(cpu) if cpu else None,
                "rate": statistics.median(r["messages"] / r["seconds"] for r in rs),
                "ratio": statistics.median(ratios),
                "ratios": ratios,
                "n": rs[0]["messages"],
                "runs": rs,
            }
        result["rates"] = rates
        result["output_check"] = check
        costs = consumer_costs(engine, pool)
        result["consumer_costs_us"] = costs

    if "latency" in sections:
        order = [parse_schedule(x, a.latency_seconds) for x in a.rates.split(",")]
        for rnd in range(a.latency_rounds):
            for label, phases in order:
                print(f"latency, {label}, round {rnd + 1} (load {load():.2f}) ...", flush=True)
                r = run_latency(engine, pool, label, phases)
                r["round"] = rnd
                latency.append(r)
                print(
                    f"  max {r['latency_s'].max() * 1e3:.1f} ms, p50 {np.percentile(r['latency_s'], 50) * 1e3:.1f} ms, "
                    f"{r['batches']} batches {r['reasons']}",
                    flush=True,
                )
        loads.append(("latency", load()))

    if "memory" in sections:
        print(f"memory: {a.memory_n:,} messages (at most {a.memory_minutes:g} min) ...", flush=True)
        mem = run_memory(engine, pool, a.memory_n, a.memory_every, a.memory_minutes)
        loads.append(("memory", load()))

    info["loadavg_end"] = os.getloadavg()
    info["wall_s"] = time.time() - t_start
    report(info, loads, rates, parts, costs, check, latency, mem)

    if a.json:

        def plain(o):
            if isinstance(o, np.ndarray):
                return {
                    "p50": float(np.percentile(o, 50)),
                    "p99": float(np.percentile(o, 99)),
                    "p999": float(np.percentile(o, 99.9)),
                    "max": float(o.max()),
                    "n": int(o.size),
                }
            return str(o)

        result.update(
            {
                "loads": loads,
                "latency": latency,
                "memory": mem,
                "parts_us": {k: statistics.median(v) * 1e6 for k, v in parts.items()},
            }
        )
        Path(a.json).write_text(json.dumps(result, indent=1, default=plain))
        print(f"\nwrote {a.json}")
    return 0


def report(info, loads, rates, parts, costs, check, latency, mem) -> None:
    a = ARGS
    v = info["versions"]
    print()
    print(
        f"decoder stream stage, '{CLASS_NAME}' uplinks from samples/generate.py ({a.mix}), "
        f"a pool of {a.pool:,} distinct JSON lines cycled"
    )
    print(
        f"machine: {info['cpu_model']}, nproc {info['nproc']} (usable {info['cpus_usable']}), "
        f"load avg {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f} "
        f"({', '.join(f'{k} {x:.2f}' for k, x in loads)})"
    )
    print(
        "python {python}, numba {numba}, numpy {numpy}, pyarrow {pyarrow}, orjson {orjson}, "
        "bitstring {bitstring}, quickjs {quickjs}".format(**v)
    )
    print(f"{info['code']}")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, wall {info['wall_s']:.0f} s")

    if rates:
        print(
            f"\nsustained rate: median of {a.rounds} interleaved rounds; ratio = row's us/message / "
            f"the [ref] row's, median of per-round ratios (> 1: slower than the stage); CPU = process "
            f"CPU time (all threads) per message"
        )
        print(
            f"| {'row':60} | {'messages/s':>12} | {'us/message':>10} | {'vs stage':>8} | {'CPU us/msg':>10} "
            f"| {'n per run':>10} |"
        )
        print(f"|{'-' * 62}|{'-' * 13}:|{'-' * 11}:|{'-' * 9}:|{'-' * 11}:|{'-' * 11}:|")
        for key, label in ROWS:
            if key not in rates:
                continue
            r = rates[key]
            cpu = f"{r['cpu_us']:10.2f}" if r["cpu_us"] is not None else f"{'-':>10}"
            print(f"| {label:60} | {r['rate']:12,.0f} | {r['us']:10.2f} | {r['ratio']:8.2f} | {cpu} | {r['n']:10,} |")
        cli = rates.get("cli")
        if cli:
            rs = cli["runs"]
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            print(
                f"* CLI: rate from 'reading stdin' on stderr (start-up + warm_up done) to exit; start-up "
                f"{med('startup_s'):.2f} s, whole process {med('wall_s'):.2f} s for {cli['n']:,} "
                f"({cli['n'] / med('wall_s'):,.0f} messages/s with start-up), peak RSS "
                f"{med('maxrss_mb'):,.0f} MB, CPU {med('child_cpu_s'):.2f} s with start-up; the CLI's own "
                f"summary says {med('cli_reported_s'):.2f} s (its clock starts before warm_up)"
            )
        sc = rates["stage_count"]["runs"]
        print(
            f"stage: {statistics.median(r['batches'] for r in sc):,.0f} batches per run, its own max latency "
            f"(first message -> hand-on) {max(r['stage_max_latency_s'] for r in sc) * 1e3:.0f} ms"
        )
        print(f"output check (decoded values, ours vs peer): {check}")
        if parts:
            total = sum(statistics.median(x) for x in parts.values()) * 1e6
            print("\nwhere a message's time goes without the stage (median over 10,000-message slices, us/message):")
            for k, x in parts.items():
                us = statistics.median(x) * 1e6
                print(f"  {k:38} {us:6.2f}  ({us / total * 100:4.1f} %)")
            st = rates["stage_count"]["us"]
            print(
                f"  {'sum':38} {total:6.2f}; the stage (count consumer) takes {st:.2f}: "
                f"{st - total:+.2f} us/message for its reader thread, queue and batching "
                f"(hand-off alone {rates['handoff']['us']:.2f})"
            )
        if costs:
            print("what a consumer pays per message on a decoded 10,000-message batch (median of 5, us/message):")
            for k, us in costs.items():
                print(f"  {k:42} {us:6.2f}")

    if latency:
        print(
            f"\nadded latency at the defaults (max_rows=10,000, max_delay=1.0): for every message, generator "
            f"yield -> consumer receives its batch; all rounds pooled ({a.latency_rounds} rounds)"
        )
        print(
            f"| {'schedule (msg/s)':>28} | {'achieved':>8} | {'messages':>9} | {'batches':>7} | {'p50 ms':>7} | "
            f"{'p99 ms':>7} | {'p99.9 ms':>8} | {'max ms':>7} | {'< 1.0 s':>7} | {'stage says max':>14} | "
            f"{'hand-on max ms':>14} | {'source lag max ms':>17} |"
        )
        print(
            f"|{'-' * 29}:|{'-' * 9}:|{'-' * 10}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 9}:|{'-' * 8}:|"
            f"{'-' * 8}:|{'-' * 15}:|{'-' * 15}:|{'-' * 18}:|"
        )
        for label in dict.fromkeys(r["label"] for r in latency):
            rs = [r for r in latency if r["label"] == label]
            lat = np.concatenate([r["latency_s"] for r in rs]) * 1e3
            mx = lat.max()
            ach = [r["achieved_rate"] for r in rs if r["achieved_rate"]]
            ach_text = f"{statistics.median(ach):8,.0f}" if ach else f"{'-':>8}"
            print(
                f"| {label:>28} | {ach_text} | "
                f"{lat.size:9,} | {sum(r['batches'] for r in rs):7,} | {np.percentile(lat, 50):7.1f} | "
                f"{np.percentile(lat, 99):7.1f} | {np.percentile(lat, 99.9):8.1f} | {mx:7.1f} | "
                f"{'yes' if mx < 1000 else 'NO':>7} | {max(r['stage_max_latency_s'] for r in rs) * 1e3:14.1f} | "
                f"{max(r['handon_max_s'] for r in rs) * 1e3:14.1f} | "
                f"{max(r['source_lag_max_s'] for r in rs) * 1e3:17.1f} |"
            )
        for r in latency:
            print(
                f"  {r['label']:>28} round {r['round'] + 1}: batches {r['reasons']}, median batch "
                f"{r['median_batch']:,.0f} messages, max {r['latency_s'].max() * 1e3:.1f} ms (stage's own "
                f"{r['stage_max_latency_s'] * 1e3:.1f} ms; from the schedule {r['from_schedule_max_s'] * 1e3:.1f} ms); "
                f"hand-on median {r['handon_median_s'] * 1e3:.1f} ms"
            )
        print(
            "  'stage says max': the stage's own stats.max_latency, MicroBatch.opened (its first message's arrival "
            "as the stage saw it) to hand-on;\n  a gap to 'max ms' is time the stage did not see (before 57b4208, "
            "opened was when the loop took the message off the reader's queue).\n"
            "  hand-on: the batch's close (MicroBatch.closed) to the consumer receiving it (decoding).\n"
            "  source lag: how late the generator yielded against its schedule (the source could not keep up)."
        )
        over = [r for r in latency if r["latency_s"].max() >= 1.0]
        if over:
            print(f"NOTE max latency >= max_delay (1.0 s) in {len(over)} run(s): the stage's promise is broken")

    if mem:
        print(
            f"\nmemory: {mem['messages']:,} messages through the stage (count consumer) in {mem['seconds']:.0f} s "
            f"({mem['messages'] / mem['seconds']:,.0f} messages/s), VmRSS every {a.memory_every:,}:"
        )
        line = []
        for m, r, _t in mem["samples"]:
            line.append(f"{m / 1e6:.2f}M {r:.0f}")
        for i in range(0, len(line), 7):
            print("  " + ", ".join(line[i : i + 7]) + " (MB)")
        m20, r20, _ = mem["at20"]
        mend, rend, _ = mem["end"]
        print(
            f"  growth from the 20 % mark ({m20:,}: {r20:.1f} MB) to the end ({mend:,}: {rend:.1f} MB): "
            f"{mem['growth'] * 100:+.1f} % -> {'flat (within 10 %)' if abs(mem['growth']) <= 0.10 else 'NOT FLAT'}"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400_000, help="messages per run of the stage rows (400,000)")
    p.add_argument("--cli-n", type=int, default=200_000, help="messages in the CLI's input file (200,000)")
    p.add_argument("--sample", type=int, default=30_000, help="messages per run of orjson+bitstring (30,000)")
    p.add_argument("--quickjs-sample", type=int, default=3_000, help="messages per run of QuickJS (3,000)")
    p.add_argument("--engine1-sample", type=int, default=500, help="messages per run of our per-message rows (500)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--rates",
        default="1000,20000,1x6+1000x6",
        help="comma-separated schedules of the latency section: a rate (msg/s, for --latency-seconds) "
        "or phases RATExSECONDS+RATExSECONDS... (default 1000,20000,1x6+1000x6: steady 1,000/s, "
        "steady 20,000/s, and a quiet spell of 1/s for 6 s then 1,000/s for 6 s)",
    )
    p.add_argument("--latency-seconds", type=float, default=10.0, help="seconds per latency run (10)")
    p.add_argument("--latency-rounds", type=int, default=2)
    p.add_argument("--memory", action="store_true", help="also run the memory section")
    p.add_argument("--memory-n", type=int, default=5_000_000)
    p.add_argument("--memory-every", type=int, default=250_000)
    p.add_argument("--memory-minutes", type=float, default=10.0)
    p.add_argument("--only", help="comma-separated sections: rate, latency, memory")
    p.add_argument("--pool", type=int, default=100_000, help="distinct generated messages (100,000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--mix", default=DEFAULT_MIX)
    p.add_argument("--dir", default="/tmp/decoder-bench-stream", help="cache of generated input")
    p.add_argument("--json", help="write every run's figures here")
    ARGS = p.parse_args()
    sys.exit(main())
