#!/usr/bin/env python3
"""What `make demo` runs: decode sample packets to Parquet with the decoder CLI.

1. The packet files in `samples/packets/` (Firefly and Helium, in the shapes
   of the API references, plus a file of bad lines) are decoded with the
   seed's "Test Device Class" into one Parquet file; the summary, a few
   rows and the first error records are printed.
2. `samples/generate.py` writes Firefly, Helium, The Things Stack and
   ChirpStack uplinks of devices of all
   three sample classes in `samples/classes/`, with the `{dev_eui: class}`
   and `{Helium device id: class}` maps it used; `decoder decode` turns them
   into a Parquet dataset partitioned by class, read back whole with
   pyarrow, and a few rows of every class are printed.

3. The same packets as a live feed: `decoder stream` reads them from stdin
   in bursts and writes rolling Parquet files until it is interrupted.

Everything is written under `out/demo/` (ignored by git).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
OUT = ROOT / "out" / "demo"
# Payload sizes per class: the seed class reads 9 bytes, the climate sensor 6, the
# multi sensor 10 (its measurement layout, on port 3).
GROUPS = ["Test Device Class:9:2", "Room Climate Sensor:6:1", "Multi Sensor:10:1"]
PACKETS = int(os.environ.get("DEMO_PACKETS", "20000"))


def show(cmd: list[str]) -> None:
    shown = ["decoder" if c == "-m decoder" else c for c in cmd]
    text = " ".join(shlex.quote(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c) for c in shown)
    print(f"\n$ {text}", flush=True)


def rounded(value):
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items() if v is not None}
    return value


def decode(args: list[str]) -> bool:
    show(["decoder", *args])
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "decoder", *args])
    print(f"  (whole command, Python start-up and kernel loading included: {time.perf_counter() - t0:.2f} s)")
    return res.returncode == 0


def print_rows(table, limit: int = 3) -> None:
    ok = table.filter(table["error"].is_null()) if table["error"].null_count else table
    for row in (ok if ok.num_rows else table).slice(0, limit).to_pylist():
        who = row["dev_eui"] or row["device_id"]
        when = row["received_at"].strftime("%Y-%m-%dT%H:%M:%SZ") if row["received_at"] else "-"
        decoded = row.get("decoded")
        if isinstance(decoded, dict) and row.get("device_class") in decoded:  # several classes: its own
            decoded = decoded[row["device_class"]]
        body = json.dumps(rounded(decoded)) if decoded is not None else row["error"]
        print(f"  {row['provider']:<10} {who:<36} {when} port {row['port']}: {body}")


def print_errors(path: Path, limit: int = 3) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    if lines:
        print(f"\nFirst entries of {os.path.relpath(path, ROOT)} ({len(lines)} in all):")
        for line in lines[:limit]:
            rec = json.loads(line)
            print(f"  {os.path.basename(rec['input'])}:{rec['line']}: {rec['error']}")


def main() -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # out/demo/ is the demo's own: start clean (decoder itself never replaces a directory it
    # did not write, and the stream step would otherwise count files of earlier runs).
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)

    # 1. The sample packet files, one class for every device.
    files = [str(p) for p in sorted((SAMPLES / "packets").glob("*.jsonl"))]
    out, errors = OUT / "samples.parquet", OUT / "samples_errors.jsonl"
    if not decode(
        [
            "decode",
            *files,
            "--classes",
            str(SAMPLES / "classes" / "test_device_class.json"),
            "-o",
            str(out),
            "--errors",
            str(errors),
        ]
    ):
        return 1
    table = pq.read_table(out)
    print(
        f"\nRead back with pyarrow: pq.read_table('{os.path.relpath(out, ROOT)}'): "
        f"{table.num_rows} rows, columns {', '.join(table.column_names)}"
    )
    print_rows(table)
    print_errors(errors)

    # 2. Three classes, devices bound by DevEUI and Helium device id.
    packets, devices, ids = OUT / "packets.jsonl", OUT / "devices.json", OUT / "device_ids.json"
    gen = [
        sys.executable,
        str(SAMPLES / "generate.py"),
        "-n",
        str(PACKETS),
        "-o",
        str(packets),
        "--devices",
        "300",
        "--devices-out",
        str(devices),
        "--device-ids-out",
        str(ids),
        "--mix",
        "firefly=0.35,helium_event=0.15,helium_body=0.15,helium_integration=0.05,helium_downlink=0.05,"
        "tts=0.15,chirpstack=0.1",
    ]
    for g in GROUPS:
        gen += ["--group", g]
    print("\n" + "-" * 78)
    show(["python"] + gen[1:])
    subprocess.run(gen, check=True)
    print(f"  {packets.stat().st_size / 1e6:.1f} MB, {PACKETS:,} lines")
    out, errors = OUT / "packets.parquet", OUT / "errors.jsonl"
    if not decode(
        [
            "decode",
            str(packets),
            "--classes",
            str(SAMPLES / "classes"),
            "--devices",
            str(devices),
            "--devices",
            str(ids),
            "-o",
            str(out),
            "--errors",
            str(errors),
        ]
    ):
        return 1
    table = pq.read_table(out)  # every partition has one schema: the whole dataset reads as one table
    print(f"\nRead back with pyarrow: pq.read_table('{os.path.relpath(out, ROOT)}'): {table.num_rows:,} rows")
    classes = table["device_class"].cast(pa.string())
    for name in sorted(set(classes.to_pylist())):
        part = table.filter(pc.equal(classes, name))
        ok = part["error"].null_count  # rows without an error
        print(f"\n{name or '(no class)'}: {part.num_rows:,} rows, {ok:,} decoded")
        print_rows(part)
    print_errors(errors)

    # 3. The same packets as a live feed: a slow writer on stdin, rolling Parquet files out.
    print("\n" + "-" * 78)
    return stream(packets, devices, ids)


def stream(packets: Path, devices: Path, ids: Path) -> int:
    """Feed the first 3,000 packets to `decoder stream` in bursts, as a network server would."""
    import pyarrow.parquet as pq

    out = OUT / "stream"
    args = [
        "stream",
        "--classes",
        str(SAMPLES / "classes"),
        "--devices",
        str(devices),
        "--devices",
        str(ids),
        "-o",
        str(out),
        "--max-delay",
        "0.5",
        "--roll-seconds",
        "1",
    ]
    show(["decoder", *args])
    print("  (fed 3,000 lines in bursts of 500, 0.4 s apart, then Ctrl-C)", flush=True)
    lines = packets.read_bytes().splitlines(keepends=True)[:3000]
    proc = subprocess.Popen([sys.executable, "-m", "decoder", *args], stdin=subprocess.PIPE)
    for k in range(0, len(lines), 500):
        proc.stdin.write(b"".join(lines[k : k + 500]))
        proc.stdin.flush()
        time.sleep(0.4)
    time.sleep(1.0)
    proc.send_signal(2)  # Ctrl-C: the open batch is handed on, the open file completed
    if proc.wait(timeout=60) != 0:
        return 1
    files = sorted(out.rglob("part-*.parquet"))
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    print(
        f"\n{len(files)} complete Parquet files in {os.path.relpath(out, ROOT)}/, {rows:,} rows "
        f"(read while it runs: only whole files are there)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
