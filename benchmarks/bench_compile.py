"""Compile time, cached-kernel load time and import times, each in a fresh
process (python benchmarks/bench_compile.py [--repeat 3] [--json OUT]).

Scenarios, each a new interpreter, median of --repeat:
  import numba / import decoder      (does `import decoder` pull in numba?)
  cold      empty DECODER_CACHE_DIR and empty NUMBA_CACHE_DIR: everything JITs
  warm      the same two directories again, a second process: nothing should
            JIT; the class kernel and the payload kernels load from disk
  new class empty DECODER_CACHE_DIR, NUMBA_CACHE_DIR kept warm: a class never
            seen before, with the library's own kernels already cached

In each: `import decoder`, `decoder.compile(cls)`, `import numba` (which the
first decode would do anyway), the first `dc.decode(1000 hex payloads)` (kernel
JIT or cache load) and `.to_arrow()`, timed separately, plus what
the compiler tells about the kernel (`dc.kernel_info` when it exists, and the
cache hits/misses of any numba dispatcher reachable from `dc`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

IMPORT_ONLY = r"""
import sys, time, json
t0 = time.perf_counter()
import {mod}
t1 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "numba_loaded": "numba" in sys.modules}}))
"""

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {here!r})
t0 = time.perf_counter()
import decoder
t1 = time.perf_counter()
numba_after_import = "numba" in sys.modules
import peers
hexes = peers.hex_list(peers.make_matrix(1000, seed=5))
t2 = time.perf_counter()
dc = decoder.compile(peers.TEST_DEVICE_CLASS)
t3 = time.perf_counter()
import numba  # timed apart: the first decode would import it anyway
t3b = time.perf_counter()
b = dc.decode(hexes, encoding="hex")
t4 = time.perf_counter()
b.to_arrow()
t5 = time.perf_counter()
b = dc.decode(hexes, encoding="hex")
t6 = time.perf_counter()

def plain(x):
    try:
        json.dumps(x)
        return x
    except TypeError:
        if isinstance(x, dict):
            return {{str(k): plain(v) for k, v in x.items()}}
        return repr(x)

info = getattr(dc, "kernel_info", None)
if callable(info):
    info = info()
# numba dispatchers reachable from dc (one level down) and their cache stats
disp = {{}}
seen = set()
def visit(name, obj, depth):
    if id(obj) in seen or depth > 2:
        return
    seen.add(id(obj))
    st = getattr(obj, "stats", None)
    if st is not None and hasattr(st, "cache_hits"):
        disp[name] = {{"cache_path": str(getattr(st, "cache_path", "")),
                      "hits": sum(st.cache_hits.values()),
                      "misses": sum(st.cache_misses.values())}}
        return
    d = getattr(obj, "__dict__", None)
    if d:
        for k, v in list(d.items()):
            visit(name + "." + k, v, depth + 1)
visit("dc", dc, 0)
print(json.dumps({{
    "import_decoder_s": t1 - t0,
    "numba_after_import_decoder": numba_after_import,
    "compile_s": t3 - t2,
    "numba_import_s": t3b - t3,
    "first_decode_s": t4 - t3b,
    "first_to_arrow_s": t5 - t4,
    "second_decode_s": t6 - t5,
    "compile_plus_first_decode_s": t4 - t2,  # includes the numba import
    "kernel_info": plain(info),
    "has_kernel_info": hasattr(dc, "kernel_info"),
    "dispatchers": disp,
}}))
"""


def run(code, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip()[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def listing(d):
    out = []
    for root, _, files in os.walk(d):
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), d))
    return sorted(out)


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", metavar="OUT")
    a = ap.parse_args(argv)

    res = {"python": sys.version.split()[0], "repeat": a.repeat}
    base = [run("import time, json; print(json.dumps({'import_s': 0.0}))") for _ in range(1)]
    del base

    for mod in ("numba", "numpy", "pyarrow", "decoder"):
        runs = [run(IMPORT_ONLY.format(mod=mod)) for _ in range(a.repeat)]
        res[f"import_{mod}"] = {
            "median_s": med(runs, "import_s"),
            "numba_loaded": runs[0]["numba_loaded"],
            "runs_s": [r["import_s"] for r in runs],
        }

    code = CHILD.format(here=HERE)
    scen = {"cold": [], "warm": [], "new_class": []}
    listings = {}
    try:
        import decoder  # noqa: F401

        decoder.compile  # noqa: B018
    except (ImportError, AttributeError) as e:
        res["error"] = f"decoder.compile not available: {e!r}"
        report(res)
        return 1

    for i in range(a.repeat):
        tmp = tempfile.mkdtemp(prefix="bench_compile_")
        try:
            dcache = os.path.join(tmp, "decoder")
            ncache = os.path.join(tmp, "numba")
            dcache2 = os.path.join(tmp, "decoder2")
            for d in (dcache, ncache, dcache2):
                os.makedirs(d)
            env = {"DECODER_CACHE_DIR": dcache, "NUMBA_CACHE_DIR": ncache}
            scen["cold"].append(run(code, env))
            if i == 0:
                listings["decoder_cache_after_cold"] = listing(dcache)
                listings["numba_cache_after_cold"] = listing(ncache)
            scen["warm"].append(run(code, env))
            if i == 0:
                listings["decoder_cache_after_warm"] = listing(dcache)
            scen["new_class"].append(run(code, {"DECODER_CACHE_DIR": dcache2, "NUMBA_CACHE_DIR": ncache}))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    keys = (
        "import_decoder_s",
        "compile_s",
        "numba_import_s",
        "first_decode_s",
        "first_to_arrow_s",
        "second_decode_s",
        "compile_plus_first_decode_s",
    )
    for name, runs in scen.items():
        res[name] = {k: med(runs, k) for k in keys}
        res[name]["runs"] = runs
    res["cache_listing"] = listings
    report(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"\nwrote {a.json}")
    return 0


def report(res):
    print(f"import times, fresh process, median of {res['repeat']} (python {res['python']}):")
    for mod in ("numba", "numpy", "pyarrow", "decoder"):
        r = res.get(f"import_{mod}")
        if r:
            extra = f"  (numba imported: {r['numba_loaded']})" if mod == "decoder" else ""
            print(f"  import {mod:<8} {r['median_s'] * 1e3:8.1f} ms{extra}")
    if "error" in res:
        print(res["error"])
        return
    print()
    print(f"compile + first decode of 1,000 hex payloads, fresh process, median of {res['repeat']}:")
    print(
        f"  {'scenario':<10} {'import':>9} {'compile':>9} {'numba imp':>10} {'1st decode':>11} "
        f"{'to_arrow':>9} {'compile+1st':>12} {'2nd decode':>11}"
    )
    for name in ("cold", "warm", "new_class"):
        r = res[name]
        print(
            f"  {name:<10} {r['import_decoder_s'] * 1e3:7.1f}ms {r['compile_s'] * 1e3:7.1f}ms "
            f"{r['numba_import_s'] * 1e3:8.1f}ms {r['first_decode_s'] * 1e3:9.1f}ms "
            f"{r['first_to_arrow_s'] * 1e3:7.1f}ms "
            f"{r['compile_plus_first_decode_s'] * 1e3:10.1f}ms {r['second_decode_s'] * 1e3:9.2f}ms"
        )
    for name in ("cold", "warm", "new_class"):
        r0 = res[name]["runs"][0]
        ki = r0["kernel_info"]
        if isinstance(ki, dict):
            ki = {k: v for k, v in ki.items() if k not in ("path", "digest")}
        print(
            f"  {name}: dc.kernel_info() -> {ki!r}"
            if r0["has_kernel_info"]
            else f"  {name}: dc has no kernel_info attribute"
        )
        if r0["dispatchers"]:
            for k, v in r0["dispatchers"].items():
                print(f"      {k}: cache hits {v['hits']}, misses {v['misses']}")
    w, c = res["warm"], res["cold"]
    print()
    print(
        f"warm vs cold compile+first decode: {w['compile_plus_first_decode_s'] * 1e3:.0f} ms vs "
        f"{c['compile_plus_first_decode_s'] * 1e3:.0f} ms "
        f"({c['compile_plus_first_decode_s'] / w['compile_plus_first_decode_s']:.1f}x)"
    )
    for k, v in res.get("cache_listing", {}).items():
        names = [os.path.basename(x)[:40] for x in v]
        print(f"  {k}: {len(v)} files: {', '.join(names[:4])}{' ...' if len(v) > 4 else ''}")


if __name__ == "__main__":
    sys.exit(main())
