"""Firefly (Digimondo): the paths the scanner reads of its packets, and their normalization.

Shapes (see the Firefly API reference, "List Packets" / "All Packets"):

- an uplink packet: ``uid``, ``device_eui``, ``received_at`` (ISO 8601
  without a zone: UTC), ``fcnt``, ``port``, ``mtype``, ``payload`` (hex),
  ``freq``, ``spreading_factor``, ``bandwidth`` (or ``datr`` such as
  ``"SF7BW125"``), ``codr`` and ``gwrx``: one entry per gateway with
  ``gweui``, ``rssi``, ``lsnr``, ``time`` (ISO 8601), ``tmst`` (and ``chan``
  when the gateway reports it). Websocket and subscription messages carry
  the same object.
- the envelope ``{"packets": [...], "more": ...}`` of those endpoints (its
  packets are records of their own, see ``scan``).

Skipped and counted rather than reported as bad lines: down packets
(``sent`` / ``rx_data``, or an ``mtype`` ending in ``_down``) as
``firefly:down_packet``, and MAC events (``type`` and ``direction``, no
``gwrx`` or ``payload``; every item of a ``{"mac_events": [...]}``
envelope) as ``firefly:<type>``; an envelope with no items as
``firefly:empty_envelope``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import coalesce, nulls
from .fields import Records, true_of
from .radio import Gateways, parse_datr, table_rows
from .scan import float64_array
from .timestamps import iso_times, ts_array

PROVIDER = "firefly"
ENCODING = "hex"

_GATEWAY = {
    "gweui": "str",
    "rssi": "float|str",
    "lsnr": "float|str",
    "time": "str",
    "tmst": "int|float|str",
    "chan": "int|float|str",
}
FIELDS = {
    "uid": "str",
    "device_eui": "str",
    "devaddr": "str",
    "mtype": "str",
    "received_at": "str",
    "fcnt": "int|float|str",
    "port": "int|float|str",
    "payload": "str",
    "freq": "float|str",
    "spreading_factor": "int|float|str",
    "bandwidth": "float|str",
    "codr": "str",
    "datr": "str",
    "sent": "any",
    "rx_data": "any",
    "type": "str",
    "direction": "str",
    **{f"gwrx[].{k}": v for k, v in _GATEWAY.items()},
    "packets[]": "records",
    "mac_events[]": "records",
}
TABLES: dict[str, list[str]] = {}
# Paths only a reception table shows: a reader that builds none leaves them unread (parse).
RECEPTION_ONLY = ("gwrx[].time", "gwrx[].tmst", "gwrx[].chan")
ENVELOPES = ("packets", "mac_events")  # arrays whose items are records
PACKET_MARKERS = ("device_eui", "gwrx", "mtype")  # any of these: a Firefly packet
MARKERS = PACKET_MARKERS + ENVELOPES + ("sent", "rx_data", "type", "direction", "payload")

MISSING_REASON = "firefly packet without device_eui"
CONFIRMED_MTYPE = "confirmed_data_up"
DOWN_KEY = "firefly:down_packet"
EMPTY_ENVELOPE_KEY = "firefly:empty_envelope"

# FPort and FCnt ranges of LoRaWAN (FCnt as a 32-bit counter).
PORT_RANGE = (0, 255)
FCNT_RANGE = (0, 0xFFFFFFFF)


class Rows:
    """Firefly's records of one scan: which are uplinks, their gateways and normalized columns."""

    provider = PROVIDER
    encoding = ENCODING

    def __init__(self, rec: Records, shapes: dict[str, np.ndarray]) -> None:
        self.rec = rec
        self.packets = shapes.get("packet", np.zeros(rec.n, bool))
        self.mac = shapes.get("mac_event", np.zeros(rec.n, bool))  # items of a mac_events envelope

    def select(self, found) -> np.ndarray:
        """The uplink records; down packets and MAC events are skipped, packets without
        device_eui are bad lines."""
        rec = self.rec
        mask = rec.res.record_mask
        rows = self.packets
        bit = rec.plan.bit
        has = lambda name: (mask & bit(name)) != 0  # noqa: E731 - a one-line view
        down = rows & (has("sent") | has("rx_data"))
        if (rows & has("mtype")).any():
            mtype = rec.text("mtype", warn=False)
            down |= rows & _ends_with(mtype, "_down")
        mac = self.mac | (rows & ~down & has("type") & has("direction") & ~has("gwrx") & ~has("payload"))
        found.skip(np.flatnonzero(down), DOWN_KEY)
        if mac.any():
            idx = np.flatnonzero(mac)
            kinds = rec.text("type", idx, warn=False).to_pylist()
            found.skip_each(idx, [f"firefly:{k if k is not None else 'mac_event'}" for k in kinds])
        up = rows & ~down & ~mac
        self.up = found.keep_with_text(up, "device_eui", MISSING_REASON)
        return self.up

    def gateways(self, rows: np.ndarray) -> Gateways:
        """The gateways (``gwrx`` items) of the uplink records ``rows``."""
        rec = self.rec
        g, parent = table_rows(rec, "gwrx", rows)
        rssi, _ = rec.number("gwrx[].rssi", g)
        snr, _ = rec.number("gwrx[].lsnr", g)
        k = len(parent)
        return Gateways(
            parent,
            rssi,
            snr,
            {
                "gateway_id": rec.text("gwrx[].gweui", g),
                "rssi": float64_array(rssi, ~np.isnan(rssi)),
                "snr": float64_array(snr, ~np.isnan(snr)),
                "time": ts_array(*iso_times(rec, "gwrx[].time", g)),
                "tmst": rec.integer("gwrx[].tmst", g),
                "channel": rec.integer("gwrx[].chan", g),
                "frequency_mhz": rec.number_array("freq", parent) if k else nulls(0, pa.float64()),
            },
        )

    def columns(self, rows: np.ndarray, best) -> dict[str, pa.Array]:
        """Normalized columns of the uplink records ``rows`` (ascending); ``best(name)``: a
        gateway column at each row's best gateway."""
        rec = self.rec
        m = len(rows)
        sf = rec.integer("spreading_factor", rows, lo=5, hi=12)
        bw_values = rec.number_array("bandwidth", rows)
        if sf.null_count or bw_values.null_count:
            datr = rec.text("datr", rows)
            if datr.null_count < m:
                dsf, dbw = parse_datr(datr)
                sf, bw_values = coalesce(sf, dsf), coalesce(bw_values, dbw)
        mtype = rec.text("mtype", rows)
        freq = rec.number_array("freq", rows)
        return {
            "packet_id": rec.text("uid", rows),
            "dev_eui": rec.text("device_eui", rows, warn=False),
            "device_id": nulls(m, pa.string()),
            "devaddr": rec.text("devaddr", rows),
            "received_at": ts_array(*iso_times(rec, "received_at", rows)),
            "fcnt": rec.integer("fcnt", rows, lo=FCNT_RANGE[0], hi=FCNT_RANGE[1]),
            "port": rec.integer("port", rows, lo=PORT_RANGE[0], hi=PORT_RANGE[1]),
            "confirmed": pc.equal(mtype, pa.scalar(CONFIRMED_MTYPE, pa.string()))
            if mtype.null_count < m
            else nulls(m, pa.bool_()),
            "frequency_mhz": freq,
            "spreading_factor": sf,
            "bandwidth_khz": bw_values,
            "coding_rate": rec.text("codr", rows),
        }

    def payload_paths(self) -> tuple[str, ...]:
        return ("payload",)


def _ends_with(arr: pa.Array, suffix: str) -> np.ndarray:
    """Rows of a string array ending with suffix (null: False)."""
    return true_of(pc.ends_with(arr, pattern=suffix))
