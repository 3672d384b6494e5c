"""Firefly (Digimondo) uplink packets -> raw Arrow fields and reception columns.

Shapes (see the Firefly API reference, "List Packets" / "All Packets"):

- an uplink packet: ``uid``, ``device_eui``, ``received_at`` (ISO 8601
  without a zone: UTC), ``fcnt``, ``port``, ``mtype``, ``payload`` (hex),
  ``freq``, ``spreading_factor``, ``bandwidth`` (or ``datr`` such as
  ``"SF7BW125"``), ``codr`` and ``gwrx``: one entry per gateway with
  ``gweui``, ``rssi``, ``lsnr``, ``time`` (ISO 8601), ``tmst`` (and ``chan``
  when the gateway reports it). Websocket and subscription messages carry
  the same object.
- the envelope ``{"packets": [...], "more": ...}`` of those endpoints.

Also recognized so they can be skipped and counted rather than reported as
bad lines: down packets (``sent`` / ``rx_data``, or an ``mtype`` ending in
``_down``) as ``firefly:down_packet``, and MAC events (``type`` and
``direction``, no ``gwrx`` or ``payload``) as ``firefly:<type>``, also inside
a ``{"mac_events": [...]}`` envelope.
"""

from __future__ import annotations

import pyarrow as pa

PROVIDER = "firefly"
ENCODING = "hex"

GATEWAY = pa.struct(
    [
        ("gweui", pa.string()),
        ("rssi", pa.float64()),
        ("lsnr", pa.float64()),
        ("time", pa.string()),
        ("tmst", pa.int64()),
        ("chan", pa.int64()),
    ]
)

# Fields of a packet object, in three groups. Arrow's JSON reader pays for
# every schema field on every row, present or not (measured: about 55 ns per
# absent top-level field per row; absent lists cost nothing), so the reader
# asks only for the groups a file needs (see decoder.providers.raw_schema).
MARKER_FIELDS = [  # always read: they tell a Firefly packet from the rest
    pa.field("device_eui", pa.string()),
    pa.field("mtype", pa.string()),
    pa.field("gwrx", pa.list_(GATEWAY)),
]
LEAN_FIELDS = [  # what an uplink packet needs
    pa.field("uid", pa.string()),
    pa.field("received_at", pa.string()),
    pa.field("fcnt", pa.int64()),
    pa.field("port", pa.int64()),
    pa.field("payload", pa.string()),
    pa.field("freq", pa.float64()),
    pa.field("spreading_factor", pa.int64()),
    pa.field("bandwidth", pa.float64()),
    pa.field("codr", pa.string()),
]
FULL_FIELDS = [  # rarely there: data rate text, down packets, MAC events
    pa.field("datr", pa.string()),
    pa.field("sent", pa.string()),
    pa.field("type", pa.string()),
    pa.field("direction", pa.string()),
]
PACKET_FIELDS = MARKER_FIELDS + LEAN_FIELDS + FULL_FIELDS
PACKET = pa.struct(PACKET_FIELDS)

ENVELOPE_FIELD = pa.field("packets", pa.list_(PACKET))

# Any of these (non-null) makes an object a Firefly packet, unless it is a
# Helium event (category / sub_category).
MARKERS = ("device_eui", "gwrx", "mtype")
REQUIRED = "device_eui"
MISSING_REASON = "firefly packet without device_eui"
CONFIRMED_MTYPE = "confirmed_data_up"
DOWN_KEY = "firefly:down_packet"
