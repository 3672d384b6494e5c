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
- ``reference``: ``reference_decode(bytes.fromhex(p))`` from
  tests/test_cayenne_lpp.py for every payload, run on ``--sample`` payloads
  and scaled to ``-n`` (printed as such).

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import decoder  # noqa: E402 - the tree's decoder, not an installed one
from decoder.formats.cayenne_lpp import TYPES  # noqa: E402
from decoder.sinks import to_hex  # noqa: E402


def reference_module():
    """tests/test_cayenne_lpp.py as a module: the reference decoder is the one the tests trust."""
    spec = importlib.util.spec_from_file_location("test_cayenne_lpp", ROOT / "tests" / "test_cayenne_lpp.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "tests"))
    spec.loader.exec_module(module)
    return module


def generate(n: int, channels: int, seed: int) -> list[str]:
    """n hex payloads of 3-6 random items each (vectorized: items laid out with cumulative sums)."""
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
    binary = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return to_hex(binary).to_pylist()


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
    payloads = generate(a.n, a.channels, a.seed)
    sample = payloads[:min(a.sample, a.n)]
    mean_bytes = sum(map(len, payloads)) / 2 / a.n
    print(f"{a.n:,} payloads, 3-6 items each, channels 0..{a.channels - 1}, {mean_bytes:.1f} bytes on average")

    # Correctness first (and numba's compile or cache load, untimed).
    check = sample[:20_000]
    expected = [ref.reference_decode(bytes.fromhex(p)) for p in check]
    batch = lpp.decode(check)
    assert batch.to_pylist() == [values for values, _ in expected], "decode differs from the reference"
    assert batch.error_array().to_pylist() == [error for _, error in expected], "errors differ"
    print(f"checked: {len(check):,} payloads equal to the reference, values and errors")

    def reference():
        decode = ref.reference_decode
        return [decode(bytes.fromhex(p)) for p in sample]

    plan = {
        "decode": lambda: lpp.decode(payloads),
        "decode + to_arrow": lambda: lpp.decode(payloads).to_arrow(),
        "decode_fixed + to_arrow": lambda: lpp.decode_fixed(payloads).to_arrow(),
    }
    results = {}
    for name, fn in plan.items():
        results[name] = median_time(fn, a.runs)
    ref_median, ref_times = median_time(reference, a.runs)
    scale = a.n / len(sample)
    ref_scaled = ref_median * scale
    print(f"reference: run on {len(sample):,} payloads, scaled x{scale:g} to {a.n:,}")

    table = lpp.decode(payloads).to_arrow()
    print(f"decode columns: {table.num_columns}; values: {lpp.decode(payloads).stats['values']:,}")
    print(f"\n{'':<26}{'median s':>10}{'ns/payload':>12}{'x reference':>13}   runs (s)")
    for name, (med, times) in results.items():
        print(f"{name:<26}{med:>10.3f}{med / a.n * 1e9:>12.0f}{ref_scaled / med:>13.1f}   "
              + ", ".join(f"{t:.3f}" for t in times))
    print(f"{'reference (scaled)':<26}{ref_scaled:>10.3f}{ref_scaled / a.n * 1e9:>12.0f}{1.0:>13.1f}   "
          + ", ".join(f"{t * scale:.3f}" for t in ref_times))
    print(f"\nuptime at end: {uptime()}")


if __name__ == "__main__":
    main()
