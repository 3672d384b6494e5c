"""Helium Console uplinks -> raw Arrow fields.

Shapes (see the Helium Console API reference):

- a device event (``GET /devices/:id/events`` item): ``category``,
  ``sub_category``, ``device_id``, ``reported_at`` (epoch milliseconds as a
  string), ``id`` and ``data`` with ``devaddr``, ``fcnt``, ``port``,
  ``payload`` (base64) and one ``hotspot`` (``id``, ``name``, ``rssi``,
  ``snr``, ``frequency``, ``spreading`` such as ``"SF9BW125"``, ``channel``,
  ``lat``, ``long``). Uplinks are category ``uplink`` with sub_category
  ``uplink_confirmed`` or ``uplink_unconfirmed``.
- an integration event: sub_category ``uplink_integration_req``; the uplink
  is the HTTP integration body in ``data.req.body``.
- an HTTP integration body: ``dev_eui``, ``devaddr``, ``fcnt``, ``port``,
  ``payload``, ``reported_at`` (epoch milliseconds, a number), ``id`` (the
  device id) and ``hotspots`` (a list of hotspots, each with its own
  ``reported_at``).
- a JSON array of any of these (the events endpoint returns one).

Every other event kind is skipped and counted as ``helium:<kind>``: the
category (``helium:downlink``, ``helium:join_request``) or, for other
``uplink`` sub-categories, the sub-category (``helium:uplink_integration_res``).

Helium prints float32 radio values at double precision (905.2999877929688);
they are normalized through float32 to the shortest decimal (905.3).
"""

from __future__ import annotations

import pyarrow as pa

PROVIDER = "helium"
ENCODING = "base64"

_HOTSPOT_FIELDS = [
    ("id", pa.string()),
    ("name", pa.string()),
    ("rssi", pa.float64()),
    ("snr", pa.float64()),
    ("frequency", pa.float64()),
    ("spreading", pa.string()),
    ("channel", pa.int64()),
    ("lat", pa.float64()),
    ("long", pa.float64()),
]
EVENT_HOTSPOT = pa.struct(_HOTSPOT_FIELDS)  # data.hotspot of a device event
HOTSPOT = pa.struct(_HOTSPOT_FIELDS + [("reported_at", pa.int64())])  # an item of a body's hotspots

BODY_FIELDS = [
    pa.field("dev_eui", pa.string()),
    pa.field("devaddr", pa.string()),
    pa.field("fcnt", pa.int64()),
    pa.field("port", pa.int64()),
    pa.field("payload", pa.string()),
    pa.field("id", pa.string()),
    pa.field("hotspots", pa.list_(HOTSPOT)),
    # Epoch ms: a number in bodies, a string in device events. The reader
    # turns digit strings into numbers before Arrow sees them (see jsonl).
    pa.field("reported_at", pa.int64()),
]
BODY = pa.struct(BODY_FIELDS)

EVENT_DATA_FIELDS = [
    pa.field("devaddr", pa.string()),
    pa.field("fcnt", pa.int64()),
    pa.field("port", pa.int64()),
    pa.field("payload", pa.string()),
    pa.field("hotspot", EVENT_HOTSPOT),
]
INTEGRATION_DATA_FIELDS = [pa.field("req", pa.struct([("body", BODY)]))]

# Field groups (see decoder.providers.raw_schema): markers are always read.
MARKER_FIELDS = [
    pa.field("category", pa.string()),
    pa.field("sub_category", pa.string()),
    pa.field("dev_eui", pa.string()),
    pa.field("hotspots", pa.list_(HOTSPOT)),
]
_EVENT_TOP = [
    pa.field("id", pa.string()),
    pa.field("device_id", pa.string()),
    pa.field("reported_at", pa.int64()),
]
EVENT_FIELDS = _EVENT_TOP + [pa.field("data", pa.struct(EVENT_DATA_FIELDS))]
INTEGRATION_FIELDS = _EVENT_TOP + [pa.field("data", pa.struct(INTEGRATION_DATA_FIELDS))]
BODY_TOP_FIELDS = [f for f in BODY_FIELDS if f.name not in ("dev_eui", "hotspots")]

UPLINK_SUB_CATEGORIES = ("uplink_confirmed", "uplink_unconfirmed")
INTEGRATION_SUB_CATEGORY = "uplink_integration_req"
CONFIRMED_SUB_CATEGORY = "uplink_confirmed"

# A body is recognized by any of these (when it is neither an event nor a Firefly packet).
BODY_MARKERS = ("dev_eui", "hotspots")
REQUIRED = "dev_eui"
MISSING_BODY_REASON = "helium integration body without dev_eui"
MISSING_DATA_REASON = "helium uplink event without data"
MISSING_REQ_BODY_REASON = "helium integration event without data.req.body"
