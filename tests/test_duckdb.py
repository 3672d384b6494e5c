"""decoder.duckdb on a real DuckDB: the SQL functions equal DeviceClass.decode row for row."""

from __future__ import annotations

import base64

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from engine_cases import (
    EVERY_TYPE_ARROW,
    EVERY_TYPE_CLASS,
    EVERY_TYPE_PORT,
    every_type_payloads,
    lpp_payloads,
    mixed_uplinks,
    rows,
)
from helpers import ROOT

import decoder
import decoder.duckdb

CLASSES = ROOT / "samples" / "classes"


@pytest.fixture(scope="module")
def every_type():
    return decoder.compile(EVERY_TYPE_CLASS)


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return t.value_type
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain(f.type)) for f in t])
    return t


def test_register_names_one_function_per_class():
    con = duckdb.connect()
    names = decoder.duckdb.register(con, CLASSES)
    assert names == ["decode_multi_sensor", "decode_room_climate_sensor", "decode_test_device_class"]
    listed = {n for (n,) in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
    assert set(names) <= listed


@pytest.mark.parametrize(
    "name, slug",
    [
        ("Test Device Class", "decode_test_device_class"),
        ("Room-Climate  Sensor (v2)", "decode_room_climate_sensor_v2"),
        ("ÄÖÜ Tracker 42", "decode_tracker_42"),
        ("__x__", "decode_x"),
    ],
)
def test_function_names(name, slug):
    assert decoder.duckdb.function_name(name) == slug


def test_function_name_needs_letters_or_digits():
    with pytest.raises(decoder.InputError, match="no letters or digits"):
        decoder.duckdb.function_name("!!!")


def test_every_output_type_equals_device_class_decode(every_type):
    con = duckdb.connect()
    assert decoder.duckdb.register(con, every_type) == ["decode_every_type"]
    payloads = every_type_payloads(5000)  # several of DuckDB's 2,048-row vectors
    ports = [None if k % 13 == 0 else EVERY_TYPE_PORT for k in range(len(payloads))]
    source = pa.table(
        {"k": pa.array(range(len(payloads)), pa.int64()), "p": payloads, "port": pa.array(ports, pa.int32())}
    )
    con.register("packets", source)
    got = con.sql("SELECT decode_every_type(p, port) AS d FROM packets ORDER BY k").to_arrow_table()
    assert got.schema.field("d").type == _plain(EVERY_TYPE_ARROW)  # UBIGINT stays UBIGINT, strings VARCHAR
    want = every_type.decode(payloads, encoding="hex", ports=ports).to_struct_array()
    assert rows(got) == rows(pa.table({"d": want}))
    assert got["d"].null_count >= 5  # failed rows are NULL


def test_blob_payloads_and_the_optional_port(every_type):
    con = duckdb.connect()
    decoder.duckdb.register(con, every_type)
    payloads = [p for p in every_type_payloads(300) if p is not None and len(p) % 2 == 0 and "z" not in p]
    con.register("packets", pa.table({"k": range(len(payloads)), "hex": payloads}))
    got = con.sql(
        "SELECT decode_every_type(unhex(hex)) AS blob, decode_every_type(hex) AS text, "
        "decode_every_type(hex, NULL) AS null_port, decode_every_type(hex, port := 9) AS named "
        "FROM packets ORDER BY k"
    ).to_arrow_table()
    # without a port the class's conditions see port -1 (unknown): the same rows as with NULL
    want = rows(pa.table({"d": every_type.decode(payloads, encoding="hex").to_struct_array()}))
    for column in ("blob", "text", "null_port"):
        assert [r[column] for r in rows(got)] == [w["d"] for w in want], column
    named = every_type.decode(payloads, encoding="hex", ports=EVERY_TYPE_PORT).to_struct_array()
    assert [r["named"] for r in rows(got)] == [w["d"] for w in rows(pa.table({"d": named}))]


def test_sql_over_a_json_lines_file_equals_device_class_decode():
    """The README's query: read_json of Firefly packets, one function call in the SELECT."""
    con = duckdb.connect()
    decoder.duckdb.register(con, CLASSES)
    path = ROOT / "samples" / "packets" / "firefly.jsonl"
    got = con.sql(
        f"SELECT fcnt, payload, port, decode_test_device_class(payload, port) AS d, "
        f"decode_test_device_class(payload, port).batteryLevel AS level FROM read_json('{path}')"
    ).to_arrow_table()
    dc = decoder.compile(CLASSES / "test_device_class.json")
    want = dc.decode(got["payload"], encoding="hex", ports=got["port"]).to_struct_array()
    assert rows(got.select(["d"])) == rows(pa.table({"d": want}))
    assert got["level"].to_pylist() == pc.struct_field(want, "batteryLevel").to_pylist()


def test_mixed_providers_and_classes_equal_the_engine():
    """Uplinks of every provider shape, normalized by the Engine: each class's SQL function on its rows
    gives the Engine's own decoded values (base64 text and BLOB alike)."""
    table, classes = mixed_uplinks(2000, CLASSES)
    con = duckdb.connect()
    decoder.duckdb.register(con, list(classes.values()), encoding="base64")
    encoded = [None if p is None else base64.b64encode(p).decode() for p in table["payload"].to_pylist()]
    con.register(
        "uplinks",
        table.select(["device_class", "payload", "port"])
        .append_column("b64", pa.array(encoded, pa.string()))
        .append_column("k", pa.array(range(table.num_rows))),
    )
    for name, dc in classes.items():
        fn = decoder.duckdb.function_name(name)
        got = con.sql(
            f"SELECT {fn}(payload, port) AS blob, {fn}(b64, port) AS text FROM uplinks "
            f"WHERE device_class = '{name}' ORDER BY k"
        ).to_arrow_table()
        mine = table.filter(pc.equal(table["device_class"], name))
        want = rows(pa.table({"d": pc.struct_field(mine["decoded"], name)}))
        assert len(want) > 100
        direct = dc.decode(mine["payload"], encoding="raw", ports=mine["port"]).to_struct_array()
        assert want == rows(pa.table({"d": direct}))
        assert [r["blob"] for r in rows(got)] == [w["d"] for w in want]
        assert [r["text"] for r in rows(got)] == [w["d"] for w in want]


def test_a_name_clash_is_an_error_and_registers_nothing():
    con = duckdb.connect()
    con.execute("CREATE MACRO decode_room_climate_sensor(x) AS x")
    with pytest.raises(decoder.InputError, match="already has a function decode_room_climate_sensor"):
        decoder.duckdb.register(con, CLASSES)
    listed = {n for (n,) in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
    assert "decode_multi_sensor" not in listed  # checked before anything was registered
    con2 = duckdb.connect()
    decoder.duckdb.register(con2, CLASSES)
    with pytest.raises(decoder.InputError, match="already has a function decode_multi_sensor"):
        decoder.duckdb.register(con2, CLASSES)


def test_two_classes_with_one_name_are_an_error(every_type):
    twin = dict(EVERY_TYPE_CLASS, id=902, name="every-type")
    with pytest.raises(decoder.InputError, match="would both be decode_every_type"):
        decoder.duckdb.register(duckdb.connect(), [every_type, decoder.compile(twin)])


def test_nothing_is_left_in_a_database_file(tmp_path):
    """The macros are temporary: a database file reopened later has no function its Python half is missing."""
    path = str(tmp_path / "uplinks.duckdb")
    con = duckdb.connect(path)
    decoder.duckdb.register(con, CLASSES)
    con.close()
    con = duckdb.connect(path)
    listed = {n for (n,) in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
    assert not any(n.startswith("decode_") for n in listed)
    assert len(decoder.duckdb.register(con, CLASSES)) == 3


def test_unknown_encoding_is_refused(every_type):
    with pytest.raises(decoder.InputError, match="encoding must be one of hex, base64"):
        decoder.duckdb.register(duckdb.connect(), every_type, encoding="raw")


def test_the_built_in_cayenne_lpp_format_by_name():
    """A built-in format registers by its name; its struct of maps {channel: value} comes through as DuckDB MAPs."""
    con = duckdb.connect()
    assert decoder.duckdb.register(con, "cayenne-lpp") == ["decode_cayenne_lpp"]
    payloads = lpp_payloads(3000)
    con.register("packets", pa.table({"k": range(len(payloads)), "p": payloads}))
    got = con.sql("SELECT decode_cayenne_lpp(p) AS d FROM packets ORDER BY k").to_arrow_table()
    lpp = decoder.builtin("cayenne-lpp")
    want = lpp.decode_fixed(payloads, encoding="hex").to_struct_array()
    assert got.schema.field("d").type == _plain(want.type)
    assert rows(got) == rows(pa.table({"d": want}))
    assert sum(len(r["d"]["temperature"] or []) for r in rows(got) if r["d"]) > 100  # maps with entries
