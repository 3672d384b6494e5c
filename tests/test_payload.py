"""decoder.payload: text payloads -> one byte buffer + offsets, checked against binascii/base64."""

from __future__ import annotations

import base64
import binascii

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoder import payload
from decoder.payload import (
    ENCODINGS,
    ERR_BAD_BASE64_CHARACTER,
    ERR_BAD_BASE64_LENGTH,
    ERR_BAD_BASE64_PADDING,
    ERR_BAD_HEX_CHARACTER,
    ERR_MISSING,
    ERR_ODD_HEX_LENGTH,
    ERR_OK,
    ERR_WRONG_TYPE,
    ERROR_REASONS,
    PayloadBuffer,
    to_buffer,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers


def rows(buffer: PayloadBuffer) -> list[bytes | None]:
    """Decoded bytes per row, None where the row has an error."""
    return [
        None if buffer.error[i] else bytes(buffer.data[buffer.offsets[i] : buffer.offsets[i + 1]])
        for i in range(len(buffer))
    ]


def check_layout(buffer: PayloadBuffer, n: int) -> None:
    """The Arrow binary layout invariants every result must keep."""
    assert len(buffer) == n
    assert buffer.data.dtype == np.uint8 and buffer.data.flags.c_contiguous
    assert buffer.offsets.dtype == np.int64 and buffer.offsets.shape == (n + 1,)
    assert buffer.error.dtype == np.uint8 and buffer.error.shape == (n,)
    assert buffer.offsets[0] == 0 and buffer.offsets[-1] == len(buffer.data)
    assert np.all(np.diff(buffer.offsets) >= 0)
    bad = buffer.error != ERR_OK
    assert np.all(np.diff(buffer.offsets)[bad] == 0), "a bad row must have empty bytes"
    # Rows in = decoded + errors, always.
    assert int((~bad).sum()) + int(bad.sum()) == n


def chunked(texts: list) -> pa.ChunkedArray:
    middle = len(texts) // 2
    return pa.chunked_array(
        [pa.array(texts[:middle], pa.string()), pa.array([], pa.string()), pa.array(texts[middle:], pa.string())]
    )


def sliced(texts: list) -> pa.Array:
    # A non-zero offset into both the offsets and the validity bitmap.
    return pa.array(["zz", None, "!"] + texts + [None, "zz"], pa.string()).slice(3, len(texts))


def as_bytes(texts: list) -> list:
    return [None if t is None else t.encode("ascii") for t in texts]


# Every container of text payloads, each built from a list of str (None = missing).
CONTAINERS = {
    "list": list,
    "tuple": tuple,
    "list of bytes": as_bytes,
    "list of bytearray": lambda texts: [None if t is None else bytearray(t, "ascii") for t in texts],
    "string": lambda texts: pa.array(texts, pa.string()),
    "large_string": lambda texts: pa.array(texts, pa.large_string()),
    "string_view": lambda texts: pa.array(texts, pa.string_view()),
    "binary": lambda texts: pa.array(as_bytes(texts), pa.binary()),
    "large_binary": lambda texts: pa.array(as_bytes(texts), pa.large_binary()),
    "dictionary": lambda texts: pa.array(texts, pa.string()).dictionary_encode(),
    "chunked": chunked,
    "sliced": sliced,
    "numpy object": lambda texts: np.array(texts + [None], dtype=object)[:-1],
}
# numpy 'U'/'S' arrays cannot hold None.
DENSE_CONTAINERS = {
    **CONTAINERS,
    "numpy U": lambda texts: np.array(texts, dtype="U"),
    "numpy S": lambda texts: np.array(as_bytes(texts), dtype="S"),
}

payload_bytes = st.lists(st.binary(max_size=24), max_size=12)


# --------------------------------------------------------------------------- round trips


@FAST
@given(payload_bytes, st.sampled_from(sorted(DENSE_CONTAINERS)), st.sampled_from(["lower", "upper", "mixed"]))
def test_hex_round_trip_matches_binascii(values, container, case):
    texts = [binascii.hexlify(v).decode() for v in values]
    if case == "upper":
        texts = [t.upper() for t in texts]
    elif case == "mixed":
        texts = ["".join(c.upper() if i % 2 else c for i, c in enumerate(t)) for t in texts]
    buffer = to_buffer(DENSE_CONTAINERS[container](texts), "hex")
    check_layout(buffer, len(values))
    assert rows(buffer) == [binascii.unhexlify(t) for t in texts]
    assert buffer.to_arrow().to_pylist() == values


@FAST
@given(payload_bytes, st.sampled_from(sorted(DENSE_CONTAINERS)), st.sampled_from(["padded", "unpadded", "urlsafe"]))
def test_base64_round_trip_matches_base64_module(values, container, variant):
    if variant == "urlsafe":
        texts = [base64.urlsafe_b64encode(v).decode() for v in values]
    else:
        texts = [base64.b64encode(v).decode() for v in values]
    if variant == "unpadded":
        texts = [t.rstrip("=") for t in texts]
    buffer = to_buffer(DENSE_CONTAINERS[container](texts), "base64")
    check_layout(buffer, len(values))
    assert rows(buffer) == values
    assert buffer.to_arrow().to_pylist() == values


@FAST
@given(
    st.lists(st.one_of(st.none(), st.binary(max_size=24)), max_size=12),
    st.sampled_from(["list", "binary", "large_binary", "chunked binary", "numpy object"]),
)
def test_raw_passes_bytes_through(values, container):
    build = {
        "list": list,
        "binary": lambda v: pa.array(v, pa.binary()),
        "large_binary": lambda v: pa.array(v, pa.large_binary()),
        "chunked binary": lambda v: pa.chunked_array([pa.array(v[:1], pa.binary()), pa.array(v[1:], pa.binary())]),
        "numpy object": lambda v: np.array(v + [None], dtype=object)[:-1],
    }[container]
    buffer = to_buffer(build(values), "raw")
    check_layout(buffer, len(values))
    assert rows(buffer) == values
    assert [ERR_MISSING if v is None else ERR_OK for v in values] == buffer.error.tolist()


def test_raw_numpy_bytes_array_keeps_trailing_nuls():
    # numpy drops trailing NULs when an element is read; a payload ending in 00 must not lose them
    buffer = to_buffer(np.array([b"\x01\x00\x02", b"ab\x00", b"\x00\x00\x00"]), "raw")
    assert rows(buffer) == [b"\x01\x00\x02", b"ab\x00", b"\x00\x00\x00"]
    assert rows(to_buffer(np.array([b"\x7f\x00", b"\x00\x01"])[::-1], "raw")) == [b"\x00\x01", b"\x7f\x00"]
    # fixed width: a shorter item is padded by numpy itself, and comes with its padding
    assert rows(to_buffer(np.array([b"\x01", b"\x02\x03"]), "raw")) == [b"\x01\x00", b"\x02\x03"]


@FAST
@given(st.integers(1, 16).flatmap(lambda w: st.lists(st.binary(min_size=w, max_size=w), max_size=12)))
def test_raw_numpy_bytes_arrays_of_one_width_round_trip(values):
    buffer = to_buffer(np.array(values, dtype=f"S{len(values[0]) if values else 1}"), "raw")
    check_layout(buffer, len(values))
    assert rows(buffer) == values


def test_a_payload_ending_in_zero_bytes_decodes_from_a_numpy_bytes_array(seed_class):
    payload = bytes.fromhex("7F400000C000000000")  # altitude 0: the last two bytes are 00
    batch = seed_class.decode(np.array([payload, payload]), encoding="raw")
    assert batch.errors == []
    assert batch.to_pylist()[0]["gps"] == {"latitude": 45.0, "longitude": -90.0, "altitude": 0}


def test_single_str_or_bytes_is_a_batch_of_one():
    assert rows(to_buffer("00ff")) == [b"\x00\xff"]
    assert rows(to_buffer(b"QUJD", "base64")) == [b"ABC"]
    assert rows(to_buffer(b"\x00\x01", "raw")) == [b"\x00\x01"]


def test_other_iterables_are_read_as_a_list():
    assert rows(to_buffer(iter(["01", "02"]))) == [b"\x01", b"\x02"]


@pytest.mark.parametrize("container", sorted(DENSE_CONTAINERS))
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_empty_batch(container, encoding):
    buffer = to_buffer(DENSE_CONTAINERS[container]([]), encoding)
    check_layout(buffer, 0)
    assert buffer.error_messages() == []
    assert len(buffer.to_arrow()) == 0


def test_empty_string_is_a_valid_empty_payload():
    assert rows(to_buffer(["", "00", ""], "hex")) == [b"", b"\x00", b""]
    assert rows(to_buffer(["", "AA==", ""], "base64")) == [b"", b"\x00", b""]


# --------------------------------------------------------------------------- errors

ERROR_CASES = [
    ("hex", "abc", ERR_ODD_HEX_LENGTH, "odd hex length (3 characters)"),
    ("hex", "0", ERR_ODD_HEX_LENGTH, "odd hex length (1 character)"),
    ("hex", "00112g", ERR_BAD_HEX_CHARACTER, "bad hex character 'g' at position 5"),
    ("hex", "0x12", ERR_BAD_HEX_CHARACTER, "bad hex character 'x' at position 1"),
    ("hex", "00 11", ERR_BAD_HEX_CHARACTER, "bad hex character ' ' at position 2"),
    ("hex", "0011\n", ERR_BAD_HEX_CHARACTER, "bad hex character '\\n' at position 4"),
    ("hex", "0g1", ERR_BAD_HEX_CHARACTER, "bad hex character 'g' at position 1"),  # character before length
    ("hex", "00é1", ERR_BAD_HEX_CHARACTER, "bad hex character 'é' at position 2"),  # characters, not bytes
    ("base64", "QU!D", ERR_BAD_BASE64_CHARACTER, "bad base64 character '!' at position 2"),
    ("base64", "QUJD RA==", ERR_BAD_BASE64_CHARACTER, "bad base64 character ' ' at position 4"),
    ("base64", "Q", ERR_BAD_BASE64_LENGTH, "bad base64 length (1 character without padding)"),
    ("base64", "QUJDR", ERR_BAD_BASE64_LENGTH, "bad base64 length (5 characters without padding)"),
    ("base64", "QUJDR===", ERR_BAD_BASE64_LENGTH, "bad base64 length (5 characters without padding)"),
    ("base64", "QQ=", ERR_BAD_BASE64_PADDING, "bad base64 padding: 3 characters with padding, not a multiple of 4"),
    ("base64", "QUJD=", ERR_BAD_BASE64_PADDING, "bad base64 padding: 5 characters with padding, not a multiple of 4"),
    ("base64", "QQ=A", ERR_BAD_BASE64_PADDING, "bad base64 padding: '=' at position 2"),
    ("base64", "QQ==QQ==", ERR_BAD_BASE64_PADDING, "bad base64 padding: '=' at position 2"),
    ("base64", "====", ERR_BAD_BASE64_PADDING, "bad base64 padding: 4 '=' at the end, at most 2 allowed"),
    ("base64", "QUJD====", ERR_BAD_BASE64_PADDING, "bad base64 padding: 4 '=' at the end, at most 2 allowed"),
    ("base64", "QUJD==", ERR_BAD_BASE64_PADDING, "bad base64 padding: 6 characters with padding, not a multiple of 4"),
]


@pytest.mark.parametrize("encoding, text, code, message", ERROR_CASES)
@pytest.mark.parametrize("container", ["list", "string", "binary", "numpy U"])
def test_bad_row_gets_its_error_and_the_others_decode(encoding, text, code, message, container):
    good = "00ff" if encoding == "hex" else "AP8="
    texts = [good, text, None, good] if container != "numpy U" else [good, text, good]
    build = {
        "list": list,
        "string": lambda t: pa.array(t, pa.string()),
        "binary": lambda t: pa.array([None if x is None else x.encode() for x in t], pa.binary()),
        "numpy U": lambda t: np.array(t, dtype="U"),
    }[container]
    buffer = to_buffer(build(texts), encoding)
    check_layout(buffer, len(texts))
    assert buffer.error[1] == code
    assert buffer.error_message(1) == message
    assert rows(buffer)[0] == rows(buffer)[-1] == b"\x00\xff"
    if None in texts:
        assert buffer.error[2] == ERR_MISSING and buffer.error_message(2) == "payload is missing"
    messages = buffer.error_messages()
    assert messages[0] is None and messages[-1] is None and messages[1] == message
    arrow = buffer.to_arrow()
    assert arrow.null_count == int(np.count_nonzero(buffer.error))
    assert arrow[1].as_py() is None and arrow[0].as_py() == b"\x00\xff"


def test_bytes_that_are_not_utf8_are_reported_per_byte():
    buffer = to_buffer([b"00\xff1", b"0g"], "hex")
    assert buffer.error_messages() == [
        "bad hex character byte 0xff at position 2",
        "bad hex character 'g' at position 1",
    ]


def test_nul_inside_a_str_payload_is_a_bad_character_not_a_row_split():
    # The list fast path joins rows with NUL; a NUL inside a payload must not shift rows.
    buffer = to_buffer(["01", "0\x002", "03"], "hex")
    assert rows(buffer) == [b"\x01", None, b"\x03"]
    assert buffer.error_message(1) == "bad hex character '\\x00' at position 1"


@pytest.mark.parametrize("encoding, encode", [("hex", bytes.hex), ("base64", lambda b: base64.b64encode(b).decode())])
def test_list_fast_path_in_steps_grows_its_output(monkeypatch, encoding, encode):
    monkeypatch.setattr(payload, "_JOIN_ROWS", 3)
    values = [bytes(range(i % 7)) * (1 + i // 4) for i in range(20)]  # later rows longer than the first step
    texts = [encode(v) for v in values]
    texts[13] = "!" + texts[13]
    buffer = to_buffer(texts, encoding)
    check_layout(buffer, 20)
    assert rows(buffer) == values[:13] + [None] + values[14:]
    assert buffer.error_message(13).endswith("character '!' at position 0")
    texts[17] = "0\x00"  # a NUL in a later step: the whole batch takes the general path
    assert rows(to_buffer(texts, encoding)) == values[:13] + [None] + values[14:17] + [None] + values[18:]


def test_non_ascii_text_in_a_list_still_decodes_the_other_rows():
    buffer = to_buffer(["01", "ü0", "03"], "hex")
    assert rows(buffer) == [b"\x01", None, b"\x03"]
    assert buffer.error_message(1) == "bad hex character 'ü' at position 0"


def test_items_that_are_not_text_are_row_errors():
    buffer = to_buffer(["01", 5, b"02", None, float("nan"), 2.5], "hex")
    check_layout(buffer, 6)
    assert rows(buffer) == [b"\x01", None, b"\x02", None, None, None]
    assert buffer.error.tolist() == [ERR_OK, ERR_WRONG_TYPE, ERR_OK, ERR_MISSING, ERR_MISSING, ERR_WRONG_TYPE]
    assert buffer.error_messages() == [
        None,
        "payload has the wrong type: int, expected str or bytes",
        None,
        "payload is missing",
        "payload is missing",
        "payload has the wrong type: float, expected str or bytes",
    ]
    assert_messages_match_codes(buffer)
    raw = to_buffer([b"\x01", 7], "raw")
    assert raw.error_messages() == [None, "payload has the wrong type: int, expected bytes"]


def test_messages_do_not_change_when_the_input_list_does():
    texts = ["0g", "01"]
    buffer = to_buffer(texts, "hex")
    texts[0] = "zz"
    assert buffer.error_message(0) == "bad hex character 'g' at position 1"


def test_good_batch_keeps_no_reference_to_its_input():
    assert to_buffer(["01", None])._source is None


def python_hex(text: str) -> bytes | None:
    """The oracle for hex: binascii, which is as strict as we are."""
    try:
        return binascii.unhexlify(text.encode("utf-8"))
    except binascii.Error:
        return None


def python_base64(text: str) -> bytes | None:
    """The oracle for base64: Python's strict mode, after our documented relaxations (URL-safe, no padding)."""
    standard = text.translate(str.maketrans("-_", "+/"))
    if "=" not in standard and len(standard) % 4:
        standard += "=" * (-len(standard) % 4)
    if len(standard) % 4 or len(standard) - len(standard.rstrip("=")) > 2:
        return None  # strict_mode takes surplus '=' after a whole group ("AAAA=", "AAAA===="); we do not
    try:
        return binascii.a2b_base64(standard.encode("utf-8"), strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def assert_agrees_with_oracle(texts: list, encoding: str, oracle) -> None:
    """Every input path (the list fast path, Arrow, the general list path) against the oracle."""
    plain = [t for t in texts if t is not None and t.isascii() and "\x00" not in t]  # the list fast path
    for batch in (texts, plain, pa.array(texts, pa.string())):
        buffer = to_buffer(batch, encoding)
        check_layout(buffer, len(batch))
        for i, text in enumerate(batch.to_pylist() if isinstance(batch, pa.Array) else batch):
            if text is None:
                assert buffer.error[i] == ERR_MISSING
            else:
                assert rows(buffer)[i] == oracle(text), text
        assert_messages_match_codes(buffer)


@FAST
@given(st.lists(st.one_of(st.none(), st.text(alphabet="0aF9gG =\x00é", max_size=9)), max_size=10))
def test_hex_agrees_with_binascii_on_arbitrary_text(texts):
    assert_agrees_with_oracle(texts, "hex", python_hex)


@FAST
@given(st.lists(st.one_of(st.none(), st.text(alphabet="QAg+/-_=!é ", max_size=10)), max_size=10))
def test_base64_agrees_with_python_strict_base64_on_arbitrary_text(texts):
    assert_agrees_with_oracle(texts, "base64", python_base64)


def assert_messages_match_codes(buffer: PayloadBuffer) -> None:
    """The message re-scanned in Python names the same reason the kernel's code does."""
    for row, message in enumerate(buffer.error_messages()):
        code = int(buffer.error[row])
        if code == ERR_OK:
            assert message is None
        else:
            assert message.startswith(ERROR_REASONS[code]), (code, message)


def test_python_base64_accepts_what_we_document():
    # Non-zero unused bits are ignored, as base64.b64decode does.
    assert rows(to_buffer(["QR==", "QR"], "base64")) == [b"A", b"A"] == [base64.b64decode("QR==")] * 2
    # Both alphabets, even mixed in one row.
    assert rows(to_buffer(["+/-_"], "base64")) == [base64.b64decode("+/+/")]


# --------------------------------------------------------------------------- arguments and Arrow


def test_arrow_nulls_with_slice_offset():
    array = pa.array(["ff", None, "0g", "01", None, "0203"], pa.string()).slice(1, 4)
    buffer = to_buffer(array, "hex")
    check_layout(buffer, 4)
    assert rows(buffer) == [None, None, b"\x01", None]
    assert buffer.error.tolist() == [ERR_MISSING, ERR_BAD_HEX_CHARACTER, ERR_OK, ERR_MISSING]
    assert buffer.error_message(1) == "bad hex character 'g' at position 1"


def test_chunked_array_with_empty_chunks_and_all_null_inputs():
    array = pa.chunked_array([pa.array(["01", None]), pa.array([], pa.string()), pa.array(["0g", "02"])])
    buffer = to_buffer(array, "hex")
    assert rows(buffer) == [b"\x01", None, None, b"\x02"]
    assert buffer.error_messages()[1:3] == ["payload is missing", "bad hex character 'g' at position 1"]
    for all_null in (pa.chunked_array([pa.nulls(2), pa.nulls(1)]), pa.nulls(3), pa.nulls(3, pa.string()), [None] * 3):
        buffer = to_buffer(all_null, "hex")
        check_layout(buffer, 3)
        assert buffer.error.tolist() == [ERR_MISSING] * 3


def test_numpy_unicode_array_outside_ascii_and_big_endian():
    buffer = to_buffer(np.array(["0a", "0\u20ac", "ff"]), "hex")
    assert rows(buffer) == [b"\x0a", None, b"\xff"]
    assert buffer.error_message(1) == "bad hex character '€' at position 1"
    assert rows(to_buffer(np.array(["0a", "ff"], dtype=">U2"), "hex")) == [b"\x0a", b"\xff"]
    assert rows(to_buffer(np.array(["QQ", "QUJD"])[::-1], "base64")) == [b"ABC", b"A"]  # strided


def test_to_arrow_shares_the_data_buffer():
    buffer = to_buffer(["0102", "zz", "03"], "hex")
    arrow = buffer.to_arrow()
    assert arrow.type == pa.binary()
    assert arrow.buffers()[2].address == buffer.data.ctypes.data
    assert arrow.to_pylist() == [b"\x01\x02", None, b"\x03"]
    arrow.validate(full=True)


def test_unknown_encoding_names_the_allowed_ones():
    with pytest.raises(ValueError, match="'hex', 'base64', 'raw'"):
        to_buffer(["00"], "base16")
    assert ENCODINGS == ("hex", "base64", "raw")


@pytest.mark.parametrize(
    "text_input",
    [
        ["00"],
        "00",
        pa.array(["00"]),
        pa.array(["00"], pa.large_string()),
        np.array(["00"]),
        [b"00", "00"],
        pa.array(["00"]).dictionary_encode(),
    ],
)
def test_raw_refuses_text(text_input):
    with pytest.raises(ValueError, match="raw.*text"):
        to_buffer(text_input, "raw")


def test_wrong_containers_raise_type_errors():
    with pytest.raises(TypeError):
        to_buffer(pa.array([1, 2]), "hex")
    with pytest.raises(TypeError):
        to_buffer(np.array([1, 2]), "hex")
    with pytest.raises(ValueError):
        to_buffer(np.array([["00"]]), "hex")


def test_payload_module_exports():
    assert {"to_buffer", "PayloadBuffer", "ENCODINGS"} <= set(payload.__all__)
