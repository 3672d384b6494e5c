"""Provider packets (Firefly, Helium) -> the normalized uplink and reception tables.

One implementation, vectorized over a whole batch:

1. Arrow parses JSON objects with a schema from ``raw_schema``: the fields
   that tell the shapes apart plus the field groups a batch needs
   (``RAW_SCHEMA`` has them all). ``decoder.jsonl`` does this, or builds the
   same table from Python objects (``prepare_object``, ``raw_table``).
2. ``normalize`` detects the shape of each row from which fields are
   present, expands Firefly envelopes, picks the uplink rows, builds the
   reception table and the best gateway per uplink (numba), normalizes
   Helium's float32 values, parses timestamps and data rates, and decodes
   the payloads (``decoder.payload``). If the rows need fields the schema
   lacks, it says which (``Normalized.needs``) instead.

A row is a Helium event if it has ``category`` or ``sub_category``; else a
Firefly packet if it has ``device_eui``, ``gwrx`` or ``mtype``; else a Helium
integration body if it has ``dev_eui`` or ``hotspots``; else of no known shape.
Required: ``device_eui`` (Firefly), ``data`` (Helium uplink event),
``data.req.body`` (integration event), ``dev_eui`` (body); a row without it
is a bad line. Other fields of the wrong JSON type read as null.

Columns: see ``UPLINK_SCHEMA`` and ``RECEPTION_SCHEMA`` (DESIGN section 4).
Receptions are in input order within each shape of a batch; ``packet_index``
is the uplink's row in the batch.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field as dc_field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import firefly, helium
from ._common import (
    FIREFLY,
    HELIUM,
    PROVIDERS,
    RECEPTION_SCHEMA,
    TS,
    UPLINK_SCHEMA,
    best_by_parent,
    combine,
    epoch_ms_to_ts,
    f64,
    float32_shortest,
    iso_to_ts,
    ms_strings_to_ts,
    nulls,
    parse_datr,
    valid,
)

__all__ = [
    "RAW_SCHEMA",
    "UPLINK_SCHEMA",
    "RECEPTION_SCHEMA",
    "Normalized",
    "normalize",
    "raw_table",
    "prepare_object",
    "describe_other",
]


def _merge_fields(*groups: list[pa.Field]) -> list[pa.Field]:
    """Fields by name; two struct fields of one name merge their children."""
    seen: dict[str, pa.Field] = {}
    for group in groups:
        for f in group:
            old = seen.get(f.name)
            if old is None:
                seen[f.name] = f
            elif old.type != f.type:
                if pa.types.is_struct(old.type) and pa.types.is_struct(f.type):
                    seen[f.name] = pa.field(f.name, pa.struct(_merge_fields(list(old.type), list(f.type))))
                else:
                    raise TypeError(f"field {f.name}: {old.type} vs {f.type}")
    return list(seen.values())


MARKER_FIELDS = firefly.MARKER_FIELDS + [firefly.ENVELOPE_FIELD] + helium.MARKER_FIELDS
GROUPS: dict[str, list[pa.Field]] = {
    "firefly": firefly.LEAN_FIELDS,
    "firefly_full": firefly.LEAN_FIELDS + firefly.FULL_FIELDS,
    "event": helium.EVENT_FIELDS,
    "integration": helium.INTEGRATION_FIELDS,
    "body": helium.BODY_TOP_FIELDS,
}
ALL_GROUPS = frozenset(GROUPS)
_SCHEMAS: dict[tuple, pa.Schema] = {}


_GROUP_MARKERS = {
    "firefly": firefly.MARKER_FIELDS + [firefly.ENVELOPE_FIELD],
    "firefly_full": firefly.MARKER_FIELDS + [firefly.ENVELOPE_FIELD],
    "event": helium.MARKER_FIELDS[:2],
    "integration": helium.MARKER_FIELDS[:2],
    "body": helium.MARKER_FIELDS[2:],
}


def raw_schema(groups=ALL_GROUPS, reported_at_text: bool = False, own_markers: bool = False) -> pa.Schema:
    """The Arrow schema to parse JSON objects with: the marker fields that tell
    the shapes apart, plus the fields of the given groups (``GROUPS``). With
    every group it is ``RAW_SCHEMA``, the union of the fields of every shape.

    ``reported_at_text``: the top-level ``reported_at`` is a string (Helium
    device events print epoch milliseconds in quotes) instead of an integer.
    ``own_markers``: only the markers of the given groups (each absent field
    costs Arrow time on every row). Rows of other shapes then read as rows
    of no known shape, which the reader judges on their text."""
    key = (frozenset(groups), bool(reported_at_text), bool(own_markers) and frozenset(groups) != ALL_GROUPS)
    schema = _SCHEMAS.get(key)
    if schema is None:
        unknown = key[0] - ALL_GROUPS
        if unknown:
            raise ValueError(f"unknown field groups: {sorted(unknown)}")
        markers = MARKER_FIELDS if not key[2] else \
            _merge_fields(*(_GROUP_MARKERS[g] for g in sorted(key[0]))) if key[0] else []
        fields = _merge_fields(markers, *(GROUPS[g] for g in sorted(key[0])))
        if reported_at_text:
            fields = [pa.field(f.name, pa.string()) if f.name == "reported_at" else f for f in fields]
        schema = pa.schema(fields)
        _SCHEMAS[key] = schema
    return schema


def groups_of(schema: pa.Schema) -> frozenset:
    """The field groups a raw schema carries."""
    names = set(schema.names)
    out = set()
    if "uid" in names:
        out.add("firefly")
    if "datr" in names:
        out.add("firefly_full")
    if "data" in names:
        data = schema.field("data").type
        if data.get_field_index("hotspot") >= 0:
            out.add("event")
        if data.get_field_index("req") >= 0:
            out.add("integration")
    if "devaddr" in names:
        out.add("body")
    return frozenset(out)


RAW_SCHEMA = raw_schema(ALL_GROUPS)
_SUB_CODES = pa.array([*helium.UPLINK_SUB_CATEGORIES, helium.INTEGRATION_SUB_CATEGORY])
assert helium.UPLINK_SUB_CATEGORIES[0] == helium.CONFIRMED_SUB_CATEGORY
_TOP_TYPES = {f.name: f.type for f in RAW_SCHEMA}
_DATA_TYPE = RAW_SCHEMA.field("data").type


@dataclass
class Normalized:
    uplinks: pa.Table
    receptions: pa.Table
    bad: list[tuple[int, str]] = dc_field(default_factory=list)
    skipped: collections.Counter = dc_field(default_factory=collections.Counter)
    # Rows that match no known shape: the caller looks at the original text
    # (it may be an envelope this schema does not carry) and reports them.
    unknown: np.ndarray = dc_field(default_factory=lambda: np.zeros(0, np.int64))
    # For each unknown row: its index in the envelope's packets (-1: not from an envelope).
    unknown_packet: np.ndarray = dc_field(default_factory=lambda: np.zeros(0, np.int64))
    # Field groups the rows need that the table lacks: parse again with them
    # (the other fields of this result are then empty).
    needs: frozenset = frozenset()
    # Field groups the rows used: what to parse the next batch with.
    used: frozenset = frozenset()


# --------------------------------------------------------------------------- slow path


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_EXPECT = {"string": "a string", "int64": "an integer", "double": "a number", "bool": "a boolean"}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _coercer(type_: pa.DataType, path: str):
    """A function (value, wrong) -> the value as Arrow accepts it for type_, or
    None (noting path in the list wrong) when it has the wrong JSON type.
    Integral floats pass as integers; epoch-ms digit strings pass as integers
    where a reported_at goes (Helium prints it both ways). Built once per
    schema field: the slow path runs it for every value it reads."""

    def fail(value, wrong, expect):
        wrong.append(f"{path}: expected {expect}, got {_kind(value)}")
        return None

    if pa.types.is_string(type_):
        def f(v, wrong):
            return v if v is None or type(v) is str else fail(v, wrong, "a string")
    elif pa.types.is_int64(type_):
        digits_ok = path.endswith("reported_at")

        def f(v, wrong):
            t = type(v)
            if t is int:
                if _INT64_MIN <= v <= _INT64_MAX:
                    return v
            elif v is None:
                return None
            elif t is float:
                if v.is_integer() and abs(v) < 2.0**63:
                    return int(v)
            elif t is str and digits_ok:
                text = v.strip()
                if text.lstrip("-").isdigit() and len(text) <= 19:
                    return int(text)
            return fail(v, wrong, "an integer")
    elif pa.types.is_float64(type_):
        def f(v, wrong):
            t = type(v)
            if t is float:
                return v
            if t is int:
                return float(v)
            return None if v is None else fail(v, wrong, "a number")
    elif pa.types.is_boolean(type_):
        def f(v, wrong):
            return v if v is None or type(v) is bool else fail(v, wrong, "a boolean")
    elif pa.types.is_list(type_):
        item = _coercer(type_.value_type, path + "[]")

        def f(v, wrong):
            if type(v) is list:
                return [item(x, wrong) for x in v]
            return None if v is None else fail(v, wrong, "an array")
    elif pa.types.is_struct(type_):
        children = {c.name: _coercer(c.type, f"{path}.{c.name}" if path else c.name) for c in type_}

        def f(v, wrong):
            if type(v) is dict:
                out = {}
                for key, x in v.items():
                    c = children.get(key)
                    if c is not None:
                        out[key] = c(x, wrong)
                return out
            return None if v is None else fail(v, wrong, "an object")
    else:  # pragma: no cover - the schema uses only the types above
        raise TypeError(type_)
    return f


_TOP_COERCE = _coercer(pa.struct([f for f in RAW_SCHEMA if f.name != "packets"]), "")


_PAYLOAD_PATHS = ("payload", "data.payload", "data.req.body.payload")


def prepare_object(obj: dict) -> tuple[dict, str | None, str | None]:
    """One JSON object -> (row for ``raw_table``, row error, why).

    Fields of the wrong JSON type become null. A payload that is not text
    gives the row error ``payload is not text``; the other wrong types are
    collected in ``why``, which ``normalize`` adds to the reason when the row
    then lacks a required field (so ``"device_eui": 5`` reads
    ``firefly packet without device_eui (device_eui: expected a string, got number)``).
    """
    wrong: list[str] = []
    row = _TOP_COERCE(obj, wrong)
    if not wrong:
        return row, None, None
    error = None
    rest = []
    for w in wrong:
        if w.split(":", 1)[0] in _PAYLOAD_PATHS:
            error = "payload is not text"
        else:
            rest.append(w)
    return row, error, ("; ".join(rest) or None)


def raw_table(rows: list[dict]) -> pa.Table:
    """Rows from ``prepare_object`` -> a table with ``RAW_SCHEMA``."""
    return pa.Table.from_pylist(rows, schema=RAW_SCHEMA)


def describe_other(obj: Any) -> tuple[collections.Counter, str | None]:
    """For a JSON value that ``normalize`` found no shape in: the event kinds
    to count as skipped (a Firefly ``mac_events`` envelope), or the reason it
    is a bad line."""
    skipped: collections.Counter = collections.Counter()
    if not isinstance(obj, dict):
        return skipped, f"expected a JSON object, got {_kind(obj)}"
    events = obj.get("mac_events")
    if isinstance(events, list) and set(obj) <= {"mac_events", "more"}:
        for e in events:
            kind = e.get("type") if isinstance(e, dict) else None
            skipped[f"firefly:{kind if isinstance(kind, str) else 'mac_event'}"] += 1
        if not events:
            skipped["firefly:empty_envelope"] += 1
        return skipped, None
    keys = ", ".join(sorted(map(str, obj))[:8]) + (", ..." if len(obj) > 8 else "")
    return skipped, f"unknown shape: no Firefly packet or Helium event fields (keys: {keys or 'none'})"


# --------------------------------------------------------------------------- normalize


class _Cols:
    """Columns of a raw table by name; a field the table's schema lacks reads
    as all null (so one code path serves every schema from ``raw_schema``)."""

    def __init__(self, t: pa.Table):
        self.t = t
        self.n = t.num_rows
        self.names = set(t.column_names)
        self._cache: dict[str, pa.Array] = {}

    def __call__(self, name: str) -> pa.Array:
        a = self._cache.get(name)
        if a is None:
            a = combine(self.t.column(name)) if name in self.names else nulls(self.n, _TOP_TYPES[name])
            self._cache[name] = a
        return a

    def has(self, name: str) -> bool:
        return name in self.names


def _child(struct: pa.Array, name: str, type_: pa.DataType) -> pa.Array:
    """A struct's child, null where the struct is null (or lacks the field)."""
    k = struct.type.get_field_index(name)
    if k < 0 or struct.null_count == len(struct):
        return nulls(len(struct), type_)
    struct = combine(struct)
    if struct.null_count == 0:
        return struct.field(k)  # zero-copy: sliced to the struct, no nulls to merge
    return pc.struct_field(struct, name)


def _any_valid(cols: _Cols, names) -> np.ndarray:
    out = np.zeros(cols.n, dtype=bool)
    for name in names:
        if cols.has(name):
            c = cols(name)
            if c.null_count < len(c):
                out |= valid(c)
    return out


def _expand_envelopes(t: pa.Table, lines: np.ndarray, row_errors, why, skipped):
    """Rows that are ``{"packets": [...]}`` envelopes -> one row per packet, in place.
    The result carries every Firefly field (packets are parsed with all of them)."""
    packets = combine(t.column("packets"))
    env = valid(packets)
    n = t.num_rows
    lengths = pc.fill_null(pc.list_value_length(packets), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = np.where(env, lengths, 0)
    counts = np.where(env, lengths, 1)
    empty = int((env & (lengths == 0)).sum())
    if empty:
        skipped["firefly:empty_envelope"] += empty
    flat = pc.list_flatten(packets)  # the packets of all envelopes, in row order
    parent = pc.list_parent_indices(packets).to_numpy(zero_copy_only=False).astype(np.int64)
    out_start = np.cumsum(counts) - counts
    total = int(counts.sum())
    take = np.empty(total, dtype=np.int64)
    plain = np.flatnonzero(~env)
    take[out_start[plain]] = plain
    if len(parent):
        first_of_parent = np.cumsum(lengths) - lengths  # each row's first packet in flat
        within = np.arange(len(parent)) - first_of_parent[parent]
        take[out_start[parent] + within] = n + np.arange(len(parent))
    src_row = take.copy()
    src_packet = np.full(total, -1, dtype=np.int64)
    from_flat = take >= n
    src_row[from_flat] = parent[take[from_flat] - n]
    if len(parent):
        src_packet[from_flat] = within[take[from_flat] - n]
    idx = pa.array(take)
    m = len(flat)
    fields = _merge_fields([f for f in t.schema if f.name != "packets"], firefly.PACKET_FIELDS)
    cols = []
    for f in fields:
        base = combine(t.column(f.name)) if f.name in t.column_names else nulls(n, f.type)
        extra = _child(flat, f.name, f.type) if f.name in firefly.PACKET.names else nulls(m, f.type)
        cols.append(pa.concat_arrays([base, extra]).take(idx))
    out = pa.Table.from_arrays(cols, schema=pa.schema(fields))
    lines = lines[src_row]
    src = pa.array(src_row)
    if row_errors is not None:
        row_errors = combine(row_errors).take(src)
    if why is not None:
        why = combine(why).take(src)
    return out, lines, row_errors, why, src_row, src_packet


def _str_eq(a, value: str) -> np.ndarray:
    if a.null_count == len(a):
        return np.zeros(len(a), dtype=bool)
    if pa.types.is_dictionary(a.type):
        hit = np.asarray(pc.fill_null(pc.equal(a.dictionary, value), False).to_numpy(zero_copy_only=False))
        if not hit.any():
            return np.zeros(len(a), dtype=bool)
        idx = a.indices.fill_null(0).to_numpy(zero_copy_only=False) if a.null_count else \
            a.indices.to_numpy(zero_copy_only=False)
        return hit[idx] & valid(a)
    return pc.fill_null(pc.equal(a, value), False).to_numpy(zero_copy_only=False)


def _reason_list(lines: np.ndarray, rows: np.ndarray, reason: str, why) -> list[tuple[int, str]]:
    if len(rows) == 0:
        return []
    extra = [None] * len(rows) if why is None or why.null_count == len(why) else \
        combine(why).take(pa.array(rows)).to_pylist()
    return [(int(lines[r]), reason if x is None else f"{reason} ({x})") for r, x in zip(rows, extra)]


def _take(a, idx: pa.Array | None):
    a = combine(a)
    return a if idx is None else a.take(idx)


def _if_else(mask: np.ndarray, a, b):
    if mask.all():
        return a
    if not mask.any():
        return b
    return pc.if_else(pa.array(mask), a, b)


def _coalesce(*arrays):
    live = [a for a in arrays if a.null_count < len(a)]
    if not live:
        return arrays[0]
    if len(live) == 1:
        return live[0]
    return pc.coalesce(*live)


def normalize(
    t: pa.Table,
    lines: np.ndarray,
    row_errors: pa.Array | None = None,
    why: pa.Array | None = None,
) -> Normalized:
    """Raw rows (a schema from ``raw_schema``) -> the normalized tables.

    ``lines[i]`` is the input line of row ``i``; ``row_errors`` (string, may be
    None) a row-level error already known (a payload that was not text);
    ``why`` (string, may be None) details added to the reason if the row turns
    out to be a bad line. If the rows need field groups the schema lacks, the
    result only says so (``needs``): parse again with them.
    """
    lines = np.asarray(lines, dtype=np.int64)
    skipped: collections.Counter = collections.Counter()
    bad: list[tuple[int, str]] = []
    have = groups_of(t.schema)

    src_row = src_packet = None
    if "packets" in t.column_names and t.column("packets").null_count < t.num_rows:
        t, lines, row_errors, why, src_row, src_packet = _expand_envelopes(t, lines, row_errors, why, skipped)
        have = groups_of(t.schema)
    n = t.num_rows
    col = _Cols(t)

    # ---- shapes ------------------------------------------------------------
    category = col("category")
    sub = col("sub_category")
    is_event = valid(category) | valid(sub)
    is_ff = ~is_event & _any_valid(col, firefly.MARKERS)
    is_body = ~is_event & ~is_ff & _any_valid(col, helium.BODY_MARKERS)
    unknown = np.flatnonzero(~(is_event | is_ff | is_body))
    if src_row is not None:
        unknown_packet = src_packet[unknown]
        unknown = src_row[unknown]
    else:
        unknown_packet = np.full(len(unknown), -1, dtype=np.int64)

    # sub_code: 0 uplink_confirmed, 1 uplink_unconfirmed, 2 uplink_integration_req, -1 other
    sub_code = np.full(n, -1, dtype=np.int32)
    if is_event.any():
        is_uplink_cat = _str_eq(category, "uplink")
        sub_code = pc.fill_null(pc.index_in(sub, value_set=_SUB_CODES), -1).to_numpy(zero_copy_only=False)
        integ_shape = is_event & (sub_code == 2)
        ev_up_shape = is_event & is_uplink_cat & ((sub_code == 0) | (sub_code == 1))
    else:
        integ_shape = ev_up_shape = np.zeros(n, dtype=bool)

    # ---- field groups: the rows need, the table has ---------------------------
    used = set()
    if is_ff.any():
        used.add("firefly")
        if "firefly" in have:
            lean_ok = valid(col("gwrx")) & valid(col("spreading_factor")) & valid(col("bandwidth"))
            if (is_ff & ~lean_ok).any():
                used.add("firefly_full")  # down packets, MAC events, datr instead of SF/BW
    if ev_up_shape.any():
        used.add("event")
    if integ_shape.any():
        used.add("integration")
    if is_body.any():
        used.add("body")
    needs = frozenset(used - have)
    if needs:
        return Normalized(UPLINK_SCHEMA.empty_table(), RECEPTION_SCHEMA.empty_table(), needs=needs,
                          used=frozenset(used))

    up = np.zeros(n, dtype=bool)

    # Firefly: down packets and MAC events are skipped; an uplink needs device_eui.
    if is_ff.any():
        mtype = col("mtype")
        down = is_ff & valid(col("sent"))
        if mtype.null_count < n:
            down |= is_ff & pc.fill_null(pc.ends_with(mtype, "_down"), False).to_numpy(zero_copy_only=False)
        mac = is_ff & ~down & valid(col("type")) & valid(col("direction")) & \
            ~valid(col("gwrx")) & ~valid(col("payload"))
        if down.any():
            skipped[firefly.DOWN_KEY] += int(down.sum())
        if mac.any():
            kinds = col("type").filter(pa.array(mac)).to_pylist()
            skipped.update(f"firefly:{k}" for k in kinds)
        ff_up = is_ff & ~down & ~mac
        has_eui = valid(col("device_eui"))
        bad += _reason_list(lines, np.flatnonzero(ff_up & ~has_eui), firefly.MISSING_REASON, why)
        up |= ff_up & has_eui

    data = col("data")
    req = _child(data, "req", _DATA_TYPE.field("req").type)
    body = _child(req, "body", helium.BODY)
    ev_up = np.zeros(n, dtype=bool)
    integ = np.zeros(n, dtype=bool)
    if is_event.any():
        other = is_event & ~ev_up_shape & ~integ_shape
        if other.any():
            rows = pa.array(np.flatnonzero(other))
            cats = category.take(rows).to_pylist()
            subs = sub.take(rows).to_pylist()
            skipped.update(f"helium:{s_ if c == 'uplink' or c is None else c}" for c, s_ in zip(cats, subs))
        has_data = valid(data)
        bad += _reason_list(lines, np.flatnonzero(ev_up_shape & ~has_data), helium.MISSING_DATA_REASON, why)
        has_body = valid(body)
        bad += _reason_list(lines, np.flatnonzero(integ_shape & ~has_body), helium.MISSING_REQ_BODY_REASON, why)
        ev_up = ev_up_shape & has_data
        integ = integ_shape & has_body
        up |= ev_up | integ
    if is_body.any():
        has_eui = valid(col("dev_eui"))
        bad += _reason_list(lines, np.flatnonzero(is_body & ~has_eui), helium.MISSING_BODY_REASON, why)
        is_body = is_body & has_eui
        up |= is_body

    up_idx = np.flatnonzero(up)
    m = len(up_idx)
    if m == 0:
        return Normalized(UPLINK_SCHEMA.empty_table(), RECEPTION_SCHEMA.empty_table(), bad, skipped, unknown,
                          unknown_packet, used=frozenset(used))
    ff_u = is_ff[up_idx]  # provider per uplink row
    take = None if m == n else pa.array(up_idx)

    # ---- receptions ----------------------------------------------------------
    rec, counts = _receptions(col, data, body, up, is_ff, ev_up, integ, is_body, n)
    counts_u = counts[up_idx]
    best = best_by_parent(rec["parent"], rec["rssi_np"], rec["snr_np"], n)[up_idx]
    has_best = best >= 0
    best_idx = pa.array(best) if has_best.all() else pa.array(np.where(has_best, best, 0), mask=~has_best)

    def best_of(name):
        c = rec[name]
        if len(c) == 0:
            return nulls(m, c.type)
        return c.take(best_idx)

    # ---- uplink columns ---------------------------------------------------------
    provider = pa.DictionaryArray.from_arrays(pa.array(np.where(ff_u, FIREFLY, HELIUM).astype(np.int32)), PROVIDERS)

    ev_id = _take(col("id"), take)
    is_ev_u = (ev_up | integ)[up_idx]
    is_body_u = is_body[up_idx]
    packet_id = _if_else(ff_u, _take(col("uid"), take), _if_else(is_ev_u, ev_id, nulls(m, pa.string())))

    dev_eui = _coalesce(_take(col("device_eui"), take), _take(col("dev_eui"), take),
                        _take(_child(body, "dev_eui", pa.string()), take))
    if dev_eui.null_count < m:
        dev_eui = pc.ascii_upper(dev_eui)

    device_id = _if_else(
        is_ev_u, _coalesce(_take(col("device_id"), take), _take(_child(body, "id", pa.string()), take)),
        _if_else(is_body_u, ev_id, nulls(m, pa.string())),
    )
    devaddr = _coalesce(_take(col("devaddr"), take), _take(_child(data, "devaddr", pa.string()), take),
                        _take(_child(body, "devaddr", pa.string()), take))

    ff_ts = iso_to_ts(_take(col("received_at"), take)) if ff_u.any() else nulls(m, TS)
    if (~ff_u).any():
        rep = _take(col("reported_at"), take)
        rep_ts = ms_strings_to_ts(rep) if pa.types.is_string(rep.type) else epoch_ms_to_ts(rep)
        body_rep = _take(_child(body, "reported_at", pa.int64()), take)
        he_ts = _coalesce(epoch_ms_to_ts(body_rep), rep_ts) if body_rep.null_count < m else rep_ts
        received_at = _if_else(ff_u, ff_ts, he_ts)
    else:
        received_at = ff_ts

    fcnt = _coalesce(_take(col("fcnt"), take), _take(_child(data, "fcnt", pa.int64()), take),
                     _take(_child(body, "fcnt", pa.int64()), take))
    port = _coalesce(_take(col("port"), take), _take(_child(data, "port", pa.int64()), take),
                     _take(_child(body, "port", pa.int64()), take))

    mtype_u = _take(col("mtype"), take)
    ff_conf = pc.equal(mtype_u, pa.scalar(firefly.CONFIRMED_MTYPE, pa.string())) if mtype_u.null_count < m else nulls(m, pa.bool_())
    ev_up_u = ev_up[up_idx]
    if ev_up_u.any():
        he_conf = _if_else(ev_up_u, pa.array(sub_code[up_idx] == 0), nulls(m, pa.bool_()))
        confirmed = _if_else(ff_u, ff_conf, he_conf)
    else:
        confirmed = _if_else(ff_u, ff_conf, nulls(m, pa.bool_()))

    # radio: Firefly from the packet, Helium from the best hotspot
    if ff_u.any():
        sf_ff = _take(col("spreading_factor"), take)
        bw_ff = _take(col("bandwidth"), take)
        if sf_ff.null_count or bw_ff.null_count:
            datr = _take(col("datr"), take)
            if datr.null_count < m:
                dsf, dbw = parse_datr(datr)
                sf_ff = _coalesce(sf_ff, dsf)
                bw_ff = _coalesce(bw_ff, dbw)
        freq_ff = _take(col("freq"), take)
    else:
        sf_ff = bw_ff = freq_ff = None
    if (~ff_u).any():
        sf_he, bw_he = parse_datr(best_of("spreading"))
        freq_he = best_of("frequency_mhz")
    else:
        sf_he = bw_he = freq_he = None

    def radio(a_ff, a_he, type_):
        if a_ff is None:
            return a_he
        if a_he is None:
            return a_ff
        return _if_else(ff_u, a_ff.cast(type_), a_he.cast(type_))

    frequency = radio(freq_ff, freq_he, pa.float64())
    sf = radio(sf_ff, sf_he, pa.int64())
    bw = radio(bw_ff, bw_he, pa.float64())
    codr = _if_else(ff_u, _take(col("codr"), take), nulls(m, pa.string()))

    # payloads
    text = _coalesce(_take(col("payload"), take), _take(_child(data, "payload", pa.string()), take),
                     _take(_child(body, "payload", pa.string()), take))
    payload, perr = _payloads(text, ff_u)
    errors = None if row_errors is None else _take(row_errors, take)
    if errors is None or errors.null_count == m:
        errors = perr
    elif perr.null_count < m:
        errors = pc.coalesce(errors, perr)

    uplinks = pa.Table.from_arrays(
        [
            provider,
            packet_id,
            dev_eui,
            device_id,
            devaddr,
            received_at,
            fcnt,
            port,
            confirmed,
            payload,
            frequency,
            sf,
            bw,
            codr,
            best_of("rssi"),
            best_of("snr"),
            best_of("gateway_id"),
            pa.array(counts_u, pa.int64()),
            pa.array(lines[up_idx], pa.int64()),
            errors,
        ],
        schema=UPLINK_SCHEMA,
    )

    # packet_index: raw row -> uplink row
    new_pos = np.cumsum(up) - 1
    receptions = pa.Table.from_arrays(
        [pa.array(new_pos[rec["parent"]], pa.int64())] + [rec[f.name] for f in list(RECEPTION_SCHEMA)[1:]],
        schema=RECEPTION_SCHEMA,
    )
    return Normalized(uplinks, receptions, bad, skipped, unknown, unknown_packet, used=frozenset(used))


def _payloads(text: pa.Array, ff_u: np.ndarray) -> tuple[pa.Array, pa.Array]:
    from decoder.payload import to_buffer

    m = len(text)
    if m == 0:
        return pa.array([], pa.binary()), pa.array([], pa.string())
    if ff_u.all():
        groups = [(None, firefly.ENCODING)]
    elif not ff_u.any():
        groups = [(None, helium.ENCODING)]
    else:
        groups = [(np.flatnonzero(ff_u), firefly.ENCODING), (np.flatnonzero(~ff_u), helium.ENCODING)]
    parts, errs, order = [], [], []
    for idx, enc in groups:
        sub = text if idx is None else text.take(pa.array(idx))
        buf = to_buffer(sub, enc)
        binary = buf.to_arrow()
        code = np.asarray(buf.error)
        bad = np.flatnonzero(code)
        if len(bad):
            msgs = [None] * len(sub)
            for i in bad:
                msgs[i] = buf.error_message(int(i))
            err = pa.array(msgs, pa.string())
            if binary.null_count < len(bad):  # make sure a failed row is null, not empty bytes
                binary = pc.if_else(pa.array(code == 0), binary, pa.scalar(None, pa.binary()))
        else:
            err = nulls(len(sub), pa.string())
        parts.append(binary)
        errs.append(err)
        order.append(idx)
    if len(parts) == 1:
        return parts[0], errs[0]
    inv = np.empty(m, dtype=np.int64)
    inv[np.concatenate(order)] = np.arange(m)
    inv_a = pa.array(inv)
    return pa.concat_arrays(parts).take(inv_a), pa.concat_arrays(errs).take(inv_a)


_REC_TYPES = {f.name: f.type for f in RECEPTION_SCHEMA}
_REC_TYPES["spreading"] = pa.string()
_REC_NAMES = [f.name for f in RECEPTION_SCHEMA][1:] + ["spreading"]


def _receptions(col: _Cols, data, body, up, is_ff, ev_up, integ, is_body, n):
    """Receptions of the uplink rows, by shape (Firefly gateways, body hotspots,
    integration hotspots, event hotspots), each in row order: a dict of columns
    (RECEPTION_SCHEMA names, plus ``parent`` raw row, ``spreading``, and
    ``rssi_np``/``snr_np`` float arrays for the best-gateway kernel), and the
    number of receptions per raw row."""
    parts = []  # (parent np, dict of columns)

    def list_source(lst, mask):
        if lst.null_count == len(lst):
            return None
        values = combine(pc.list_flatten(lst))
        if len(values) == 0:
            return None
        parent = pc.list_parent_indices(lst).to_numpy(zero_copy_only=False).astype(np.int64)
        keep = mask[parent]
        if not keep.all():
            if not keep.any():
                return None
            values = values.filter(pa.array(keep))
            parent = parent[keep]
        return parent, values

    ff_mask = up & is_ff
    if ff_mask.any():
        src = list_source(col("gwrx"), ff_mask)
        if src is not None:
            parent, v = src
            k = len(v)
            parts.append((parent, {
                "gateway_id": _child(v, "gweui", pa.string()),
                "gateway_name": nulls(k, pa.string()),
                "rssi": _child(v, "rssi", pa.float64()),
                "snr": _child(v, "lsnr", pa.float64()),
                "time": iso_to_ts(_child(v, "time", pa.string())),
                "tmst": _child(v, "tmst", pa.int64()),
                "channel": _child(v, "chan", pa.int64()),
                "latitude": nulls(k, pa.float64()),
                "longitude": nulls(k, pa.float64()),
                "frequency_mhz": col("freq").take(pa.array(parent)),
                "spreading": nulls(k, pa.string()),
                "helium": False,
            }))

    def hotspot_part(parent, v):
        return (parent, {
            "gateway_id": _child(v, "id", pa.string()),
            "gateway_name": _child(v, "name", pa.string()),
            "rssi": _child(v, "rssi", pa.float64()),
            "snr": _child(v, "snr", pa.float64()),
            "time": epoch_ms_to_ts(_child(v, "reported_at", pa.int64())),
            "tmst": nulls(len(v), pa.int64()),
            "channel": _child(v, "channel", pa.int64()),
            "latitude": _child(v, "lat", pa.float64()),
            "longitude": _child(v, "long", pa.float64()),
            "frequency_mhz": _child(v, "frequency", pa.float64()),
            "spreading": _child(v, "spreading", pa.string()),
            "helium": True,
        })

    if (up & is_body).any():
        src = list_source(col("hotspots"), up & is_body)
        if src is not None:
            parts.append(hotspot_part(*src))
    if integ.any():
        src = list_source(_child(body, "hotspots", pa.list_(helium.HOTSPOT)), integ)
        if src is not None:
            parts.append(hotspot_part(*src))
    if ev_up.any():
        hs = _child(data, "hotspot", helium.EVENT_HOTSPOT)
        keep = valid(hs) & ev_up
        if keep.all():
            parts.append(hotspot_part(np.arange(n, dtype=np.int64), combine(hs)))
        elif keep.any():
            idx = np.flatnonzero(keep)
            parts.append(hotspot_part(idx, hs.take(pa.array(idx))))

    if not parts:
        out = {name: pa.array([], _REC_TYPES[name]) for name in _REC_NAMES}
        out["parent"] = np.zeros(0, np.int64)
        out["rssi_np"] = np.zeros(0)
        out["snr_np"] = np.zeros(0)
        return out, np.zeros(n, np.int64)

    parent = np.concatenate([p for p, _ in parts])
    helium_flag = np.concatenate([np.full(len(p), c["helium"]) for p, c in parts])
    out = {}
    for name in _REC_NAMES:
        arrs = [combine(c[name]) for _, c in parts]
        arrs = [a if a.type == _REC_TYPES[name] else a.cast(_REC_TYPES[name]) for a in arrs]
        out[name] = arrs[0] if len(arrs) == 1 else pa.concat_arrays(arrs)
    # With several shapes in one batch, receptions stay grouped by shape (each
    # group in input order): sorting them costs a take of every column, and
    # packet_index says which uplink each belongs to.

    # Helium prints float32 values at double precision: back to the shortest decimal.
    rssi_np = f64(out["rssi"])
    snr_np = f64(out["snr"])
    if helium_flag.any():
        every = helium_flag.all()
        for name in ("rssi", "snr", "frequency_mhz"):
            x = rssi_np if name == "rssi" else snr_np if name == "snr" else f64(out[name])
            fixed = float32_shortest(x)
            x = fixed if every else np.where(helium_flag, fixed, x)
            if name == "rssi":
                rssi_np = x
            elif name == "snr":
                snr_np = x
            ok = ~np.isnan(x)
            out[name] = pa.array(x, pa.float64(), mask=None if ok.all() else ~ok)
    out["parent"] = parent
    out["rssi_np"] = rssi_np
    out["snr_np"] = snr_np
    return out, np.bincount(parent, minlength=n).astype(np.int64)
