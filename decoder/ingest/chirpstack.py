"""ChirpStack v4: the paths the scanner reads of its integration events, and their normalization.

The event is the JSON the HTTP integration posts (``?event=up``) and MQTT
publishes on ``application/<id>/device/<devEui>/event/<type>``. An ``up``
event: ``deduplicationId`` (the packet id), ``time`` (RFC 3339),
``deviceInfo`` (``devEui``, ``deviceName``, ``applicationName``, ...),
``devAddr``, ``fCnt``, ``fPort``, ``confirmed``, ``data`` (the FRMPayload,
base64), ``dr``, ``rxInfo[]`` (one per gateway: ``gatewayId``, ``rssi``,
``snr``, ``gwTime`` or ``time``, ``channel``, ``location`` with
``latitude``/``longitude``) and ``txInfo`` (``frequency`` in Hz,
``modulation.lora`` with ``spreadingFactor``, ``bandwidth`` in Hz and
``codeRate`` such as ``"CR_4_5"``, normalized to ``"4/5"``).

Protocol-buffer JSON leaves out zeros, empty strings and false: an absent
``fCnt`` or ``fPort`` is 0, an absent ``confirmed`` false, an absent
``data`` an empty payload.

The event type is not in the JSON (it is in the URL or topic); it is told by
the fields each type carries. The other types (``join``, ``ack``,
``txack``, ``status``, ``log``, ``location``, ``integration``) are skipped
and counted as ``chirpstack:<type>``; an event of none of these types is a
bad line.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .columns import nulls
from .fields import Records, categories
from .radio import Gateways, table_rows
from .scan import float64_array, int64_array
from .timestamps import iso_times, ts_array

__all__ = ["PROVIDER", "ENCODING", "FIELDS", "TABLES", "MARKERS", "SHAPE_MARKERS", "Rows", "code_rate"]

PROVIDER = "chirpstack"
ENCODING = "base64"

_LORA = "txInfo.modulation.lora"
_RX = "rxInfo[]"
FIELDS = {
    "deduplicationId": "str",
    "time": "str",
    "deviceInfo.devEui": "str",
    "deviceInfo.deviceName": "str",
    "deviceInfo.applicationName": "str",
    "devAddr": "str",
    "fCnt": "int|float|str",
    "fPort": "int|float|str",
    "confirmed": "any",
    "data": "str",
    "dr": "int|float|str",
    f"{_RX}.gatewayId": "str",
    f"{_RX}.rssi": "float|str",
    f"{_RX}.snr": "float|str",
    f"{_RX}.gwTime": "str",
    f"{_RX}.time": "str",
    f"{_RX}.channel": "int|float|str",
    f"{_RX}.location.latitude": "float|str",
    f"{_RX}.location.longitude": "float|str",
    "txInfo.frequency": "float|str",
    f"{_LORA}.spreadingFactor": "int|float|str",
    f"{_LORA}.bandwidth": "float|str",
    f"{_LORA}.codeRate": "str",
    # fields that tell the other event types apart
    "integrationName": "any",
    "description": "any",
    "queueItemId": "any",
    "downlinkId": "any",
    "margin": "any",
    "batteryLevel": "any",
    "batteryLevelUnavailable": "any",
    "externalPowerSource": "any",
    "location": "any",
}
TABLES: dict[str, list[str]] = {}
# Paths only a reception table shows: a reader that builds none leaves them unread (parse).
RECEPTION_ONLY = tuple(f"{_RX}.{k}" for k in ("gwTime", "time", "channel", "location.latitude", "location.longitude"))
SHAPE_MARKERS = ("deviceInfo",)
# The event types other than up, each with the fields that mark it, in the order they are told apart.
OTHER_TYPES = (
    ("integration", ("integrationName",)),
    ("log", ("description",)),
    ("txack", ("downlinkId",)),
    ("ack", ("queueItemId",)),
    ("status", ("margin", "batteryLevel", "batteryLevelUnavailable", "externalPowerSource")),
)
UP_MARKERS = ("rxInfo", "txInfo", "data", "fPort", "fCnt")
MARKERS = (
    SHAPE_MARKERS
    + UP_MARKERS
    + ("deduplicationId", "devAddr", "location")
    + tuple(m for _, ms in OTHER_TYPES for m in ms)
)

MISSING_REASON = "chirpstack up event without deviceInfo.devEui"
UNKNOWN_REASON = "chirpstack event of no known type (not up, join, ack, txack, status, log, location, integration)"
PORT_RANGE = (0, 255)
FCNT_RANGE = (0, 0xFFFFFFFF)


def code_rate(text: str | None) -> str | None:
    """ChirpStack's code rate enum as the other providers print it: ``CR_4_5`` -> ``4/5``."""
    if text is None or not text.startswith("CR_"):
        return text
    return text[3:].replace("_", "/", 1)


class Rows:
    """ChirpStack's records of one scan: which are up events, their gateways and columns."""

    provider = PROVIDER
    encoding = ENCODING
    empty_payload = True  # an absent data is an empty payload (protocol-buffer JSON)

    def __init__(self, rec: Records, shapes: dict[str, np.ndarray]) -> None:
        self.rec = rec
        self.events = shapes.get("event", np.zeros(rec.n, bool))

    def select(self, found) -> np.ndarray:
        """The up events; the other types are skipped, events of no known type are bad lines."""
        rec = self.rec
        mask = rec.res.record_mask
        has = lambda *names: (mask & rec.plan.bits(names)) != 0  # noqa: E731 - a one-line view
        left = self.events.copy()
        up = left & has(*UP_MARKERS) & ~has("integrationName", "description", "downlinkId", "queueItemId")
        left &= ~up
        for kind, markers in OTHER_TYPES:
            this = left & has(*markers)
            left &= ~this
            found.skip(np.flatnonzero(this), f"chirpstack:{kind}")
        for kind, this in (("location", left & has("location")), ("join", left & has("devAddr"))):
            left &= ~this
            found.skip(np.flatnonzero(this), f"chirpstack:{kind}")
        found.bad_unknown(np.flatnonzero(left), UNKNOWN_REASON)
        self.up = found.keep_with_text(up, "deviceInfo.devEui", MISSING_REASON)
        return self.up

    def gateways(self, rows: np.ndarray) -> Gateways:
        """The ``rxInfo`` items of the up events ``rows``."""
        rec = self.rec
        g, parent = table_rows(rec, "rxInfo", rows)
        rssi, _ = rec.number(f"{_RX}.rssi", g)
        snr, _ = rec.number(f"{_RX}.snr", g)
        lat, lat_ok = rec.number(f"{_RX}.location.latitude", g)
        lon, lon_ok = rec.number(f"{_RX}.location.longitude", g)
        hz, hz_ok = rec.number("txInfo.frequency", parent)
        time_ns, time_ok = iso_times(rec, f"{_RX}.gwTime", g)
        if not time_ok.all():
            other_ns, other_ok = iso_times(rec, f"{_RX}.time", g)
            time_ns = np.where(time_ok, time_ns, other_ns)
            time_ok = time_ok | other_ok
        return Gateways(
            parent,
            rssi,
            snr,
            {
                "gateway_id": rec.text(f"{_RX}.gatewayId", g),
                "rssi": float64_array(rssi, ~np.isnan(rssi)),
                "snr": float64_array(snr, ~np.isnan(snr)),
                "time": ts_array(time_ns, time_ok),
                "channel": rec.integer(f"{_RX}.channel", g, absent=0),
                "latitude": float64_array(lat, lat_ok),
                "longitude": float64_array(lon, lon_ok),
                "frequency_mhz": float64_array(hz / 1e6, hz_ok),
            },
        )

    def columns(self, rows: np.ndarray, best) -> dict[str, pa.Array]:
        """Normalized columns of the up events ``rows`` (ascending)."""
        rec = self.rec
        m = len(rows)
        hz, hz_ok = rec.number("txInfo.frequency", rows)
        bw, bw_ok = rec.number(f"{_LORA}.bandwidth", rows)
        return {
            "packet_id": rec.text("deduplicationId", rows),
            "dev_eui": rec.text("deviceInfo.devEui", rows, warn=False),
            "device_id": rec.text("deviceInfo.deviceName", rows),
            "devaddr": rec.text("devAddr", rows),
            "received_at": ts_array(*iso_times(rec, "time", rows)),
            "fcnt": rec.integer("fCnt", rows, lo=FCNT_RANGE[0], hi=FCNT_RANGE[1], absent=0),
            "port": rec.integer("fPort", rows, lo=PORT_RANGE[0], hi=PORT_RANGE[1], absent=0),
            "confirmed": rec.flag("confirmed", rows, absent=False),
            "frequency_mhz": float64_array(hz / 1e6, hz_ok),
            "spreading_factor": rec.integer(f"{_LORA}.spreadingFactor", rows, lo=5, hi=12),
            "bandwidth_khz": float64_array(bw / 1000.0, bw_ok),
            "coding_rate": _code_rates(rec.text(f"{_LORA}.codeRate", rows)) if m else nulls(0, pa.string()),
        }

    def payload_paths(self) -> tuple[str, ...]:
        return ("data",)


def _code_rates(arr: pa.Array) -> pa.Array:
    """code_rate of each row, computed once per distinct value."""
    codes, names = categories(arr)
    if not names:
        return arr
    table = pa.array([code_rate(n) for n in names] + [None], pa.string())
    return table.take(int64_array(np.where(codes >= 0, codes, len(names))))
