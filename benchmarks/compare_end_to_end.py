#!/usr/bin/env python3
"""End to end, JSON Lines of uplinks -> decoded Parquet: ours against the peers, whole processes, one run.

    .venv/bin/python benchmarks/compare_end_to_end.py                   # 1,000,000 packets, 3 rounds
    .venv/bin/python benchmarks/compare_end_to_end.py -n 200000 --rounds 1 --files firefly
    .venv/bin/python benchmarks/compare_end_to_end.py --memory-n 4000000 --json e2e.json

Files (written once by samples/generate.py into --dir, with the Test Device
Class's payloads):

- ``firefly``: Firefly packets only, 1-4 gateways each;
- ``mixed``: half Firefly packets, a quarter Helium device events, a quarter
  Helium HTTP integration bodies;
- each also as ``*_bad``: the same file with one malformed line per 1,000
  (in turn a truncated line, a missing colon, two values on one line,
  invalid UTF-8).

Contenders, each a fresh process, interleaved round by round (a slow moment
of the shared machine then hits every contender alike), each round starting
with the next one, medians of the rounds:

- ``ours``: ``decoder decode FILE --classes test_device_class.json -o
  out.parquet`` (on the bad files with ``--errors``, and every bad line must
  be in it with its number);
- ``duckdb``: the one SQL statement a data engineer would write for the same
  table: ``read_json`` with explicit columns, every column of ours (the best
  gateway's RSSI, SNR and id, the gateway count, Helium's data rate parsed
  from its text, the payload decoded with SQL casts and two's complement, the
  class's formulas into the same ``decoded`` struct), ``COPY ... TO ...
  (FORMAT parquet, COMPRESSION zstd)``; on the mixed file one statement over
  both providers' shapes (hex and base64 payloads); on the bad files
  ``ignore_errors``. Its table is checked against ours, value by value, on
  the clean files. Only the line numbers are left null: DuckDB's reader has
  none, and ``row_number() OVER ()`` (right only while no line is bad) makes
  the statement one-threaded;
- ``duckdb (narrow)``: the statement for fewer columns (18 on Firefly, 15 on
  the mixed file: the best RSSI and the gateway count as radio columns, no
  SNR, gateway id, line, class or ``decoded`` struct), as the issue sketched
  it: the floor of a DuckDB user who needs less than our table;
- ``polars``: ``scan_ndjson`` with a schema, ``str.slice`` +
  ``str.to_integer(base=16)``, ``sink_parquet`` (zstd);
- ``pyarrow``: ``pyarrow.json.read_json`` with an explicit schema, decoding and
  writing nothing (the floor of Arrow's reader).

Printed: wall and CPU seconds (the child's user + system), peak RSS, and
each contender's time as a ratio of ours; the load average before and after,
and the versions. Then the fixed costs: a new process decoding a one-packet
file (kernels cached), ours against DuckDB's statement (--startup-runs). Then,
with --memory-n, our peak RSS at -n and at --memory-n packets, medians of
--rounds runs each (memory must stay flat as the file grows).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLASSES = ROOT / "samples" / "classes" / "test_device_class.json"
MIXES = {"firefly": "firefly=1", "mixed": "firefly=0.5,helium_event=0.25,helium_body=0.25"}

# The Test Device Class in SQL: battery u8, latitude/longitude i24, altitude i16, over a hex string h.
_DECODE_SQL = """
    CASE WHEN b <> 0 THEN (b - 1) / 253 END AS batteryLevel,
    (CASE WHEN la >= 8388608 THEN la - 16777216 ELSE la END) / 8388608 * 90 AS latitude,
    (CASE WHEN lo >= 8388608 THEN lo - 16777216 ELSE lo END) / 8388608 * 180 AS longitude,
    CASE WHEN al >= 32768 THEN al - 65536 ELSE al END AS altitude"""
_FIELDS_SQL = """
    TRY_CAST('0x' || substr(h, 1, 2) AS INTEGER) AS b, TRY_CAST('0x' || substr(h, 3, 6) AS INTEGER) AS la,
    TRY_CAST('0x' || substr(h, 9, 6) AS INTEGER) AS lo, TRY_CAST('0x' || substr(h, 15, 4) AS INTEGER) AS al"""

# The rest of our table, as SQL: g is the best gateway (highest RSSI, then SNR, then the first).
_SAME_TABLE_SQL = """
  SELECT provider, packet_id, dev_eui, device_id, devaddr, received_at, fcnt, port, confirmed, payload,
         NULL::VARCHAR AS payload_text, frequency_mhz, spreading_factor, bandwidth_khz, coding_rate,
         g.r AS rssi, g.s AS snr, g.id AS gateway_id, gateway_count, NULL::BIGINT AS line, '{src}' AS input,
         'Test Device Class' AS device_class,
         {{'gps': {{'latitude': (CASE WHEN la >= 8388608 THEN la - 16777216 ELSE la END) / 8388608 * 90,
                  'longitude': (CASE WHEN lo >= 8388608 THEN lo - 16777216 ELSE lo END) / 8388608 * 180,
                  'altitude': CASE WHEN al >= 32768 THEN al - 65536 ELSE al END}},
          'batteryLevel': CASE WHEN b <> 0 THEN (b - 1) / 253 END}} AS decoded,
         NULL::VARCHAR AS error, NULL::VARCHAR AS warnings
  FROM f"""


def _duckdb_script(query: str) -> str:
    """A child's script: ``COPY (query) TO`` its output as Parquet with zstd; ``{src}``,
    ``{bad}`` and ``{out}`` are filled in there from its arguments."""
    return (
        "import sys, duckdb\n"
        'src, out, bad = sys.argv[1], sys.argv[2], sys.argv[3] == "1"\n'
        "duckdb.sql(f'''\nCOPY (" + query + ") TO '{out}' (FORMAT parquet, COMPRESSION zstd)\n''')\n"
    )


_READ_FIREFLY = """read_json('{src}', format='newline_delimited', ignore_errors={bad}, columns={{
        uid: 'VARCHAR', device_eui: 'VARCHAR', received_at: 'VARCHAR', fcnt: 'BIGINT', port: 'BIGINT',
        mtype: 'VARCHAR', payload: 'VARCHAR', freq: 'DOUBLE', spreading_factor: 'BIGINT', bandwidth: 'DOUBLE',
        codr: 'VARCHAR', gwrx: 'STRUCT(gweui VARCHAR, rssi DOUBLE, lsnr DOUBLE, time VARCHAR, tmst BIGINT)[]'}})"""


def _read_mixed(devaddr: bool) -> str:
    """read_json of both providers' fields; ``devaddr``: Helium's device address too."""
    top, data = (", devaddr: 'VARCHAR'", "devaddr VARCHAR, ") if devaddr else ("", "")
    return f"""read_json('{{src}}', format='newline_delimited', ignore_errors={{bad}}, columns={{{{
        uid: 'VARCHAR', device_eui: 'VARCHAR', received_at: 'VARCHAR', fcnt: 'BIGINT', port: 'BIGINT',
        mtype: 'VARCHAR', payload: 'VARCHAR', freq: 'DOUBLE', spreading_factor: 'BIGINT', bandwidth: 'DOUBLE',
        codr: 'VARCHAR', gwrx: 'STRUCT(gweui VARCHAR, rssi DOUBLE, lsnr DOUBLE)[]',
        category: 'VARCHAR', sub_category: 'VARCHAR', id: 'VARCHAR', device_id: 'VARCHAR',
        reported_at: 'VARCHAR', dev_eui: 'VARCHAR'{top},
        hotspots: 'STRUCT(id VARCHAR, rssi DOUBLE, snr DOUBLE, frequency DOUBLE, spreading VARCHAR)[]',
        data: 'STRUCT({data}fcnt BIGINT, port BIGINT, payload VARCHAR,
                      hotspot STRUCT(id VARCHAR, rssi DOUBLE, snr DOUBLE, frequency DOUBLE, spreading VARCHAR))'}}}})"""


DUCKDB_FIREFLY = _duckdb_script(
    """
  WITH r AS (
    SELECT 'firefly' AS provider, uid AS packet_id, upper(device_eui) AS dev_eui, NULL::VARCHAR AS device_id,
           NULL::VARCHAR AS devaddr, received_at::TIMESTAMP AS received_at, fcnt, port,
           mtype = 'confirmed_data_up' AS confirmed, unhex(payload) AS payload, freq AS frequency_mhz,
           spreading_factor, bandwidth AS bandwidth_khz, codr AS coding_rate,
           array_sort(list_transform(gwrx, lambda g, i: {{'r': g.rssi, 's': g.lsnr, 'i': -i, 'id': g.gweui}}),
                      'DESC')[1] AS g,
           len(gwrx) AS gateway_count, upper(payload) AS h
    FROM READ
  ), f AS (SELECT *, FIELDS FROM r)
  SAME_TABLE
""".replace("READ", _READ_FIREFLY)
    .replace("FIELDS", _FIELDS_SQL)
    .replace("SAME_TABLE", _SAME_TABLE_SQL)
)

DUCKDB_MIXED = _duckdb_script(
    """
  WITH j AS (SELECT * FROM READ), r AS (
    SELECT CASE WHEN gwrx IS NOT NULL THEN 'firefly' ELSE 'helium' END AS provider,
           CASE WHEN category IS NOT NULL THEN id ELSE uid END AS packet_id,
           upper(coalesce(device_eui, dev_eui)) AS dev_eui,
           CASE WHEN category IS NOT NULL THEN device_id WHEN hotspots IS NOT NULL THEN id END AS device_id,
           coalesce(data.devaddr, devaddr) AS devaddr,
           CASE WHEN gwrx IS NOT NULL THEN received_at::TIMESTAMP
                ELSE make_timestamp(reported_at::BIGINT * 1000) END AS received_at,
           coalesce(fcnt, data.fcnt) AS fcnt, coalesce(port, data.port) AS port,
           CASE WHEN gwrx IS NOT NULL THEN mtype = 'confirmed_data_up'
                WHEN category IS NOT NULL THEN sub_category = 'uplink_confirmed' END AS confirmed,
           CASE WHEN gwrx IS NOT NULL THEN unhex(payload) ELSE from_base64(coalesce(payload, data.payload)) END
               AS payload,
           CASE WHEN gwrx IS NOT NULL
                THEN array_sort(list_transform(gwrx, lambda g, i: {{'r': g.rssi, 's': g.lsnr, 'i': -i, 'id': g.gweui,
                                                                'f': freq, 'sp': NULL::VARCHAR}}), 'DESC')[1]
                WHEN hotspots IS NOT NULL
                THEN array_sort(list_transform(hotspots, lambda g, i: {{'r': g.rssi, 's': g.snr, 'i': -i, 'id': g.id,
                                                                    'f': g.frequency, 'sp': g.spreading}}), 'DESC')[1]
                ELSE {{'r': data.hotspot.rssi, 's': data.hotspot.snr, 'i': -1, 'id': data.hotspot.id,
                       'f': data.hotspot.frequency, 'sp': data.hotspot.spreading}} END AS g,
           coalesce(len(gwrx), len(hotspots), CASE WHEN data.hotspot IS NOT NULL THEN 1 END) AS gateway_count,
           spreading_factor AS sf, bandwidth AS bw, codr AS coding_rate
    FROM j WHERE category IS NULL OR category = 'uplink'
  ), f AS (
    SELECT *, g.f AS frequency_mhz,
           coalesce(sf, regexp_extract(g.sp, 'SF([0-9]+)', 1)::BIGINT) AS spreading_factor,
           coalesce(bw, regexp_extract(g.sp, 'BW([0-9]+)', 1)::DOUBLE) AS bandwidth_khz, FIELDS
    FROM (SELECT *, hex(payload) AS h FROM r))
  SAME_TABLE
""".replace("READ", _read_mixed(devaddr=True))
    .replace("FIELDS", _FIELDS_SQL)
    .replace("SAME_TABLE", _SAME_TABLE_SQL)
)

DUCKDB_FIREFLY_NARROW = _duckdb_script(
    """
  WITH r AS (
    SELECT 'firefly' AS provider, uid AS packet_id, upper(device_eui) AS dev_eui,
           received_at::TIMESTAMP AS received_at, fcnt, port, mtype = 'confirmed_data_up' AS confirmed,
           unhex(payload) AS payload, freq AS frequency_mhz, spreading_factor, bandwidth AS bandwidth_khz,
           codr AS coding_rate, list_max(list_transform(gwrx, lambda g: g.rssi)) AS rssi,
           len(gwrx) AS gateway_count, upper(payload) AS h
    FROM READ
  ), f AS (SELECT *, FIELDS FROM r)
  SELECT * EXCLUDE (h, b, la, lo, al), DECODE FROM f
""".replace("READ", _READ_FIREFLY)
    .replace("FIELDS", _FIELDS_SQL)
    .replace("DECODE", _DECODE_SQL)
)

DUCKDB_MIXED_NARROW = _duckdb_script(
    """
  WITH j AS (SELECT * FROM READ), r AS (
    SELECT CASE WHEN gwrx IS NOT NULL THEN 'firefly' ELSE 'helium' END AS provider,
           coalesce(uid, id) AS packet_id, upper(coalesce(device_eui, dev_eui)) AS dev_eui, device_id,
           CASE WHEN gwrx IS NOT NULL THEN received_at::TIMESTAMP
                ELSE make_timestamp(reported_at::BIGINT * 1000) END AS received_at,
           coalesce(fcnt, data.fcnt) AS fcnt, coalesce(port, data.port) AS port,
           CASE WHEN gwrx IS NOT NULL THEN unhex(payload) ELSE from_base64(coalesce(payload, data.payload)) END
               AS payload,
           coalesce(freq, data.hotspot.frequency, hotspots[1].frequency) AS frequency_mhz,
           coalesce(list_max(list_transform(gwrx, lambda g: g.rssi)),
                    list_max(list_transform(hotspots, lambda g: g.rssi)), data.hotspot.rssi) AS rssi,
           coalesce(len(gwrx), len(hotspots), CASE WHEN data.hotspot IS NOT NULL THEN 1 END) AS gateway_count
    FROM j WHERE category IS NULL OR category = 'uplink'
  ), f AS (SELECT *, FIELDS FROM (SELECT *, hex(payload) AS h FROM r))
  SELECT * EXCLUDE (h, b, la, lo, al), DECODE FROM f
""".replace("READ", _read_mixed(devaddr=False))
    .replace("FIELDS", _FIELDS_SQL)
    .replace("DECODE", _DECODE_SQL)
)

POLARS = """
import sys, polars as pl
src, out, bad = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
gw = pl.List(pl.Struct({"gweui": pl.String, "rssi": pl.Float64, "lsnr": pl.Float64}))
schema = {"uid": pl.String, "device_eui": pl.String, "received_at": pl.String, "fcnt": pl.Int64,
          "port": pl.Int64, "payload": pl.String, "freq": pl.Float64, "spreading_factor": pl.Int64,
          "bandwidth": pl.Float64, "codr": pl.String, "gwrx": gw}
h = pl.col("payload").str.to_uppercase()
def field(start, length, bits):
    v = h.str.slice(start, length).str.to_integer(base=16, strict=False)
    return pl.when(v >= 1 << (bits - 1)).then(v - (1 << bits)).otherwise(v)
b = h.str.slice(0, 2).str.to_integer(base=16, strict=False)
(pl.scan_ndjson(src, schema=schema, ignore_errors=bad)
   .with_columns(dev_eui=pl.col("device_eui").str.to_uppercase(),
                 received_at=pl.col("received_at").str.to_datetime(strict=False),
                 rssi=pl.col("gwrx").list.eval(pl.element().struct.field("rssi")).list.max(),
                 gateway_count=pl.col("gwrx").list.len(),
                 batteryLevel=pl.when(b != 0).then((b - 1) / 253),
                 latitude=field(2, 6, 24) / 8388608 * 90, longitude=field(8, 6, 24) / 8388608 * 180,
                 altitude=field(14, 4, 16))
   .drop("gwrx", "device_eui")
   .sink_parquet(out, compression="zstd"))
"""

PYARROW = """
import sys, pyarrow as pa, pyarrow.json as pj
src = sys.argv[1]
gw = pa.list_(pa.struct([("gweui", pa.string()), ("rssi", pa.float64()), ("lsnr", pa.float64())]))
hs = pa.struct([("id", pa.string()), ("rssi", pa.float64()), ("snr", pa.float64()), ("frequency", pa.float64())])
fields = [("uid", pa.string()), ("device_eui", pa.string()), ("received_at", pa.string()), ("fcnt", pa.int64()),
          ("port", pa.int64()), ("payload", pa.string()), ("freq", pa.float64()), ("spreading_factor", pa.int64()),
          ("bandwidth", pa.float64()), ("codr", pa.string()), ("gwrx", gw)]
if sys.argv[2] == "mixed":
    fields += [("category", pa.string()), ("dev_eui", pa.string()), ("hotspots", pa.list_(hs)),
               ("data", pa.struct([("fcnt", pa.int64()), ("port", pa.int64()), ("payload", pa.string()),
                                   ("hotspot", hs)]))]
opts = pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")
print(pj.read_json(src, parse_options=opts).num_rows)
"""


def generate(path: Path, n: int, mix: str) -> None:
    if not path.exists():
        print(f"generating {n:,} packets -> {path}", file=sys.stderr, flush=True)
        subprocess.run(
            [PY, str(ROOT / "samples" / "generate.py"), "-n", str(n), "--mix", mix, "-o", str(path), "--seed", "7"],
            check=True,
        )


def corrupt(line: bytes, kind: int) -> bytes:
    """One of four ways a line goes bad."""
    if kind == 0:
        return line[: len(line) // 2]  # truncated
    if kind == 1:
        return line.replace(b'":', b'" ', 1)  # a missing colon
    if kind == 2:
        return line + line  # two values on one line
    q = line.index(b'":"') + 3
    return line[:q] + b"\xff" + line[q:]  # invalid UTF-8 in the first string value


def make_bad(src: Path, dst: Path) -> int:
    """A copy of src with line 500, 1500, ... malformed; returns how many."""
    count = 0
    if not dst.exists():
        with open(src, "rb") as f, open(dst, "wb") as out:
            for i, line in enumerate(f):
                if i % 1000 == 500:
                    line = corrupt(line.rstrip(b"\n"), (i // 1000) % 4) + b"\n"
                out.write(line)
    with open(src, "rb") as f:
        count = sum(1 for i, _ in enumerate(f) if i % 1000 == 500)
    return count


def warm(path: Path) -> None:
    """Read ``path`` once, so that every contender starts with it in the page cache. This
    machine's host takes back page cache it has not seen used for a while: the first
    contender after a change of file read a 1M-packet file from disk (2-5 s runs)."""
    with open(path, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass


def run(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(err.strip().splitlines()[-1] if err.strip() else f"exit status {status}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def contenders(name: str, src: Path, work: Path, bad: bool) -> dict[str, list[str]]:
    out = work / f"out_{name}"
    ours = [PY, "-m", "decoder", "decode", str(src), "--classes", str(CLASSES), "-o", f"{out}_ours.parquet", "-q"]
    if bad:
        ours += ["--errors", f"{out}_errors.jsonl"]
    kind = "mixed" if name.startswith("mixed") else "firefly"
    flag = "1" if bad else "0"
    cmds = {
        "ours": ours,
        "duckdb": [
            PY,
            "-c",
            DUCKDB_MIXED if kind == "mixed" else DUCKDB_FIREFLY,
            str(src),
            f"{out}_duckdb.parquet",
            flag,
        ],
        "duckdb (narrow)": [
            PY,
            "-c",
            DUCKDB_MIXED_NARROW if kind == "mixed" else DUCKDB_FIREFLY_NARROW,
            str(src),
            f"{out}_duckdb_narrow.parquet",
            flag,
        ],
        "pyarrow (reads only)": [PY, "-c", PYARROW, str(src), kind],
    }
    if kind == "firefly":  # polars' reader takes one schema per file: Firefly's
        cmds["polars"] = [PY, "-c", POLARS, str(src), f"{out}_polars.parquet", flag]
    if bad:
        del cmds["pyarrow (reads only)"]  # it stops at the first bad line
    return cmds


def check_errors(path: Path, expected: int) -> str:
    """Every bad line is in --errors with its number."""
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    bad = sorted(r["line"] for r in lines if "provider" not in r)
    want = [i + 1 for i in range(500, 500 + 1000 * expected, 1000)]
    return "all reported" if bad == want else f"{len(bad)} of {expected} reported"


def same_table(ours: Path, theirs: Path) -> str:
    """How DuckDB's table differs from ours: rows, columns, and values column by column (all
    but the line numbers, which DuckDB's reader cannot give; floats to 1e-6 relative, since
    ours rounds Helium's float32 values to their shortest decimal; timestamps as instants)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    a, b = pq.read_table(ours), pq.read_table(theirs)
    if a.column_names != b.column_names or a.num_rows != b.num_rows:
        return f"differs: {a.num_rows:,} rows {a.column_names} against {b.num_rows:,} rows {b.column_names}"
    a, b = a.drop_columns(["line"]).flatten().flatten(), b.drop_columns(["line"]).flatten().flatten()
    differ = []
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        if pa.types.is_timestamp(x.type):
            x, y = (c.cast(pa.timestamp("us")).cast(pa.int64()) for c in (x, y))
        elif x.type != y.type:
            y = y.cast(x.type)
        if pa.types.is_floating(x.type):
            same = pc.less_equal(pc.abs(pc.subtract(x, y)), pc.multiply(pc.abs(x), 1e-6))
        else:
            same = pc.equal(x, y)
        same = pc.if_else(pc.is_null(x), pc.is_null(y), pc.fill_null(same, False))
        wrong = len(same) - pc.sum(same).as_py()
        if wrong:
            differ.append(f"{name} in {wrong:,} rows")
    return f"same {a.num_rows:,} rows" if not differ else "differs: " + ", ".join(differ)


def same_table_in_child(ours: Path, theirs: Path) -> str:
    """same_table in a process of its own: reading both tables here would grow this process,
    and a child forked from it reports this process's peak RSS as its own (ru_maxrss survives
    exec), which made our 4M-packet run look 1 GB large."""
    code = "import sys; from compare_end_to_end import same_table; print(same_table(*map(Path, sys.argv[1:])))"
    code = "from pathlib import Path; " + code
    done = subprocess.run(
        [PY, "-c", code, str(ours), str(theirs)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    return done.stdout.strip() if done.returncode == 0 else f"check failed: {done.stderr.strip().splitlines()[-1:]}"


def versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for mod in ("numba", "pyarrow", "duckdb", "polars"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            out.append(f"{mod} (not installed)")
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="packets per file (default 1,000,000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", default="firefly,mixed", help="firefly, mixed (comma-separated)")
    ap.add_argument("--no-bad", action="store_true", help="skip the files with bad lines")
    ap.add_argument("--dir", default="/tmp/decoder-e2e")
    ap.add_argument("--memory-n", type=int, default=0, help="also our peak RSS at this many packets")
    ap.add_argument("--json", help="write the medians (and every round's times) here")
    ap.add_argument("--startup-runs", type=int, default=7, help="runs of the one-packet start-up check (0: none)")
    args = ap.parse_args()

    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, bool, int]] = {}
    for kind in args.files.split(","):
        clean = work / f"{kind}_{args.n}.jsonl"
        generate(clean, args.n, MIXES[kind])
        files[kind] = (clean, False, 0)
        if not args.no_bad:
            bad = work / f"{kind}_{args.n}_bad.jsonl"
            files[f"{kind}_bad"] = (bad, True, make_bad(clean, bad))
    # Our modules byte-compiled, as an installed package's are (pip compiles them; the peers'
    # are): under PYTHONDONTWRITEBYTECODE an editable checkout compiled its sources on every run,
    # 0.1 s of each one-packet run. Then one run of ours, so its kernels are cached, as on any
    # second run of a user's.
    compileall.compile_dir(ROOT / "decoder", quiet=1)
    subprocess.run(contenders("warm", files[next(iter(files))][0], work, False)["ours"], check=True)

    load_before = os.getloadavg()
    results: dict[str, dict[str, list]] = {name: {} for name in files}
    for r in range(args.rounds):
        for name, (src, bad, _) in files.items():
            cmds = list(contenders(name, src, work, bad).items())
            # Each round starts with another contender: none always runs first after a change of file.
            for who, cmd in cmds[r % len(cmds) :] + cmds[: r % len(cmds)]:
                warm(src)
                try:
                    sample = run(cmd)
                except RuntimeError as err:
                    sample = str(err)
                results[name].setdefault(who, []).append(sample)
        print(f"round {r + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    print(
        f"\nEnd to end, JSON Lines -> Parquet, {args.n:,} packets per file, {args.rounds} rounds (medians), "
        f"{os.cpu_count()} cores, {platform.machine()}"
    )
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; {versions()}")
    summary = {}
    for name, (src, bad, expected) in files.items():
        size = src.stat().st_size / 1e6
        print(f"\n{name} ({size:,.0f} MB{', one malformed line per 1,000' if bad else ''})")
        print(f"  {'':24} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'vs ours':>8}")
        ours_wall = None
        for who, samples in results[name].items():
            ok = [s for s in samples if isinstance(s, tuple)]
            if not ok:
                print(f"  {who:24} failed: {samples[0]}")
                continue
            wall = statistics.median(s[0] for s in ok)
            cpu = statistics.median(s[1] for s in ok)
            rss = max(s[2] for s in ok)
            ours_wall = wall if who == "ours" else ours_wall
            ratio = f"{wall / ours_wall:7.2f}x" if ours_wall else ""
            print(f"  {who:24} {wall:8.2f} {cpu:8.2f} {rss:8,} {ratio}")
            summary.setdefault(name, {})[who] = {
                "wall": wall,
                "cpu": cpu,
                "rss_mb": rss,
                "walls": [s[0] for s in ok],
                "cpus": [s[1] for s in ok],
                "rss_mbs": [s[2] for s in ok],
            }
        if not bad and "duckdb" in summary.get(name, {}):
            theirs, ours_out = work / f"out_{name}_duckdb.parquet", work / f"out_{name}_ours.parquet"
            print(f"  DuckDB's table against ours: {same_table_in_child(ours_out, theirs)}")
        if bad and ours_wall is not None:
            print(f"  bad lines in --errors: {check_errors(work / f'out_{name}_errors.jsonl', expected)}")
            clean = summary.get(name.removesuffix("_bad"), {}).get("ours")
            if clean:
                print(f"  ours with bad lines / ours clean: {ours_wall / clean['wall']:.2f}x (target <= 1.25x)")
    print("\n'vs ours' is the contender's wall time over ours: above 1 means ours is faster.")

    if args.memory_n:
        kind = next(iter(args.files.split(",")))
        big = work / f"{kind}_{args.memory_n}.jsonl"
        generate(big, args.memory_n, MIXES[kind])
        # As many runs as the small file had rounds, medians of both: one run's peak moves by
        # about 3% (jemalloc and glibc give memory back on their own schedules).
        peaks = []
        for _ in range(args.rounds):
            warm(big)
            peaks.append(run(contenders(kind, big, work, False)["ours"])[2])
        rss_big = int(statistics.median(peaks))
        rss_small = int(statistics.median(summary[kind]["ours"]["rss_mbs"]))
        print(
            f"our peak RSS (medians of {args.rounds}): {rss_small:,} MB at {args.n:,} packets, {rss_big:,} MB at "
            f"{args.memory_n:,} ({(rss_big / rss_small - 1) * 100:+.1f}%, target within 10%; "
            f"runs at {args.memory_n:,}: {', '.join(map(str, sorted(peaks)))} MB)"
        )
    if args.startup_runs:
        summary["one_packet"] = startup(files[next(iter(files))][0], work, args.startup_runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"load": [load_before, load_after], "results": summary}, indent=1))


def startup(src: Path, work: Path, runs: int) -> dict:
    """Fixed costs: a new process (kernels cached) decoding a one-packet file, ours against
    DuckDB's statement, interleaved; medians."""
    one = work / "one_packet.jsonl"
    with open(src, "rb") as f:
        one.write_bytes(f.readline())
    cmds = contenders("one_packet", one, work, False)
    walls: dict[str, list[float]] = {"ours": [], "duckdb": []}
    load = os.getloadavg()[0]
    for _ in range(runs):
        for who in walls:
            walls[who].append(run(cmds[who])[0])
    med = {who: statistics.median(w) for who, w in walls.items()}
    print(
        f"start-up, a one-packet file, {runs} runs (medians, load {load:.2f}): ours {med['ours']:.2f} s, "
        f"DuckDB's statement {med['duckdb']:.2f} s"
    )
    return med


if __name__ == "__main__":
    main()
