"""decoder.polars on real polars: the struct expression equals DeviceClass.decode row for row."""

from __future__ import annotations

import base64

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from engine_cases import (
    EVERY_TYPE_CLASS,
    EVERY_TYPE_PORT,
    every_type_payloads,
    lpp_payloads,
    mixed_uplinks,
    rows,
)
from helpers import ROOT

import decoder
import decoder.polars

CLASSES = ROOT / "samples" / "classes"


@pytest.fixture(scope="module")
def every_type():
    return decoder.compile(EVERY_TYPE_CLASS)


def _want(dc, payloads, **kw) -> tuple[list, list]:
    batch = dc.decode(payloads, **kw)
    return [r["d"] for r in rows(pa.table({"d": batch.to_struct_array()}))], batch.error_array().to_pylist()


def test_every_output_type_equals_device_class_decode(every_type):
    payloads = every_type_payloads(3000)
    ports = [None if k % 13 == 0 else EVERY_TYPE_PORT for k in range(len(payloads))]
    df = pl.DataFrame({"payload": payloads, "port": pl.Series(ports, dtype=pl.Int32)})
    out = df.with_columns(
        decoded=decoder.polars.decode(pl.col("payload"), every_type, encoding="hex", port=pl.col("port")),
        error=decoder.polars.errors("payload", every_type, port="port"),
    )
    assert out.schema["decoded"] == pl.Struct(
        {
            "ints": pl.Struct({"i8": pl.Int8, "i16": pl.Int16, "i32": pl.Int32, "i64": pl.Int64}),
            "uints": pl.Struct({"u8": pl.UInt8, "u16": pl.UInt16, "u32": pl.UInt32, "u64": pl.UInt64}),
            "f32": pl.Float32,
            "f64": pl.Float64,
            "b": pl.Boolean,
            "maybe": pl.Struct({"u16": pl.UInt16}),
            "label": pl.String,  # a plain String, not a Categorical
            "ratio": pl.Float64,
            "deep": pl.Struct({"er": pl.Struct({"sum": pl.Float64})}),
        }
    )
    want, errors = _want(every_type, payloads, encoding="hex", ports=ports)
    assert [r["decoded"] for r in rows(out.select("decoded").to_arrow())] == want
    assert out["error"].to_list() == errors
    assert out["decoded"].null_count() == sum(e is not None for e in errors) >= 5


@pytest.mark.parametrize("port", [None, EVERY_TYPE_PORT, "port", pl.col("port") + 0])
def test_port_as_nothing_an_int_a_name_or_an_expression(every_type, port):
    payloads = every_type_payloads(200, seed=9)
    ports = [EVERY_TYPE_PORT] * len(payloads)
    df = pl.DataFrame({"payload": payloads, "port": ports})
    got = df.select(d=decoder.polars.decode("payload", every_type, port=port))
    want, _ = _want(every_type, payloads, encoding="hex", ports=None if port is None else ports)
    assert [r["d"] for r in rows(got.to_arrow())] == want


def test_lazy_streaming_over_many_chunks_equals_eager(every_type):
    payloads = every_type_payloads(4000, seed=4)
    frames = [pl.DataFrame({"payload": payloads[k : k + 500]}) for k in range(0, len(payloads), 500)]
    df = pl.concat(frames, rechunk=False)
    assert df.n_chunks() > 1
    lazy = df.lazy().with_columns(d=decoder.polars.decode("payload", every_type, port=EVERY_TYPE_PORT))
    streamed = lazy.collect(engine="streaming")
    want, _ = _want(every_type, payloads, encoding="hex", ports=EVERY_TYPE_PORT)
    assert [r["d"] for r in rows(streamed.select("d").to_arrow())] == want


def test_mixed_providers_and_classes_equal_the_engine():
    """Uplinks of every provider shape, normalized by the Engine: each class's expression on its rows gives
    the Engine's own decoded values, from raw bytes and from base64 text alike."""
    table, classes = mixed_uplinks(2000, CLASSES)
    encoded = [None if p is None else base64.b64encode(p).decode() for p in table["payload"].to_pylist()]
    df = pl.from_arrow(table.select(["device_class", "payload", "port"])).with_columns(
        pl.col("device_class").cast(pl.String), b64=pl.Series(encoded, dtype=pl.String)
    )
    for name, dc in classes.items():
        mine = df.filter(pl.col("device_class") == name)
        got = mine.select(
            raw=decoder.polars.decode("payload", dc, encoding="raw", port="port"),
            text=decoder.polars.decode("b64", dc, encoding="base64", port="port"),
        )
        engine_rows = table.filter(pc.equal(table["device_class"], name))
        want = [r["d"] for r in rows(pa.table({"d": pc.struct_field(engine_rows["decoded"], name)}))]
        assert len(want) > 100
        got_rows = rows(got.to_arrow())
        assert [r["raw"] for r in got_rows] == want
        assert [r["text"] for r in got_rows] == want


def test_the_built_in_cayenne_lpp_format():
    """A built-in format's struct of maps {channel: value} comes out as polars Maps, value for value."""
    lpp = decoder.builtin("cayenne-lpp")
    payloads = lpp_payloads(3000)
    got = pl.DataFrame({"p": payloads}).select(d=decoder.polars.decode("p", lpp), e=decoder.polars.errors("p", lpp))
    batch = lpp.decode_fixed(payloads, encoding="hex")
    assert [r["d"] for r in rows(got.select("d").to_arrow())] == [
        r["d"] for r in rows(pa.table({"d": batch.to_struct_array()}))
    ]
    assert got["e"].to_list() == batch.error_array().to_pylist()
