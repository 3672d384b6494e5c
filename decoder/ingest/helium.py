"""Helium Console: the paths the scanner reads of its events and integration bodies, and their normalization.

Shapes (see the Helium Console API reference):

- a device event (``GET /devices/:id/events`` item): ``category``,
  ``sub_category``, ``device_id``, ``reported_at`` (epoch milliseconds as a
  string), ``id`` and ``data`` with ``devaddr``, ``fcnt``, ``port``,
  ``payload`` (base64) and one ``hotspot`` (``id``, ``name``, ``rssi``,
  ``snr``, ``frequency``, ``spreading`` such as ``"SF9BW125"``, ``channel``,
  ``lat``, ``long``).
- an integration event: sub_category ``uplink_integration_req``; the uplink
  is the HTTP integration body in ``data.req.body``.
- an HTTP integration body: ``dev_eui``, ``devaddr``, ``fcnt``, ``port``,
  ``payload``, ``reported_at`` (epoch milliseconds, a number), ``id`` (the
  device id) and ``hotspots`` (a list of hotspots, each with its own
  ``reported_at``).
- a JSON array of any of these (the events endpoint returns one).

Which events are uplinks: an integration request is one (its body); the
documented kinds that are not uplinks (the categories ``uplink_dropped``,
``downlink``, ``downlink_dropped``, ``join_request``, ``join_accept`` and
``misc``; the sub-categories ``uplink_integration_res``, ``uplink_dropped_*``,
``downlink_*`` and ``misc_*``) are skipped and counted as ``helium:<category>``
(or ``helium:<sub_category>`` within the uplink category). Every other event
that carries a payload (``data.payload``) is an uplink, whatever its
category and sub-category say (both are compared without case); an
``uplink_confirmed``/``uplink_unconfirmed`` event with ``data`` but no
payload is an uplink whose row fails (no payload). Any other event is a bad
line, with its category and sub-category in the reason.

Helium prints float32 radio values at double precision (905.2999877929688);
they are normalized through float32 to the shortest decimal (905.3).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..arrays import distinct_codes
from .columns import coalesce, if_else, nulls
from .fields import Records, categories
from .radio import Gateways, float32_shortest, parse_datr, table_rows
from .scan import bool_array, float64_array
from .timestamps import ms_times, ts_array

__all__ = ["PROVIDER", "ENCODING", "FIELDS", "TABLES", "MARKERS", "EVENT_MARKERS", "BODY_MARKERS", "Rows", "event_kind"]

PROVIDER = "helium"
ENCODING = "base64"

_HOTSPOT = {
    "id": "str",
    "name": "str",
    "rssi": "float|str",
    "snr": "float|str",
    "frequency": "float|str",
    "spreading": "str",
    "channel": "int|float|str",
    "lat": "float|str",
    "long": "float|str",
    "reported_at": "int|float|str",
}
_UPLINK = {"devaddr": "str", "fcnt": "int|float|str", "port": "int|float|str", "payload": "str"}
FIELDS = {
    "category": "str",
    "sub_category": "str",
    "id": "str",
    "device_id": "str",
    "reported_at": "int|float|str",
    "dev_eui": "str",
    **_UPLINK,
    **{f"data.{k}": v for k, v in _UPLINK.items()},
    **{f"data.req.body.{k}": v for k, v in {**_UPLINK, "dev_eui": "str", "id": "str"}.items()},
    "data.req.body.reported_at": "int|float|str",
    **{f"hotspots[].{k}": v for k, v in _HOTSPOT.items()},
}
# Every Helium reception in one table: a body's list, an integration body's list, an event's one hotspot.
TABLES = {"hotspots": ["hotspots[]", "data.req.body.hotspots[]", "data.hotspot"]}
# Paths only a reception table shows: a reader that builds none leaves them unread (parse).
RECEPTION_ONLY = tuple(f"hotspots[].{k}" for k in ("name", "channel", "lat", "long", "reported_at"))
EVENT_MARKERS = ("category", "sub_category")
BODY_MARKERS = ("dev_eui", "hotspots")
MARKERS = EVENT_MARKERS + BODY_MARKERS + ("data", "data.payload", "data.req.body")

INTEGRATION_SUB_CATEGORY = "uplink_integration_req"
UPLINK_SUB_CATEGORIES = ("uplink_confirmed", "uplink_unconfirmed")
NOT_UPLINK_CATEGORIES = ("uplink_dropped", "downlink", "downlink_dropped", "join_request", "join_accept", "misc")
NOT_UPLINK_SUB_PREFIXES = ("uplink_integration_res", "uplink_dropped", "downlink", "misc", "join_")
MISSING_BODY_REASON = "helium integration body without dev_eui"
MISSING_DATA_REASON = "helium uplink event without data"
MISSING_REQ_BODY_REASON = "helium integration event without data.req.body"

PORT_RANGE = (0, 255)
FCNT_RANGE = (0, 0xFFFFFFFF)

# What an event is, by its (category, sub_category).
_UPLINK, _INTEGRATION, _SKIP, _PAYLOAD_ONLY = range(4)


def event_kind(category: str | None, sub_category: str | None) -> tuple[int, str | None]:
    """(kind, skipped key) of an event by its lower-cased category and sub-category."""
    cat, sub = category or "", sub_category or ""
    if sub == INTEGRATION_SUB_CATEGORY:
        return _INTEGRATION, None
    if cat in NOT_UPLINK_CATEGORIES:
        return _SKIP, f"helium:{cat}"
    if sub.startswith(NOT_UPLINK_SUB_PREFIXES):
        return _SKIP, f"helium:{sub}"
    if cat == "uplink" and sub in UPLINK_SUB_CATEGORIES:
        return _UPLINK, None
    return _PAYLOAD_ONLY, None  # an uplink if it carries a payload, else a bad line


class Rows:
    """Helium's records of one scan (device events, integration events, integration bodies):
    which are uplinks, their hotspots and normalized columns."""

    provider = PROVIDER
    encoding = ENCODING

    def __init__(self, rec: Records, shapes: dict[str, np.ndarray]) -> None:
        self.rec = rec
        n = rec.n
        self.events = shapes.get("event", np.zeros(n, bool))
        self.bodies = shapes.get("body", np.zeros(n, bool))
        self.confirmed = np.full(n, -1, np.int8)  # 1 confirmed, 0 unconfirmed, -1 unknown
        self.is_event = np.zeros(n, bool)  # uplinks from events (device or integration)

    def select(self, found) -> np.ndarray:
        """The uplink records; other event kinds are skipped, uplinks without their required
        part are bad lines."""
        rec = self.rec
        has = lambda name: (rec.res.record_mask & rec.plan.bit(name)) != 0  # noqa: E731 - a one-line view
        up = np.zeros(rec.n, bool)
        if self.events.any():
            rows = np.flatnonzero(self.events)
            cats, cat_names = categories(rec.text("category", rows), lower=True)
            subs, sub_names = categories(rec.text("sub_category", rows), lower=True)
            # one decision per (category, sub_category) pair present, not per row
            pair = (cats + 1) * (len(sub_names) + 1) + (subs + 1)
            uniq, inverse = distinct_codes(pair)
            decided = [event_kind(*_names(int(p), cat_names, sub_names)) for p in uniq.tolist()]
            code = np.array([d[0] for d in decided], np.int8)[inverse]
            for p, (c, key) in zip(uniq.tolist(), decided):
                if c == _SKIP:
                    found.skip(rows[pair == p], key)
            payload = has("data.payload")[rows]
            data = rec.is_object("data", rows)
            body = rec.is_object("data.req.body", rows)
            integration = code == _INTEGRATION
            found.bad_field(rows[integration & ~body], MISSING_REQ_BODY_REASON, "data.req.body")
            plain = (code == _UPLINK) | (code == _PAYLOAD_ONLY)
            event_up = plain & (payload | ((code == _UPLINK) & data))
            found.bad_field(rows[(code == _UPLINK) & ~payload & ~data], MISSING_DATA_REASON, "data")
            lost = np.flatnonzero((code == _PAYLOAD_ONLY) & ~payload)
            if len(lost):
                found.bad_each(
                    rows[lost],
                    [
                        f"helium event without a payload (category {_quote(cat_names, cats[k])}, "
                        f"sub_category {_quote(sub_names, subs[k])})"
                        for k in lost.tolist()
                    ],
                )
            ups = rows[event_up | (integration & body)]
            up[ups] = True
            self.is_event[ups] = True
            confirmed = np.full(len(rows), -1, np.int8)  # by sub_category, for device events only
            for value, name in ((1, "uplink_confirmed"), (0, "uplink_unconfirmed")):
                if name in sub_names:
                    confirmed[(subs == sub_names.index(name)) & event_up] = value
            self.confirmed[rows] = confirmed
        if self.bodies.any():
            up |= found.keep_with_text(self.bodies, "dev_eui", MISSING_BODY_REASON)
        self.up = up
        return up

    def row_groups(self) -> list[np.ndarray]:
        """The uplink records by where their fields are: at the top (bodies), in ``data``
        (device events) or in ``data.req.body`` (integration events); each group ascending."""
        integration = self.is_event & self.rec.is_object("data.req.body")
        groups = (self.up & ~self.is_event, self.up & self.is_event & ~integration, self.up & integration)
        return [np.flatnonzero(g) for g in groups if g.any()]

    def gateways(self, rows: np.ndarray) -> Gateways:
        """The hotspots of the uplink records ``rows`` (float32 values made shortest decimals)."""
        rec = self.rec
        g, parent = table_rows(rec, "hotspots", rows)
        rssi = _shortest(rec.number("hotspots[].rssi", g)[0])
        snr = _shortest(rec.number("hotspots[].snr", g)[0])
        freq = _shortest(rec.number("hotspots[].frequency", g)[0])
        lat, lat_ok = rec.number("hotspots[].lat", g)
        lon, lon_ok = rec.number("hotspots[].long", g)
        return Gateways(
            parent,
            rssi,
            snr,
            {
                "gateway_id": rec.text("hotspots[].id", g),
                "gateway_name": rec.text("hotspots[].name", g),
                "rssi": float64_array(rssi, ~np.isnan(rssi)),
                "snr": float64_array(snr, ~np.isnan(snr)),
                "time": ts_array(*ms_times(rec, "hotspots[].reported_at", g)),
                "channel": rec.integer("hotspots[].channel", g),
                "latitude": float64_array(lat, lat_ok),
                "longitude": float64_array(lon, lon_ok),
                "frequency_mhz": float64_array(freq, ~np.isnan(freq)),
                "spreading": rec.text("hotspots[].spreading", g),
            },
        )

    def columns(self, rows: np.ndarray, best) -> dict[str, pa.Array]:
        """Normalized columns of the uplink records ``rows`` (ascending); ``best(name)``: a
        hotspot column at each row's best hotspot."""
        rec = self.rec
        m = len(rows)
        is_event = self.is_event[rows]
        event_id = rec.text("id", rows)
        reported = ts_array(*ms_times(rec, "reported_at", rows))
        body_reported = rec.codes("data.req.body.reported_at", rows)
        if (body_reported > 1).any():
            reported = coalesce(ts_array(*ms_times(rec, "data.req.body.reported_at", rows)), reported)
        sf, bw = parse_datr(best("spreading"))
        conf = self.confirmed[rows]

        def field(name: str, read) -> pa.Array:
            """A body field: at the top (bodies), in data (device events) or data.req.body (integration)."""
            return coalesce(read(name), read(f"data.{name}"), read(f"data.req.body.{name}"))

        integer = lambda lo, hi: lambda p: rec.integer(p, rows, lo=lo, hi=hi)  # noqa: E731
        return {
            "packet_id": _where(is_event, event_id, m),
            "dev_eui": coalesce(rec.text("dev_eui", rows, warn=False), rec.text("data.req.body.dev_eui", rows)),
            "device_id": if_else(
                is_event, coalesce(rec.text("device_id", rows), rec.text("data.req.body.id", rows)), event_id
            ),
            "devaddr": field("devaddr", lambda p: rec.text(p, rows)),
            "received_at": reported,
            "fcnt": field("fcnt", integer(*FCNT_RANGE)),
            "port": field("port", integer(*PORT_RANGE)),
            "confirmed": bool_array(conf == 1, conf >= 0) if (conf >= 0).any() else nulls(m, pa.bool_()),
            "frequency_mhz": best("frequency_mhz"),
            "spreading_factor": sf,
            "bandwidth_khz": bw,
            "coding_rate": nulls(m, pa.string()),
        }

    def payload_paths(self) -> tuple[str, ...]:
        return ("payload", "data.payload", "data.req.body.payload")


def _where(mask: np.ndarray, a: pa.Array, m: int) -> pa.Array:
    """a where mask, null elsewhere (bodies have no event id; their "id" is the device's)."""
    if mask.all():
        return a
    if not mask.any():
        return nulls(m, a.type)
    return pc.if_else(bool_array(mask), a, nulls(m, a.type))


def _shortest(x: np.ndarray) -> np.ndarray:
    """Helium prints float32 values at double precision: back to the shortest decimal."""
    return float32_shortest(x) if len(x) else x


def _names(pair: int, cat_names: list, sub_names: list) -> tuple[str | None, str | None]:
    """The (category, sub_category) of a pair code (see Rows.select)."""
    c, s = divmod(pair, len(sub_names) + 1)
    return (cat_names[c - 1] if c else None), (sub_names[s - 1] if s else None)


def _quote(names: list, code: int) -> str:
    return "none" if code < 0 else repr(names[code])
