#!/usr/bin/env python3
"""End to end: JSON Lines of packets -> decoded Parquet, against the peers, in one run.

    .venv/bin/python benchmarks/compare_end_to_end.py                # 1,000,000 packets
    .venv/bin/python benchmarks/compare_end_to_end.py -n 200000 --memory-n 0

Rows (each in a fresh process, the best of --repeat kept):

- ours: ``decoder decode FILE --classes test_device_class.json -o out.parquet``
  (read, normalize both providers, decode, write Parquet).
- orjson + bitstring: ``orjson.loads`` per line, the provider's fields picked
  per packet, the payload decoded with ``bitstring`` and the class's formulas
  in Python, rows written to Parquet with pyarrow: what a user would write.
  It runs on the first --sample lines and is scaled (printed).
- pyarrow reader alone: ``pyarrow.json.read_json`` of the whole file with an
  explicit schema, all cores, decoding and writing nothing: the floor.

Then the peak RSS of ours on --memory-n packets against -n packets (memory
must stay flat as the file grows). The input is samples/generate.py's default
mix (half Firefly, a quarter Helium device events, a quarter integration
bodies) of Test Device Class devices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLASSES = ROOT / "samples" / "classes" / "test_device_class.json"

BASELINE = r"""
import base64, sys, time, orjson, bitstring, pyarrow as pa, pyarrow.parquet as pq
path, limit, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
FMT = ["uint8", "int24", "int24", "int16"]
rows = []
t = time.perf_counter()
with open(path, "rb") as fh:
    for k, line in enumerate(fh):
        if k >= limit:
            break
        p = orjson.loads(line)
        if "gwrx" in p:
            raw = bytes.fromhex(p["payload"]); best = max(p["gwrx"], key=lambda g: (g["rssi"], g["lsnr"]))
            meta = ("firefly", p["device_eui"], p["received_at"], p["port"], best["rssi"], best["lsnr"])
        else:
            body = p["data"]["req"]["body"] if "req" in p.get("data", {}) else p.get("data", p)
            hs = body.get("hotspots") or [body.get("hotspot")]
            best = max(hs, key=lambda h: (h["rssi"], h["snr"]))
            raw = base64.b64decode(body["payload"])
            meta = ("helium", body.get("dev_eui"), p.get("reported_at"), body["port"], best["rssi"], best["snr"])
        battery, lat, lon, alt = bitstring.Reader(bitstring.Bits(raw)).read_list(FMT)
        rows.append({"provider": meta[0], "dev_eui": meta[1], "received_at": str(meta[2]), "port": meta[3],
                     "rssi": meta[4], "snr": meta[5],
                     "batteryLevel": (battery - 1) / 253 if battery != 0 else None,
                     "latitude": lat / (1 << 23) * 90, "longitude": lon / (1 << 23) * 180, "altitude": alt})
pq.write_table(pa.Table.from_pylist(rows), out)
print(time.perf_counter() - t, len(rows))
"""

ARROW_FLOOR = r"""
import sys, time
import pyarrow.json as pj
sys.path.insert(0, sys.argv[2])
from bench_ingest import _baseline_schema
t = time.perf_counter()
table = pj.read_json(sys.argv[1], parse_options=pj.ParseOptions(explicit_schema=_baseline_schema("mixed"),
                                                                unexpected_field_behavior="ignore"))
print(time.perf_counter() - t, table.num_rows)
"""


def run(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB of the child, and its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss // 1024, out


def generate(n: int, path: Path) -> None:
    if not path.exists():
        print(f"generating {n:,} packets -> {path}", file=sys.stderr)
        subprocess.run(
            [PY, str(ROOT / "samples" / "generate.py"), "-n", str(n), "-o", str(path), "--seed", "7"], check=True
        )


def ours(path: Path, out: Path) -> tuple[float, int]:
    best = None
    for _ in range(ARGS.repeat):
        wall, rss, _ = run([PY, "-m", "decoder", "decode", str(path), "--classes", str(CLASSES), "-o", str(out), "-q"])
        best = (wall, rss) if best is None or wall < best[0] else best
    return best


def main() -> None:
    work = Path(ARGS.dir)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"packets_{ARGS.n}.jsonl"
    generate(ARGS.n, data)
    ours(data, work / "warm.parquet")  # kernel cache warm, as for any user's second run

    results = {}
    wall, rss = ours(data, work / "ours.parquet")
    results["ours: decoder decode -> Parquet"] = (wall, ARGS.n, rss)

    limit = min(ARGS.sample, ARGS.n)
    secs, rss, out = run([PY, "-c", BASELINE, str(data), str(limit), str(work / "baseline.parquet")])
    results[f"orjson + bitstring per packet -> Parquet (scaled from {limit:,})"] = (
        float(out.split()[0]) * ARGS.n / limit,
        ARGS.n,
        rss,
    )

    best = None
    for _ in range(ARGS.repeat):
        w, rss, out = run([PY, "-c", ARROW_FLOOR, str(data), str(ROOT / "benchmarks")])
        best = (w, rss) if best is None or w < best[0] else best
    results["pyarrow.json.read_json + schema, decodes nothing (floor)"] = (best[0], ARGS.n, best[1])

    ours_wall = results["ours: decoder decode -> Parquet"][0]
    floor = results["pyarrow.json.read_json + schema, decodes nothing (floor)"][0]
    print(
        f"\nEnd to end, {ARGS.n:,} packets, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'':62} {'packets/s':>12} {'ns/packet':>10} {'ours is':>9} {'peak RSS':>9}")
    for name, (wall, n, rss) in results.items():
        print(f"{name:62} {n / wall:12,.0f} {wall / n * 1e9:10,.0f} {wall / ours_wall:8.2f}x {rss:7,} MB")
    print(
        f"\nours vs orjson+bitstring: "
        f"{results[next(k for k in results if k.startswith('orjson'))][0] / ours_wall:.1f}x "
        f"faster (target >= 5x); ours vs the pyarrow floor: {floor / ours_wall:.2f}x its speed (target >= 0.7x)"
    )

    if ARGS.memory_n:
        big = work / f"packets_{ARGS.memory_n}.jsonl"
        generate(ARGS.memory_n, big)
        _, rss_big = ours(big, work / "big.parquet")
        rss_small = results["ours: decoder decode -> Parquet"][2]
        print(
            f"peak RSS: {rss_small:,} MB at {ARGS.n:,} packets, {rss_big:,} MB at {ARGS.memory_n:,} "
            f"({(rss_big / rss_small - 1) * 100:+.1f}%, target within 10%)"
        )
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps({k: {"seconds": v[0], "rss_mb": v[2]} for k, v in results.items()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--memory-n", type=int, default=4_000_000, help="second size for the memory check (0: skip)")
    parser.add_argument("--sample", type=int, default=50_000, help="lines the per-packet baseline runs on")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/decoder-e2e")
    parser.add_argument("--json")
    ARGS = parser.parse_args()
    main()
