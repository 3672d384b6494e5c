"""decoder.spark against a real local Spark (local[2]): row for row, value for value with the Engine.

One Spark session serves the whole module (it takes about 10 s to start).
Where Java or PySpark is missing the tests skip with the reason; where the
environment variable CI is set they fail instead (``.ci/run`` installs both),
so CI can never pass by skipping them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from engine_cases import (
    EVERY_TYPE_ARROW,
    EVERY_TYPE_CLASS,
    EVERY_TYPE_PORT,
    every_type_payloads,
    lpp_payloads,
    rows,
)
from helpers import ROOT, sample_generator

import decoder

pytestmark = pytest.mark.filterwarnings(
    # PySpark 4.x checks the pandas version in every mapInArrow call and warns about pandas 3.
    "ignore:PySpark does not yet fully support pandas:FutureWarning",
)

SAMPLES = ROOT / "samples"
CLASSES = SAMPLES / "classes"
SAMPLE_DEVICES = [SAMPLES / "packets" / "devices.json", SAMPLES / "packets" / "device_ids.json"]


def _missing(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where a skip would hide untested code."""
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason}; CI is set, so this is a failure, not a skip (.ci/run installs Java and the [spark] extra)",
            pytrace=False,
        )
    pytest.skip(f"{reason} (pip install -e '.[spark]' and a Java 17+ runtime, or run .ci/run)")


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home, "bin", "java"), os.X_OK):
        return str(Path(home, "bin", "java"))
    return shutil.which("java")


@pytest.fixture(scope="session")
def pyspark_installed() -> None:
    try:
        import pandas  # noqa: F401  (PySpark's mapInArrow requires it)
        import pyspark  # noqa: F401
    except ImportError as err:
        _missing(f"{err.name} is not installed")


@pytest.fixture(scope="session")
def spark(pyspark_installed):
    if _java() is None:
        _missing("java is not installed")
    from pyspark.sql import SparkSession

    with pytest.MonkeyPatch.context() as env:
        # Workers run this interpreter and import this checkout's decoder.
        env.setenv("PYSPARK_PYTHON", sys.executable)
        env.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        session = (
            SparkSession.builder.master("local[2]")
            .appName("decoder-tests")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            # Small Arrow batches: several per task even on small files, so line numbers must carry over.
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", "300")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        yield session
        session.stop()


# -- the oracle: the Engine on the same files ---------------------------------------------------


def _read_lines(path: Path) -> list[bytes]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return raw.split(b"\n")


def expected_lines(engine: decoder.Engine, paths: list[Path]) -> list[dict]:
    """What decode_lines must give for these files: the Engine's rows, plus a row per bad line."""
    out = []
    for path in paths:
        chunk = engine.decode(path)
        table = chunk.table
        columns = table.column_names + ["input", "line_text"]
        found = [dict(r, input=str(path), line_text=None) for r in rows(table)]
        text = _read_lines(path)
        for line, reason in chunk.bad_lines:
            bad = dict.fromkeys(columns)
            bad.update(line=line, error=reason, input=str(path), line_text=text[line - 1].decode())
            found.append(bad)
        found.sort(key=lambda r: r["line"])  # stable: a line's uplinks first, in order, then its bad-line row
        out.extend(found)
    return out


def spark_lines(df) -> list[dict]:
    """decode_lines' rows, per file in line order, with Spark's file URI turned back into a path."""
    got = rows(df.toArrow())
    for r in got:
        r["input"] = r["input"].removeprefix("file:") if r["input"] else None
    return sorted(got, key=lambda r: (r["input"] or "", r["line"] if r["line"] is not None else -1))


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"row {k} (line {w.get('line')} of {w.get('input')}) differs"


def _engine(**kw) -> decoder.Engine:
    return decoder.Engine(decoder.Registry.from_files(**kw))


# -- the schema mapping -------------------------------------------------------------------------


def test_spark_schema_maps_every_output_type(pyspark_installed):
    from pyspark.sql import types as T

    from decoder.spark import spark_schema

    schema = pa.schema(
        [
            pa.field("decoded", EVERY_TYPE_ARROW),
            pa.field("received_at", pa.timestamp("ns", tz="UTC")),
            pa.field("device_class", pa.dictionary(pa.int32(), pa.string())),
            pa.field("payload", pa.binary()),
            pa.field("by_channel", pa.map_(pa.uint8(), pa.struct([("x", pa.float64())]))),  # Cayenne LPP
            pa.field("values", pa.list_(pa.uint64())),
        ]
    )
    want = T.StructType(
        [
            T.StructField(
                "decoded",
                T.StructType(
                    [
                        T.StructField(
                            "ints",
                            T.StructType(
                                [
                                    T.StructField("i8", T.ByteType()),
                                    T.StructField("i16", T.ShortType()),
                                    T.StructField("i32", T.IntegerType()),
                                    T.StructField("i64", T.LongType()),
                                ]
                            ),
                        ),
                        T.StructField(
                            "uints",
                            T.StructType(
                                [
                                    T.StructField("u8", T.ShortType()),
                                    T.StructField("u16", T.IntegerType()),
                                    T.StructField("u32", T.LongType()),
                                    T.StructField("u64", T.DecimalType(20, 0)),
                                ]
                            ),
                        ),
                        T.StructField("f32", T.FloatType()),
                        T.StructField("f64", T.DoubleType()),
                        T.StructField("b", T.BooleanType()),
                        T.StructField("maybe", T.StructType([T.StructField("u16", T.IntegerType())])),
                        T.StructField("label", T.StringType()),
                        T.StructField("ratio", T.DoubleType()),
                        T.StructField(
                            "deep",
                            T.StructType([T.StructField("er", T.StructType([T.StructField("sum", T.DoubleType())]))]),
                        ),
                    ]
                ),
            ),
            T.StructField("received_at", T.TimestampType()),
            T.StructField("device_class", T.StringType()),
            T.StructField("payload", T.BinaryType()),
            T.StructField(
                "by_channel", T.MapType(T.ShortType(), T.StructType([T.StructField("x", T.DoubleType())]), True)
            ),
            T.StructField("values", T.ArrayType(T.DecimalType(20, 0), True)),
        ]
    )
    assert spark_schema(schema) == want


@pytest.mark.parametrize(
    "fields, message",
    [
        ([pa.field("Temp", pa.float64()), pa.field("temp", pa.float64())], "differing only in case"),
        ([pa.field("s", pa.struct([("a", pa.int8()), ("A", pa.int8())]))], "'s.A' beside 'a'"),
        ([pa.field("m", pa.map_(pa.uint8(), pa.struct([("a", pa.int8()), ("A", pa.int8())])))], "'m.A' beside"),
        ([pa.field("x", pa.duration("s"))], "no Spark type"),
    ],
)
def test_spark_schema_refuses_what_spark_cannot_hold(pyspark_installed, fields, message):
    from decoder.spark import spark_schema

    with pytest.raises((decoder.InputError, TypeError), match=message):
        spark_schema(pa.schema(fields))


# -- decode_lines -------------------------------------------------------------------------------


def test_decode_lines_equals_engine_on_the_sample_files(spark):
    from decoder.spark import decode_lines

    files = sorted((SAMPLES / "packets").glob("*.jsonl"))  # firefly, helium, mixed, bad lines
    out = decode_lines(spark.read.text([str(p) for p in files]), classes=CLASSES, devices=SAMPLE_DEVICES)
    want = expected_lines(
        _engine(classes=sorted(map(str, CLASSES.glob("*.json"))), devices=list(map(str, SAMPLE_DEVICES))), files
    )
    got = spark_lines(out)
    assert_same_rows(got, want)
    bad = [r for r in got if r["line_text"] is not None]
    assert len(bad) >= 6  # bad.jsonl: malformed JSON, unknown shapes, wrong types, a bare string
    for r in bad:
        # a bad line: its place, its reason and its text; nothing else
        assert r["error"] and r["input"].endswith(".jsonl") and r["line"] >= 1
        assert {k for k, v in r.items() if v is not None} == {"input", "line", "error", "line_text"}


@pytest.fixture(scope="module")
def mixed_files(tmp_path_factory):
    """3,000 generated uplinks of three classes and every provider shape, in three files (one gzipped)."""
    gen_module = sample_generator()
    groups = [
        gen_module.parse_group(g) for g in ("Test Device Class:9:2", "Room Climate Sensor:6:1", "Multi Sensor:10:1")
    ]
    mix = gen_module.parse_mix(
        "firefly=0.3,helium_event=0.15,helium_body=0.15,helium_integration=0.1,helium_downlink=0.1,tts=0.1,chirpstack=0.1"
    )
    gen = gen_module.Generator(groups, 60, mix, seed=11)
    lines = [line.encode() for line in gen.lines(3000)]
    lines[17] = b'{"device_eui": "70B3D57ED0000001", "payload": '  # malformed
    lines[400] = b"[1, 2, 3]"  # not uplinks
    lines[1500] = b""  # blank: no row
    root = tmp_path_factory.mktemp("mixed")
    paths = [root / "a.jsonl", root / "b.jsonl.gz", root / "c.jsonl"]
    paths[0].write_bytes(b"\n".join(lines[:1000]) + b"\n")
    paths[1].write_bytes(gzip.compress(b"\n".join(lines[1000:2000]) + b"\n"))
    paths[2].write_bytes(b"\n".join(lines[2000:]))  # no newline at the end
    # Three kinds of device files: a plain map, an euis response named after its class's URL, and a
    # /devices response naming a class that is not loaded (its packets get that error).
    plain = {}
    climate = []
    for g, i in gen.devices:
        if (g, i) == (0, 1):
            continue  # bound below to class 99 (its Helium device id nowhere: "no device class")
        if groups[g].name == "Room Climate Sensor":
            climate.append({"eui": gen_module.device_eui(g, i), "address": gen_module.device_addr(g, i)})
        else:
            plain[gen_module.device_eui(g, i)] = groups[g].name
        plain[gen_module.device_uuid(g, i)] = groups[g].name
    (root / "devices.json").write_bytes(decoder_json(plain))
    (root / "device_classes_7_euis.json").write_bytes(decoder_json({"devices": climate}))
    unknown = {"devices": [{"eui": gen_module.device_eui(0, 1), "device_class_id": 99}]}
    (root / "firefly_devices.json").write_bytes(decoder_json(unknown))
    return paths, [str(root / n) for n in ("devices.json", "device_classes_7_euis.json", "firefly_devices.json")]


def decoder_json(value) -> bytes:
    import orjson

    return orjson.dumps(value)


def test_decode_lines_equals_engine_on_mixed_providers_and_classes(spark, mixed_files):
    from decoder.spark import decode_lines

    paths, devices = mixed_files
    out = decode_lines(spark.read.text([str(p) for p in paths]), classes=CLASSES, devices=devices)
    engine = _engine(classes=sorted(map(str, CLASSES.glob("*.json"))), devices=devices)
    assert engine.mixed  # decoded is a struct of the three classes' structs
    want = expected_lines(engine, paths)
    got = spark_lines(out)
    assert_same_rows(got, want)
    classes = {r["device_class"] for r in got}
    assert {"Test Device Class", "Room Climate Sensor", "Multi Sensor", None} <= classes
    assert all(r["line"] is not None for r in got)  # whole files: every line is numbered


def test_decode_lines_every_output_type(spark, tmp_path):
    from pyspark.sql import types as T

    from decoder.spark import decode_lines

    payloads = every_type_payloads(400)
    lines = [
        decoder_json(
            {
                "device_eui": f"70B3D57ED0{k % 7:06X}",
                "payload": p,
                "port": EVERY_TYPE_PORT,
                "fcnt": k,
                "received_at": f"2024-02-29T12:00:{k % 60:02d}Z",
            }
        )
        for k, p in enumerate(payloads)
    ]
    path = tmp_path / "every.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    classes = tmp_path / "every_type.json"
    classes.write_bytes(decoder_json(EVERY_TYPE_CLASS))

    out = decode_lines(spark.read.text(str(path)), classes=str(classes))
    decoded_type = out.schema["decoded"].dataType
    assert decoded_type["uints"].dataType["u64"].dataType == T.DecimalType(20, 0)
    assert decoded_type["uints"].dataType["u8"].dataType == T.ShortType()
    assert decoded_type["label"].dataType == T.StringType()
    got = spark_lines(out)
    assert_same_rows(got, expected_lines(decoder.Engine(decoder.compile(EVERY_TYPE_CLASS)), [path]))
    first = got[0]["decoded"]
    assert first["uints"]["u64"] == 2**64 - 1 and first["ints"]["i64"] == -1
    assert got[1]["decoded"]["ints"]["i64"] == -(2**63)
    assert sum(r["error"] is not None for r in got) >= 5


def test_decode_lines_with_the_built_in_cayenne_lpp_format(spark, tmp_path):
    """A built-in format needs no classes file; its maps {channel: value} become Spark maps, value for value."""
    from pyspark.sql import types as T

    from decoder.spark import decode_lines, decode_payloads

    payloads = lpp_payloads(600)
    lines = [
        decoder_json({"device_eui": f"70B3D57ED0{k % 5:06X}", "payload": p, "port": 1, "fcnt": k})
        for k, p in enumerate(payloads)
    ]
    path = tmp_path / "lpp.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = decode_lines(spark.read.text(str(path)), device_class="cayenne-lpp")
    assert out.schema["decoded"].dataType["temperature"].dataType == T.MapType(T.ShortType(), T.DoubleType(), True)
    got = spark_lines(out)
    assert_same_rows(got, expected_lines(decoder.Engine(decoder.builtin("cayenne-lpp")), [path]))
    assert sum(len(r["decoded"]["temperature"] or {}) for r in got if r["decoded"]) > 50

    table = spark.createDataFrame(pa.table({"k": range(len(payloads)), "p": payloads}))
    got = sorted(rows(decode_payloads(table, payload="p", device_class="cayenne-lpp").toArrow()), key=lambda r: r["k"])
    batch = decoder.builtin("cayenne-lpp").decode_fixed(payloads, encoding="hex")
    assert [r["decoded"] for r in got] == [r["d"] for r in rows(pa.table({"d": batch.to_struct_array()}))]
    assert [r["error"] for r in got] == batch.error_array().to_pylist()


def test_decode_lines_numbers_only_the_first_split_of_a_large_file(spark, mixed_files):
    """Spark splits a large uncompressed file; a later split cannot know its line numbers: null, not wrong."""
    from decoder.spark import decode_lines

    paths, devices = mixed_files
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(256 * 1024))
    try:
        out = decode_lines(spark.read.text(str(paths[0])), classes=CLASSES, devices=devices)
        assert out.rdd.getNumPartitions() > 1
        got = rows(out.toArrow())
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    engine = _engine(classes=sorted(map(str, CLASSES.glob("*.json"))), devices=devices)
    want = expected_lines(engine, [paths[0]])
    numbered = [r for r in got if r["line"] is not None]
    assert 0 < len(numbered) < len(got)
    by_line = {(w["line"], w["packet_id"], w["error"]) for w in want}
    assert all((r["line"], r["packet_id"], r["error"]) in by_line for r in numbered)

    def unplaced(r):
        return {k: v for k, v in r.items() if k not in ("line", "input")}

    # every row is still there, in file order
    assert [unplaced(r) for r in got] == [unplaced(w) for w in want]


def test_decode_lines_of_bytes_not_from_files(spark):
    """Lines that do not come from files (a table, Kafka's binary value): no input or line, nothing else lost."""
    from decoder.spark import decode_lines

    path = SAMPLES / "packets" / "bad.jsonl"
    lines = _read_lines(path)
    df = spark.createDataFrame([(line,) for line in lines], "body binary").coalesce(1)
    got = rows(decode_lines(df, classes=CLASSES, device_class=2, column="body").toArrow())
    want = expected_lines(_engine(classes=str(CLASSES / "test_device_class.json"), default=2), [path])
    assert all(r["input"] is None and r["line"] is None for r in got)
    assert [dict(r, input=None, line=None) for r in got] == [dict(w, input=None, line=None) for w in want]


def test_decode_lines_checks_on_the_driver(spark):
    from decoder.spark import decode_lines

    lines = spark.read.text(str(SAMPLES / "packets" / "firefly.jsonl"))
    with pytest.raises(decoder.InputError, match="3 device classes loaded"):
        decode_lines(lines, classes=CLASSES)
    with pytest.raises(decoder.InputError, match="no column 'body'"):
        decode_lines(lines, classes=CLASSES, device_class=2, column="body")
    with pytest.raises(decoder.InputError, match="unknown device class 77"):
        decode_lines(lines, classes=CLASSES, device_class=77)


def test_decode_lines_keeps_instants_in_any_session_time_zone(spark):
    from decoder.spark import decode_lines

    path = SAMPLES / "packets" / "helium.jsonl"
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        got = spark_lines(decode_lines(spark.read.text(str(path)), classes=CLASSES, device_class=2))
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    want = expected_lines(_engine(classes=str(CLASSES / "test_device_class.json"), default=2), [path])
    assert [r["received_at"] for r in got] == [w["received_at"] for w in want]
    assert all(r["received_at"] for r in got)


# -- decode_payloads ----------------------------------------------------------------------------


def test_decode_payloads_equals_device_class_decode(spark, tmp_path):
    from decoder.spark import decode_payloads

    classes = tmp_path / "every_type.json"
    classes.write_bytes(decoder_json(EVERY_TYPE_CLASS))
    payloads = every_type_payloads(700, seed=3)
    ports = [None if k % 11 == 0 else EVERY_TYPE_PORT for k in range(len(payloads))]
    when = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=k) for k in range(len(payloads))]
    table = pa.table(
        {
            "id": pa.array(range(len(payloads)), pa.int64()),
            "payload": payloads,
            "port": pa.array(ports, pa.int32()),
            "at": pa.array(when, pa.timestamp("us", tz="UTC")),
        }
    )
    df = spark.createDataFrame(table).repartition(3)  # several tasks; order restored by id below

    out = decode_payloads(df, payload="payload", classes=str(classes), port="port")
    assert out.columns == ["id", "payload", "port", "at", "decoded", "error"]
    got = sorted(rows(out.toArrow()), key=lambda r: r["id"])

    batch = decoder.compile(EVERY_TYPE_CLASS).decode(payloads, encoding="hex", ports=ports)
    want_decoded = rows(pa.table({"d": batch.to_struct_array()}))
    want_errors = batch.error_array().to_pylist()
    passthrough = rows(table)
    for k, r in enumerate(got):
        assert r["decoded"] == want_decoded[k]["d"], f"row {k}"
        assert r["error"] == want_errors[k], f"row {k}"
        assert {c: r[c] for c in ("id", "payload", "port", "at")} == passthrough[k]


def test_decode_payloads_raw_bytes_and_name_checks(spark):
    from decoder.spark import decode_payloads

    dc = decoder.compile(CLASSES / "test_device_class.json")
    payloads = [bytes.fromhex("7F400000C000000064"), b"\x00", None]
    df = spark.createDataFrame([(p,) for p in payloads], "payload binary")
    got = decode_payloads(
        df,
        payload="payload",
        classes=CLASSES,
        device_class="Test Device Class",
        encoding="raw",
        output="d",
        error="why",
    ).toArrow()
    batch = dc.decode(payloads, encoding="raw")
    assert got["d"].to_pylist() == batch.to_struct_array().to_pylist()
    assert got["why"].to_pylist() == batch.error_array().to_pylist()
    with pytest.raises(decoder.InputError, match="already has a column 'payload'"):
        decode_payloads(df, payload="payload", classes=CLASSES, device_class=2, output="payload")
    with pytest.raises(decoder.InputError, match="3 device classes loaded"):
        decode_payloads(df, payload="payload", classes=CLASSES)


# -- Structured Streaming -----------------------------------------------------------------------


def test_streaming_file_source_to_parquet_with_checkpoint(spark, mixed_files, tmp_path):
    """The same decode_lines on a stream: each new file decoded once, into Parquet, across restarts."""
    from decoder.spark import decode_lines

    paths, devices = mixed_files
    incoming, sink, checkpoint = tmp_path / "in", tmp_path / "out", tmp_path / "checkpoint"
    incoming.mkdir()

    def run_once() -> None:
        lines = spark.readStream.text(str(incoming))
        query = (
            decode_lines(lines, classes=CLASSES, devices=devices)
            .writeStream.format("parquet")
            .option("path", str(sink))
            .option("checkpointLocation", str(checkpoint))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination(300)
        assert query.exception() is None

    shutil.copy(paths[0], incoming / paths[0].name)
    run_once()
    shutil.copy(paths[1], incoming / paths[1].name)  # arrives later; the restarted query decodes only it
    run_once()

    got = rows(pq.read_table(sink))
    for r in got:
        r["input"] = r["input"].removeprefix("file:")
    got.sort(key=lambda r: (r["input"], r["line"]))
    engine = _engine(classes=sorted(map(str, CLASSES.glob("*.json"))), devices=devices)
    want = expected_lines(engine, [incoming / paths[0].name, incoming / paths[1].name])
    assert_same_rows(got, want)


def test_our_parquet_files_read_in_spark_as_the_docs_say(spark, tmp_path):
    """docs/engines.md: Spark refuses nanosecond timestamps; with nanosAsLong every column reads,
    received_at as epoch nanoseconds, the delta-, delta-length- and dictionary-encoded columns
    as written."""
    from helpers import run_cli

    out = tmp_path / "out.parquet"
    src = SAMPLES / "packets" / "firefly.jsonl"
    res = run_cli("decode", src, "--classes", CLASSES / "test_device_class.json", "-o", out, "-q")
    assert res.returncode == 0, res.stderr
    columns = ["line", "received_at", "fcnt", "rssi", "snr", "gateway_count", "packet_id", "payload"]
    want = pq.read_table(out).select(columns)
    try:  # Spark 4.0-4.3 refuse the nanosecond timestamp; a later one may read it
        spark.read.parquet(str(out)).collect()
    except Exception as err:  # noqa: BLE001 - py4j's AnalysisException, whatever its class
        assert "TIMESTAMP(NANOS" in str(err)
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    try:
        at = "timestamp_micros(received_at div 1000) AS at"  # the docs' way back to a timestamp
        df = spark.read.parquet(str(out)).selectExpr(*columns, at)
        rows = sorted(df.collect(), key=lambda r: r["line"])
    finally:
        spark.conf.unset("spark.sql.legacy.parquet.nanosAsLong")
    expected = sorted(want.to_pylist(), key=lambda r: r["line"])
    assert len(rows) == len(expected) > 0
    for got, row in zip(rows, expected):
        at = row["received_at"]
        nanos = None if at is None else int(pa.scalar(at, pa.timestamp("ns", "UTC")).value)
        assert got["received_at"] == nanos
        assert (got["at"] is None) == (at is None)  # the docs' expression gives a timestamp
        for k in ("fcnt", "rssi", "snr", "gateway_count", "packet_id", "payload"):
            assert got[k] == row[k], (k, got, row)
