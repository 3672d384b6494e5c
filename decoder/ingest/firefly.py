"""Firefly (Digimondo): its packet fields, and its rows of a parse -> normalized uplinks and receptions.

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

import collections

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import child, coalesce, combine, nulls, take, valid
from .radio import ReceptionPart, parse_datr
from .timestamps import iso_to_ts

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
EMPTY_ENVELOPE_KEY = "firefly:empty_envelope"


def is_packet(raw) -> np.ndarray:
    """Rows carrying a Firefly marker field (the caller has set Helium events aside)."""
    return raw.any_valid(MARKERS)


def expand_envelopes(t: pa.Table, lines: np.ndarray, row_errors, why, skipped: collections.Counter):
    """Rows that are ``{"packets": [...]}`` envelopes -> one row per packet, in place.

    Returns (table, lines, row_errors, why, source row, index in the
    envelope's packets or -1) per new row. The table carries every Firefly
    field (packets are parsed with all of them)."""
    packets = combine(t.column("packets"))
    env = valid(packets)
    n = t.num_rows
    lengths = pc.fill_null(pc.list_value_length(packets), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = np.where(env, lengths, 0)
    counts = np.where(env, lengths, 1)
    empty = int((env & (lengths == 0)).sum())
    if empty:
        skipped[EMPTY_ENVELOPE_KEY] += empty
    flat = pc.list_flatten(packets)  # the packets of all envelopes, in row order
    parent = pc.list_parent_indices(packets).to_numpy(zero_copy_only=False).astype(np.int64)
    out_start = np.cumsum(counts) - counts
    total = int(counts.sum())
    order = np.empty(total, dtype=np.int64)  # new row -> row of t (< n) or n + packet in flat
    plain = np.flatnonzero(~env)
    order[out_start[plain]] = plain
    within = np.zeros(0, np.int64)
    if len(parent):
        first_of_parent = np.cumsum(lengths) - lengths  # each row's first packet in flat
        within = np.arange(len(parent)) - first_of_parent[parent]
        order[out_start[parent] + within] = n + np.arange(len(parent))
    src_row = order.copy()
    src_packet = np.full(total, -1, dtype=np.int64)
    from_flat = order >= n
    src_row[from_flat] = parent[order[from_flat] - n]
    if len(parent):
        src_packet[from_flat] = within[order[from_flat] - n]
    idx = pa.array(order)
    m = len(flat)
    fields = _merge_top_fields([f for f in t.schema if f.name != "packets"])
    cols = []
    for f in fields:
        base = combine(t.column(f.name)) if f.name in t.column_names else nulls(n, f.type)
        extra = child(flat, f.name, f.type) if f.name in PACKET.names else nulls(m, f.type)
        cols.append(pa.concat_arrays([base, extra]).take(idx))
    out = pa.Table.from_arrays(cols, schema=pa.schema(fields))
    src = pa.array(src_row)
    if row_errors is not None:
        row_errors = combine(row_errors).take(src)
    if why is not None:
        why = combine(why).take(src)
    return out, lines[src_row], row_errors, why, src_row, src_packet


def _merge_top_fields(fields: list[pa.Field]) -> list[pa.Field]:
    """The table's own fields, then the packet fields it lacks."""
    names = {f.name for f in fields}
    return fields + [f for f in PACKET_FIELDS if f.name not in names]


class Rows:
    """Firefly's rows of one parse: which are uplinks, their receptions and normalized columns."""

    provider = PROVIDER
    encoding = ENCODING

    def __init__(self, raw, rows: np.ndarray) -> None:
        self.raw = raw
        self.rows = rows  # bool per raw row: a Firefly object
        self.up = np.zeros(raw.n, dtype=bool)

    def groups_needed(self) -> set[str]:
        """Field groups of the raw schema these rows need to be normalized."""
        raw = self.raw
        used = {"firefly"}
        if "firefly" in raw.groups:
            lean_ok = valid(raw("gwrx")) & valid(raw("spreading_factor")) & valid(raw("bandwidth"))
            if (self.rows & ~lean_ok).any():
                used.add("firefly_full")  # down packets, MAC events, datr instead of SF/BW
        return used

    def select(self, bad: list, skipped: collections.Counter) -> np.ndarray:
        """The uplink rows; down packets and MAC events are counted as skipped, packets
        without device_eui are bad lines."""
        raw, rows = self.raw, self.rows
        mtype = raw("mtype")
        down = rows & valid(raw("sent"))
        if mtype.null_count < raw.n:
            down |= rows & pc.fill_null(pc.ends_with(mtype, "_down"), False).to_numpy(zero_copy_only=False)
        mac = rows & ~down & valid(raw("type")) & valid(raw("direction")) & ~valid(raw("gwrx")) & ~valid(raw("payload"))
        if down.any():
            skipped[DOWN_KEY] += int(down.sum())
        if mac.any():
            skipped.update(f"firefly:{k}" for k in raw("type").filter(pa.array(mac)).to_pylist())
        up = rows & ~down & ~mac
        has_eui = valid(raw("device_eui"))
        bad += raw.bad(np.flatnonzero(up & ~has_eui), MISSING_REASON)
        self.up = up & has_eui
        return self.up

    def receptions(self) -> list[ReceptionPart]:
        """One reception per gateway in ``gwrx`` of every uplink row."""
        gwrx = self.raw("gwrx")
        if gwrx.null_count == len(gwrx):
            return []
        values = combine(pc.list_flatten(gwrx))
        parent = pc.list_parent_indices(gwrx).to_numpy(zero_copy_only=False).astype(np.int64)
        keep = self.up[parent]
        if not keep.all():
            if not keep.any():
                return []
            values = values.filter(pa.array(keep))
            parent = parent[keep]
        k = len(values)
        if k == 0:
            return []
        return [
            ReceptionPart(
                parent,
                {
                    "gateway_id": child(values, "gweui", pa.string()),
                    "gateway_name": nulls(k, pa.string()),
                    "rssi": child(values, "rssi", pa.float64()),
                    "snr": child(values, "lsnr", pa.float64()),
                    "time": iso_to_ts(child(values, "time", pa.string())),
                    "tmst": child(values, "tmst", pa.int64()),
                    "channel": child(values, "chan", pa.int64()),
                    "latitude": nulls(k, pa.float64()),
                    "longitude": nulls(k, pa.float64()),
                    "frequency_mhz": self.raw("freq").take(pa.array(parent)),
                    "spreading": nulls(k, pa.string()),
                },
            )
        ]

    def columns(self, rows: np.ndarray, best) -> dict[str, pa.Array]:
        """Normalized columns of the uplink rows ``rows`` (raw row numbers, ascending)."""
        raw = self.raw
        m = len(rows)
        idx = None if m == raw.n else pa.array(rows)
        mtype = take(raw("mtype"), idx)
        sf = take(raw("spreading_factor"), idx)
        bw = take(raw("bandwidth"), idx)
        if sf.null_count or bw.null_count:
            datr = take(raw("datr"), idx)
            if datr.null_count < m:
                dsf, dbw = parse_datr(datr)
                sf, bw = coalesce(sf, dsf), coalesce(bw, dbw)
        return {
            "packet_id": take(raw("uid"), idx),
            "dev_eui": take(raw("device_eui"), idx),
            "device_id": nulls(m, pa.string()),
            "devaddr": take(raw("devaddr"), idx),
            "received_at": iso_to_ts(take(raw("received_at"), idx)),
            "fcnt": take(raw("fcnt"), idx),
            "port": take(raw("port"), idx),
            "confirmed": pc.equal(mtype, pa.scalar(CONFIRMED_MTYPE, pa.string()))
            if mtype.null_count < m
            else nulls(m, pa.bool_()),
            "payload": take(raw("payload"), idx),
            "frequency_mhz": take(raw("freq"), idx),
            "spreading_factor": sf,
            "bandwidth_khz": bw,
            "coding_rate": take(raw("codr"), idx),
        }
