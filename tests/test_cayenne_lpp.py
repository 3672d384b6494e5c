"""The built-in Cayenne LPP decoder against the specification, The Things Stack and a plain-Python reference.

Oracles:

- the worked examples of the Cayenne LPP specification (myDevices), and the
  uplink test vector of The Things Stack's decoder (go-cayenne-lib), whose
  expected values are written out here;
- ``reference_decode`` below: one payload at a time in plain Python, with its
  own table of the specification's types. Hypothesis generates payloads
  (valid items, repeats, truncations, unknown types) and our batch decode must
  equal it value for value and error for error.

Float rounding, held by both sides: a scaled value is the raw integer divided
by its scale in float64 (``raw / 10`` in Python, ``raw / 10.0`` in numpy):
the correctly rounded quotient, which is also what The Things Stack computes.
Values are compared with ``==``, not approximately.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import decoder
from decoder.cli import main as cli_main
from decoder.errors import InputError

LPP = decoder.builtin("cayenne-lpp")

# ---------------------------------------------------------------------------------------------
# The reference: the specification's table, one payload at a time.

# code: (name, bytes per component, signed, scale per component, component names)
SPEC = {
    0x00: ("digital_in", 1, False, (1,), ()),
    0x01: ("digital_out", 1, False, (1,), ()),
    0x02: ("analog_in", 2, True, (100,), ()),
    0x03: ("analog_out", 2, True, (100,), ()),
    0x65: ("luminosity", 2, False, (1,), ()),
    0x66: ("presence", 1, False, (1,), ()),
    0x67: ("temperature", 2, True, (10,), ()),
    0x68: ("relative_humidity", 1, False, (2,), ()),
    0x71: ("accelerometer", 2, True, (1000, 1000, 1000), ("x", "y", "z")),
    0x73: ("barometric_pressure", 2, False, (10,), ()),
    0x86: ("gyrometer", 2, True, (100, 100, 100), ("x", "y", "z")),
    0x88: ("gps", 3, True, (10000, 10000, 100), ("latitude", "longitude", "altitude")),
}


def reference_decode(payload: bytes) -> tuple[dict, str | None]:
    """(values by TTS name in payload order, error or None): the items before an error are kept."""
    out: dict = {}
    pos = 0
    while pos < len(payload):
        if len(payload) - pos < 2:
            return out, f"truncated item at byte {pos}: needs a channel and a type byte, has 1 byte"
        channel, code = payload[pos], payload[pos + 1]
        if code not in SPEC:
            return out, f"unknown Cayenne LPP type 0x{code:02X} at byte {pos}"
        name, width, signed, scales, fields = SPEC[code]
        size = width * len(scales)
        have = len(payload) - pos - 2
        if have < size:
            return out, f"truncated {name} at byte {pos}: needs {size} bytes, has {have}"
        raw = [
            int.from_bytes(payload[pos + 2 + i * width : pos + 2 + (i + 1) * width], "big", signed=signed)
            for i in range(len(scales))
        ]
        values = [r if s == 1 else r / s for r, s in zip(raw, scales)]
        out[f"{name}_{channel}"] = dict(zip(fields, values)) if fields else values[0]  # repeat: last value wins
        pos += 2 + size
    return out, None


def reference_fixed(values: dict) -> dict:
    """The reference's values in the Engine's fixed form: {type name: {channel: value}} or None."""
    out: dict = {name: None for name, *_ in SPEC.values()}
    for key, value in values.items():
        name, _, channel = key.rpartition("_")
        out[name] = out[name] or {}
        out[name][int(channel)] = value
    return out


def column_order(names: set[str]) -> list[str]:
    """Our column order: by type code, then channel."""
    code_of = {name: code for code, (name, *_) in SPEC.items()}

    def key(column: str) -> tuple[int, int]:
        name, _, channel = column.rpartition("_")
        return code_of[name], int(channel)

    return sorted(names, key=key)


# ---------------------------------------------------------------------------------------------
# The specification's examples and The Things Stack's test vector.

SPEC_EXAMPLES = [
    ("03 67 01 10 05 67 00 FF", {"temperature_3": 27.2, "temperature_5": 25.5}),
    ("01 67 FF D7", {"temperature_1": -4.1}),
    ("06 71 04 D2 FB 2E 00 00", {"accelerometer_6": {"x": 1.234, "y": -1.234, "z": 0.0}}),
    ("01 88 06 76 5F F2 96 0A 00 03 E8", {"gps_1": {"latitude": 42.3519, "longitude": -87.9094, "altitude": 10.0}}),
]


@pytest.mark.parametrize(("text", "expected"), SPEC_EXAMPLES)
def test_specification_examples(text, expected):
    batch = LPP.decode([text.replace(" ", "")])
    assert batch.to_pylist() == [expected]
    assert batch.errors == []
    assert reference_decode(bytes.fromhex(text)) == (expected, None)


def test_the_things_stack_uplink_vector():
    """Every standard type at once, with the values The Things Stack's decoder expects for these bytes."""
    payload = bytes(
        [
            1,
            0x00,
            255,
            2,
            0x01,
            100,
            3,
            0x02,
            21,
            74,
            4,
            0x03,
            234,
            182,
            5,
            0x65,
            1,
            244,
            6,
            0x66,
            50,
            7,
            0x67,
            255,
            100,
            8,
            0x68,
            160,
            9,
            0x71,
            254,
            88,
            0,
            15,
            6,
            130,
            10,
            0x73,
            41,
            239,
            11,
            0x86,
            1,
            99,
            2,
            49,
            254,
            102,
            12,
            0x88,
            7,
            253,
            135,
            0,
            190,
            245,
            0,
            8,
            106,
            13,
            0x88,
            7,
            253,
            135,
            255,
            65,
            12,
            0,
            8,
            106,
        ]
    )
    (row,) = LPP.decode([payload], encoding="raw").to_pylist()
    assert row == {
        "digital_in_1": 255,
        "digital_out_2": 100,
        "analog_in_3": 54.5,
        "analog_out_4": -54.5,
        "luminosity_5": 500,
        "presence_6": 50,
        "temperature_7": -15.6,
        "relative_humidity_8": 80.0,
        "accelerometer_9": {"x": -0.424, "y": 0.015, "z": 1.666},
        "barometric_pressure_10": 1073.5,
        "gyrometer_11": {"x": 3.55, "y": 5.61, "z": -4.10},
        "gps_12": {"latitude": 52.3655, "longitude": 4.8885, "altitude": 21.54},
        "gps_13": {"latitude": 52.3655, "longitude": -4.8884, "altitude": 21.54},
    }
    assert isinstance(row["digital_in_1"], int) and isinstance(row["luminosity_5"], int)


def test_barometer_is_unsigned_as_the_specification_says():
    # 0xFFFF: 6553.5 hPa read unsigned (The Things Stack reads it signed: -0.1).
    assert LPP.decode(["0173FFFF"]).to_pylist() == [{"barometric_pressure_1": 6553.5}]


def test_errors_name_the_byte_and_keep_the_values_before():
    batch = LPP.decode(["03670110056700", "0367011005420000", "03670110 05".replace(" ", ""), "", "0167"])
    assert batch.to_pylist() == [{"temperature_3": 27.2}, {"temperature_3": 27.2}, {"temperature_3": 27.2}, {}, {}]
    assert batch.error_array().to_pylist() == [
        "truncated temperature at byte 4: needs 2 bytes, has 1",
        "unknown Cayenne LPP type 0x42 at byte 4",
        "truncated item at byte 4: needs a channel and a type byte, has 1 byte",
        None,  # an empty payload is no values, no error
        "truncated temperature at byte 0: needs 2 bytes, has 0",
    ]
    assert batch.errors[0] == {"row": 0, "error": "truncated temperature at byte 4: needs 2 bytes, has 1"}
    assert batch.stats == {"rows": 5, "decoded": 1, "errors": 4, "values": 3}
    assert batch.ok.tolist() == [False, False, False, True, False]
    # The row with an error keeps its values in every form, struct included.
    assert batch.to_struct_array().to_pylist()[0] == {"temperature_3": 27.2}
    assert batch.to_arrow().column("temperature_3").to_pylist() == [27.2, 27.2, 27.2, None, None]


def test_a_repeated_pair_keeps_its_last_value():
    batch = LPP.decode(["0367011003670120" + "0467000A" + "036700FF"])
    assert batch.to_pylist() == [{"temperature_3": 25.5, "temperature_4": 1.0}]
    assert batch.stats["values"] == 2
    fixed = LPP.decode_fixed(["0367011003670120036700FF"]).to_arrow()
    assert fixed.column("temperature").to_pylist(maps_as_pydicts="strict") == [{3: 25.5}]


def test_columns_are_the_pairs_in_the_batch_by_type_then_channel():
    batch = LPP.decode(["0567000A", "0288000001000002000003", "01670001", "0A00010267000B"])
    assert batch.to_arrow().column_names == [
        "digital_in_10",
        "temperature_1",
        "temperature_2",
        "temperature_5",
        "gps_2",
    ]
    assert batch.to_arrow().num_rows == 4
    assert batch.to_arrow().column("temperature_2").to_pylist() == [None, None, None, 1.1]
    assert LPP.decode(["", ""]).to_pylist() == [{}, {}]


def test_input_errors_and_encodings():
    raw = bytes.fromhex("03670110056700FF")
    expected = {"temperature_3": 27.2, "temperature_5": 25.5}
    assert LPP.decode([raw.hex()]).to_pylist() == [expected]
    assert LPP.decode([raw.hex().upper()]).to_pylist() == [expected]
    assert LPP.decode([base64.b64encode(raw).decode()], encoding="base64").to_pylist() == [expected]
    assert LPP.decode([raw], encoding="raw").to_pylist() == [expected]
    assert LPP.decode(pa.array([raw, None]), encoding="raw").to_pylist() == [expected, {}]
    batch = LPP.decode(["0367011", None, "zz", "03670110"], ports=[1, 2, 3, 4])
    assert batch.error_array().to_pylist() == [
        "odd hex length (7 characters)",
        "payload is missing",
        "bad hex character 'z' at position 0",
        None,
    ]
    # A payload that could not be read is a null struct; one read partly is not.
    assert batch.to_struct_array().is_null().to_pylist() == [True, True, True, False]


def test_interface_of_a_device_class():
    assert (LPP.name, LPP.id, LPP.ports) == ("cayenne-lpp", None, None)
    assert decoder.builtin("cayenne-lpp") is LPP
    with pytest.raises(ValueError, match="no built-in format 'lpp'"):
        decoder.builtin("lpp")
    schema = LPP.output_schema()
    assert schema.names == [name for name, *_ in SPEC.values()]
    assert schema.field("temperature").type == pa.map_(pa.uint8(), pa.float64())
    assert schema.field("gps").type.item_type == pa.struct(
        [("latitude", pa.float64()), ("longitude", pa.float64()), ("altitude", pa.float64())]
    )
    assert "136 (0x88)  gps_<channel> {latitude, longitude, altitude}: 9 bytes" in LPP.explain()


def test_import_stays_cheap():
    code = "import sys, decoder; decoder.builtin('cayenne-lpp'); print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# Generated payloads against the reference.

UNKNOWN_TYPES = st.integers(0, 255).filter(lambda code: code not in SPEC)


@st.composite
def items(draw, channels):
    code = draw(st.sampled_from(sorted(SPEC)))
    _, width, _, scales, _ = SPEC[code]
    return bytes([draw(channels), code]) + draw(st.binary(min_size=width * len(scales), max_size=width * len(scales)))


@st.composite
def payloads(draw):
    # Few channels make repeated (type, channel) pairs likely; all 256 make many columns.
    channels = draw(st.sampled_from([st.integers(0, 3), st.integers(0, 255)]))
    body = b"".join(draw(st.lists(items(channels), max_size=8)))
    tail = draw(st.sampled_from(["none", "none", "truncated", "lone channel", "unknown type"]))
    if tail == "truncated":
        whole = draw(items(channels))
        body += whole[: draw(st.integers(2, len(whole) - 1))]
    elif tail == "lone channel":
        body += bytes([draw(channels)])
    elif tail == "unknown type":
        body += bytes([draw(channels), draw(UNKNOWN_TYPES)]) + draw(st.binary(max_size=4))
    return body


def encode(batch: list[bytes], encoding: str) -> list:
    if encoding == "hex":
        return [p.hex() for p in batch]
    if encoding == "base64":
        return [base64.b64encode(p).decode() for p in batch]
    return batch


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(payloads(), max_size=25), encoding=st.sampled_from(["hex", "base64", "raw"]))
def test_matches_the_reference(batch, encoding):
    expected = [reference_decode(p) for p in batch]
    ours = LPP.decode(encode(batch, encoding), encoding=encoding)
    rows = ours.to_pylist()
    assert [list(r.items()) for r in rows] == [list(values.items()) for values, _ in expected]  # order too
    assert ours.error_array().to_pylist() == [error for _, error in expected]
    assert ours.errors == [{"row": i, "error": e} for i, (_, e) in enumerate(expected) if e is not None]
    assert ours.stats["rows"] == ours.stats["decoded"] + ours.stats["errors"] == len(batch)
    # The table: one column per pair present, by type then channel, null where a row lacks it.
    names = column_order({key for values, _ in expected for key in values})
    table = ours.to_arrow()
    assert table.column_names == names
    for name in names:
        assert table.column(name).to_pylist() == [values.get(name) for values, _ in expected]
    # The fixed form carries the same values.
    fixed = LPP.decode_fixed(encode(batch, encoding), encoding=encoding)
    assert fixed.to_arrow().schema == LPP.output_schema()
    assert fixed.to_arrow().to_pylist(maps_as_pydicts="strict") == [reference_fixed(v) for v, _ in expected]
    assert fixed.error_array().to_pylist() == [error for _, error in expected]


@settings(max_examples=50, deadline=None)
@given(batch=st.lists(payloads(), min_size=1, max_size=10))
def test_batch_split_does_not_matter(batch):
    whole = LPP.decode([p.hex() for p in batch]).to_pylist()
    assert whole == [row for p in batch for row in LPP.decode([p.hex()]).to_pylist()]


@pytest.mark.parametrize("odd_item", [None, 1234])  # None, an int: the conversion falls back mid-way
def test_long_lists_decoded_while_converted_equal_the_reference(odd_item):
    """70,000 payloads take the path that decodes chunks while the next are converted (and its fallback)."""
    import random

    rng = random.Random(7)
    codes = sorted(SPEC)
    batch = []
    for i in range(70_000):
        body = b""
        for _ in range(rng.randint(0, 5)):
            code = rng.choice(codes)
            size = SPEC[code][1] * len(SPEC[code][3])
            body += bytes([rng.randint(0, 5), code]) + rng.randbytes(size)
        if i % 97 == 0:
            body += bytes([1, 0x67, 0])  # truncated temperature
        batch.append(body)
    texts: list = [p.hex() for p in batch]
    ours = LPP.decode(texts)
    expected = [reference_decode(p) for p in batch]
    assert ours.to_pylist() == [values for values, _ in expected]
    assert ours.error_array().to_pylist() == [error for _, error in expected]
    texts[40_000] = odd_item
    odd = LPP.decode(texts)
    assert odd.error_message(40_000) in ("payload is missing", "payload has the wrong type: int, expected str or bytes")
    assert odd.to_pylist()[40_001:] == [values for values, _ in expected[40_001:]]
    assert odd.stats["errors"] == ours.stats["errors"] + (expected[40_000][1] is None)


# ---------------------------------------------------------------------------------------------
# The Engine and the command line.


def firefly_line(eui: str, payload_hex: str, n: int, port: int = 1) -> str:
    return json.dumps(
        {
            "device_eui": eui,
            "payload": payload_hex,
            "port": port,
            "uid": f"u-{n}",
            "fcnt": n,
            "received_at": "2016-06-22T09:35:35",
            "gwrx": [],
        }
    )


LINES = [
    firefly_line("70B3D57ED0000001", "03670110056700FF", 1),
    firefly_line("70B3D57ED0000001", "0167FFD7", 2),
    firefly_line("70B3D57ED0000002", "018806765FF2960A0003E80342AA", 3),  # gps, then an unknown type
    firefly_line("70B3D57ED0000002", "", 4),
    firefly_line("70B3D57ED0000003", "0173278F067104D2FB2E0000", 5),
]
EXPECTED_ERRORS = [None, None, "unknown Cayenne LPP type 0x42 at byte 11", None, None]


def decoded_values(table: pa.Table) -> list:
    return table.column("decoded").to_pylist(maps_as_pydicts="strict")


def test_engine_has_one_schema_and_keeps_values_before_an_error():
    engine = decoder.Engine(LPP)
    table = engine.decode_packets(LINES)
    assert table.schema == engine.schema
    assert table.schema.field("decoded").type == pa.struct(list(LPP.output_schema()))
    # Another batch with other types has the same schema: one Parquet file can hold both.
    assert engine.decode_packets(LINES[1:2]).schema == engine.schema
    assert table.column("error").to_pylist() == EXPECTED_ERRORS
    values = decoded_values(table)
    assert values[0]["temperature"] == {3: 27.2, 5: 25.5}
    assert values[2]["gps"] == {1: {"latitude": 42.3519, "longitude": -87.9094, "altitude": 10.0}}
    assert values[3] == reference_fixed({})
    assert values[4]["barometric_pressure"] == {1: 1012.7}
    assert values[4]["accelerometer"] == {6: {"x": 1.234, "y": -1.234, "z": 0.0}}
    assert table.column("device_class").to_pylist() == ["cayenne-lpp"] * 5
    chunk = engine.decode(LINES)
    assert (chunk.rows, chunk.decoded, sum(chunk.errors.values())) == (5, 4, 1)


def test_registry_binds_devices_to_the_builtin_by_name(seed_classes):
    registry = decoder.Registry(decoder.load_classes(seed_classes))
    registry.load_devices(
        {"70B3D57ED0000001": "cayenne-lpp", "70B3D57ED0000002": "cayenne-lpp", "70B3D57ED0000003": "Test Device Class"}
    )
    assert [dc.name for dc in registry.bound_classes] == ["Test Device Class", "cayenne-lpp"]
    engine = decoder.Engine(registry)
    parts = engine.decode_packets_by_class(LINES)
    assert decoded_values(parts["cayenne-lpp"])[0]["temperature"] == {3: 27.2, 5: 25.5}
    # Device 3 keeps its compiled class: its 12 bytes are read as that class's 9-byte layout.
    assert parts["Test Device Class"].column("error").to_pylist() == [None]
    assert set(parts["Test Device Class"].column("decoded")[0].as_py()) == {"batteryLevel", "gps"}
    # In the one table of several classes, the row with an error keeps its values too.
    table = engine.decode_packets(LINES)
    assert table.column("error").to_pylist()[2] == "unknown Cayenne LPP type 0x42 at byte 11"
    lpp_values = pc.struct_field(table.column("decoded"), "cayenne-lpp").to_pylist(maps_as_pydicts="strict")
    assert lpp_values[2]["gps"] == {1: {"latitude": 42.3519, "longitude": -87.9094, "altitude": 10.0}}
    assert lpp_values[4] is None  # device 3's row belongs to the other class
    with pytest.raises(InputError, match=r"unknown device class 'cayenne' \(loaded: .*built in: cayenne-lpp\)"):
        registry.bind("70B3D57ED0000009", "cayenne")


@pytest.fixture
def packets(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    return path


def test_cli_decodes_with_the_builtin_and_no_classes_file(packets, tmp_path, capsys):
    out = tmp_path / "out.parquet"
    assert cli_main(["decode", str(packets), "--class", "cayenne-lpp", "-o", str(out), "-q"]) == 0
    table = pq.read_table(out)
    assert table.column("error").to_pylist() == EXPECTED_ERRORS
    assert decoded_values(table)[1]["temperature"] == {1: -4.1}
    assert table.schema.field("decoded").type == pa.struct(list(LPP.output_schema()))


def test_cli_devices_map_names_the_builtin(packets, tmp_path):
    devices = tmp_path / "devices.json"
    devices.write_text(json.dumps({"70B3D57ED0000001": "cayenne-lpp"}))
    out = tmp_path / "out.jsonl"
    assert cli_main(["decode", str(packets), "--devices", str(devices), "-o", str(out), "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["decoded"]["temperature"] == {"3": 27.2, "5": 25.5}  # a map is a JSON object
    assert [r["error"] for r in rows[2:]] == ["no device class"] * 3


def test_cli_csv_writes_maps_as_json_text(packets, tmp_path):
    import pyarrow.csv as pcsv

    out = tmp_path / "out.csv"
    assert cli_main(["decode", str(packets), "--class", "cayenne-lpp", "-o", str(out), "-q"]) == 0
    table = pcsv.read_csv(out, convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
    assert json.loads(table.column("decoded.temperature")[0].as_py()) == {"3": 27.2, "5": 25.5}
    assert table.column("decoded.temperature")[2].as_py() is None
    assert table.column("error").to_pylist() == EXPECTED_ERRORS


def test_cli_without_classes_is_a_usage_error(packets, tmp_path, capsys):
    assert cli_main(["decode", str(packets), "-o", str(tmp_path / "o.parquet")]) == 2
    assert "give --classes FILE, or a built-in format: --class cayenne-lpp" in capsys.readouterr().err
    assert cli_main(["decode", str(packets), "--class", "cayenne", "-o", str(tmp_path / "o.parquet")]) == 1
    assert "unknown device class 'cayenne'" in capsys.readouterr().err
