"""Decode the same N random payloads of the Firefly "Test Device Class" with
`decoder` and with its peers, and print one table (`make bench`).

Rows (see benchmarks/README.md):
  ours, decode(hex list) + to_arrow      the user path, from a list of str
  ours, decode(hex list)                 the same without the Arrow export
  ours, to_buffer(hex list)              hex text -> bytes + offsets alone
  ours, decode_buffer(buf)               the fused kernel alone
  hand-written numba, (n, 9) matrix      the floor
  hand-written numba, data + offsets     the floor over our buffer layout
  bitstring / QuickJS per packet         on a sample, scaled to N
  fresh-process rows                     one first call in a new process,
                                         after warming the kernel on 16 rows:
                                         pays first touch of output memory

Rows are timed in --rounds interleaved rounds (every row in each round), so a
change of load on the shared machine hits all rows alike. Batch rows: median of
--repeat runs over all N payloads in this process, spread over the rounds;
in each round one untimed run, then the timed ones back to back (warm
allocator). Per-packet peers: median of --sample-repeat runs (default:
--repeat) over the first --sample payloads, reported per packet (so "scaled"
to N). The targets use the median over rounds of the per-round ratios.

Usage: python benchmarks/compare_decode.py [--n 1000000] [--repeat 7]
           [--sample 20000] [--sample-repeat R] [--rounds 3] [--fresh-repeat 3]
           [--no-fresh] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import peers  # noqa: E402

SEED = 20160420


# --------------------------------------------------------------------------
# helpers


def load_ours():
    """`decoder.compile` and `decoder.payload.to_buffer`, or None while the
    compiler does not exist yet (the table then shows n/a for ours)."""
    try:
        import decoder
        from decoder.payload import to_buffer

        compile_ = decoder.compile
    except (ImportError, AttributeError) as e:
        return None, None, repr(e)
    return compile_, to_buffer, None


def machine_info(packages=("numba", "numpy", "pyarrow", "bitstring", "quickjs", "decoder")):
    """The CPU model, core counts, platform and the versions of ``packages``."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    vers = {"python": platform.python_version()}
    for pkg in packages:
        try:
            vers[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            vers[pkg] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "cpus_usable": affinity,
        "platform": platform.platform(),
        "versions": vers,
    }


# --------------------------------------------------------------------------
# child: one first call in a fresh process


def child(what, n, seed):
    """Runs in a fresh interpreter; prints JSON with the seconds of ONE
    first call on n payloads after the kernel was warmed on 16 rows."""
    import resource

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    mat = peers.make_matrix(n, seed)
    hexes = peers.hex_list(mat)
    res = {"what": what}
    if what == "floor":
        m = peers.matrix_from_hex(hexes)
        peers.decode_matrix(m[:16])
        gc.collect()
        f0 = faults()
        t0 = time.perf_counter()
        o = peers.decode_matrix(m)
        res["decode"] = time.perf_counter() - t0
        res["minor_faults"] = faults() - f0
        del o
    else:
        compile_, to_buffer, err = load_ours()
        if compile_ is None:
            raise SystemExit(err)
        dc = compile_(peers.TEST_DEVICE_CLASS)
        if what == "ours_hex":
            dc.decode(hexes[:16], encoding="hex").to_arrow()
            gc.collect()
            f0 = faults()
            t0 = time.perf_counter()
            b = dc.decode(hexes, encoding="hex")
            t1 = time.perf_counter()
            b.to_arrow()
            t2 = time.perf_counter()
            res["decode"] = t1 - t0
            res["decode_to_arrow"] = t2 - t0
            res["minor_faults"] = faults() - f0
        elif what == "ours_buffer":
            buf = to_buffer(hexes, "hex")
            dc.decode_buffer(to_buffer(hexes[:16], "hex"))
            gc.collect()
            f0 = faults()
            t0 = time.perf_counter()
            b = dc.decode_buffer(buf)
            res["decode"] = time.perf_counter() - t0
            res["minor_faults"] = faults() - f0
        else:
            raise SystemExit("unknown child " + what)
    print(json.dumps(res))


def run_child(what, n, seed):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", what, "--n", str(n), "--seed", str(seed)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(p.stdout.strip().splitlines()[-1]), None


# --------------------------------------------------------------------------
# main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="payloads (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=7, help="runs of each fast path, median (default 7)")
    ap.add_argument("--sample", type=int, default=20_000, help="payloads for the per-packet peers (default 20,000)")
    ap.add_argument(
        "--sample-repeat", type=int, default=None, help="runs of each per-packet peer, median (default: --repeat)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds the repeats are spread over (default 3)")
    ap.add_argument("--fresh-repeat", type=int, default=3, help="fresh processes per fresh row, median (default 3)")
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-process rows")
    ap.add_argument("--json", metavar="OUT", help="write all figures as JSON to OUT")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child:
        child(a.child, a.n, a.seed)
        return 0

    n = a.n
    sample = min(a.sample, n)
    if a.sample_repeat is None:
        a.sample_repeat = a.repeat
    info = machine_info()
    info["loadavg_start"] = os.getloadavg()
    t_start = time.time()

    print(f"preparing {n:,} random 9-byte payloads (seed {a.seed}) ...", flush=True)
    mat = peers.make_matrix(n, a.seed)
    hexes = peers.hex_list(mat)
    mat = peers.matrix_from_hex(hexes)  # the floor's input, from the same text

    rows = []  # dicts: key, name, ns (per packet), runs, kind

    def add(key, name, runs, per, kind, note="", faults=None):
        ns = statistics.median(runs) / per * 1e9
        rows.append(
            {
                "key": key,
                "name": name,
                "ns": ns,
                "runs_s": runs,
                "packets": per,
                "kind": kind,
                "note": note,
                "minor_faults": statistics.median(faults) if faults else None,
            }
        )
        print(f"  {name:<46} {ns:10.1f} ns/packet", flush=True)

    # Build the list of rows to time (the timing loop is below).
    cases = []  # (key, name, fn, packets, kind)
    compile_, to_buffer, err = load_ours()
    ours_ok = compile_ is not None
    check = None
    if ours_ok:
        dc = compile_(peers.TEST_DEVICE_CLASS)
        ki = getattr(dc, "kernel_info", None)
        # warm-up (JIT or cache load) outside the timing
        dc.decode(hexes[:1000], encoding="hex").to_arrow()
        dc.decode_buffer(to_buffer(hexes[:1000], "hex"))
        buf = to_buffer(hexes, "hex")
        cases += [
            (
                "ours_hex_arrow",
                "ours: decode(hex list) + to_arrow",
                lambda: dc.decode(hexes, encoding="hex").to_arrow(),
                n,
                "batch",
            ),
            ("ours_hex", "ours: decode(hex list), no to_arrow", lambda: dc.decode(hexes, encoding="hex"), n, "batch"),
            ("to_buffer", "ours: to_buffer(hex list) alone", lambda: to_buffer(hexes, "hex"), n, "batch"),
            ("ours_kernel", "ours: decode_buffer(buf), kernel alone", lambda: dc.decode_buffer(buf), n, "batch"),
        ]
    else:
        print(f"  ours: not available yet ({err})", flush=True)

    peers.decode_matrix(mat[:1000])
    data = mat.reshape(-1)
    offsets = peers.np.arange(n + 1, dtype=peers.np.int64) * peers.PAYLOAD_BYTES
    peers.decode_offsets(data, offsets[:1001])
    cases += [
        ("floor", "hand-written numba, (n,9) matrix [floor]", lambda: peers.decode_matrix(mat), n, "batch"),
        ("floor_offsets", "hand-written numba, data+offsets", lambda: peers.decode_offsets(data, offsets), n, "batch"),
    ]

    smp = hexes[:sample]
    js = peers.QuickJSDecoder()
    for key, name, fn in (
        ("bitstring_reader", "bitstring Reader.read_list, per packet", peers.bitstring_reader),
        ("bitstring_unpack", "bitstring Bits.unpack, per packet", peers.bitstring_unpack),
        ("quickjs", "QuickJS decodeUplink, per packet", js),
    ):
        fn(smp[0])
        cases.append((key, name, lambda fn=fn: [fn(h) for h in smp], sample, "per-packet"))

    import resource

    # Rounds: every row is timed in each round, rows in turn, so that a change of
    # load on the shared machine hits all of them alike. Within a round a batch
    # row runs once untimed, then its timed runs back to back (steady state of
    # the allocator: no page faults; the FRESH rows measure those).
    rounds = max(1, min(a.rounds, a.repeat))
    reps_in_round = {"batch": -(-a.repeat // rounds), "per-packet": -(-a.sample_repeat // rounds)}
    runs = {c[0]: [] for c in cases}
    round_of = {c[0]: [] for c in cases}
    faults = {c[0]: [] for c in cases}
    for rnd in range(rounds):
        for key, _name, fn, _per, kind in cases:
            if kind == "batch":
                fn()
            for _ in range(reps_in_round[kind]):
                gc.collect()
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                r = fn()
                t1 = time.perf_counter()
                faults[key].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
                del r
                runs[key].append(t1 - t0)
                round_of[key].append(rnd)
        print(f"  round {rnd + 1}/{rounds} done", flush=True)
    for key, name, _fn, per, kind in cases:
        add(key, name, runs[key], per, kind, f"sample of {sample:,}, scaled" if kind == "per-packet" else "")
        rows[-1]["warm_minor_faults_median"] = statistics.median(faults[key])
    if ours_ok:
        check = verify_ours(dc, hexes, mat)
        try:
            info["kernel_info"] = ki() if callable(ki) else ki
        except Exception as e:  # informative only
            info["kernel_info"] = repr(e)

    # -- fresh processes -------------------------------------------------------
    if not a.no_fresh:
        kinds = [("floor", "floor")]
        if ours_ok:
            kinds = [("ours_hex", "ours_hex"), ("ours_buffer", "ours_buffer")] + kinds
        fresh = {}
        for what, _ in kinds:
            got = []
            for _ in range(a.fresh_repeat):
                r, e = run_child(what, n, a.seed)
                if r is None:
                    print(f"  fresh {what}: failed: {e}", flush=True)
                    break
                got.append(r)
            fresh[what] = got
        if fresh.get("ours_hex"):
            add(
                "fresh_ours_hex_arrow",
                "FRESH ours: decode(hex list) + to_arrow",
                [r["decode_to_arrow"] for r in fresh["ours_hex"]],
                n,
                "fresh",
                faults=[r["minor_faults"] for r in fresh["ours_hex"]],
            )
            add("fresh_ours_hex", "FRESH ours: decode(hex list)", [r["decode"] for r in fresh["ours_hex"]], n, "fresh")
        if fresh.get("ours_buffer"):
            add(
                "fresh_ours_kernel",
                "FRESH ours: decode_buffer(buf)",
                [r["decode"] for r in fresh["ours_buffer"]],
                n,
                "fresh",
                faults=[r["minor_faults"] for r in fresh["ours_buffer"]],
            )
        if fresh.get("floor"):
            add(
                "fresh_floor",
                "FRESH hand-written numba, (n,9) matrix",
                [r["decode"] for r in fresh["floor"]],
                n,
                "fresh",
                faults=[r["minor_faults"] for r in fresh["floor"]],
            )

    info["loadavg_end"] = os.getloadavg()
    info["wall_s"] = time.time() - t_start

    # -- table -----------------------------------------------------------------
    by = {r["key"]: r for r in rows}
    base = by.get("ours_hex_arrow")
    floor = by["floor"]
    for r in rows:
        r["packets_per_s"] = 1e9 / r["ns"]
        r["vs_ours"] = r["ns"] / base["ns"] if base else None
        r["vs_floor"] = r["ns"] / floor["ns"]

    def per_round(num, den):
        """Median over rounds of (num's median / den's median in that round), per packet."""
        ratios = []
        for rnd in range(rounds):
            tn = statistics.median(t for t, r in zip(runs[num], round_of[num]) if r == rnd)
            td = statistics.median(t for t, r in zip(runs[den], round_of[den]) if r == rnd)
            ratios.append((tn / by[num]["packets"]) / (td / by[den]["packets"]))
        return statistics.median(ratios)

    targets = {}
    bits = min((by[k] for k in ("bitstring_reader", "bitstring_unpack")), key=lambda r: r["ns"])
    if base:
        targets["bitstring_over_ours_hex_arrow"] = per_round(bits["key"], "ours_hex_arrow")
        targets["bitstring_over_ours_hex"] = per_round(bits["key"], "ours_hex")
        targets["ours_100x_bitstring"] = targets["bitstring_over_ours_hex_arrow"] >= 100
        targets["bitstring_reader_over_ours_hex_arrow"] = per_round("bitstring_reader", "ours_hex_arrow")
        targets["bitstring_unpack_over_ours_hex_arrow"] = per_round("bitstring_unpack", "ours_hex_arrow")
        targets["quickjs_over_ours_hex_arrow"] = per_round("quickjs", "ours_hex_arrow")
        targets["kernel_over_floor_offsets"] = per_round("ours_kernel", "floor_offsets")
        targets["kernel_over_floor"] = per_round("ours_kernel", "floor")
        targets["kernel_within_1_5x_floor"] = targets["kernel_over_floor"] <= 1.5
        if "fresh_ours_kernel" in by and "fresh_floor" in by:
            targets["fresh_kernel_over_fresh_floor"] = by["fresh_ours_kernel"]["ns"] / by["fresh_floor"]["ns"]

    print_table(rows, info, a, n, sample, base is not None, targets, bits, check)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "n": n,
                    "repeat": a.repeat,
                    "sample": sample,
                    "sample_repeat": a.sample_repeat,
                    "fresh_repeat": a.fresh_repeat,
                    "seed": a.seed,
                    "machine": info,
                    "rows": rows,
                    "targets": targets,
                    "output_check": check,
                },
                f,
                indent=1,
            )
        print(f"\nwrote {a.json}")
    return 0


def verify_ours(dc, hexes, mat):
    """Same work: compare ours' Arrow columns with the floor's on all rows."""
    np = peers.np
    try:
        t = dc.decode(hexes, encoding="hex").to_arrow()
        f = peers.decode_matrix(mat)

        def col(path):
            parts = path.split(".")
            c = t.column(parts[0]) if hasattr(t, "column") else t.field(parts[0])
            c = c.combine_chunks() if hasattr(c, "combine_chunks") else c
            for p in parts[1:]:
                c = c.field(p)
            return c

        lvl = col("batteryLevel")
        ok = bool(np.array_equal(np.asarray(lvl.is_valid()), f["batteryLevel_valid"]))
        ok &= bool(
            np.array_equal(lvl.fill_null(0.0).to_numpy(), np.where(f["batteryLevel_valid"], f["batteryLevel"], 0.0))
        )
        for k in ("gps.latitude", "gps.longitude", "gps.altitude"):
            ok &= bool(np.array_equal(col(k).to_numpy(zero_copy_only=False), f[k]))
        return "equal on all rows" if ok else "DIFFERENT"
    except Exception as e:  # the Arrow layout is the compiler's; report, don't fail
        return f"not checked ({type(e).__name__}: {e})"


def print_table(rows, info, a, n, sample, have_ours, targets, bits, check):
    v = info["versions"]
    print()
    print(f"Firefly 'Test Device Class', {n:,} random 9-byte payloads, hex text")
    print(
        f"machine: {info['cpu_model']}, nproc {info['nproc']} (usable {info['cpus_usable']}), "
        f"load avg {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}"
    )
    print(
        "python {python}, numba {numba}, numpy {numpy}, pyarrow {pyarrow}, "
        "bitstring {bitstring}, quickjs {quickjs}".format(**v)
    )
    print(
        f"batch rows: median of {len(rows[0]['runs_s'])} warm runs over all {n:,}; per-packet rows: "
        f"median of {a.sample_repeat} runs over a sample of {sample:,}, scaled to ns/packet;"
    )
    print(f"rows interleaved in {a.rounds} rounds (back to back within a round, after one untimed run).")
    print(
        f"FRESH rows: one first call in a new process (kernel warmed on 16 rows), median of {a.fresh_repeat} processes."
    )
    print("ratio = this row's ns/packet / reference's ns/packet; 'vs ours' is vs ours decode(hex list) + to_arrow.")
    print()
    hdr = f"| {'name':<46} | {'packets/s':>12} | {'ns/packet':>10} | {'vs ours':>8} | {'vs floor':>8} |"
    print(hdr)
    print("|" + "-" * 48 + "|" + "-" * 13 + ":|" + "-" * 11 + ":|" + "-" * 9 + ":|" + "-" * 9 + ":|")
    for r in rows:
        vo = f"{r['vs_ours']:.2f}" if r["vs_ours"] is not None else "n/a"
        name = r["name"] + (" *" if r["kind"] == "per-packet" else "")
        print(f"| {name:<46} | {r['packets_per_s']:>12,.0f} | {r['ns']:>10.1f} | {vo:>8} | {r['vs_floor']:>8.2f} |")
    print(f"* per packet on a sample of {sample:,} payloads, scaled to ns/packet")
    wf = [r for r in rows if r.get("warm_minor_faults_median")]
    if wf:
        print(
            "NOTE page faults in warm runs (median per run): "
            + "; ".join(f"{r['name']}: {r['warm_minor_faults_median']:,.0f}" for r in wf)
        )
    pf = [r for r in rows if r.get("minor_faults") is not None]
    if pf:
        print(
            "minor page faults in the fresh first call (4 KiB each): "
            + "; ".join(f"{r['name'][6:]}: {r['minor_faults']:,.0f}" for r in pf)
        )
    print()
    if have_ours:
        print("targets, as medians of per-round ratios (the table's ratios are ratios of medians):")
        print(f"target ours >= 100x bitstring per packet (fastest bitstring: {bits['name']}):")
        print(
            f"    bitstring / ours(hex+to_arrow) = {targets['bitstring_over_ours_hex_arrow']:.0f}x, "
            f"without to_arrow {targets['bitstring_over_ours_hex']:.0f}x -> "
            f"{'MET' if targets['ours_100x_bitstring'] else 'NOT MET'}"
        )
        print(
            f"    (Reader.read_list / ours {targets['bitstring_reader_over_ours_hex_arrow']:.0f}x, "
            f"Bits.unpack / ours {targets['bitstring_unpack_over_ours_hex_arrow']:.0f}x, "
            f"QuickJS / ours {targets['quickjs_over_ours_hex_arrow']:.0f}x)"
        )
        print(
            f"target kernel alone within 1.5x of hand-written: "
            f"{targets['kernel_over_floor']:.2f}x -> "
            f"{'MET' if targets['kernel_within_1_5x_floor'] else 'NOT MET'}"
            + (
                f" (fresh processes: {targets['fresh_kernel_over_fresh_floor']:.2f}x)"
                if "fresh_kernel_over_fresh_floor" in targets
                else ""
            )
        )
        print(f"    (vs the hand-written kernel over data+offsets: {targets['kernel_over_floor_offsets']:.2f}x)")
        print(f"output check ours vs floor: {check}")
    else:
        print("ours: decoder.compile not available yet; targets not checked")


if __name__ == "__main__":
    sys.exit(main())
