"""Helium Console: its event and integration fields, and its rows of a parse -> normalized uplinks and receptions.

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

import collections

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import child, coalesce, combine, f64, if_else, nulls, str_equals, take, valid
from .radio import ReceptionPart, float32_shortest, parse_datr
from .timestamps import epoch_ms_to_ts, ms_strings_to_ts

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
EVENT_MARKERS = ("category", "sub_category")
REQ = pa.struct([("body", BODY)])
# index_in codes of sub_category: 0 uplink_confirmed, 1 uplink_unconfirmed, 2 uplink_integration_req
_SUB_CODES = pa.array([CONFIRMED_SUB_CATEGORY, "uplink_unconfirmed", INTEGRATION_SUB_CATEGORY])
assert set(UPLINK_SUB_CATEGORIES) == {"uplink_confirmed", "uplink_unconfirmed"}


def is_event(raw) -> np.ndarray:
    """Rows that are Helium device or integration events (they carry category or sub_category)."""
    return valid(raw("category")) | valid(raw("sub_category"))


def is_body(raw) -> np.ndarray:
    """Rows carrying an HTTP integration body marker (the caller has set the other shapes aside)."""
    return raw.any_valid(BODY_MARKERS)


class Rows:
    """Helium's rows of one parse (device events, integration events, integration bodies):
    which are uplinks, their receptions and normalized columns."""

    provider = PROVIDER
    encoding = ENCODING

    def __init__(self, raw, events: np.ndarray, bodies: np.ndarray) -> None:
        self.raw = raw
        self.events = events
        self.bodies = bodies
        self.rows = events | bodies
        n = raw.n
        self.sub_code = np.full(n, -1, dtype=np.int32)
        if events.any():
            self.sub_code = pc.fill_null(pc.index_in(raw("sub_category"), value_set=_SUB_CODES), -1).to_numpy(
                zero_copy_only=False
            )
            uplink_category = str_equals(raw("category"), "uplink")
            self.integration_shape = events & (self.sub_code == 2)
            self.event_shape = events & uplink_category & ((self.sub_code == 0) | (self.sub_code == 1))
        else:
            self.integration_shape = self.event_shape = np.zeros(n, dtype=bool)
        self.event_up = self.integration = np.zeros(n, dtype=bool)
        self.up = np.zeros(n, dtype=bool)
        self._data = self._body = None

    @property
    def data(self) -> pa.Array:
        if self._data is None:
            self._data = self.raw("data")
        return self._data

    @property
    def body(self) -> pa.Array:
        """``data.req.body`` of every row (null where absent)."""
        if self._body is None:
            self._body = child(child(self.data, "req", REQ), "body", BODY)
        return self._body

    def groups_needed(self) -> set[str]:
        """Field groups of the raw schema these rows need to be normalized."""
        used = set()
        if self.event_shape.any():
            used.add("event")
        if self.integration_shape.any():
            used.add("integration")
        if self.bodies.any():
            used.add("body")
        return used

    def select(self, bad: list, skipped: collections.Counter) -> np.ndarray:
        """The uplink rows; other event kinds are counted as skipped, uplinks without their
        required part are bad lines."""
        raw = self.raw
        if self.events.any():
            other = self.events & ~self.event_shape & ~self.integration_shape
            if other.any():
                rows = pa.array(np.flatnonzero(other))
                cats = raw("category").take(rows).to_pylist()
                subs = raw("sub_category").take(rows).to_pylist()
                skipped.update(f"helium:{s if c == 'uplink' or c is None else c}" for c, s in zip(cats, subs))
            has_data = valid(self.data)
            bad += raw.bad(np.flatnonzero(self.event_shape & ~has_data), MISSING_DATA_REASON)
            has_body = valid(self.body)
            bad += raw.bad(np.flatnonzero(self.integration_shape & ~has_body), MISSING_REQ_BODY_REASON)
            self.event_up = self.event_shape & has_data
            self.integration = self.integration_shape & has_body
        bodies = self.bodies
        if bodies.any():
            has_eui = valid(raw("dev_eui"))
            bad += raw.bad(np.flatnonzero(bodies & ~has_eui), MISSING_BODY_REASON)
            bodies = bodies & has_eui
        self.bodies = bodies
        self.up = self.event_up | self.integration | bodies
        return self.up

    def receptions(self) -> list[ReceptionPart]:
        """One reception per hotspot: a body's ``hotspots``, an integration event's
        ``data.req.body.hotspots``, a device event's ``data.hotspot``."""
        parts = []
        if self.bodies.any():
            parts += _hotspot_list(self.raw("hotspots"), self.bodies)
        if self.integration.any():
            parts += _hotspot_list(child(self.body, "hotspots", pa.list_(HOTSPOT)), self.integration)
        if self.event_up.any():
            hotspot = child(self.data, "hotspot", EVENT_HOTSPOT)
            keep = valid(hotspot) & self.event_up
            if keep.all():
                parts.append(_hotspot_part(np.arange(self.raw.n, dtype=np.int64), combine(hotspot)))
            elif keep.any():
                idx = np.flatnonzero(keep)
                parts.append(_hotspot_part(idx, hotspot.take(pa.array(idx))))
        return parts

    def columns(self, rows: np.ndarray, best) -> dict[str, pa.Array]:
        """Normalized columns of the uplink rows ``rows`` (raw row numbers, ascending);
        ``best(name)`` is a reception column at each row's best hotspot."""
        raw, data, body = self.raw, self.data, self.body
        m = len(rows)
        idx = None if m == raw.n else pa.array(rows)
        is_event = (self.event_up | self.integration)[rows]
        event_id = take(raw("id"), idx)
        reported = take(raw("reported_at"), idx)
        reported = ms_strings_to_ts(reported) if pa.types.is_string(reported.type) else epoch_ms_to_ts(reported)
        body_reported = take(child(body, "reported_at", pa.int64()), idx)
        if body_reported.null_count < m:
            reported = coalesce(epoch_ms_to_ts(body_reported), reported)
        event_up = self.event_up[rows]
        sf, bw = parse_datr(best("spreading"))
        return {
            "packet_id": if_else(is_event, event_id, nulls(m, pa.string())),
            "dev_eui": coalesce(
                take(raw("device_eui"), idx), take(raw("dev_eui"), idx), take(child(body, "dev_eui", pa.string()), idx)
            ),
            "device_id": if_else(
                is_event, coalesce(take(raw("device_id"), idx), take(child(body, "id", pa.string()), idx)), event_id
            ),
            "devaddr": coalesce(
                take(raw("devaddr"), idx),
                take(child(data, "devaddr", pa.string()), idx),
                take(child(body, "devaddr", pa.string()), idx),
            ),
            "received_at": reported,
            "fcnt": coalesce(
                take(raw("fcnt"), idx),
                take(child(data, "fcnt", pa.int64()), idx),
                take(child(body, "fcnt", pa.int64()), idx),
            ),
            "port": coalesce(
                take(raw("port"), idx),
                take(child(data, "port", pa.int64()), idx),
                take(child(body, "port", pa.int64()), idx),
            ),
            "confirmed": if_else(event_up, pa.array(self.sub_code[rows] == 0), nulls(m, pa.bool_()))
            if event_up.any()
            else nulls(m, pa.bool_()),
            "payload": coalesce(
                take(raw("payload"), idx),
                take(child(data, "payload", pa.string()), idx),
                take(child(body, "payload", pa.string()), idx),
            ),
            "frequency_mhz": best("frequency_mhz"),
            "spreading_factor": sf,
            "bandwidth_khz": bw,
            "coding_rate": nulls(m, pa.string()),
        }


def _hotspot_list(hotspots: pa.Array, mask: np.ndarray) -> list[ReceptionPart]:
    """The hotspots of a list column, of the rows in mask."""
    if hotspots.null_count == len(hotspots):
        return []
    values = combine(pc.list_flatten(hotspots))
    parent = pc.list_parent_indices(hotspots).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = mask[parent]
    if not keep.all():
        if not keep.any():
            return []
        values = values.filter(pa.array(keep))
        parent = parent[keep]
    return [_hotspot_part(parent, values)] if len(values) else []


def _hotspot_part(parent: np.ndarray, v: pa.Array) -> ReceptionPart:
    return ReceptionPart(
        parent,
        {
            "gateway_id": child(v, "id", pa.string()),
            "gateway_name": child(v, "name", pa.string()),
            "rssi": _shortest(child(v, "rssi", pa.float64())),
            "snr": _shortest(child(v, "snr", pa.float64())),
            "time": epoch_ms_to_ts(child(v, "reported_at", pa.int64())),
            "tmst": nulls(len(v), pa.int64()),
            "channel": child(v, "channel", pa.int64()),
            "latitude": child(v, "lat", pa.float64()),
            "longitude": child(v, "long", pa.float64()),
            "frequency_mhz": _shortest(child(v, "frequency", pa.float64())),
            "spreading": child(v, "spreading", pa.string()),
        },
    )


def _shortest(a: pa.Array) -> pa.Array:
    """Helium prints float32 values at double precision: back to the shortest decimal."""
    x = float32_shortest(f64(a))
    ok = ~np.isnan(x)
    return pa.array(x, pa.float64(), mask=None if ok.all() else ~ok)
