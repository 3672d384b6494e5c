"""``ports`` of DeviceClass.decode are checked like payloads: a bad value fails its row with
the reason, never raises or truncates; a list of the wrong length is a ValueError."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import decoder

USES_PORT = {
    "name": "Port user",
    "script": {
        "parseElements": [{"type": "int", "target": "a", "bits": "8"}],
        "calculateElements": [{"target": "p", "formula": "port"}],
    },
}
NO_PORT = {"name": "Port blind", "script": {"parseElements": [{"type": "int", "target": "a", "bits": "8"}]}}


@pytest.fixture(scope="module", params=[USES_PORT, NO_PORT], ids=["uses port", "ignores port"])
def dc(request):
    return decoder.compile(request.param)


@pytest.mark.parametrize(
    "bad",
    [2**70, 3.7, -1, 256, 70000, True, "2", b"\x02", float("inf"), [2]],
    ids=repr,
)
def test_a_bad_port_is_a_row_error_naming_the_value(dc, bad):
    batch = dc.decode(["01", "02", "03"], ports=[5, bad, None])
    assert batch.stats["decoded"] == 2 and batch.stats["errors"] == 1
    [error] = batch.errors
    assert error["row"] == 1 and error["error"] == f"bad port {bad!r}: an FPort is an integer 0-255"
    rows = batch.to_pylist()
    assert rows[0]["a"] == 1 and rows[1]["a"] is None and rows[2]["a"] == 3
    if "p" in rows[0]:
        assert rows[0]["p"] == 5.0 and rows[2]["p"] is None  # None: unknown, null in formulas


@pytest.mark.parametrize(
    "ports",
    [
        np.array([5.0, 3.7, np.nan]),
        pa.array([5, 300, None]),
        pa.array([5.0, -2.0, None]),
        np.array([5, -1, 9], np.int64),
    ],
    ids=["numpy float", "arrow int", "arrow float", "numpy int"],
)
def test_arrays_of_ports_are_checked_the_same_way(dc, ports):
    batch = dc.decode(["01", "02", "03"], ports=ports)
    assert [e["row"] for e in batch.errors] == [1]
    assert batch.errors[0]["error"].startswith("bad port ")
    assert batch.stats["decoded"] == 2


def test_integral_floats_and_every_port_0_to_255_are_ports():
    dc = decoder.compile(USES_PORT)
    values = list(range(256))
    batch = dc.decode([f"{v:02X}" for v in values], ports=[float(v) for v in values])
    assert batch.errors == [] and [r["p"] for r in batch.to_pylist()] == [float(v) for v in values]
    assert [r["p"] for r in dc.decode(["01", "02"], ports=7).to_pylist()] == [7.0, 7.0]


def test_a_bad_payload_is_named_before_a_bad_port(dc):
    batch = dc.decode(["0G", "01"], ports=[999, 999])
    assert [e["error"] for e in batch.errors] == [
        "bad hex character 'G' at position 1",
        "bad port 999: an FPort is an integer 0-255",
    ]


@pytest.mark.parametrize("ports", [[1], [1, 2, 3], np.array([1]), pa.array([1, 2, 3])], ids=repr)
def test_ports_of_the_wrong_length_is_a_value_error_naming_both_lengths(dc, ports):
    with pytest.raises(ValueError, match=rf"ports has {len(ports)} entries for 2 payloads"):
        dc.decode(["01", "02"], ports=ports)


def test_long_lists_check_ports_on_the_overlapped_path():
    """Lists of 65,536 and more convert and decode chunk by chunk; bad ports still fail their rows."""
    dc = decoder.compile(USES_PORT)
    n = 70_000
    ports = [2] * n
    ports[3] = 3.5
    ports[n - 1] = -7
    batch = dc.decode(["01"] * n, ports=ports)
    assert [e["row"] for e in batch.errors] == [3, n - 1]
    assert batch.stats["decoded"] == n - 2
