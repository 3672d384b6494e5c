"""A multi-class Parquet output read back the natural ways gives every class's values.

Each class's rows used to have their own ``decoded`` type per partition, and readers take
one file's schema for the whole directory: every other class came back null, silently.
Now every file has the engine's schema; each reader that is installed must give exactly
the rows of ``Engine.decode_packets`` (``device_class`` "" for rows without a class: the
partition ``device_class=``).
"""

from __future__ import annotations

import datetime
import math
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, run_cli

import decoder

CLASSES = ROOT / "samples" / "classes"
GROUPS = ["Test Device Class:9:2", "Room Climate Sensor:6:1", "Multi Sensor:10:1"]
# line, received_at and fcnt are delta-encoded, rssi, snr and gateway_count dictionary-encoded:
# every reader must give them back as the engine returned them.
COLUMNS = ["line", "device_class", "decoded", "error", "received_at", "fcnt", "rssi", "snr", "gateway_count"]
UNBOUND = (
    '{"device_eui": "00000000DEADBEEF", "payload": "0102", "port": 9, "received_at": "2016-06-22T09:35:35",'
    ' "uid": "u-1", "fcnt": 1, "gwrx": []}'
)


@pytest.fixture(scope="module")
def packets(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readback")
    cmd = [sys.executable, str(ROOT / "samples" / "generate.py"), "-n", "600", "-o", str(d / "gen.jsonl")]
    cmd += ["--devices-out", str(d / "devices.json"), "--device-ids-out", str(d / "ids.json"), "--seed", "9"]
    for group in GROUPS:
        cmd += ["--group", group]
    subprocess.run(cmd, check=True, timeout=60)
    lines = (d / "gen.jsonl").read_text().splitlines()
    (d / "packets.jsonl").write_text("\n".join(lines[:50] + [UNBOUND] + lines[50:]) + "\n")
    return d


@pytest.fixture(scope="module")
def expected(packets) -> dict[int, dict]:
    """The rows as the engine returns them, by input line."""
    registry = decoder.Registry.from_files(
        sorted(str(p) for p in CLASSES.glob("*.json")),
        devices=[str(packets / "devices.json"), str(packets / "ids.json")],
    )
    table = decoder.Engine(registry).decode_packets(packets / "packets.jsonl")
    rows = {r["line"]: {k: _plain(v) for k, v in r.items()} for r in table.select(COLUMNS).to_pylist()}
    for row in rows.values():
        row["device_class"] = row["device_class"] or ""  # the partition of rows without a class
    by_class = {r["device_class"] for r in rows.values()}
    assert by_class == {"", "Test Device Class", "Room Climate Sensor", "Multi Sensor"}
    return rows


def _plain(value):
    """Reader-neutral Python: NaN as None (pandas), nested dicts kept, numpy scalars unwrapped,
    times as nanoseconds since the epoch."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime.datetime):
        return _nanoseconds(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _nanoseconds(t: datetime.datetime) -> int:
    nanos = getattr(t, "nanosecond", 0)  # pandas' Timestamp keeps them
    whole = t.replace(microsecond=0)
    return int(whole.timestamp()) * 10**9 + t.microsecond * 1000 + nanos


def check_rows(rows: list[dict], expected: dict[int, dict], reader: str) -> None:
    got = {int(_plain(r["line"])): {k: _plain(r[k]) for k in COLUMNS} for r in rows}
    assert set(got) == set(expected), reader
    decoded_somewhere = 0
    for line, want in expected.items():
        assert got[line] == want, (reader, line, got[line], want)
        decoded_somewhere += want["decoded"] is not None
    assert decoded_somewhere > 500  # the comparison is not of nulls with nulls


def readers(path: Path) -> dict:
    """Every natural way to read the directory, as the rows it gives."""
    out = {
        "pyarrow read_table": lambda: pq.read_table(path).to_pylist(),
        "pyarrow dataset": lambda: ds.dataset(path, format="parquet", partitioning="hive").to_table().to_pylist(),
    }
    try:
        import pandas as pd

        out["pandas"] = lambda: pd.read_parquet(path).to_dict("records")
    except ImportError:
        pass
    try:
        import polars as pl

        out["polars"] = lambda: pl.read_parquet(f"{path}/**/*.parquet", hive_partitioning=True).to_dicts()
    except ImportError:
        pass
    try:
        import duckdb

        query = f"SELECT * FROM read_parquet('{path}/**/*.parquet', hive_partitioning = true)"

        def duck() -> list[dict]:
            result = duckdb.sql(query)
            to_arrow = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
            return to_arrow().to_pylist()

        out["duckdb"] = duck
    except ImportError:
        pass
    return out


def test_a_decode_dataset_reads_back_whole_with_every_reader(packets, expected, tmp_path):
    out = tmp_path / "out.parquet"
    args = ["decode", packets / "packets.jsonl", "--classes", CLASSES, "-o", out, "-q"]
    res = run_cli(*args, "--devices", packets / "devices.json", "--devices", packets / "ids.json")
    assert res.returncode == 0, res.stderr.decode()
    schemas = {pq.read_schema(f).remove_metadata() for f in out.rglob("*.parquet")}
    assert len(schemas) == 1  # one schema for every partition
    for f in out.rglob("*.parquet"):  # the encodings the readers below must undo
        encodings = {c.path_in_schema: c.encodings for c in _column_chunks(f)}
        assert all("DELTA_BINARY_PACKED" in encodings[c] for c in ("line", "received_at", "fcnt"))
        assert all("RLE_DICTIONARY" in encodings[c] for c in ("rssi", "snr", "gateway_count"))
        assert all("DELTA_LENGTH_BYTE_ARRAY" in encodings[c] for c in ("packet_id", "payload"))
        if f.parent.name == "device_class=Test Device Class":  # its coordinates never repeat
            assert "BYTE_STREAM_SPLIT" in encodings["decoded.Test Device Class.gps.latitude"]
    found = readers(out)
    assert {"pyarrow read_table", "pyarrow dataset"} <= set(found)
    for reader, read in found.items():
        check_rows(read(), expected, reader)


def test_polars_reads_the_dataset_directory_itself(packets, expected, tmp_path):
    pl = pytest.importorskip("polars")
    out = tmp_path / "out.parquet"
    args = ["decode", packets / "packets.jsonl", "--classes", CLASSES, "-o", out, "-q"]
    assert run_cli(*args, "--devices", packets / "devices.json", "--devices", packets / "ids.json").returncode == 0
    check_rows(pl.read_parquet(out).to_dicts(), expected, "polars directory")


def test_rolling_stream_files_of_several_classes_read_back_whole(packets, expected, tmp_path):
    out = tmp_path / "uplinks"
    res = run_cli(
        "stream",
        "--classes",
        CLASSES,
        "--devices",
        packets / "devices.json",
        "--devices",
        packets / "ids.json",
        "-o",
        out,
        "--max-rows",
        "200",
        "--roll-rows",
        "250",
        "-q",
        stdin=(packets / "packets.jsonl").read_bytes(),
    )
    assert res.returncode == 0, res.stderr.decode()
    assert len(list(out.glob("device_class=Test Device Class/part-*.parquet"))) > 1  # it rolled
    for reader, read in readers(out).items():
        check_rows(read(), expected, reader)


def test_an_empty_multi_class_dataset_keeps_its_schema(packets, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out.parquet"
    args = ["decode", empty, "--classes", CLASSES, "-o", out, "-q"]
    assert run_cli(*args, "--devices", packets / "devices.json").returncode == 0
    table = pq.read_table(out)
    assert table.num_rows == 0 and set(table.schema.field("decoded").type.names) >= {"Multi Sensor"}
    assert run_cli(*args, "--devices", packets / "devices.json").returncode == 0  # and it is ours to replace


def test_row_groups_are_sized_for_readers_not_by_input_chunks(packets, tmp_path, monkeypatch):
    """Chunks of a few lines each still give full row groups (only the last one shorter)."""
    from decoder import options
    from decoder.output import parquet

    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 128)
    monkeypatch.setattr(options, "MIN_CHUNK_BYTES", 1024)
    out = tmp_path / "out.parquet"
    res = run_cli(
        "decode", packets / "packets.jsonl", "--classes", CLASSES / "test_device_class.json",
        "--chunk-size", "8K", "-o", out, "-q",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert meta_chunks(packets / "packets.jsonl", 8 << 10) > 10  # many input chunks...
    meta = pq.ParquetFile(out).metadata
    sizes = [meta.row_group(k).num_rows for k in range(meta.num_row_groups)]
    assert sum(sizes) == 601 and sizes[:-1] == [128] * (len(sizes) - 1) and 0 < sizes[-1] <= 128  # ...full groups


def _column_chunks(path: Path) -> list:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(0).column(k) for k in range(meta.num_columns)]


def meta_chunks(path: Path, chunk_bytes: int) -> int:
    """How many chunks the reader cuts a file into."""
    from decoder.ingest import read_chunks

    return sum(1 for _ in read_chunks(str(path), chunk_bytes=chunk_bytes))


def test_a_class_output_is_encoded_as_its_first_row_group_shows(tmp_path):
    """Repeating values dictionary-encoded, floats that do not repeat BYTE_STREAM_SPLIT, and
    both read back as written; the file exists from the start, its footer only once closed."""
    from decoder.output import parquet

    rows = 3000
    rng = random.Random(5)
    levels = [round(rng.random(), 2) for _ in range(rows)]  # 101 values at most: repeats
    reading = [rng.uniform(-90, 90) for _ in range(rows)]  # no value twice
    counts = [rng.randrange(1 << 40) for _ in range(rows)]  # integers that do not repeat
    decoded = pa.StructArray.from_arrays(
        [pa.array(levels), pa.array(reading), pa.array(counts)], names=["level", "reading", "count"]
    )
    table = pa.table({"line": pa.array(range(1, rows + 1), pa.int64()), "decoded": decoded})
    path = tmp_path / "out.parquet"
    writer = parquet.open_writer(path, table.schema, command="decode")
    assert path.exists()
    for start in range(0, rows, 700):
        writer.write_table(table.slice(start, 700))
    writer.close()
    encodings = {c.path_in_schema: c.encodings for c in _column_chunks(path)}
    assert "RLE_DICTIONARY" in encodings["decoded.level"]
    assert "BYTE_STREAM_SPLIT" in encodings["decoded.reading"]
    assert "PLAIN" in encodings["decoded.count"] and "RLE_DICTIONARY" not in encodings["decoded.count"]
    assert pq.read_table(path).replace_schema_metadata(None).equals(table)
