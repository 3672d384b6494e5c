#!/usr/bin/env python3
"""What `make demo` runs: decode sample packets to Parquet with the decoder CLI.

1. `samples/generate.py` writes Firefly and Helium uplinks (JSON Lines) of
   devices of the three sample classes in `samples/classes/`, with the
   `{dev_eui: class}` and `{Helium device id: class}` maps it used.
2. `decoder decode` turns them into a Parquet dataset partitioned by class,
   printing its summary; failed rows go to an errors file.
3. A few rows of every class are read back with pyarrow and printed.

Everything is written under `out/demo/` (ignored by git).
"""

from __future__ import annotations

import json
import math
import os
import shlex
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
PACKETS = int(os.environ.get("DEMO_PACKETS", "50000"))


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


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    packets, devices, ids = OUT / "packets.jsonl", OUT / "devices.json", OUT / "device_ids.json"

    gen = [sys.executable, str(SAMPLES / "generate.py"), "-n", str(PACKETS), "-o", str(packets),
           "--devices", "300", "--devices-out", str(devices), "--device-ids-out", str(ids),
           "--mix", "firefly=0.5,helium_event=0.2,helium_body=0.2,helium_integration=0.05,helium_downlink=0.05"]
    for g in GROUPS:
        gen += ["--group", g]
    show(["python"] + gen[1:])
    subprocess.run(gen, check=True)
    print(f"  {packets.stat().st_size / 1e6:.1f} MB, {PACKETS:,} lines")

    out = OUT / "packets.parquet"
    errors = OUT / "errors.jsonl"
    cmd = ["decode", str(packets), "--classes", str(SAMPLES / "classes"), "--devices", str(devices),
           "--devices", str(ids), "-o", str(out), "--errors", str(errors)]
    show(["decoder"] + cmd)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "decoder", *cmd])
    if res.returncode:
        return res.returncode
    print(f"  (the whole command, including Python start-up and loading the kernels: "
          f"{time.perf_counter() - t0:.2f} s)")

    import pyarrow.parquet as pq

    print(f"\nRead back with pyarrow: pq.read_table('{os.path.relpath(out, ROOT)}/device_class=<name>')")
    for part in sorted(out.iterdir()):
        table = pq.read_table(part)
        name = part.name.split("=", 1)[1]
        ok = table.filter(table["error"].is_null()) if table["error"].null_count else table
        print(f"\n{name}: {table.num_rows:,} rows, {ok.num_rows:,} decoded")
        sample = (ok if ok.num_rows else table).slice(0, 3)
        for row in sample.to_pylist():
            who = row["dev_eui"] or row["device_id"]
            when = row["received_at"].strftime("%Y-%m-%dT%H:%M:%SZ") if row["received_at"] else "-"
            body = json.dumps(rounded(row["decoded"])) if row.get("decoded") is not None else row["error"]
            print(f"  {row['provider']:<7} {who:<36} {when} port {row['port']}: {body}")
    if errors.exists() and errors.stat().st_size:
        first = errors.read_text().splitlines()[0]
        print(f"\nFirst entry of {os.path.relpath(errors, ROOT)}:\n  {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
