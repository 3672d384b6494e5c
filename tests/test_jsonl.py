"""Bad input and streaming for the JSON Lines reader (decoder.ingest): every line is accounted for
(uplink rows + bad lines + skipped == values in), line numbers are exact on
the fast (Arrow) and the careful (orjson) path alike, and files are read
chunk by chunk."""

from __future__ import annotations

import collections
import gzip
import io
import json
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest

from decoder.errors import InputError, InputTruncated
from decoder.ingest import Reader, normalize_values, read_chunks

ROOT = Path(__file__).resolve().parent.parent
GENERATE = ROOT / "samples" / "generate.py"


def _generate(
    tmp_path,
    n,
    seed=1,
    mix="firefly=0.4,helium_event=0.2,helium_body=0.2,helium_integration=0.1,helium_downlink=0.1",
    name="g.jsonl",
) -> Path:
    out = tmp_path / name
    subprocess.run(
        [
            sys.executable,
            str(GENERATE),
            "-n",
            str(n),
            "--seed",
            str(seed),
            "--mix",
            mix,
            "--devices",
            "50",
            "-o",
            str(out),
        ],
        check=True,
    )
    return out


def _read_all(source, **kw):
    chunks = list(read_chunks(source, **kw))
    uplinks = pa.concat_tables([c.uplinks for c in chunks]) if chunks else None
    bad = [b for c in chunks for b in c.bad_lines]
    skipped = sum((c.skipped for c in chunks), collections.Counter())
    return chunks, uplinks, bad, skipped


def _slow_reference(lines: list[bytes]):
    """Every line on its own: one scan per line, the chunks put together (the reader's
    result must not depend on how lines are grouped into chunks or parts)."""
    reader = Reader()
    chunks = [reader.process(bytearray(text + b"\n"), k, parallel=False) for k, text in enumerate(lines, 1)]
    ups = [c.uplinks for c in chunks]
    recs, offset = [], 0
    for c in chunks:
        r = c.receptions
        if r.num_rows:
            r = r.set_column(0, "packet_index", pa.compute.add(r.column(0), offset))
        recs.append(r)
        offset += c.uplinks.num_rows
    return types.SimpleNamespace(
        uplinks=pa.concat_tables(ups),
        receptions=pa.concat_tables(recs),
        bad=[b for c in chunks for b in c.bad_lines],
        skipped=sum((c.skipped for c in chunks), collections.Counter()),
    )


def _values_in(lines: list[bytes]) -> int:
    """JSON values the lines hold: array items and envelope packets count one each."""
    n = 0
    for text in lines:
        if not text.strip():
            continue
        try:
            v = orjson.loads(text)
        except orjson.JSONDecodeError:
            n += 1
            continue
        for item in (v if isinstance(v, list) else [v]) or [None]:
            if isinstance(item, dict) and isinstance(item.get("packets"), list):
                n += max(len(item["packets"]), 1)
            else:
                n += 1
    return n


FF = {
    "device_eui": "70b3d57ed0000001",
    "fcnt": 7,
    "port": 2,
    "mtype": "unconfirmed_data_up",
    "payload": "01020304",
    "freq": 868.1,
    "spreading_factor": 7,
    "bandwidth": 125,
    "codr": "4/5",
    "received_at": "2024-01-02T03:04:05",
    "uid": "u1",
    "gwrx": [{"gweui": "GW1", "rssi": -80, "lsnr": 7.5, "time": "2024-01-02T03:04:05.5Z", "tmst": 1}],
}
HB = {
    "dev_eui": "70B3D57ED0000002",
    "devaddr": "26000002",
    "fcnt": 9,
    "port": 1,
    "payload": "AQID",
    "reported_at": 1700000000000,
    "id": "dev-2",
    "hotspots": [
        {
            "id": "h1",
            "name": "n1",
            "rssi": -90.0,
            "snr": 5.5,
            "frequency": 904.7000122070313,
            "spreading": "SF9BW125",
            "channel": 3,
            "lat": 1.5,
            "long": 2.5,
            "reported_at": 1700000000001,
        }
    ],
}
HE = {
    "category": "uplink",
    "sub_category": "uplink_unconfirmed",
    "device_id": "dev-3",
    "id": "ev-3",
    "reported_at": "1700000000002",
    "data": {
        "devaddr": "26000003",
        "fcnt": 11,
        "port": 1,
        "payload": "AQID",
        "hotspot": {
            "id": "h2",
            "name": "n2",
            "rssi": -70.0,
            "snr": 1.2000000476837158,
            "frequency": 903.9000244140625,
            "spreading": "SF7BW125",
            "channel": 0,
        },
    },
}


def _d(o) -> str:
    return json.dumps(o, separators=(",", ":"))


BAD_LINES = [
    _d(FF),  # 1 ok
    "",  # 2 blank
    '{"device_eui": "70B3D57ED0000001", "payload": ',  # 3 malformed
    _d({"hello": "world"}),  # 4 unknown shape
    _d({k: v for k, v in FF.items() if k != "device_eui"}),  # 5 missing device_eui
    _d(dict(FF, device_eui=12)),  # 6 wrong-typed device_eui
    _d(dict(FF, payload="ABC")),  # 7 odd hex: an uplink row with an error
    _d(dict(HB, payload="QQ=")),  # 8 bad base64: an uplink row with an error
    _d([HE, 5, dict(HE, category="downlink", sub_category="downlink_ack")]),  # 9 array: uplink, bad, skipped
    _d(dict(HE, category="join_request", sub_category="join_request")),  # 10 skipped
    "   \t",  # 11 blank
    "[]",  # 12 empty array: counted as skipped
    _d(HB),  # 13 ok
    _d(dict(FF, fcnt="12")),  # 14 a number printed as text: read, with a row warning
    "42",  # 15 not an object
    _d(FF) + " " + _d(FF),  # 16 two values on one line
    _d({k: v for k, v in HB.items() if k != "payload"}),  # 17 payload missing: row error
    _d({"packets": [FF, {"x": 1}], "more": False}),  # 18 envelope: uplink + unknown packet
    _d(FF).replace("u1", "u\xff"),  # 19 bad UTF-8 (written as the byte 0xFF)
    _d(HE),  # 20 ok
]


def _bad_bytes() -> list[bytes]:
    return [line.encode("latin-1") for line in BAD_LINES]  # latin-1: "\xff" becomes the byte 0xFF


@pytest.fixture()
def bad_file(tmp_path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(_bad_bytes()) + b"\n")
    return path


def test_bad_lines_reported_with_numbers(bad_file):
    chunks, up, bad, skipped = _read_all(bad_file)
    bad_by_line = dict(bad)
    assert sorted(bad_by_line) == [3, 4, 5, 6, 9, 15, 16, 18, 19]
    assert bad_by_line[3].startswith("malformed JSON")
    assert bad_by_line[4].startswith("unknown shape") and "hello" in bad_by_line[4]
    assert bad_by_line[5] == "firefly packet without device_eui"
    assert bad_by_line[6] == "firefly packet without device_eui (device_eui: expected a string, got number)"
    assert bad_by_line[9] == "item 1: expected a JSON object, got number"
    assert bad_by_line[15] == "expected a JSON object, got number"
    assert bad_by_line[16].startswith("malformed JSON")
    assert bad_by_line[18].startswith("unknown shape")
    assert bad_by_line[19].startswith("malformed JSON")
    assert skipped == {"helium:downlink": 1, "helium:join_request": 1, "empty_array": 1}
    rows = {r["line"]: r for r in up.to_pylist()}
    assert sorted(rows) == [1, 7, 8, 9, 13, 14, 17, 18, 20]
    assert rows[7]["error"] == "odd hex length (3 characters)" and rows[7]["payload"] is None
    assert rows[8]["error"].startswith("bad base64 padding") and rows[8]["payload"] is None
    assert rows[17]["error"] == "payload is missing"
    assert rows[14]["fcnt"] == 12 and rows[14]["error"] is None
    assert rows[14]["warnings"] == 'fcnt: "12" read as 12'
    assert [r for r in rows if rows[r]["warnings"]] == [14]
    assert rows[1]["dev_eui"] == "70B3D57ED0000001"
    assert [r["line"] for r in up.to_pylist()] == sorted(rows)  # input order
    lines = _bad_bytes()
    assert (
        up.num_rows + len(bad) + sum(skipped.values()) == _values_in(lines) == 21
    )  # 18 lines; the array holds 3, the envelope 2
    (chunk,) = chunks
    assert chunk.lines == 18 and chunk.first_line == 1  # 20 lines, 2 blank


def test_bad_lines_same_on_every_path(bad_file, tmp_path):
    lines = _bad_bytes()
    ref = _slow_reference(lines)
    for chunk_bytes in (1, 64, 300, 1 << 20):
        chunks, up, bad, skipped = _read_all(bad_file, chunk_bytes=chunk_bytes)
        assert up.equals(ref.uplinks), chunk_bytes
        assert sorted(bad) == sorted(ref.bad), chunk_bytes
        assert skipped == ref.skipped, chunk_bytes
        assert sum(c.lines for c in chunks) == 18
    # the same lines as in-memory text items (Engine.decode_packets)
    mem = normalize_values([b.decode("latin-1") if b"\xff" not in b else b for b in lines])
    assert sorted(mem.bad_lines) == sorted(ref.bad)
    assert mem.uplinks.column("line").to_pylist() == ref.uplinks.column("line").to_pylist()


def test_a_bad_line_in_a_big_chunk_is_found(tmp_path):
    # The fast path rejects the chunk; the careful path finds the line (Arrow
    # reports the row) and still reads everything else through Arrow.
    src = _generate(tmp_path, 3000, seed=5)
    lines = src.read_bytes().splitlines()
    for k in (0, 1234, 2999):
        lines[k] = lines[k][:-5]  # truncate: malformed
    lines[1500] = lines[1500].replace(b'"fcnt":', b'"fcnt":1.5,"x":', 1)  # a float where an int goes
    lines.insert(2000, b"")
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks, up, bad, skipped = _read_all(path)
    ref = _slow_reference(lines)
    assert [b[0] for b in sorted(bad)] == [1, 1235, 3001]
    assert up.equals(ref.uplinks)
    assert skipped == ref.skipped
    assert up.num_rows + len(bad) + sum(skipped.values()) == _values_in(lines)
    row = up.filter(pa.compute.equal(up.column("line"), 1501)).to_pylist()[0]
    assert row["fcnt"] is None  # 1.5 is not an integer: read as null, the row still decodes


def test_generated_file_fast_path_equals_slow_path(tmp_path):
    path = _generate(tmp_path, 2000, seed=9)
    lines = path.read_bytes().splitlines()
    ref = _slow_reference(lines)
    chunks, up, bad, skipped = _read_all(path, chunk_bytes=200_000)
    assert len(chunks) > 3
    assert up.equals(ref.uplinks)
    assert bad == [] and skipped == ref.skipped
    assert up.num_rows + sum(skipped.values()) == 2000


def test_empty_inputs(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    assert list(read_chunks(empty)) == []
    blank = tmp_path / "b.jsonl"
    blank.write_bytes(b"\n\n  \r\n\t\n")
    chunks, up, bad, skipped = _read_all(blank)
    assert sum(c.uplinks.num_rows for c in chunks) == 0 and bad == [] and not skipped
    assert sum(c.lines for c in chunks) == 0
    assert normalize_values([]).uplinks.num_rows == 0
    assert normalize_values(["", "  "]).lines == 0


def test_line_numbers_with_crlf_blank_lines_and_no_final_newline(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\r\n" + _d(FF).encode() + b"\r\n\r\n  " + _d(HB).encode() + b"\r\n" + _d(HE).encode())
    chunks, up, bad, skipped = _read_all(path)
    assert up.column("line").to_pylist() == [2, 4, 5]
    assert bad == []


def test_long_line_and_tiny_chunks(tmp_path):
    big = dict(FF, gwrx=FF["gwrx"] * 2000)  # one line far longer than a chunk
    path = tmp_path / "l.jsonl"
    path.write_text(_d(HB) + "\n" + _d(big) + "\n" + _d(HE) + "\n")
    chunks, up, bad, skipped = _read_all(path, chunk_bytes=1000)
    assert up.column("line").to_pylist() == [1, 2, 3]
    assert up.column("gateway_count").to_pylist() == [1, 2000, 1]
    assert [c.first_line for c in chunks if c.lines] == [1, 2]  # the read ending line 2 also held line 3


def test_a_line_longer_than_a_large_buffer(tmp_path):
    """Buffers of 2 MB and more are mapped memory in large pages, not bytearrays: a line longer
    than one (over 3 MB here) is read whole into a bigger one, and every line keeps its number."""
    big = dict(FF, gwrx=FF["gwrx"] * 40000)
    line = _d(big)
    assert len(line) > 3 << 20
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join([_d(HB)] * 3000 + [line] + [_d(HE)] * 3000) + "\n")
    chunks, up, bad, skipped = _read_all(path, chunk_bytes=2 << 20)
    assert bad == [] and up.num_rows == 6001
    assert up.column("line").to_pylist() == list(range(1, 6002))
    assert up.column("gateway_count").to_pylist()[3000] == 40000
    assert len(chunks) >= 2


def test_a_file_mapped_in_chunks_reads_as_a_stream_of_it_does_and_stays_unchanged(tmp_path, monkeypatch):
    """A regular file's chunks are mapped, not copied, and padded where they end: every row,
    bad line and line number is the one a stream of the same bytes gives, and the padding never
    reaches the file (nor the next chunk, which begins in the same page)."""
    from decoder.ingest import source

    lines = [_d(HB), _d(FF), _d(HE)] * 3000
    for k in range(1, len(lines), 997):
        lines[k] = lines[k][: len(lines[k]) // 2]  # truncated
    lines[4000] = _d(dict(FF, gwrx=FF["gwrx"] * 3000))  # longer than a chunk
    data = "\n".join(lines).encode()  # and no final newline
    path = tmp_path / "m.jsonl"
    path.write_bytes(data)
    mapped = []
    blocks = source._MappedFile.blocks

    def counted(self, *a):
        for block in blocks(self, *a):
            mapped.append(block.n)
            yield block

    monkeypatch.setattr(source._MappedFile, "blocks", counted)
    for chunk_bytes in (4096, 100_000):
        mapped.clear()
        _, up, bad, skipped = _read_all(path, chunk_bytes=chunk_bytes)
        assert len(mapped) >= 5 and sum(mapped) < len(data)  # mapped chunks, then the read tail
        _, up_read, bad_read, skipped_read = _read_all(io.BytesIO(data), chunk_bytes=chunk_bytes)
        assert up.equals(up_read)
        assert bad == bad_read and len(bad) == 10
        assert skipped == skipped_read
        assert up.num_rows + len(bad) + sum(skipped.values()) == len(lines)
    assert path.read_bytes() == data


def test_the_first_chunk_is_small_so_the_first_rows_come_sooner(tmp_path):
    """An eighth of a chunk (at least 256 KB) first: the consumer waits for it while every
    kernel loads. A first line longer than that is still read whole."""
    from decoder.ingest.source import MIN_FIRST_CHUNK

    path = _generate(tmp_path, 12000, seed=5)
    size = path.stat().st_size
    assert size > 3 * MIN_FIRST_CHUNK
    chunks = list(read_chunks(path, chunk_bytes=size // 2))
    assert len(chunks) == 3 and chunks[0].lines < chunks[1].lines / 2
    assert chunks[1].first_line == chunks[0].first_line + chunks[0].total_lines
    whole = Reader().process(path.read_bytes(), 1, parallel=False)
    assert pa.concat_tables([c.uplinks for c in chunks]).equals(whole.uplinks)

    big = dict(FF, gwrx=FF["gwrx"] * 4000)  # a first line longer than the first chunk
    long_first = tmp_path / "long.jsonl"
    long_first.write_text(_d(big) + "\n" + path.read_text())
    assert len(_d(big)) > MIN_FIRST_CHUNK
    chunks = list(read_chunks(long_first, chunk_bytes=size // 2))
    assert chunks[0].uplinks.column("gateway_count").to_pylist()[0] == 4000
    assert sum(c.uplinks.num_rows for c in chunks) == whole.uplinks.num_rows + 1
    assert all(not c.bad_lines for c in chunks)


def test_gzip_by_suffix_and_by_magic(tmp_path, bad_file):
    data = bad_file.read_bytes()
    gz = tmp_path / "p.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    other = tmp_path / "p.data"
    other.write_bytes(gzip.compress(data))
    _, ref, ref_bad, _ = _read_all(bad_file)
    for path in (gz, other):
        _, up, bad, _ = _read_all(path, chunk_bytes=500)
        assert up.equals(ref) and sorted(bad) == sorted(ref_bad)


def _readable_prefix(blob: bytes) -> bytes:
    """What zlib can inflate of a cut gzip stream."""
    return zlib.decompressobj(wbits=31).decompress(blob)


def test_truncated_gzip_delivers_every_whole_line_then_names_file_and_line(tmp_path):
    path = _generate(tmp_path, 400, seed=3)
    gz = tmp_path / "t.jsonl.gz"
    blob = gzip.compress(path.read_bytes())
    gz.write_bytes(blob[: len(blob) * 2 // 3])
    whole_lines = _readable_prefix(blob[: len(blob) * 2 // 3]).count(b"\n")
    assert 0 < whole_lines < 400
    got = []
    with pytest.raises(InputTruncated) as e:
        for chunk in read_chunks(gz, chunk_bytes=4096):
            got.append(chunk)
    msg = str(e.value)
    assert str(gz) in msg and "truncated gzip" in msg and f"after line {whole_lines}:" in msg
    assert e.value.line == whole_lines
    assert sum(c.total_lines for c in got) == whole_lines  # every whole line was handed on
    _, ref, _, _ = _read_all(path)
    lines = pa.concat_tables([c.uplinks for c in got]).column("line").to_pylist()
    assert lines == [x for x in ref.column("line").to_pylist() if x <= whole_lines]


def test_corrupt_gzip_names_file(tmp_path):
    path = _generate(tmp_path, 400, seed=3)
    blob = bytearray(gzip.compress(path.read_bytes()))
    for k in range(len(blob) // 2, len(blob) // 2 + 64):
        blob[k] ^= 0x5A
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(bytes(blob))
    with pytest.raises(InputError) as e:
        for _ in read_chunks(gz, chunk_bytes=4096):
            pass
    assert str(gz) in str(e.value) and "gzip" in str(e.value)
    not_gz = tmp_path / "n.jsonl.gz"
    not_gz.write_bytes(b"\x1f\x8b this is not gzip")
    with pytest.raises(InputError):
        list(read_chunks(not_gz))


def test_missing_file():
    with pytest.raises(InputError, match="cannot open"):
        list(read_chunks("/nonexistent/packets.jsonl"))


def test_binary_file_objects_and_stdin(bad_file, monkeypatch):
    _, ref, ref_bad, _ = _read_all(bad_file)
    data = bad_file.read_bytes()
    _, up, bad, _ = _read_all(io.BytesIO(data), chunk_bytes=100)
    assert up.equals(ref) and sorted(bad) == sorted(ref_bad)
    _, up, _, _ = _read_all(io.BytesIO(gzip.compress(data)))
    assert up.equals(ref)

    class Stdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr(sys, "stdin", Stdin)
    _, up, _, _ = _read_all("-")
    assert up.equals(ref)

    class Reads:  # only read(n): no peek, not an io class
        def __init__(self, b):
            self.f = io.BytesIO(b)

        def read(self, n=-1):
            return self.f.read(n)

    _, up, _, _ = _read_all(Reads(data), chunk_bytes=77)
    assert up.equals(ref)
    with pytest.raises(TypeError):
        list(read_chunks(io.StringIO("{}\n")))


def test_streaming_is_lazy(tmp_path):
    path = _generate(tmp_path, 3000, seed=2)
    size = path.stat().st_size

    class Counting(io.FileIO):
        read_bytes = 0

        def readinto(self, b):
            n = super().readinto(b)
            Counting.read_bytes += n or 0
            return n

    with Counting(path, "rb") as f:
        it = read_chunks(io.BufferedReader(f, buffer_size=4096), chunk_bytes=64 << 10)
        first = next(it)
        assert first.uplinks.num_rows > 0
        assert Counting.read_bytes < size / 4  # one chunk read, not the file
        rest = list(it)
    assert len(rest) > 5
    total = first.uplinks.num_rows + sum(c.uplinks.num_rows for c in rest)
    skipped = sum(sum(c.skipped.values()) for c in [first] + rest)
    assert total + skipped == 3000
    lines = [first.first_line] + [c.first_line for c in rest]
    assert lines == sorted(lines) and lines[0] == 1


def test_values_in_memory():
    chunk = normalize_values([FF, _d(HB), _d(HE).encode(), [HE], "not json", 7], first_line=10)
    assert chunk.uplinks.column("line").to_pylist() == [10, 11, 12, 13]
    assert chunk.bad_lines == [(14, chunk.bad_lines[0][1]), (15, "expected a JSON object, got number")]
    assert chunk.bad_lines[0][1].startswith("malformed JSON")
    # text items without newlines take the Arrow path
    fast = normalize_values([_d(FF), _d(HB), "", _d(HE)])
    assert fast.uplinks.column("line").to_pylist() == [1, 2, 4]
    assert fast.lines == 3


def test_mixed_chunks_grouped_by_shape_keep_input_order(tmp_path):
    # Big enough chunks that each shape is parsed on its own (first-key groups),
    # then put back in line order; compared with the line-by-line path.
    path = _generate(tmp_path, 3000, seed=13)
    lines = path.read_bytes().splitlines()
    lines[10] = b'{"category":"uplink","sub_category":"uplink_unconfirmed","reported_at":"oops"'  # malformed
    lines.insert(20, b"   ")
    path.write_bytes(b"\n".join(lines) + b"\n")
    ref = _slow_reference(lines)
    chunks, up, bad, skipped = _read_all(path, chunk_bytes=1 << 20)
    assert up.equals(ref.uplinks)
    assert bad == sorted(ref.bad) and [b[0] for b in bad] == [11]
    assert skipped == ref.skipped
    rec = pa.concat_tables([c.receptions for c in chunks])
    assert rec.num_rows == ref.receptions.num_rows

    # every reception still points at its uplink: same gateway sets per packet
    def by_packet(parts):
        out = collections.defaultdict(set)
        for table, offset in parts:
            for r in table.to_pylist():
                out[r["packet_index"] + offset].add((r["gateway_id"], r["rssi"], r["snr"]))
        return out

    parts, k = [], 0
    for c in chunks:
        parts.append((c.receptions, k))
        k += c.uplinks.num_rows
    assert by_packet(parts) == by_packet([(ref.receptions, 0)])


def test_generator_devices_map_and_payload_sizes(tmp_path):
    out = tmp_path / "g.jsonl"
    devices = tmp_path / "devices.json"
    ids = tmp_path / "ids.json"
    subprocess.run(
        [
            sys.executable,
            str(GENERATE),
            "-n",
            "600",
            "--seed",
            "4",
            "--devices",
            "30",
            "--group",
            "Test Device Class:9:2",
            "--group",
            "Other:12:1",
            "--mix",
            "firefly=1,helium_event=1,helium_body=1,helium_integration=1",
            "-o",
            str(out),
            "--devices-out",
            str(devices),
            "--device-ids-out",
            str(ids),
        ],
        check=True,
    )
    eui_map = json.loads(devices.read_text())
    id_map = json.loads(ids.read_text())
    assert set(eui_map.values()) == {"Test Device Class", "Other"} and len(eui_map) == 30
    _, up, bad, skipped = _read_all(out)
    assert up.num_rows == 600 and not bad and not skipped
    for row in up.select(["dev_eui", "device_id", "payload"]).to_pylist():
        cls = eui_map[row["dev_eui"]] if row["dev_eui"] else id_map[row["device_id"]]
        assert len(row["payload"]) == (9 if cls == "Test Device Class" else 12)
    # deterministic: the same seed writes the same bytes
    again = tmp_path / "g2.jsonl"
    subprocess.run(
        [
            sys.executable,
            str(GENERATE),
            "-n",
            "600",
            "--seed",
            "4",
            "--devices",
            "30",
            "--group",
            "Test Device Class:9:2",
            "--group",
            "Other:12:1",
            "--mix",
            "firefly=1,helium_event=1,helium_body=1,helium_integration=1",
            "-o",
            str(again),
        ],
        check=True,
    )
    assert again.read_bytes() == out.read_bytes()


def test_array_lines_of_events(tmp_path):
    # The Helium events endpoint returns a JSON array: lines holding arrays are
    # read by orjson and their objects written back, one per line, for Arrow.
    src = _generate(tmp_path, 400, seed=21, mix="helium_event=3,helium_downlink=1,helium_integration=1")
    objs = src.read_bytes().splitlines()
    lines = [b"[" + b",".join(objs[i : i + 20]) + b"]" for i in range(0, len(objs), 20)]
    lines[3] = lines[3][:-1] + b',{"category":"uplink","sub_category":"uplink_confirmed","data":5}]'  # a bad item
    lines.insert(5, b"[]")
    path = tmp_path / "arrays.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks, up, bad, skipped = _read_all(path)
    ref = _slow_reference(lines)
    assert up.equals(ref.uplinks)
    assert (
        sorted(bad)
        == sorted(ref.bad)
        == [(4, "helium uplink event without data (data: expected an object, got number)")]
    )
    assert skipped == ref.skipped and skipped["empty_array"] == 1
    assert up.num_rows + len(bad) + sum(skipped.values()) == _values_in(lines) == 402
    assert up.column("line").to_pylist() == sorted(up.column("line").to_pylist())


def test_values_that_are_not_one_line():
    multi = json.dumps(FF, indent=2)  # a text with newlines: read whole
    odd = dict(HB, payload=b"\x01\x02")  # not JSON (bytes): judged as is, payload is not text
    chunk = normalize_values([multi, odd, "{\n oops", _d(HE)], first_line=5)
    assert chunk.uplinks.column("line").to_pylist() == [5, 6, 8]
    assert chunk.uplinks.column("error").to_pylist() == [None, "payload is not text", None]
    assert [b[0] for b in chunk.bad_lines] == [7] and chunk.bad_lines[0][1].startswith("malformed JSON")
    assert chunk.lines == 4


def test_other_shape_after_a_lean_schema_was_learned(tmp_path):
    # After many Firefly-only chunks the reader parses with Firefly fields only;
    # a Helium line then reads as "no known shape", is judged on its text, and
    # the chunk is parsed again with every field.
    src = _generate(tmp_path, 900, seed=8, mix="firefly=1")
    lines = src.read_bytes().splitlines()
    lines[700:700] = [
        _d(HB).encode(),
        _d(HE).encode(),
        _d({"packets": [FF], "more": False}).encode(),
        _d(dict(HE, category="downlink", sub_category="downlink_ack")).encode(),
    ]
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks, up, bad, skipped = _read_all(path, chunk_bytes=64 << 10)
    ref = _slow_reference(lines)
    assert up.equals(ref.uplinks) and bad == [] and skipped == {"helium:downlink": 1}
    assert up.num_rows == 903


def test_a_big_chunk_cut_into_parts_equals_one_scan(tmp_path):
    # A chunk of 2 MB or more is cut into one part per core, scanned in threads and put together.
    mix = "firefly=0.3,helium_event=0.2,helium_body=0.1,helium_integration=0.1,tts=0.15,chirpstack=0.15"
    lines = _generate(tmp_path, 6000, seed=17, mix=mix).read_bytes().splitlines()
    lines[5] = lines[5][:-3]  # malformed
    lines[4000] = b"[" + lines[4001] + b"," + lines[4002] + b"]"
    lines[3000] = b""
    lines[5500] = lines[5500].replace(b":", b"", 1)  # malformed, in the second part
    data = b"\n".join(lines) + b"\n"
    assert len(data) > 2 << 20
    reader = Reader()
    one = reader.process(bytearray(data), 101, parallel=False)
    parts = reader.process(bytearray(data), 101, parallel=True)
    assert one.uplinks.equals(parts.uplinks) and one.receptions.equals(parts.receptions)
    assert one.bad_lines == parts.bad_lines and [line for line, _ in parts.bad_lines] == [106, 5601]
    assert (one.skipped, one.lines, one.total_lines) == (parts.skipped, parts.lines, parts.total_lines)
    assert one.uplinks.num_rows == 6000 - 2 - 1 + 1 and one.lines == 5999  # 2 malformed, blank, array of 2
    assert parts.uplinks.column("line")[-1].as_py() == 6100 and parts.first_line == 101


def test_a_big_chunk_of_lines_too_long_to_cut_is_scanned_whole(tmp_path):
    # Where no line starts after the middle, there is one part: the same chunk as one scan.
    lines = _generate(tmp_path, 20, seed=18).read_bytes().splitlines()
    data = b"\n".join(lines[:10]) + b"\n" + b'{"uid": "' + b"a" * (3 << 20) + b'"\n' + lines[10]
    one = Reader().process(bytearray(data), 1, parallel=False)
    parts = Reader().process(bytearray(data), 1, parallel=True)
    assert one.uplinks.equals(parts.uplinks) and one.bad_lines == parts.bad_lines
    assert [line for line, _ in parts.bad_lines] == [11] and parts.lines == one.lines == 12


def test_chunks_read_without_receptions_say_so_and_keep_the_rest(tmp_path):
    # The engine reads this way: the chunks waiting for it then hold no gateway columns.
    path = _generate(tmp_path, 6000, seed=19)
    assert path.stat().st_size > 2 << 20  # big enough to be cut into parts below
    with_receptions = list(read_chunks(path, chunk_bytes=1 << 19))
    without = list(read_chunks(path, chunk_bytes=1 << 19, receptions=False))
    assert len(without) == len(with_receptions) > 1
    for a, b in zip(with_receptions, without):
        assert a.uplinks.equals(b.uplinks) and a.bad_lines == b.bad_lines and a.skipped == b.skipped
        assert a.receptions.num_rows >= a.uplinks.num_rows
        with pytest.raises(ValueError, match="without its receptions"):
            _ = b.receptions
    big = Reader(receptions=False).process(bytearray(path.read_bytes()), 1, parallel=True)  # in parts
    assert big.uplinks.num_rows == sum(c.uplinks.num_rows for c in without)
    with pytest.raises(ValueError, match="without its receptions"):
        _ = big.receptions


def test_a_chunk_stream_reads_ahead_before_it_is_asked_and_gives_what_read_chunks_gives(tmp_path):
    # The command starts reading its first input this way while the classes load.
    from decoder.ingest import ChunkStream

    path = _generate(tmp_path, 3000, seed=23)
    expected = list(read_chunks(path, chunk_bytes=64 << 10))
    source = open(path, "rb")
    stream = ChunkStream(source, chunk_bytes=64 << 10)
    deadline = time.monotonic() + 20
    while source.tell() == 0:  # read, though nothing asked for a chunk yet
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with stream:
        got = list(stream)
    assert len(got) == len(expected) > 2
    for a, b in zip(expected, got):
        assert a.uplinks.equals(b.uplinks) and a.bad_lines == b.bad_lines and a.first_line == b.first_line
    assert list(stream) == []  # ended: stays ended
    source.close()


def test_a_chunk_stream_closed_early_stops_reading_and_closes_its_file(tmp_path):
    from decoder.ingest import ChunkStream

    path = _generate(tmp_path, 3000, seed=29)
    stream = ChunkStream(path, chunk_bytes=16 << 10)
    first = next(stream)
    assert first.first_line == 1
    stream.close()
    stream.close()  # twice is harmless
    assert list(stream) == []
    assert all(f.closed for f in stream._closers)
    stream._producer.join(timeout=30)  # stopped: it ends within moments (a busy machine may take a while)
    assert not stream._producer.is_alive()


def test_a_chunk_waiting_to_be_written_leaves_its_scans_memory_to_the_next_scan(tmp_path):
    """The columns of a chunk own their bytes: while one chunk waits for its writer, the same
    thread's next scan reuses the memory of the scan that made it (text columns handed on as
    views of that memory held it: 90 MB more at peak on a million Firefly packets)."""
    import weakref

    from decoder.ingest import scan

    lines = _generate(tmp_path, 300, mix="firefly=1").read_bytes().splitlines(keepends=True)
    chunk = b"".join(lines)
    reader = Reader(receptions=False)
    for _ in range(3):  # the plan learns its output sizes from what it scans: the same chunk, alike
        reader.process(chunk, 1, parallel=False)
    waiting = reader.process(chunk, 1, parallel=False)
    released = {name: weakref.ref(a) for name, a in scan._spare.arrays.items()}  # refer to nothing
    following = reader.process(chunk, 301, parallel=False)
    assert {name for name, a in scan._spare.arrays.items() if a is released[name]()} == set(released)
    assert waiting.uplinks.num_rows == following.uplinks.num_rows == 300
    assert waiting.uplinks.column("packet_id").to_pylist() == [json.loads(x)["uid"] for x in lines]
