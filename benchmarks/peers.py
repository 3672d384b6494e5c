"""Peer implementations of the Firefly "Test Device Class" decoder.

The class (from the Firefly API reference, "Show Device Classes"):

    battery        uint8
    gps.latitude   int24, signed
    gps.longitude  int24, signed
    gps.altitude   int16, signed          (big-endian bit order, 9 bytes)

    batteryLevel  = battery != 0 ? (battery - 1) / 253 : null
    gps.latitude  = gps.latitude / (1 << 23) * 90
    gps.longitude = gps.longitude / (1 << 23) * 180

Every peer here computes exactly these values, in the same order of floating
point operations, so results are bit-identical (tests/test_peers.py checks
that, and checks them against `decoder`):

- `bitstring_reader` / `bitstring_unpack`: one packet at a time with
  bitstring 5 (`Reader.read_list`, the successor of `ConstBitStream.readlist`,
  and `Bits.unpack`), formulas in Python: what a user would write.
- `QuickJSDecoder`: a TTN-style `decodeUplink(input)` in QuickJS, called from
  Python once per packet with `{bytes: [...], fPort}`; the hex -> byte list
  conversion and the JSON bridge are part of its cost, as they would be.
- `decode_matrix`: a hand-written numba kernel over an (n, 9) uint8 matrix:
  the floor. `decode_offsets` does the same over Arrow-style data + offsets
  with a length check per row, the layout `decoder` itself decodes from.

A record is `{"battery": int, "batteryLevel": float | None,
"gps": {"latitude": float, "longitude": float, "altitude": int}}`.
"""

from __future__ import annotations

import json

import numpy as np

PAYLOAD_BYTES = 9

# The "Test Device Class" object exactly as printed in the Firefly API reference.
TEST_DEVICE_CLASS = {
    "updated_at": "2016-04-22T12:52:16.109000",
    "script": {
        "variables": {
            "gps": {"type": "gps", "name": "gps"},
            "batteryLevel": {"type": "range", "name": "batteryLevel"},
            "battery": {"type": "hidden", "name": "battery"},
        },
        "parseElements": [
            {"type": "int", "target": "battery", "bits": "8"},
            {"type": "int", "target": "gps.latitude", "signed": True, "bits": "24"},
            {"type": "int", "target": "gps.longitude", "signed": True, "bits": "24"},
            {"type": "int", "target": "gps.altitude", "signed": True, "bits": "16"},
        ],
        "calculateElements": [
            {"target": "batteryLevel", "formula": "battery != 0 ? (battery - 1) / 253 : null"},
            {"target": "gps.latitude", "formula": "gps.latitude / (1 << 23) * 90"},
            {"target": "gps.longitude", "formula": "gps.longitude / (1 << 23) * 180"},
        ],
    },
    "name": "Test Device Class",
    "inserted_at": "2016-04-20T15:09:18.911000",
    "id": 2,
    "description": None,
}


# --------------------------------------------------------------------------
# Inputs


def make_matrix(n: int, seed: int = 20160420) -> np.ndarray:
    """n random 9-byte payloads as an (n, 9) uint8 matrix (deterministic)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, PAYLOAD_BYTES), dtype=np.uint8)


def hex_list(mat: np.ndarray) -> list[str]:
    """The rows of a byte matrix as a Python list of lowercase hex strings."""
    w = 2 * mat.shape[1]
    s = np.ascontiguousarray(mat).tobytes().hex()
    return [s[i : i + w] for i in range(0, len(s), w)]


def matrix_from_hex(payloads: list[str]) -> np.ndarray:
    """Inverse of hex_list for equal-length payloads (setup only, not timed)."""
    raw = bytes.fromhex("".join(payloads))
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(payloads), -1)


# --------------------------------------------------------------------------
# bitstring, one packet at a time

_FMT = "uint:8, int:24, int:24, int:16"


def _record(battery, lat, lon, alt):
    return {
        "battery": battery,
        "batteryLevel": (battery - 1) / 253 if battery != 0 else None,
        "gps": {
            "latitude": lat / (1 << 23) * 90,
            "longitude": lon / (1 << 23) * 180,
            "altitude": alt,
        },
    }


def bitstring_reader(h: str) -> dict:
    """bitstring 5 `Reader` (was `ConstBitStream` in bitstring 4)."""
    from bitstring import Bits, Reader

    battery, lat, lon, alt = Reader(Bits.from_string("0x" + h)).read_list(_FMT)
    return _record(battery, lat, lon, alt)


def bitstring_unpack(h: str) -> dict:
    """bitstring 5 `Bits.unpack` of the whole packet."""
    from bitstring import Bits

    battery, lat, lon, alt = Bits.from_string("0x" + h).unpack(_FMT)
    return _record(battery, lat, lon, alt)


# --------------------------------------------------------------------------
# QuickJS, TTN-style decodeUplink, one packet at a time

JS_DECODE_UPLINK = r"""
function decodeUplink(input) {
  var b = input.bytes;
  var battery = b[0];
  var lat = (b[1] << 16) | (b[2] << 8) | b[3];
  if (lat & 0x800000) lat -= 0x1000000;
  var lon = (b[4] << 16) | (b[5] << 8) | b[6];
  if (lon & 0x800000) lon -= 0x1000000;
  var alt = (b[7] << 8) | b[8];
  if (alt & 0x8000) alt -= 0x10000;
  return {
    data: {
      battery: battery,
      batteryLevel: battery != 0 ? (battery - 1) / 253 : null,
      gps: {
        latitude: lat / (1 << 23) * 90,
        longitude: lon / (1 << 23) * 180,
        altitude: alt
      }
    },
    warnings: [],
    errors: []
  };
}
"""


class QuickJSDecoder:
    """One QuickJS context, reused for every packet (cheaper than ChirpStack's
    fresh runtime per call). The input object crosses into JS as JSON and the
    result comes back as JSON, the way a host without a native object bridge
    passes them."""

    def __init__(self, source: str = JS_DECODE_UPLINK):
        import quickjs

        self._ctx = quickjs.Context()
        self._ctx.eval(source)
        self._ctx.eval("function __decode_json(s) { return JSON.stringify(decodeUplink(JSON.parse(s))); }")
        self._f = self._ctx.get("__decode_json")

    def __call__(self, h: str, fport: int = 1) -> dict:
        arg = json.dumps({"bytes": list(bytes.fromhex(h)), "fPort": fport})
        out = json.loads(self._f(arg))
        return out["data"]


# --------------------------------------------------------------------------
# Hand-written numba kernels: the floor

_kernels = None


def _build_kernels():
    # No cache=True: numba's disk cache records the defining module's name, and
    # this file is imported as `peers` by the scripts but may be imported under
    # another name elsewhere, which breaks loading. JIT cost is never timed.
    global _kernels
    if _kernels is not None:
        return _kernels
    import numba

    @numba.njit(nogil=True, boundscheck=False)
    def matrix_kernel(mat, level, level_valid, lat, lon, alt, battery):
        for i in range(mat.shape[0]):
            b0 = mat[i, 0]
            la = (np.int32(mat[i, 1]) << 16) | (np.int32(mat[i, 2]) << 8) | np.int32(mat[i, 3])
            lo = (np.int32(mat[i, 4]) << 16) | (np.int32(mat[i, 5]) << 8) | np.int32(mat[i, 6])
            al = (np.int32(mat[i, 7]) << 8) | np.int32(mat[i, 8])
            la = (la ^ 0x800000) - 0x800000
            lo = (lo ^ 0x800000) - 0x800000
            battery[i] = b0
            if b0 != 0:
                level[i] = (np.float64(b0) - 1.0) / 253.0
                level_valid[i] = True
            else:
                level[i] = 0.0
                level_valid[i] = False
            lat[i] = np.float64(la) / 8388608.0 * 90.0
            lon[i] = np.float64(lo) / 8388608.0 * 180.0
            alt[i] = np.int16((al ^ 0x8000) - 0x8000)

    @numba.njit(nogil=True, boundscheck=False)
    def offsets_kernel(data, offsets, level, level_valid, lat, lon, alt, battery, valid):
        n = offsets.shape[0] - 1
        for i in range(n):
            s = offsets[i]
            if offsets[i + 1] - s < 9:
                valid[i] = False
                level_valid[i] = False
                level[i] = 0.0
                lat[i] = 0.0
                lon[i] = 0.0
                alt[i] = 0
                battery[i] = 0
                continue
            valid[i] = True
            b0 = data[s]
            la = (np.int32(data[s + 1]) << 16) | (np.int32(data[s + 2]) << 8) | np.int32(data[s + 3])
            lo = (np.int32(data[s + 4]) << 16) | (np.int32(data[s + 5]) << 8) | np.int32(data[s + 6])
            al = (np.int32(data[s + 7]) << 8) | np.int32(data[s + 8])
            la = (la ^ 0x800000) - 0x800000
            lo = (lo ^ 0x800000) - 0x800000
            battery[i] = b0
            if b0 != 0:
                level[i] = (np.float64(b0) - 1.0) / 253.0
                level_valid[i] = True
            else:
                level[i] = 0.0
                level_valid[i] = False
            lat[i] = np.float64(la) / 8388608.0 * 90.0
            lon[i] = np.float64(lo) / 8388608.0 * 180.0
            alt[i] = np.int16((al ^ 0x8000) - 0x8000)

    _kernels = (matrix_kernel, offsets_kernel)
    return _kernels


def _alloc(n):
    return {
        "batteryLevel": np.empty(n, np.float64),
        "batteryLevel_valid": np.empty(n, np.bool_),
        "gps.latitude": np.empty(n, np.float64),
        "gps.longitude": np.empty(n, np.float64),
        "gps.altitude": np.empty(n, np.int16),
        "battery": np.empty(n, np.uint8),
    }


def decode_matrix(mat: np.ndarray) -> dict:
    """Hand-written kernel over an (n, 9) uint8 matrix; allocates its outputs
    (as `decoder` must) and returns them as a dict of numpy arrays."""
    matrix_kernel, _ = _build_kernels()
    o = _alloc(mat.shape[0])
    matrix_kernel(
        mat,
        o["batteryLevel"],
        o["batteryLevel_valid"],
        o["gps.latitude"],
        o["gps.longitude"],
        o["gps.altitude"],
        o["battery"],
    )
    return o


def decode_offsets(data: np.ndarray, offsets: np.ndarray) -> dict:
    """Hand-written kernel over Arrow-style data + int64 offsets, with a
    length check per row (rows shorter than 9 bytes are invalid)."""
    _, offsets_kernel = _build_kernels()
    n = offsets.shape[0] - 1
    o = _alloc(n)
    o["valid"] = np.empty(n, np.bool_)
    offsets_kernel(
        data,
        offsets,
        o["batteryLevel"],
        o["batteryLevel_valid"],
        o["gps.latitude"],
        o["gps.longitude"],
        o["gps.altitude"],
        o["battery"],
        o["valid"],
    )
    return o


def columns_to_records(o: dict) -> list[dict]:
    """Columns of decode_matrix / decode_offsets as records (for tests)."""
    out = []
    for i in range(o["battery"].shape[0]):
        out.append(
            {
                "battery": int(o["battery"][i]),
                "batteryLevel": float(o["batteryLevel"][i]) if o["batteryLevel_valid"][i] else None,
                "gps": {
                    "latitude": float(o["gps.latitude"][i]),
                    "longitude": float(o["gps.longitude"][i]),
                    "altitude": int(o["gps.altitude"][i]),
                },
            }
        )
    return out
