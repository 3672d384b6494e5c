#!/usr/bin/env python3
"""decoder on Spark (local[1], local[2]) against the CLI on the same file; DuckDB and polars in process.

    .venv/bin/python benchmarks/bench_spark.py                 # 1,000,000 packets, ~15 min on 2 busy cores
    .venv/bin/python benchmarks/bench_spark.py --n 200000 --repeat 2 --json out.json
    .venv/bin/python benchmarks/bench_spark.py --only inprocess

Input: ``samples/generate.py -n N`` (Test Device Class, its default mix:
half Firefly packets, a quarter Helium device events, a quarter Helium
HTTP bodies), one JSON Lines file.

1. spark: JSON Lines file to Parquet.
   - ``cli``: ``decoder decode FILE -o out.parquet`` in a fresh process
     (start-up included), the reference.
   - per master (local[1], local[2]), one session each, started and warmed
     (Python workers up, kernels loaded) before timing; session start-up
     is reported apart. Rows, each a Spark job over the whole file:
     ``read``: ``spark.read.text`` to the ``noop`` sink (JVM read and line
     split); ``arrow``: the same lines through ``mapInArrow`` with a
     function that hands its batches back untouched (JVM -> Arrow ->
     Python worker -> Arrow -> JVM); ``decode``: ``decode_lines`` to
     ``noop``; ``parquet``: ``decode_lines`` to Parquet, what the CLI does.
     The differences between rows say where Spark's time goes.
   - ``engine``: the call each worker makes, ``Engine.decode`` on 65,536
     lines at a time, in this process over the whole file (one core).
2. inprocess: a 1M-row Arrow column of hex payloads through
   ``dc.decode(...).to_struct_array()``, the DuckDB SQL function and the
   polars expression.

Every row is timed --repeat times (median), interleaved in rounds so a
change of load hits all rows alike; the load average is printed with each
section. The machine is shared: compare ratios, not seconds.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

import decoder  # noqa: E402

CLASSES = ROOT / "samples" / "classes" / "test_device_class.json"
GROUP = 1 << 16


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="packets in the file (1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per row (median)")
    ap.add_argument("--masters", default="local[1],local[2]")
    ap.add_argument("--only", choices=("spark", "inprocess"), help="run one section")
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "decoder-bench-spark"))
    ap.add_argument("--json", help="write every run's seconds here")
    ap.add_argument("--child", metavar="MASTER", help=argparse.SUPPRESS)  # one master, in a fresh process
    return ap.parse_args()


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_rounds(rows: dict, repeat: int) -> dict[str, list[float]]:
    """Each row once per round, ``repeat`` rounds; the seconds of every run."""
    runs: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeat):
        for name, fn in rows.items():
            runs[name].append(timed(fn))
    return runs


# -- input and the CLI ----------------------------------------------------------------------------


def make_input(n: int, work: Path) -> Path:
    path = work / f"packets_{n}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        subprocess.run(
            [sys.executable, str(ROOT / "samples" / "generate.py"), "-n", str(n), "--seed", "1", "-o", str(tmp)],
            check=True,
        )
        tmp.rename(path)
    return path


def run_cli(path: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    subprocess.run(
        [sys.executable, "-m", "decoder", "decode", str(path), "--classes", str(CLASSES), "-o", str(out), "-q"],
        check=True,
        env=env,
    )


def run_engine(path: Path) -> None:
    """What the Spark workers do, in one process: Engine.decode on groups of 65,536 lines."""
    engine = decoder.Engine(decoder.compile(CLASSES))
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for k in range(0, len(lines), GROUP):
        engine.decode(lines[k : k + GROUP]).table  # noqa: B018 - the table is the work


# -- Spark ------------------------------------------------------------------------------------------


def passthrough(batches):
    """mapInArrow's cheapest function: every batch back as it came (pickled by value from __main__)."""
    yield from batches


def start_session(master: str):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    t = time.perf_counter()
    spark = (
        SparkSession.builder.master(master)
        .appName("decoder-bench")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.range(1).count()
    return spark, time.perf_counter() - t


def spark_rows(spark, path: Path, out: Path) -> dict:
    from decoder.spark import decode_lines

    def lines():
        return spark.read.text(str(path))

    def decoded():
        return decode_lines(lines(), classes=str(CLASSES))

    def parquet():
        shutil.rmtree(out, ignore_errors=True)
        decoded().write.parquet(str(out))

    return {
        "read": lambda: lines().write.format("noop").mode("overwrite").save(),
        "arrow": lambda: lines().mapInArrow(passthrough, "value string").write.format("noop").mode("overwrite").save(),
        "decode": lambda: decoded().write.format("noop").mode("overwrite").save(),
        "parquet": parquet,
    }


def child_master(a: argparse.Namespace, work: Path) -> None:
    """One master in this process (a fresh JVM, so its start-up is measured); JSON on stdout."""
    import warnings

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    spark, started = start_session(a.child)
    small = spark_rows(spark, make_input(2000, work), work / "warm-spark.parquet")
    first = timed(small["decode"])  # Python workers start, engine built, kernels loaded: not in the rows
    for fn in small.values():
        fn()
    runs = median_rounds(spark_rows(spark, make_input(a.n, work), work / "spark.parquet"), a.repeat)
    spark.stop()
    print(json.dumps({"session_start": started, "first_job": first, "runs": runs}))


def section_spark(a: argparse.Namespace, work: Path) -> dict:
    path = make_input(a.n, work)
    size = path.stat().st_size
    print(f"input: {a.n:,} packets, {size / 1e6:.0f} MB ({path}); load {loadavg()}")
    run_cli(make_input(2000, work), work / "warm.parquet")  # kernel cache warm
    run_engine(make_input(2000, work))
    base = {"cli": lambda: run_cli(path, work / "cli.parquet"), "engine": lambda: run_engine(path)}
    result: dict = {"n": a.n, "bytes": size, "runs": median_rounds(base, 1), "session_start": {}, "first_job": {}}
    masters = a.masters.split(",")
    for master in masters:
        args = [
            sys.executable,
            __file__,
            "--child",
            master,
            "--n",
            str(a.n),
            "--repeat",
            str(a.repeat),
            "--dir",
            str(work),
        ]
        done = subprocess.run(args, check=True, capture_output=True, text=True)
        child = json.loads(done.stdout.strip().splitlines()[-1])
        result["session_start"][master] = child["session_start"]
        result["first_job"][master] = child["first_job"]
        result["runs"].update({f"{master} {name}": secs for name, secs in child["runs"].items()})
        print(f"  {master}: done; load {loadavg()}")
    for name, secs in median_rounds(base, a.repeat - 1).items():
        result["runs"][name] += secs
    report_spark(result, masters)
    return result


def report_spark(result: dict, masters: list[str]) -> None:
    med = {name: statistics.median(secs) for name, secs in result["runs"].items()}
    n = result["n"]
    cli = med["cli"]
    print(f"\n{'row':<26}{'median s':>10}{'ns/packet':>11}{'vs cli':>8}   runs")
    for name, secs in result["runs"].items():
        print(
            f"{name:<26}{med[name]:>10.2f}{med[name] / n * 1e9:>11,.0f}{med[name] / cli:>8.2f}   "
            + ", ".join(f"{s:.2f}" for s in secs)
        )
    for master in masters:
        print(
            f"{master}: session start {result['session_start'][master]:.1f} s, first decode job (workers "
            f"start, kernels load) {result['first_job'][master]:.1f} s; neither is in the rows"
        )
    if len(masters) == 2:
        one, two = masters
        for row in ("read", "arrow", "decode", "parquet"):
            print(f"scaling {row:<8} {one} -> {two}: {med[f'{one} {row}'] / med[f'{two} {row}']:.2f}x")
    for master in masters:
        read, arrow, dec, par = (med[f"{master} {r}"] for r in ("read", "arrow", "decode", "parquet"))
        print(
            f"{master}: read+split {read:.2f} s, Arrow hand-off to Python and back +{arrow - read:.2f} s, "
            f"decode in the workers +{dec - arrow:.2f} s, Parquet write +{par - dec:.2f} s"
        )


# -- in process: DuckDB and polars ------------------------------------------------------------------


def section_inprocess(a: argparse.Namespace) -> dict:
    import random

    import duckdb
    import polars as pl

    import decoder.duckdb
    import decoder.polars

    rng = random.Random(20160420)
    n = 1_000_000
    column = pa.array([rng.randbytes(9).hex() for _ in range(n)], pa.string())
    dc = decoder.compile(CLASSES)
    con = duckdb.connect()
    decoder.duckdb.register(con, dc)
    con.register("t", pa.table({"p": column}))
    frame = pl.DataFrame({"p": column})
    expr = decoder.polars.decode("p", dc)
    rows = {
        "dc.decode": lambda: dc.decode(column, encoding="hex").to_struct_array(),
        "duckdb": lambda: con.sql("SELECT decode_test_device_class(p) FROM t").to_arrow_table(),
        "polars": lambda: frame.select(expr),
    }
    for fn in rows.values():
        fn()
    print(f"\nin process: {n:,} hex payloads (Arrow string column); load {loadavg()}")
    runs = median_rounds(rows, max(a.repeat, 5))
    base = statistics.median(runs["dc.decode"])
    for name, secs in runs.items():
        med = statistics.median(secs)
        print(f"{name:<12}{med * 1e9 / n:>8.1f} ns/row{med / base:>8.2f}x   " + ", ".join(f"{s:.3f}" for s in secs))
    print(f"load {loadavg()}")
    return {"n": n, "runs": runs}


def main() -> int:
    a = parse_args()
    work = Path(a.dir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DECODER_CACHE_DIR", str(work / "kernels"))
    if a.child:
        child_master(a, work)
        return 0
    result: dict = {"loadavg_start": os.getloadavg(), "cpus": os.cpu_count()}
    if a.only in (None, "spark"):
        result["spark"] = section_spark(a, work)
    if a.only in (None, "inprocess"):
        result["inprocess"] = section_inprocess(a)
    result["loadavg_end"] = os.getloadavg()
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
