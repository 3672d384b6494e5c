"""The decoder command line, run as a user would: its exit status, stdout and stderr.

Commands run in this process (``helpers.run_cli``); a subprocess only where the
process is the point (``python -m decoder``, what ``--help`` imports).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.ipc as ipc
import pyarrow.json as pjson
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, run_cli

CLASSES = ROOT / "samples" / "classes"
GROUPS = ["Test Device Class:9:2", "Room Climate Sensor:6:1", "Multi Sensor:10:1"]
N = 300
EXTRA = [
    "{not json",  # bad line
    '{"category": "downlink", "sub_category": "downlink_ack", "data": {}, "device_id": "x", "id": "y",'
    ' "reported_at": "1632352528562"}',  # skipped kind
    '{"device_eui": "00000000DEADBEEF", "payload": "0102", "port": 9, "received_at": "2016-06-22T09:35:35",'
    ' "uid": "u-1", "fcnt": 1, "gwrx": []}',  # a device no class is bound to
    '{"device_eui": "70B3D57ED0000001", "payload": "0Z", "port": 2, "received_at": "2016-06-22T09:35:35",'
    ' "uid": "u-2", "fcnt": 2, "gwrx": []}',  # bad hex payload
]


run = run_cli


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Packets of the three sample classes (generate.py), plus bad and unbound lines."""
    d = tmp_path_factory.mktemp("cli")
    cmd = [
        sys.executable,
        str(ROOT / "samples" / "generate.py"),
        "-n",
        str(N),
        "-o",
        str(d / "gen.jsonl"),
        "--devices",
        "30",
        "--devices-out",
        str(d / "devices.json"),
        "--device-ids-out",
        str(d / "device_ids.json"),
        "--seed",
        "3",
    ]
    for g in GROUPS:
        cmd += ["--group", g]
    subprocess.run(cmd, check=True, timeout=60)
    lines = (d / "gen.jsonl").read_text().splitlines()
    (d / "packets.jsonl").write_text("\n".join(lines[:100] + EXTRA + lines[100:]) + "\n")
    with gzip.open(d / "packets.jsonl.gz", "wb") as f:
        f.write((d / "packets.jsonl").read_bytes())
    return d


def decode_args(data: Path, out: str, *more: str) -> list[str]:
    return [
        "decode",
        data / "packets.jsonl",
        "--classes",
        CLASSES,
        "--devices",
        data / "devices.json",
        "--devices",
        data / "device_ids.json",
        "-o",
        out,
        *more,
    ]


def summary_numbers(stderr: str) -> dict[str, int]:
    out = {}
    for line in stderr.splitlines():
        parts = line.split()
        key = "bad lines" if line.startswith("bad lines") else parts[0] if parts else ""
        if key in ("decoded", "errors", "skipped", "bad lines"):
            value = line[len(key) :].split()[0].replace(",", "")
            if value.isdigit():
                out[key] = int(value)
        if line.startswith("rows in"):
            out["rows in"] = int(parts[2].replace(",", ""))
    return out


# -- help and usage ------------------------------------------------------------------------


def test_python_m_decoder_is_the_command(data):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "decoder",
            "decode",
            data / "packets.jsonl",
            "--classes",
            CLASSES / "test_device_class.json",
            "-o",
            "-",
            "-q",
        ],
        capture_output=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr.decode()
    assert len(res.stdout.splitlines()) == N + 2


def _decode_with_import_times(data, tmp_path, env=None) -> subprocess.CompletedProcess:
    """The command decoding the sample packets to Parquet under ``-X importtime`` (on stderr)."""
    return subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "decoder",
            "decode",
            data / "packets.jsonl",
            "--classes",
            CLASSES / "test_device_class.json",
            "-o",
            tmp_path / "o.parquet",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_decode_does_not_pay_for_pandas(data, tmp_path):
    """pyarrow would import pandas (when installed) on its first array: ~0.5 s of start-up for nothing."""
    res = _decode_with_import_times(data, tmp_path)
    assert res.returncode == 0, res.stderr
    loaded = [line for line in res.stderr.splitlines() if line.rstrip().endswith("pandas")]
    assert all(int(line.split("|")[1]) < 1000 for line in loaded), loaded  # refused at once, never loaded


def test_decode_does_not_search_the_installed_packages_for_numba_extensions(data, tmp_path):
    """numba looks for extensions among every installed package's entry points (importing
    importlib.metadata to do it): 55 ms of a one-packet run. The command skips that, and a class
    that must be compiled (an empty kernel cache: numba's compiler asks for extensions too)
    still compiles and decodes."""
    res = _decode_with_import_times(data, tmp_path, env=dict(os.environ, DECODER_CACHE_DIR=str(tmp_path / "kernels")))
    assert res.returncode == 0, res.stderr
    imported = {line.split("|")[2].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "numba.core.entrypoints" in imported and "importlib.metadata" not in imported
    assert pq.read_table(tmp_path / "o.parquet").num_rows == N + 2  # as test_python_m_decoder_is_the_command


def test_a_second_run_reads_its_classes_back_without_the_formula_parser(data, tmp_path):
    """The first run builds the class (lark parses its formulas) and keeps the build in the
    kernel cache; the next run reads it back and never imports lark or the code generator."""
    env = dict(os.environ, DECODER_CACHE_DIR=str(tmp_path / "kernels"))
    runs = []
    for out in ("first", "second"):
        res = _decode_with_import_times(data, tmp_path / out, env=env)
        assert res.returncode == 0, res.stderr
        runs.append({line.split("|")[2].strip() for line in res.stderr.splitlines() if line.startswith("import time:")})
    assert {"lark", "decoder.compiler.codegen"} <= runs[0]
    assert not {"lark", "decoder.compiler.codegen", "decoder.compiler.lower"} & runs[1]
    assert pq.read_table(tmp_path / "second" / "o.parquet").equals(pq.read_table(tmp_path / "first" / "o.parquet"))


def _decode_after(script: str, data, out, env=None) -> str:
    """``decoder decode`` of the test packets to ``out`` in a new process that runs ``script``
    first (a spy that ends by calling ``main()``); its stdout, the process having succeeded."""
    args = ["decode", data / "packets.jsonl", "--classes", CLASSES / "test_device_class.json", "-q", "-o", out]
    res = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_the_command_compiles_numbas_runtime_module_once_into_the_kernel_cache(data, tmp_path):
    """numba compiles its runtime's own module (reference counts) with LLVM in every process,
    16-22 ms on the way to the first scan. The command keeps its machine code in the kernel
    cache and loads it from there after; a class compiled afresh links with what was loaded, and
    a damaged file is compiled again and replaced."""
    spy = (  # which libraries numba loads from serialized machine code, printed at exit
        "import atexit; from numba.core import codegen; from decoder.cli import main\n"
        "loaded, original = [], codegen.Codegen.unserialize_library\n"
        "def spy(self, state):\n"
        "    loaded.append(state[0])\n"
        "    return original(self, state)\n"
        "codegen.Codegen.unserialize_library = spy\n"
        "atexit.register(lambda: print('nrt' in loaded, flush=True)); main()"
    )
    kernels = tmp_path / "kernels"
    env = dict(os.environ, DECODER_CACHE_DIR=str(kernels))

    def decode(out: str) -> bool:
        return _decode_after(spy, data, tmp_path / out, env).split() == ["True"]

    assert not decode("first.parquet")  # compiled, and kept
    (kept,) = kernels.glob("nrt_*.pickle")
    assert decode("second.parquet")
    for generated in kernels.glob("k_*.py"):  # the class's kernel compiles again: links with the loaded one
        generated.unlink()
    shutil.rmtree(kernels / "__pycache__")
    assert decode("third.parquet")
    kept.write_bytes(b"not a pickle")
    assert not decode("fourth.parquet")
    assert kept.read_bytes() != b"not a pickle" and decode("fifth.parquet")
    first = pq.read_table(tmp_path / "first.parquet")
    assert first.num_rows == N + 2
    for out in ("second", "third", "fourth", "fifth"):
        assert pq.read_table(tmp_path / f"{out}.parquet").equals(first)


def test_a_second_run_loads_its_kernels_without_parsing_their_bitcode_and_a_new_class_still_links(data, tmp_path):
    """numba parses a cached kernel's LLVM bitcode as it loads it, to list its symbols and to link
    later compilations against it: 12-15 ms of a parsing thread's way to its first chunk. The
    command keeps the symbol names in the kernel cache and parses bitcode only to link: a class
    compiled afresh still links with the kernels loaded, and damaged name lists are rebuilt."""
    parses_at_exit = (  # how many bitcode modules LLVM parsed in the process
        "import atexit; from llvmlite import binding; from decoder.cli import main\n"
        "parsed, original = [], binding.parse_bitcode\n"
        "def spy(data):\n"
        "    parsed.append(len(data))\n"
        "    return original(data)\n"
        "binding.parse_bitcode = spy\n"
        "atexit.register(lambda: print(len(parsed), flush=True)); main()"
    )
    kernels = tmp_path / "kernels"
    env = dict(os.environ, DECODER_CACHE_DIR=str(kernels))

    def decode(out: str) -> int:
        return int(_decode_after(parses_at_exit, data, tmp_path / out, env).split()[-1])

    decode("first.parquet")  # compiles the class and numba's runtime module
    decode("second.parquet")  # loads them: every kernel loaded has its names kept now
    kept = sorted(kernels.glob("symbols_*.json"))
    assert kept and all(json.loads(f.read_bytes()) for f in kept)
    assert decode("third.parquet") == 0
    for f, damage in zip(kept, itertools.cycle((b"[not json", b"[]", b'{"a": 1}'))):
        f.write_bytes(damage)
    assert decode("fourth.parquet") > 0  # parsed again, and listed again
    assert decode("fifth.parquet") == 0
    for generated in kernels.glob("k_*.py"):  # the class compiles again, against what was loaded
        generated.unlink()
    shutil.rmtree(kernels / "__pycache__")
    assert decode("sixth.parquet") > 0
    first = pq.read_table(tmp_path / "first.parquet")
    assert first.num_rows == N + 2
    for out in ("second", "third", "fourth", "fifth", "sixth"):
        assert pq.read_table(tmp_path / f"{out}.parquet").equals(first)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice level is Linux's")
def test_the_commands_parsing_threads_keep_the_priority_the_user_gave_it(data, tmp_path):
    """Every thread of the command runs at the process's nice level. Parsing threads ten levels
    below the writer made a run 1.05x as fast on an idle machine, and 3.3x as slow beside two
    busy programs of the same session (11-12 s against 3.5-3.7, 1M mixed packets)."""
    levels_at_exit = (
        "import atexit, os, sys; from decoder.cli import main; from decoder import threads\n"
        "def levels():\n"
        "    pool = threads._pools['chunks']\n"
        "    print(os.getpriority(os.PRIO_PROCESS, 0), *sorted(os.getpriority(os.PRIO_PROCESS, t.native_id)"
        " for t in pool._threads), flush=True)\n"
        "atexit.register(levels); main()"
    )
    args = [data / "packets.jsonl", "--classes", CLASSES / "test_device_class.json", "-q", "-o"]
    res = subprocess.run(
        [sys.executable, "-c", levels_at_exit, "decode", *args, tmp_path / "o.parquet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    main_level, *pool_levels = map(int, res.stdout.split())
    assert pool_levels and all(level == main_level for level in pool_levels), res.stdout


def test_the_command_allocates_from_jemalloc_in_small_pages_and_a_library_caller_keeps_its_settings(data, tmp_path):
    """The command's process switches Arrow to jemalloc (mimalloc re-faulted fresh pages all run
    long) and numpy off 2 MB pages (each fault zeroed 2 MB of a chunk's outputs); ``main(argv)``
    called from a user's process leaves both process-wide settings alone."""
    import numpy as np

    settings_at_exit = (  # pyarrow and numpy imported only by the command, as when it runs as `decoder`
        "import atexit, sys; from decoder.cli import main; atexit.register(lambda: print("
        "sys.modules['pyarrow'].default_memory_pool().backend_name,"
        " sys.modules['numpy']._core.multiarray._get_madvise_hugepage(), flush=True)); main()"
    )
    args = [data / "packets.jsonl", "--classes", CLASSES / "test_device_class.json", "-q", "-o"]
    command = [sys.executable, "-c", settings_at_exit, "decode", *args, tmp_path / "o.parquet"]
    env = {k: v for k, v in os.environ.items() if k not in ("ARROW_DEFAULT_MEMORY_POOL", "NUMPY_MADVISE_HUGEPAGE")}
    res = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    try:
        expected = pa.jemalloc_memory_pool().backend_name
    except NotImplementedError:  # a pyarrow without jemalloc: the default stays
        expected = pa.default_memory_pool().backend_name
    assert res.stdout.split() == [expected, "False"]

    before = pa.default_memory_pool().backend_name, np._core.multiarray._get_madvise_hugepage()
    assert run_cli("decode", *args, tmp_path / "p.parquet").returncode == 0
    assert (pa.default_memory_pool().backend_name, np._core.multiarray._get_madvise_hugepage()) == before


def test_help_imports_neither_numba_nor_pyarrow():
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "decoder", "--help"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and "decode" in res.stdout and "check" in res.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line}
    assert not imported & {"numba", "pyarrow", "numpy", "llvmlite"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["decode", "x.jsonl", "-o", "out.parquet"], "--classes"),
        (
            ["decode", "x.jsonl", "--classes", "c.json", "--devices", "d.json", "--class", "2", "-o", "o.csv"],
            "not allowed with",
        ),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "out.unknown"], "--format"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "-", "--format", "parquet"], "stdout"),
        (["decode", "-", "-", "--classes", "c.json", "-o", "o.csv"], "stdin"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "x.jsonl"], "replace an input"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "o.csv", "--errors", "o.csv"], "same file"),
        (["frobnicate"], "invalid choice"),
        # a suffix must mean what is written
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "x.parquet.gz"], "drop the .gz"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "x.arrow.gz"], "drop the .gz"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "x.json"], "not JSON; name it .jsonl"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "x.json.gz"], "not JSON; name it .jsonl"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "x.csv", "--format", "jsonl"], "means csv"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "x.gz", "--format", "parquet"], "drop the .gz"),
        # tiny chunks ran 400 times slower
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "o.csv", "--chunk-size", "1K"], "at least 1M"),
        (["decode", "x.jsonl", "--classes", "c.json", "-o", "o.csv", "--chunk-size", "512K"], "at least 1M"),
    ],
)
def test_usage_errors_exit_2(args, message):
    res = run(*args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr.decode()


def test_several_classes_without_devices_is_a_usage_error(data):
    res = run("decode", data / "packets.jsonl", "--classes", CLASSES, "-o", data / "x.parquet")
    assert res.returncode == 2
    assert b"--devices" in res.stderr and not (data / "x.parquet").exists()


# -- decode: every format, read back with pyarrow -------------------------------------------------


@pytest.fixture(scope="module")
def parquet_run(data):
    out = data / "mixed.parquet"
    res = run(*decode_args(data, out, "--errors", data / "errors.jsonl"))
    assert res.returncode == 0, res.stderr.decode()
    return out, res


def test_parquet_of_mixed_classes_is_a_dataset_partitioned_by_class(parquet_run):
    out, res = parquet_run
    assert out.is_dir()
    parts = sorted(p.name for p in out.iterdir())
    assert parts == [
        "device_class=",  # rows without a class
        "device_class=Multi Sensor",
        "device_class=Room Climate Sensor",
        "device_class=Test Device Class",
    ]
    gps = pq.read_table(out / "device_class=Test Device Class")
    assert "device_class" not in gps.column_names  # it is the partition key
    # every partition has the schema of Engine.decode_packets: a struct of every class's struct
    assert gps.schema.field("decoded").type.field("Test Device Class").type.get_field_index("gps") >= 0
    climate = pq.read_table(out / "device_class=Room Climate Sensor")
    climate_type = climate.schema.field("decoded").type.field("Room Climate Sensor").type
    assert {"temperature", "humidity", "alarm"} <= {f.name for f in climate_type}
    # one class at a time through the dataset API, the partition key restored from the path
    one = ds.dataset(out, format="parquet", partitioning="hive").to_table(
        filter=ds.field("device_class") == "Room Climate Sensor", columns=["line", "device_class"]
    )
    assert one.num_rows == climate.num_rows
    none = pq.read_table(out / "device_class=")
    assert set(none["error"].to_pylist()) == {"no device class"}
    total = sum(pq.read_metadata(p / "part-0.parquet").num_rows for p in out.glob("device_class=*"))
    assert total == N + 2  # the unbound device and the bad payload are rows too


def test_summary_on_stderr_reconciles(parquet_run):
    _, res = parquet_run
    assert res.stdout == b""
    text = res.stderr.decode()
    nums = summary_numbers(text)
    assert nums["rows in"] == nums["decoded"] + nums["errors"] + nums["skipped"]
    assert nums["skipped"] == 1 and nums["bad lines"] == 1
    assert "no device class" in text and "rows/s" in text and "helium:downlink" in text
    assert "\r" not in text  # no progress bar when stderr is not a terminal


def test_progress_shows_the_share_read_and_asks_for_it_only_when_shown(capsys):
    from decoder.cli import _Progress

    asked = []

    def fraction():
        asked.append(True)
        return 0.5

    _Progress(False).update("in.jsonl", 10, 0.0, fraction)  # not a terminal: nothing shown, nothing asked
    assert not asked and capsys.readouterr().err == ""
    _Progress(True).update("in.jsonl", 10, 0.0, fraction)
    err = capsys.readouterr().err
    assert asked == [True]
    assert "in.jsonl [############............]  50.0% 10 rows" in err


def test_errors_file_has_every_failed_row_with_its_line(parquet_run, data):
    _, res = parquet_run
    records = [json.loads(x) for x in (data / "errors.jsonl").read_text().splitlines()]
    nums = summary_numbers(res.stderr.decode())
    assert len(records) == nums["errors"] + nums["bad lines"]
    by_line = {r["line"]: r for r in records}
    assert by_line[101]["error"].startswith("malformed JSON") and set(by_line[101]) == {"input", "line", "error"}
    assert by_line[103]["error"] == "no device class" and by_line[103]["dev_eui"] == "00000000DEADBEEF"
    assert "hex" in by_line[104]["error"] and by_line[104]["device_class"] == "Test Device Class"
    assert all(r["input"].endswith("packets.jsonl") for r in records)
    assert [r["line"] for r in records] == sorted(r["line"] for r in records)


def test_failed_rows_keep_the_payload_text_they_came_with(tmp_path):
    ff = '{"device_eui":"0004A30B001C0530","uid":"%s","payload":"%s","port":1,"fcnt":1,"gwrx":[]}'
    he = '{"category":"uplink","sub_category":"uplink_unconfirmed","id":"h","device_id":"d","data":{"payload":"%s"}}'
    src = tmp_path / "p.jsonl"
    src.write_text("\n".join([ff % ("odd", "ABC"), ff % ("bad", "zz01"), he % "@@@=", ff % ("ok", "0102")]) + "\n")
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    res = run("decode", src, "--classes", CLASSES, "--class", "Test Device Class", "-o", out, "--errors", errors)
    assert res.returncode == 0, res.stderr.decode()
    rows = {r["packet_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert [rows[k]["payload_text"] for k in ("odd", "bad", "h")] == ["ABC", "zz01", "@@@="]
    assert rows["ok"]["payload_text"] is None and rows["ok"]["payload"] is not None  # decodable text: bytes only
    failed = {r["packet_id"]: r for r in map(json.loads, errors.read_text().splitlines())}
    assert [failed[k]["payload_text"] for k in ("odd", "bad", "h")] == ["ABC", "zz01", "@@@="]


def test_every_row_names_its_input_file(data, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    first.write_bytes((data / "packets.jsonl").read_bytes())
    second.write_bytes((data / "packets.jsonl.gz").read_bytes())
    out = tmp_path / "out.parquet"
    res = run("decode", first, second, "--classes", CLASSES, "--class", "Test Device Class", "-o", out, "-q")
    assert res.returncode == 0, res.stderr.decode()
    table = pq.read_table(out)
    inputs, lines = table.column("input").to_pylist(), table.column("line").to_pylist()
    half = len(inputs) // 2
    assert inputs == [str(first)] * half + [str(second)] * half
    assert lines[:half] == lines[half:] and lines[0] == 1  # line numbers restart per input


def test_arrow_csv_jsonl_read_back(data, parquet_run):
    out_pq, _ = parquet_run
    expected_rows = N + 2
    for name in ("out.arrow", "out.csv", "out.jsonl.gz"):
        res = run(*decode_args(data, data / name, "-q"))
        assert res.returncode == 0, res.stderr.decode()
        assert res.stderr == b""  # -q
    arrow = ipc.open_file(data / "out.arrow").read_all()
    assert arrow.num_rows == expected_rows
    assert pa.types.is_struct(arrow.schema.field("decoded").type)
    assert {f.name for f in arrow.schema.field("decoded").type} == {
        "Test Device Class",
        "Room Climate Sensor",
        "Multi Sensor",
    }
    assert pa.types.is_timestamp(arrow.schema.field("received_at").type)

    csv = pcsv.read_csv(data / "out.csv")
    assert csv.num_rows == expected_rows
    assert {
        "decoded.gps.latitude",
        "decoded.temperature",
        "decoded.status.tamper",
        "device_class",
        "error",
        "line",
    } <= set(csv.column_names)
    assert csv["line"].to_pylist() == arrow["line"].to_pylist()  # input order kept
    gps_rows = [r for r in csv.to_pylist() if r["device_class"] == "Test Device Class" and not r["error"]]
    assert gps_rows and all(-90 <= r["decoded.gps.latitude"] <= 90 for r in gps_rows)

    jl = pjson.read_json(data / "out.jsonl.gz")
    assert jl.num_rows == expected_rows
    rows = [json.loads(x) for x in gzip.open(data / "out.jsonl.gz").read().splitlines()]
    climate = next(r for r in rows if r["device_class"] == "Room Climate Sensor" and r["error"] is None)
    assert climate["decoded"]["alarm"] in ("TRUE", "FALSE")  # the class's own object, not a struct of classes
    assert isinstance(climate["payload"], str) and climate["received_at"].endswith("Z")


def test_single_class_gz_input_to_one_parquet_file(data):
    out = data / "single.parquet"
    res = run("decode", data / "packets.jsonl.gz", "--classes", CLASSES, "--class", "2", "-o", out, "--include-hidden")
    assert res.returncode == 0, res.stderr.decode()
    t = pq.read_table(out)
    assert t.num_rows == N + 2
    assert [f.name for f in t.schema.field("decoded").type] == ["battery", "gps", "batteryLevel"]
    assert set(t["device_class"].to_pylist()) == {"Test Device Class"}


def test_stdin_to_stdout(data):
    src = (data / "packets.jsonl").read_bytes()
    res = run("decode", "-", "--classes", CLASSES / "test_device_class.json", "-o", "-", stdin=src)
    assert res.returncode == 0, res.stderr.decode()
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(rows) == N + 2 and rows[0]["line"] == 1
    assert b"rows in" in res.stderr
    res = run(
        "decode", "-", "--classes", CLASSES / "test_device_class.json", "-o", "-", "--format", "arrow", "-q", stdin=src
    )
    assert res.returncode == 0
    assert ipc.open_stream(pa.BufferReader(res.stdout)).read_all().num_rows == N + 2


# -- failures: exit 1, nothing partial left behind ------------------------------------------------


def test_truncated_gzip_keeps_what_was_read_and_exits_1(data, tmp_path):
    whole = (data / "packets.jsonl.gz").read_bytes()
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(whole[: len(whole) // 2])  # truncated gzip: fails after the first chunks
    readable = zlib.decompressobj(wbits=31).decompress(whole[: len(whole) // 2]).count(b"\n")
    out = tmp_path / "out.jsonl"
    res = run(
        "decode",
        data / "packets.jsonl",
        broken,
        data / "packets.jsonl",
        "--classes",
        CLASSES / "test_device_class.json",
        "-o",
        out,
        "--errors",
        tmp_path / "errors.jsonl",
        "--chunk-size",
        "1M",
    )
    assert res.returncode == 1
    err = res.stderr.decode()
    assert f"decoder: error: {broken}: truncated gzip data after line {readable:,}" in err or (
        f"decoder: error: {broken}: truncated gzip data after line {readable}:" in err
    )
    assert "Traceback" not in err
    # The inputs before and after the cut, and every whole line before it, are in the output.
    lines = [json.loads(x)["line"] for x in out.read_text().splitlines()]
    errors = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    per_input = (lines.count(1), sum(1 for e in errors if e["input"] == str(broken)))
    assert per_input[0] == 3  # line 1 of each input
    full = sum(1 for _ in open(data / "packets.jsonl", "rb"))
    assert max(lines) == full and readable < full
    assert not [x for x in os.listdir(tmp_path) if "tmp" in x]  # no temporaries left


def test_failure_keeps_the_previous_output(data, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    res = run("decode", tmp_path / "missing.jsonl", "--classes", CLASSES / "test_device_class.json", "-o", out)
    assert res.returncode == 1 and b"missing.jsonl" in res.stderr
    assert out.read_text() == "previous\n"


def test_bad_devices_file_exits_1(data, tmp_path):
    bad = tmp_path / "devices.json"
    bad.write_text('{"70B3D57ED0000001": 99}')
    res = run("decode", data / "packets.jsonl", "--classes", CLASSES, "--devices", bad, "-o", tmp_path / "o.csv")
    assert res.returncode == 1
    assert res.stderr.decode().startswith("decoder: error: unknown device class 99")
    assert sorted(os.listdir(tmp_path)) == ["devices.json"]


def test_bad_script_exits_1_with_the_script_error(tmp_path, data):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "name": "Broken",
                "id": 5,
                "script": {
                    "parseElements": [{"type": "int", "target": "x", "bits": "8"}],
                    "calculateElements": [{"target": "y", "formula": "x +* 2"}],
                },
            }
        )
    )
    res = run("decode", data / "packets.jsonl", "--classes", bad, "-o", tmp_path / "o.csv")
    assert res.returncode == 1
    err = res.stderr.decode()
    assert err.startswith("decoder: error: ") and "Broken" in err and "Traceback" not in err
    assert not (tmp_path / "o.csv").exists()
    res = run("check", bad, CLASSES / "test_device_class.json", "--no-kernel")
    assert res.returncode == 1
    assert b"Broken" in res.stderr and b"^" in res.stderr
    assert b"Test Device Class" in res.stdout and b"1 of 2 device classes compile" in res.stdout


def test_check_shows_every_class_and_its_schema():
    res = run("check", CLASSES, "--include-hidden")
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout.decode()
    for name in ("Test Device Class", "Room Climate Sensor", "Multi Sensor"):
        assert name in out
    assert "gps: struct<latitude: double, longitude: double, altitude: int16>" in out
    assert "ports: 3, 4" in out and "3 of 3 device classes compile" in out


def test_check_goes_on_past_files_that_are_not_classes(tmp_path):
    for name in ("room_climate_sensor.json", "test_device_class.json"):
        (tmp_path / name).write_bytes((CLASSES / name).read_bytes())
    (tmp_path / "a_notes.json").write_text("these are notes, not JSON")
    (tmp_path / "b_number.json").write_text("42")
    res = run("check", tmp_path, "--no-kernel")
    assert res.returncode == 1
    err = res.stderr.decode().splitlines()
    assert len(err) == 2 and all(line.startswith("decoder: error: ") for line in err)
    assert "a_notes.json" in err[0] and "not valid JSON" in err[0] and "b_number.json" in err[1]
    out = res.stdout.decode()
    assert "Room Climate Sensor" in out and "Test Device Class" in out  # checked after the bad files
    assert out.rstrip().endswith("2 of 4 device classes compile")


# -- writers in-process ---------------------------------------------------------------------------------


def test_arrow_file_keeps_one_growing_dictionary():
    from decoder.output.files import _stable_dictionaries

    seen: dict = {}
    a = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int32()), pa.array(["TRUE", "FALSE"]))
    b = pa.DictionaryArray.from_arrays(pa.array([0, None], pa.int32()), pa.array(["maybe"]))
    first = _stable_dictionaries(a, seen, ("x",))
    second = _stable_dictionaries(pa.StructArray.from_arrays([b], ["x"]).field(0), seen, ("x",))
    assert first.to_pylist() == ["TRUE", "FALSE"] and second.to_pylist() == ["maybe", None]
    assert second.dictionary.to_pylist() == ["TRUE", "FALSE", "maybe"]


def test_output_is_not_written_into_a_foreign_directory(tmp_path):
    from decoder.errors import OutputError
    from decoder.output.files import _Target

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="is a directory this tool did not write"):
        _Target(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_hex_and_iso_conversions():
    from decoder.output.text import to_hex, to_iso

    arr = pa.array([b"\x01\xab", None, b"", b"\xff"]).slice(1)
    assert to_hex(arr).to_pylist() == [None, "", "FF"]
    ts = pa.array([1466588135000000000, 1466588135120000000, None], pa.timestamp("ns", "UTC"))
    assert to_iso(ts).to_pylist() == ["2016-06-22T09:35:35Z", "2016-06-22T09:35:35.12Z", None]


def test_suffixes_that_mean_what_is_written_are_accepted():
    from decoder.options import detect_format

    assert detect_format("out.csv.gz") == "csv" and detect_format("OUT.JSONL.GZ") == "jsonl"
    assert detect_format("out.ndjson") == "jsonl" and detect_format("out.pq") == "parquet"
    assert detect_format("dir.v2/out.dat", "parquet") == "parquet"  # an unknown suffix with --format
    assert detect_format("rows.gz", "csv") == "csv"
    assert detect_format("-") == "jsonl" and detect_format("-", "arrow") == "arrow"
    with pytest.raises(ValueError, match="drop the .gz"):
        detect_format("out.parquet.gz")


def test_decode_whose_classes_fail_while_its_input_is_read_says_why_and_stops_reading(data, tmp_path):
    # The first input is read while the classes load; a class problem still wins, and the
    # reading stops with the command.
    big = tmp_path / "big.jsonl"  # more 1 MB chunks than the reader may hold: it must be stopped
    big.write_bytes((data / "packets.jsonl").read_bytes() * (24 * (1 << 20) // (data / "packets.jsonl").stat().st_size))
    out = tmp_path / "out.parquet"
    res = run_cli("decode", big, "--classes", CLASSES, "--chunk-size", "1M", "-o", out)
    assert res.returncode == 2
    assert b"3 device classes loaded" in res.stderr and b"--devices" in res.stderr
    assert os.listdir(tmp_path) == ["big.jsonl"]
    readers = [t for t in threading.enumerate() if t.name == "decoder-jsonl-reader"]
    for reader in readers:  # stopped: it ends within moments (a busy machine may take a while)
        reader.join(timeout=30)
    assert not [t for t in readers if t.is_alive()]
