"""The built-in Cayenne LPP decoder against the plain-Python reference of the tests.

    python benchmarks/bench_cayenne.py [-n 1000000] [--sample 100000] [--channels 4] [--runs 3]

Payloads: ``-n`` generated payloads of 3 to 6 items each, the type uniform
over the 12 standard types, the channel uniform over 0 .. channels-1, the
value bytes random (seeded). Input: hex text in a Python list, the form a
JSON reader hands over.

Timed, median of ``--runs`` runs each:

- ``decode``: ``builtin("cayenne-lpp").decode(hex list)``: hex to bytes and
  the one-loop kernel; every value is decoded into the batch.
- ``decode + to_arrow``: also the table of one column per (type, channel).
- ``decode_fixed + to_arrow``: the Engine's form, one map column per type.
- ``raw: decode_fixed + to_arrow``: the same from an Arrow binary array of
  raw bytes, which is what the Engine hands over.
- ``reference``: ``reference_decode(bytes.fromhex(p))`` from
  tests/test_cayenne_lpp.py for every payload; ``reference (raw)`` from
  bytes. Run on ``--sample`` payloads and scaled to ``-n`` (printed as
  such). Each of ours is compared with the reference of the same input.

The outputs are checked equal on the sample first. The load average is
printed at the start and the end: the machine is shared.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import decoder
from decoder.formats.cayenne_lpp import TYPES
from decoder.output.text import to_hex

ROOT = Path(__file__).resolve().parents[1]


def reference_module():
    """tests/test_cayenne_lpp.py as a module: the reference decoder is the one the tests trust."""
    spec = importlib.util.spec_from_file_location("test_cayenne_lpp", ROOT / "tests" / "test_cayenne_lpp.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "tests"))
    spec.loader.exec_module(module)
    return module


def generate(n: int, channels: int, seed: int) -> pa.Array:
    """n payloads of 3-6 random items each as an Arrow binary array (items laid out with cumulative sums)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(3, 7, n)
    slots = rng.integers(0, len(TYPES), int(counts.sum()))
    codes = np.array([t.code for t in TYPES], np.uint8)[slots]
    sizes = 2 + np.array([t.size for t in TYPES], np.int64)[slots]
    item_end = np.cumsum(sizes)
    item_start = item_end - sizes
    data = rng.integers(0, 256, int(item_end[-1]), dtype=np.uint8)
    data[item_start] = rng.integers(0, channels, len(slots))
    data[item_start + 1] = codes
    row_end = item_end[np.cumsum(counts) - 1]
    offsets = np.concatenate(([0], row_end)).astype(np.int64)
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def median_time(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=100_000, help="payloads the reference decodes (then scaled)")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=14)
    a = ap.parse_args()

    print(f"uptime at start: {uptime()}")
    print(f"decoder from {Path(decoder.__file__).parent}")
    ref = reference_module()
    lpp = decoder.builtin("cayenne-lpp")
    raw = generate(a.n, a.channels, a.seed)
    payloads = to_hex(raw).to_pylist()
    sample = payloads[: min(a.sample, a.n)]
    raw_sample = raw.slice(0, len(sample)).to_pylist()
    mean_bytes = sum(map(len, payloads)) / 2 / a.n
    print(f"{a.n:,} payloads, 3-6 items each, channels 0..{a.channels - 1}, {mean_bytes:.1f} bytes on average")

    # Correctness first (and numba's compile or cache load, untimed).
    check = sample[:20_000]
    expected = [ref.reference_decode(bytes.fromhex(p)) for p in check]
    batch = lpp.decode(check)
    assert batch.to_pylist() == [values for values, _ in expected], "decode differs from the reference"
    assert batch.error_array().to_pylist() == [error for _, error in expected], "errors differ"
    print(f"checked: {len(check):,} payloads equal to the reference, values and errors")

    decode = ref.reference_decode
    plan = {  # name: (function, the reference it is compared with)
        "decode": (lambda: lpp.decode(payloads), "reference"),
        "decode + to_arrow": (lambda: lpp.decode(payloads).to_arrow(), "reference"),
        "decode_fixed + to_arrow": (lambda: lpp.decode_fixed(payloads).to_arrow(), "reference"),
        "raw: decode_fixed + to_arrow": (lambda: lpp.decode_fixed(raw, encoding="raw").to_arrow(), "reference (raw)"),
    }
    references = {
        "reference": lambda: [decode(bytes.fromhex(p)) for p in sample],
        "reference (raw)": lambda: [decode(p) for p in raw_sample],
    }
    results = {name: median_time(fn, a.runs) for name, (fn, _) in plan.items()}
    scale = a.n / len(sample)
    scaled = {}
    for name, fn in references.items():
        med, times = median_time(fn, a.runs)
        scaled[name] = (med * scale, [t * scale for t in times])
    print(f"reference: run on {len(sample):,} payloads, scaled x{scale:g} to {a.n:,}")

    table = lpp.decode(payloads).to_arrow()
    print(f"decode columns: {table.num_columns}; values: {lpp.decode(payloads).stats['values']:,}")
    print(f"\n{'':<30}{'median s':>10}{'ns/payload':>12}{'x reference':>13}   runs (s)")
    for name, (med, times) in results.items():
        versus = scaled[plan[name][1]][0]
        print(
            f"{name:<30}{med:>10.3f}{med / a.n * 1e9:>12.0f}{versus / med:>13.1f}   "
            + ", ".join(f"{t:.3f}" for t in times)
        )
    for name, (med, times) in scaled.items():
        print(
            f"{name + ' (scaled)':<30}{med:>10.3f}{med / a.n * 1e9:>12.0f}{1.0:>13.1f}   "
            + ", ".join(f"{t:.3f}" for t in times)
        )
    print(f"\nuptime at end: {uptime()}")


if __name__ == "__main__":
    main()
