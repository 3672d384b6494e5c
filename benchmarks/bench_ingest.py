#!/usr/bin/env python3
"""Which JSON reader for JSON Lines of packets: ns per packet, measured.

    .venv/bin/python benchmarks/bench_ingest.py                 # 1,000,000 packets, every file and reader
    .venv/bin/python benchmarks/bench_ingest.py -n 200000 --files firefly --readers ours,pyarrow
    .venv/bin/python benchmarks/bench_ingest.py --json out.json

Files (written once by samples/generate.py into --dir, default
/tmp/decoder-bench): ``mixed`` (the generator's default: half Firefly
packets, a quarter Helium device events, a quarter Helium HTTP integration
bodies), ``firefly``, ``helium_event``, ``helium_body``.

Readers, each run in a fresh process (--repeat times, the fastest kept):

- ``ours``: ``decoder.jsonl.read_chunks`` -> normalized uplinks and
  receptions, payloads decoded, every bad line located.
- ``pyarrow``: ``pyarrow.json.read_json`` of the whole file with an explicit
  schema (the fields ``ours`` reads for that file; for ``mixed`` without the
  top-level ``reported_at``, which Arrow cannot read as both a string and a
  number), all cores. The bar: ours must reach >= 0.7x its speed.
- ``pyarrow-1``: the same on one thread.
- ``open_json``: ``pyarrow.json.open_json``, Arrow's streaming reader, same schema.
- ``orjson``: ``orjson.loads`` per line, nothing else.
- ``orjson+py``: ``orjson.loads`` per line and a plain Python normalization
  (shape, best gateway, payload bytes): the per-packet way.
- ``json``: the standard library per line.
- ``msgspec``: ``msgspec.json.Decoder().decode`` per line, only if msgspec is installed.

Printed: wall ns/packet, CPU ns/packet (all threads), peak RSS, and each
reader's speed relative to ``pyarrow``. The machine is shared: look at the
load average printed before and after.

Measured on the 2-core machine, 1,000,000 packets per file, load average
about 1.4 (others were running; repeat 2, the faster kept). Wall ns/packet:

    reader       mixed  firefly  helium_event  helium_body   peak MB
    ours         3,729    2,392         2,900        3,514   318-347 (same at 4M)
    pyarrow      3,096    2,098         2,571        3,206   723-1,082 (whole file)
    pyarrow-1    5,568    3,757         4,797        5,831
    open_json    2,768    1,911         2,615        3,270   no line numbers, stops at the first error
    orjson       2,826    2,175         2,851        3,643   loads only, 1 thread, no columns
    orjson+py   11,864    7,032        14,037       14,676
    json         9,326    7,367         9,698       12,065
    msgspec      not installed (not a dependency)

ours/pyarrow was 0.83-0.91x in that run; in-process A/B runs on a quieter
machine gave 0.92-1.16x (mixed 1.12x, firefly 1.16x at 1M). The JSON parse
is about 85% of our CPU; normalization about 300-400 ns/packet of CPU.
Why Arrow and not orjson: orjson parses about as fast per core, but turning
its dicts into columns in Python costs 3-5x more than the parse (orjson+py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATE = ROOT / "samples" / "generate.py"
FILES = {
    "mixed": "firefly=0.5,helium_event=0.25,helium_body=0.25",
    "firefly": "firefly=1",
    "helium_event": "helium_event=1",
    "helium_body": "helium_body=1",
}
READERS = ["ours", "pyarrow", "pyarrow-1", "open_json", "orjson", "orjson+py", "json", "msgspec"]


# --------------------------------------------------------------------------- readers (child process)


def _baseline_schema(kind: str):
    """Arrow's schema of the fields the reader declares for the file's providers (each field with
    its first declared type; Helium's event reported_at, printed in quotes, as text)."""
    import pyarrow as pa

    sys.path.insert(0, str(ROOT))
    from decoder.ingest import firefly, helium

    arrow = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    fields = {**firefly.FIELDS, **helium.FIELDS} if kind == "mixed" else {}
    if kind == "firefly":
        fields = firefly.FIELDS
    elif kind in ("helium_event", "helium_body"):
        fields = helium.FIELDS
    tree: dict = {}
    for path, spec in fields.items():
        first = spec.split("|")[0]
        if first not in arrow:
            continue
        if kind == "helium_event" and path == "reported_at":
            first = "str"
        node = tree
        segs = path.split(".")
        for seg in segs[:-1]:
            node = node.setdefault(seg, {})
        node[segs[-1]] = arrow[first]

    def build(node: dict) -> list:
        out = []
        items: dict = {}
        for key, value in node.items():
            if key.endswith("[]"):
                items.setdefault(key[:-2], {}).update(value if isinstance(value, dict) else {})
            elif isinstance(value, dict):
                out.append(pa.field(key, pa.struct(build(value))))
            else:
                out.append(pa.field(key, value))
        out += [pa.field(key, pa.list_(pa.struct(build(sub)))) for key, sub in items.items()]
        return out

    schema = pa.schema(build(tree))
    if kind == "mixed":
        schema = schema.remove(schema.get_field_index("reported_at"))
    return schema


def _run_reader(reader: str, path: str, kind: str) -> dict:
    rows = 0
    if reader == "ours":
        sys.path.insert(0, str(ROOT))
        from decoder.ingest import read_chunks

        t0, c0 = time.perf_counter(), time.process_time()
        for chunk in read_chunks(path):
            rows += chunk.uplinks.num_rows + len(chunk.bad_lines) + sum(chunk.skipped.values())
    elif reader in ("pyarrow", "pyarrow-1", "open_json"):
        sys.path.insert(0, str(ROOT))
        import pyarrow.json as pj

        schema = _baseline_schema(kind)
        po = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        ro = pj.ReadOptions(use_threads=(reader != "pyarrow-1"))
        t0, c0 = time.perf_counter(), time.process_time()
        if reader == "open_json":
            for batch in pj.open_json(path, read_options=ro, parse_options=po):
                rows += batch.num_rows
        else:
            rows = pj.read_json(path, read_options=ro, parse_options=po).num_rows
    elif reader in ("orjson", "orjson+py", "json", "msgspec"):
        if reader == "msgspec":
            import msgspec

            loads = msgspec.json.Decoder().decode
        elif reader == "json":
            loads = json.loads
        else:
            import orjson

            loads = orjson.loads
        normalize = _py_normalize if reader == "orjson+py" else None
        t0, c0 = time.perf_counter(), time.process_time()
        out = []
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                v = loads(line)
                if normalize is not None:
                    out.append(normalize(v))
                rows += 1
    else:
        raise SystemExit(f"unknown reader {reader}")
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "rows": rows,
        "wall": wall,
        "cpu": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _py_normalize(v: dict):
    """The per-packet way, for comparison: one Python dict per uplink."""
    import base64
    import datetime as dt

    if "gwrx" in v or "device_eui" in v:
        gws = v.get("gwrx") or []
        best = max(gws, key=lambda g: (g.get("rssi", -1e9), g.get("lsnr", -1e9)), default={})
        return {
            "provider": "firefly",
            "dev_eui": (v.get("device_eui") or "").upper(),
            "fcnt": v.get("fcnt"),
            "port": v.get("port"),
            "payload": bytes.fromhex(v.get("payload") or ""),
            "received_at": dt.datetime.fromisoformat(v["received_at"]).replace(tzinfo=dt.UTC),
            "rssi": best.get("rssi"),
            "snr": best.get("lsnr"),
            "gateway_id": best.get("gweui"),
            "frequency_mhz": v.get("freq"),
            "spreading_factor": v.get("spreading_factor"),
        }
    body = v
    if "category" in v:
        data = v.get("data") or {}
        body = (data.get("req") or {}).get("body") or dict(data, hotspots=[data.get("hotspot")])
    hs = [h for h in body.get("hotspots") or [] if h]
    best = max(hs, key=lambda h: (h.get("rssi", -1e9), h.get("snr", -1e9)), default={})
    f32 = lambda x: None if x is None else float(repr(__import__("numpy").float32(x)).split("(")[-1].rstrip(")"))
    return {
        "provider": "helium",
        "dev_eui": body.get("dev_eui"),
        "fcnt": body.get("fcnt"),
        "port": body.get("port"),
        "payload": base64.b64decode(body.get("payload") or ""),
        "received_at": int(v.get("reported_at") or body.get("reported_at") or 0),
        "rssi": f32(best.get("rssi")),
        "snr": f32(best.get("snr")),
        "gateway_id": best.get("id"),
        "frequency_mhz": f32(best.get("frequency")),
    }


# --------------------------------------------------------------------------- driver


def _ensure_file(directory: Path, kind: str, n: int) -> Path:
    path = directory / f"{kind}-{n}.jsonl"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        print(f"writing {path} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, str(GENERATE), "-n", str(n), "--seed", "1", "--mix", FILES[kind], "-o", str(tmp)],
            check=True,
        )
        tmp.rename(path)
    return path


def _child(reader: str, path: Path, kind: str) -> dict | None:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", reader, str(path), kind], capture_output=True, text=True
    )
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()[-1:] or ["failed"]
        return {"error": msg[0]}
    return json.loads(proc.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="packets per file (default 1,000,000)")
    ap.add_argument("--files", default=",".join(FILES), help=f"comma list of {', '.join(FILES)}")
    ap.add_argument("--readers", default=",".join(READERS), help=f"comma list of {', '.join(READERS)}")
    ap.add_argument("--repeat", type=int, default=2, help="fresh processes per reader; the fastest is kept")
    ap.add_argument(
        "--slow-n",
        type=int,
        default=200_000,
        help="per-line readers (orjson, json, ...) read only the first N lines (default 200,000)",
    )
    ap.add_argument("--dir", default="/tmp/decoder-bench")
    ap.add_argument("--json", help="write every run here")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        reader, path, kind = args.child
        print(json.dumps(_run_reader(reader, path, kind)))
        return 0

    directory = Path(args.dir)
    readers = [r for r in args.readers.split(",") if r]
    try:
        import msgspec  # noqa: F401
    except ImportError:
        if "msgspec" in readers:
            readers.remove("msgspec")
            print("msgspec is not installed: skipped", file=sys.stderr)
    results = {"n": args.n, "load_before": os.getloadavg(), "cpus": os.cpu_count(), "runs": {}}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for kind in args.files.split(","):
        path = _ensure_file(directory, kind, args.n)
        small = path
        if args.slow_n and args.slow_n < args.n:
            small = directory / f"{kind}-{args.n}-head{args.slow_n}.jsonl"
            if not small.exists():
                with open(path, "rb") as src, open(small, "wb") as dst:
                    for k, line in enumerate(src):
                        if k >= args.slow_n:
                            break
                        dst.write(line)
        size = path.stat().st_size
        print(f"\n{kind}: {args.n:,} packets, {size / args.n:.0f} bytes each")
        print(f"  {'reader':12s} {'wall ns/pkt':>12s} {'cpu ns/pkt':>11s} {'peak MB':>8s} {'vs pyarrow':>10s}")
        table = {}
        for reader in readers:
            per_line = reader in ("orjson", "orjson+py", "json", "msgspec")
            runs = [_child(reader, small if per_line else path, kind) for _ in range(args.repeat)]
            ok = [r for r in runs if "error" not in r]
            if not ok:
                print(f"  {reader:12s} failed: {runs[0]['error']}")
                table[reader] = runs
                continue
            best = min(ok, key=lambda r: r["wall"])
            best["ns_wall"] = best["wall"] / best["rows"] * 1e9
            best["ns_cpu"] = best["cpu"] / best["rows"] * 1e9
            table[reader] = best
        base = table.get("pyarrow", {}).get("ns_wall") if isinstance(table.get("pyarrow"), dict) else None
        for reader in readers:
            r = table.get(reader)
            if not isinstance(r, dict) or "ns_wall" not in r:
                continue
            rel = f"{base / r['ns_wall']:.2f}x" if base else "-"
            print(f"  {reader:12s} {r['ns_wall']:12,.0f} {r['ns_cpu']:11,.0f} {r['peak_rss_mb']:8,.0f} {rel:>10s}")
        results["runs"][kind] = table
    results["load_after"] = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
