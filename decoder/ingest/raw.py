"""The raw table: what the JSON parser reads, before normalization.

Its schema is the union of the providers' fields, in groups (``raw_schema``):
Arrow's JSON reader pays for every schema field on every row, present or
not, so a part is parsed with only the groups it needs, plus the marker
fields that tell the shapes apart. ``RawRows`` reads such a table by column
name whatever groups it carries (an absent field reads as all null), so one
normalizer serves every schema. Values the JSON reader cannot take (the slow
path: a malformed neighbour, a field of the wrong type) are checked here and
put into a table of the same schema (``prepare_object``, ``raw_table``).
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import pyarrow as pa

from . import firefly, helium
from .columns import combine, nulls, valid

__all__ = [
    "RAW_SCHEMA",
    "ALL_GROUPS",
    "raw_schema",
    "groups_of",
    "RawRows",
    "prepare_object",
    "raw_table",
    "describe_other",
    "json_kind",
    "DATA_TYPE",
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
        markers = (
            MARKER_FIELDS
            if not key[2]
            else _merge_fields(*(_GROUP_MARKERS[g] for g in sorted(key[0])))
            if key[0]
            else []
        )
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
_TOP_TYPES = {f.name: f.type for f in RAW_SCHEMA}
DATA_TYPE = RAW_SCHEMA.field("data").type


def json_kind(value: Any) -> str:
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
        wrong.append(f"{path}: expected {expect}, got {json_kind(value)}")
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
        return skipped, f"expected a JSON object, got {json_kind(obj)}"
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


class RawRows:
    """A raw table read by column name, with the input line of each row.

    A field the table's schema lacks reads as all null, so one code path
    serves every schema from ``raw_schema``. ``row_errors``: a row error
    already known (a payload that was not text); ``why``: details added to
    the reason when the row turns out to be a bad line (both may be None).
    """

    def __init__(
        self, t: pa.Table, lines: np.ndarray, row_errors: pa.Array | None = None, why: pa.Array | None = None
    ) -> None:
        self.t = t
        self.n = t.num_rows
        self.lines = lines
        self.row_errors = row_errors
        self.why = why
        self.names = set(t.column_names)
        self.groups = groups_of(t.schema)
        self._cache: dict[str, pa.Array] = {}

    def __call__(self, name: str) -> pa.Array:
        a = self._cache.get(name)
        if a is None:
            a = combine(self.t.column(name)) if name in self.names else nulls(self.n, _TOP_TYPES[name])
            self._cache[name] = a
        return a

    def has(self, name: str) -> bool:
        return name in self.names

    def any_valid(self, names) -> np.ndarray:
        """Rows where any of the named fields is present."""
        out = np.zeros(self.n, dtype=bool)
        for name in names:
            if name in self.names:
                c = self(name)
                if c.null_count < len(c):
                    out |= valid(c)
        return out

    def bad(self, rows: np.ndarray, reason: str) -> list[tuple[int, str]]:
        """(line, reason) of each of ``rows``, with its ``why`` details when known."""
        if len(rows) == 0:
            return []
        why = self.why
        extra = (
            [None] * len(rows)
            if why is None or why.null_count == len(why)
            else combine(why).take(pa.array(rows)).to_pylist()
        )
        return [(int(self.lines[r]), reason if x is None else f"{reason} ({x})") for r, x in zip(rows, extra)]
