"""Paired runs of two scan kernels in one process: the repository's (A) and a variant (B).

Whole-process timings on a shared 2-core VM move by a third from one minute
to the next, which hides a change of a few percent in the scan. Here both
kernels scan the same 8 MB chunks of a file in one process, alternating
chunk by chunk (AB, then BA), and the ratio B/A is taken per chunk: the
median and quartiles of those ratios are what a change is judged by.
Identical kernels give 1.00 (+-0.01).

The variant is the kernel's source with replacements, a JSON list of
``[old, new]`` pairs (``old`` must occur once; ``"re:PATTERN"`` is a regular
expression, replaced everywhere). ``--transpose 5,7`` passes those kernel
arguments transposed to B (a table stored the other way round). Before
timing, both kernels scan the first chunk and their outputs must be equal.

    .venv/bin/python benchmarks/ab_scan_kernel.py FILE variant.json
    echo '[]' > same.json && .venv/bin/python benchmarks/ab_scan_kernel.py FILE same.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import decoder.ingest.scan as S  # noqa: E402
import decoder.ingest.scan_kernels as K  # noqa: E402
from decoder.ingest.parse import _the_plan  # noqa: E402
from decoder.ingest.scan import ScanBuffer, line_bounds, scan  # noqa: E402

COMPARED = ("vt", "counts", "sp0", "sp1", "fl", "iv")


def variant_module(replacements: list, directory: Path):
    """The kernel module with the replacements applied, compiled afresh (no cache)."""
    src = Path(K.__file__).read_text()
    for old, new in replacements:
        if old.startswith("re:"):
            src, count = re.subn(old[3:], new, src)
            if not count:
                raise SystemExit(f"no match: {old}")
        elif src.count(old) != 1:
            raise SystemExit(f"not found once: {old!r}")
        else:
            src = src.replace(old, new)
    path = directory / "scan_kernels_variant.py"
    path.write_text(src.replace("cache=True", "cache=False"))
    spec = importlib.util.spec_from_file_location("scan_kernels_variant", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["scan_kernels_variant"] = module
    spec.loader.exec_module(module)
    return module


def chunks(path: Path, megabytes: int, size: int = 8 << 20) -> list[ScanBuffer]:
    raw = path.read_bytes()[: megabytes << 20]
    out, pos = [], 0
    while pos < len(raw) - size:
        end = raw.rindex(b"\n", pos, pos + size) + 1
        out.append(ScanBuffer.of(raw[pos:end]))
        pos = end
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, help="JSON Lines of uplinks")
    ap.add_argument("variant", type=Path, help="JSON list of [old, new] replacements")
    ap.add_argument("--rounds", type=int, default=10, help="passes over the chunks (default 10)")
    ap.add_argument("--mb", type=int, default=32, help="megabytes of the file to scan (default 32)")
    ap.add_argument("--transpose", default="", help="kernel argument positions passed transposed to B")
    args = ap.parse_args()
    transpose = [int(x) for x in args.transpose.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        b_kernel = variant_module(json.loads(args.variant.read_text()), Path(tmp)).scan_lines
    a_kernel = K.scan_lines
    which, spent, transposed = ["A"], {"A": 0.0, "B": 0.0}, {}

    def timed(*a):
        kernel = a_kernel if which[0] == "A" else b_kernel
        if which[0] == "B" and transpose:
            a = list(a)
            for j in transpose:
                if id(a[j]) not in transposed:
                    transposed[id(a[j])] = (a[j], np.ascontiguousarray(a[j].T))
                a[j] = transposed[id(a[j])][1]
        t = time.perf_counter()
        out = kernel(*a)
        spent[which[0]] += time.perf_counter() - t
        return out

    S.K.scan_lines = timed  # scan() calls the kernel through the module
    bufs = chunks(args.file, args.mb)
    if not bufs:
        raise SystemExit("the file is smaller than one 8 MB chunk")
    bounds = [line_bounds(b.a, b.n) for b in bufs]
    plan = _the_plan(False)
    res = scan(bufs[0], plan, bounds[0])  # the plan learns its output sizes
    res.release()
    del res
    seen = {}
    for w in "AB":
        which[0] = w
        res = scan(bufs[0], plan, bounds[0])
        seen[w] = {name: getattr(res.out, name).copy() for name in COMPARED}
        res.release()
        del res
    for name in COMPARED:
        a, b = seen["A"][name], seen["B"][name]
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=name == "fl"):
            raise SystemExit(f"B's {name} differs from A's")
    ratios = []
    for rep in range(args.rounds):
        for buf, bd in zip(bufs, bounds):
            for w in "AB" if rep % 2 == 0 else "BA":
                which[0], spent[w] = w, 0.0
                res = scan(buf, plan, bd)
                res.release()
                del res
            ratios.append(spent["B"] / spent["A"])
    ratios.sort()
    q = len(ratios) // 4
    print(
        f"B/A kernel time: median {ratios[len(ratios) // 2]:.3f}, quartiles {ratios[q]:.3f}-{ratios[-q - 1]:.3f}"
        f" ({len(ratios)} pairs of 8 MB chunks)"
    )


if __name__ == "__main__":
    main()
