"""The Things Stack (v3): the paths the scanner reads of its application messages, and their normalization.

The message is the ``ApplicationUp`` JSON that webhooks post, MQTT
publishes on ``v3/<app>/devices/<dev>/up`` and ``as/up`` streams:
``end_device_ids`` (``device_id``, ``dev_eui``, ``dev_addr``),
``correlation_ids``, ``received_at`` and one message kind. An uplink is
``uplink_message``: ``f_port``, ``f_cnt``, ``frm_payload`` (base64),
``confirmed``, ``received_at`` (RFC 3339 with nanoseconds), ``settings``
(``data_rate.lora.spreading_factor`` and ``bandwidth`` in Hz,
``coding_rate`` or ``data_rate.lora.coding_rate``, ``frequency`` in Hz
printed as a string) and ``rx_metadata[]`` (``gateway_ids.gateway_id`` and
``eui``, ``rssi``, ``channel_rssi``, ``snr``, ``time``, ``timestamp``,
``channel_index``, ``location``).

Protocol-buffer JSON leaves out zeros, empty strings and false: an absent
``f_cnt`` or ``f_port`` is 0, an absent ``confirmed`` false, an absent
``frm_payload`` an empty payload.

The packet id is the ``as:up:`` correlation id: the Application Server's
id of this message, one per uplink per application and the same in the
webhook, MQTT and storage copies of it (``gs:uplink:`` ids are per gateway
server reception, ``ns:uplink:`` the Network Server's); failing that the
``ns:uplink:`` one, then the first.

The other message kinds (``join_accept``, ``downlink_ack``,
``downlink_nack``, ``downlink_sent``, ``downlink_failed``,
``downlink_queued``, ``downlink_queue_invalidated``, ``location_solved``,
``service_data``, and ``uplink_normalized``, which repeats an
``uplink_message`` with its normalized payload) are skipped and counted as
``tts:<kind>``; a message of none of these kinds is a bad line.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import text_kernels as TK
from .columns import coalesce, nulls
from .fields import Records, string_buffers
from .radio import Gateways, table_rows
from .scan import float64_array, int64_array
from .timestamps import iso_times, ts_array

__all__ = ["PROVIDER", "ENCODING", "FIELDS", "TABLES", "MARKERS", "SHAPE_MARKERS", "KINDS", "Rows"]

PROVIDER = "tts"
ENCODING = "base64"

_UP = "uplink_message"
_LORA = f"{_UP}.settings.data_rate.lora"
_RX = f"{_UP}.rx_metadata[]"
KINDS = (
    _UP,
    "uplink_normalized",
    "join_accept",
    "downlink_ack",
    "downlink_nack",
    "downlink_sent",
    "downlink_failed",
    "downlink_queued",
    "downlink_queue_invalidated",
    "location_solved",
    "service_data",
)
FIELDS = {
    "end_device_ids.device_id": "str",
    "end_device_ids.dev_eui": "str",
    "end_device_ids.dev_addr": "str",
    "correlation_ids[]": "str",
    "received_at": "str",
    f"{_UP}.f_port": "int|float|str",
    f"{_UP}.f_cnt": "int|float|str",
    f"{_UP}.frm_payload": "str",
    f"{_UP}.confirmed": "any",
    f"{_UP}.received_at": "str",
    f"{_LORA}.spreading_factor": "int|float|str",
    f"{_LORA}.bandwidth": "float|str",
    f"{_LORA}.coding_rate": "str",
    f"{_UP}.settings.coding_rate": "str",
    f"{_UP}.settings.frequency": "float|str",
    f"{_RX}.gateway_ids.gateway_id": "str",
    f"{_RX}.gateway_ids.eui": "str",
    f"{_RX}.rssi": "float|str",
    f"{_RX}.channel_rssi": "float|str",
    f"{_RX}.snr": "float|str",
    f"{_RX}.time": "str",
    f"{_RX}.timestamp": "int|float|str",
    f"{_RX}.channel_index": "int|float|str",
    f"{_RX}.location.latitude": "float|str",
    f"{_RX}.location.longitude": "float|str",
    **{kind: "any" for kind in KINDS[1:]},
}
TABLES: dict[str, list[str]] = {}
# Paths only a reception table shows: a reader that builds none leaves them unread (parse).
RECEPTION_ONLY = tuple(
    f"{_RX}.{k}" for k in ("time", "timestamp", "channel_index", "location.latitude", "location.longitude")
)
SHAPE_MARKERS = ("end_device_ids",)
MARKERS = SHAPE_MARKERS + KINDS

MISSING_REASON = "the things stack uplink without end_device_ids.device_id or dev_eui"
PORT_RANGE = (0, 255)
FCNT_RANGE = (0, 0xFFFFFFFF)
# Correlation ids that name an uplink, in the order they are preferred (see the module docstring).
PACKET_ID_PREFIXES = (b"as:up:", b"ns:uplink:", b"")


class Rows:
    """The Things Stack's records of one scan: which are uplinks, their gateways and columns."""

    provider = PROVIDER
    encoding = ENCODING

    def __init__(self, rec: Records, shapes: dict[str, np.ndarray]) -> None:
        self.rec = rec
        self.messages = shapes.get("message", np.zeros(rec.n, bool))

    def select(self, found) -> np.ndarray:
        """The uplink messages; other kinds are skipped, messages of no known kind are bad lines."""
        rec = self.rec
        mask = rec.res.record_mask
        left = self.messages.copy()
        up = np.zeros(rec.n, bool)
        for kind in KINDS:  # the first kind present decides (a message has one)
            this = left & ((mask & rec.plan.bit(kind)) != 0)
            left &= ~this
            if kind == _UP:
                up = this
            else:
                found.skip(np.flatnonzero(this), f"tts:{kind}")
        found.bad_unknown(np.flatnonzero(left), "the things stack message of no known kind")
        ids = rec.present("end_device_ids.device_id") | rec.present("end_device_ids.dev_eui")
        ok = rec.is_object(_UP) & ids
        found.bad_field(np.flatnonzero(up & ~ok), MISSING_REASON, "end_device_ids.device_id")
        self.up = up & ok
        return self.up

    def gateways(self, rows: np.ndarray) -> Gateways:
        """The ``rx_metadata`` of the uplink records ``rows``."""
        rec = self.rec
        g, parent = table_rows(rec, f"{_UP}.rx_metadata", rows)
        rssi, ok = rec.number(f"{_RX}.rssi", g)
        if not ok.all():  # rssi left out (0), or only the channel's
            channel_rssi, channel_ok = rec.number(f"{_RX}.channel_rssi", g)
            rssi = np.where(ok, rssi, channel_rssi)
        snr, _ = rec.number(f"{_RX}.snr", g)
        lat, lat_ok = rec.number(f"{_RX}.location.latitude", g)
        lon, lon_ok = rec.number(f"{_RX}.location.longitude", g)
        freq, freq_ok = _frequency(rec, parent)
        return Gateways(
            parent,
            rssi,
            snr,
            {
                "gateway_id": rec.text(f"{_RX}.gateway_ids.gateway_id", g),
                "rssi": float64_array(rssi, ~np.isnan(rssi)),
                "snr": float64_array(snr, ~np.isnan(snr)),
                "time": ts_array(*iso_times(rec, f"{_RX}.time", g)),
                "tmst": rec.integer(f"{_RX}.timestamp", g),
                "channel": rec.integer(f"{_RX}.channel_index", g),
                "latitude": float64_array(lat, lat_ok),
                "longitude": float64_array(lon, lon_ok),
                "frequency_mhz": float64_array(freq, freq_ok),
            },
        )

    def columns(self, rows: np.ndarray, best) -> dict[str, pa.Array]:
        """Normalized columns of the uplink records ``rows`` (ascending)."""
        rec = self.rec
        m = len(rows)
        freq, freq_ok = _frequency(rec, rows)
        bw, bw_ok = rec.number(f"{_LORA}.bandwidth", rows)
        received = ts_array(*iso_times(rec, f"{_UP}.received_at", rows))
        if received.null_count:
            received = coalesce(received, ts_array(*iso_times(rec, "received_at", rows)))
        confirmed = rec.flag(f"{_UP}.confirmed", rows, absent=False)
        return {
            "packet_id": self._packet_ids(rows),
            "dev_eui": rec.text("end_device_ids.dev_eui", rows),
            "device_id": rec.text("end_device_ids.device_id", rows),
            "devaddr": rec.text("end_device_ids.dev_addr", rows),
            "received_at": received,
            "fcnt": rec.integer(f"{_UP}.f_cnt", rows, lo=FCNT_RANGE[0], hi=FCNT_RANGE[1], absent=0),
            "port": rec.integer(f"{_UP}.f_port", rows, lo=PORT_RANGE[0], hi=PORT_RANGE[1], absent=0),
            "confirmed": confirmed,
            "frequency_mhz": float64_array(freq, freq_ok),
            "spreading_factor": rec.integer(f"{_LORA}.spreading_factor", rows, lo=5, hi=12),
            "bandwidth_khz": float64_array(bw / 1000.0, bw_ok),
            "coding_rate": coalesce(
                rec.text(f"{_LORA}.coding_rate", rows), rec.text(f"{_UP}.settings.coding_rate", rows)
            )
            if m
            else nulls(0, pa.string()),
        }

    def payload_paths(self) -> tuple[str, ...]:
        return (f"{_UP}.frm_payload",)

    empty_payload = True  # an absent frm_payload is an empty one (protocol-buffer JSON)

    def _packet_ids(self, rows: np.ndarray) -> pa.Array:
        """The preferred correlation id of each uplink (see PACKET_ID_PREFIXES)."""
        rec = self.rec
        ids = rec.text("correlation_ids[]")
        parent = rec.res.parent("correlation_ids")
        offsets, data, valid = string_buffers(ids)
        chosen = np.full(rec.n, -1, np.int64)
        for prefix in PACKET_ID_PREFIXES:
            TK.first_with_prefix(parent, offsets, data, valid, np.frombuffer(prefix, np.uint8), chosen)
        at = chosen[rows]
        ok = at >= 0
        return ids.take(int64_array(np.where(ok, at, 0), ok))


def _frequency(rec: Records, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """settings.frequency (Hz, printed in quotes) in MHz."""
    hz, ok = rec.number(f"{_UP}.settings.frequency", rows, quoted=True)
    return hz / 1e6, ok
