"""The Things Stack's normalized payload schema, and a class's map of its outputs onto it.

A device class may say which of its outputs are which quantity of the
normalized payload schema of The Things Stack's device repository
(``"normalized": {"air.temperature": "temperature", "battery": "batteryVoltage"}``),
so uplinks of different device models come out in one comparable ``normalized``
column: the same names, units and types for every class. A value outside the
schema's range (a temperature below -273.15 °C, a humidity above 100 %) is
null, with a row warning that says which and why.

Units are the schema's: °C, %, hPa, ppm, lux, m/s, °, cm, dS/m, V, L; the
map only says where a quantity comes from, so a class whose output has
another unit converts it in a formula first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ScriptError

__all__ = ["FIELDS", "Quantity", "parse_map", "check_outputs", "normalized_type", "normalize"]


@dataclass(frozen=True)
class Quantity:
    """One leaf of the schema: its path, Arrow type and allowed range (or values)."""

    path: tuple[str, ...]
    kind: str  # "number", "boolean" or "string"
    minimum: float = -math.inf
    maximum: float = math.inf
    exclusive_maximum: bool = False
    values: tuple[str, ...] = ()  # the allowed strings of an enum
    unit: str = ""

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def type(self) -> pa.DataType:
        return {"number": pa.float64(), "boolean": pa.bool_(), "string": pa.string()}[self.kind]


def _n(path: str, unit: str, lo: float = -math.inf, hi: float = math.inf, exclusive: bool = False) -> Quantity:
    return Quantity(tuple(path.split(".")), "number", lo, hi, exclusive, unit=unit)


_TEMPERATURE = -273.15
_CONCENTRATION = 1_000_000

# The schema's leaves, in its order (device repository lib/payload.json, 2020-12 draft). The
# schema gives position no range; latitude and longitude get the physical one.
FIELDS: tuple[Quantity, ...] = (
    _n("battery", "V", 0),
    _n("soil.depth", "cm", 0),
    _n("soil.moisture", "%", 0, 100),
    _n("soil.temperature", "°C", _TEMPERATURE),
    _n("soil.ec", "dS/m", 0, 621),
    _n("soil.pH", "pH", 0, 14),
    _n("soil.n", "ppm", 0, _CONCENTRATION),
    _n("soil.p", "ppm", 0, _CONCENTRATION),
    _n("soil.k", "ppm", 0, _CONCENTRATION),
    Quantity(("air", "location"), "string", values=("indoor", "outdoor")),
    _n("air.temperature", "°C", _TEMPERATURE),
    _n("air.relativeHumidity", "%", 0, 100),
    _n("air.pressure", "hPa", 900, 1100),
    _n("air.co2", "ppm", 0, _CONCENTRATION),
    _n("air.lightIntensity", "lux", 0),
    _n("wind.speed", "m/s", 0),
    _n("wind.direction", "°", 0, 360, exclusive=True),
    Quantity(("water", "leak"), "boolean"),
    _n("water.temperature.min", "°C", _TEMPERATURE),
    _n("water.temperature.max", "°C", _TEMPERATURE),
    _n("water.temperature.avg", "°C", _TEMPERATURE),
    _n("water.temperature.current", "°C", _TEMPERATURE),
    _n("metering.water.total", "L"),
    Quantity(("action", "motion", "detected"), "boolean"),
    _n("action.motion.count", "count"),
    Quantity(("action", "contactState"), "string", values=("open", "closed")),
    _n("position.latitude", "°", -90, 90),
    _n("position.longitude", "°", -180, 180),
)
_BY_NAME = {q.name: q for q in FIELDS}


def parse_map(raw: Any, device_class: str) -> dict[str, tuple[str, ...]]:
    """A class's ``normalized`` object -> {schema path: output path}, in schema order."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScriptError("normalized must be an object {schema path: output}", device_class=device_class)
    unknown = [key for key in raw if key not in _BY_NAME]
    if unknown:
        known = ", ".join(_BY_NAME)
        raise ScriptError(
            f"normalized: unknown quantity {unknown[0]!r} (the schema has: {known})", device_class=device_class
        )
    out = {}
    for q in FIELDS:
        source = raw.get(q.name)
        if source is None:
            continue
        if not isinstance(source, str) or not source.strip():
            raise ScriptError(f"normalized: {q.name} must name an output, got {source!r}", device_class=device_class)
        out[q.name] = tuple(source.strip().split("."))
    return out


def _leaf(schema: pa.Schema | pa.StructType, path: tuple[str, ...]) -> pa.DataType | None:
    fields = list(schema)
    t = None
    for part in path:
        match = [f for f in fields if f.name == part]
        if not match:
            return None
        t = match[0].type
        fields = list(t) if pa.types.is_struct(t) else []
    return t


def check_outputs(mapping: dict[str, tuple[str, ...]], outputs: pa.Schema, device_class: str) -> None:
    """Every mapped output exists (hidden ones included) and has a type the quantity can take."""
    for name, source in mapping.items():
        q = _BY_NAME[name]
        t = _leaf(outputs, source)
        label = ".".join(source)
        if t is None:
            raise ScriptError(
                f"normalized: {name} names {label!r}, which is not an output of the class", device_class=device_class
            )
        value = t.value_type if pa.types.is_dictionary(t) else t
        ok = {
            "number": pa.types.is_integer(value) or pa.types.is_floating(value),
            "boolean": pa.types.is_boolean(value) or pa.types.is_integer(value),
            "string": pa.types.is_string(value),
        }[q.kind]
        if not ok:
            raise ScriptError(f"normalized: {name} is a {q.kind}, but {label!r} is {t}", device_class=device_class)


def normalized_type(names: list[str]) -> pa.StructType:
    """The struct type holding these quantities, nested by path, in schema order."""
    tree: dict = {}
    for q in FIELDS:
        if q.name in names:
            node = tree
            for part in q.path[:-1]:
                node = node.setdefault(part, {})
            node[q.path[-1]] = q.type

    def fields(node: dict) -> list[pa.Field]:
        return [pa.field(k, pa.struct(fields(v)) if isinstance(v, dict) else v) for k, v in node.items()]

    return pa.struct(fields(tree))


def _child(struct: pa.Array, path: tuple[str, ...]) -> pa.Array:
    for part in path:
        struct = pc.struct_field(struct, part)
    return struct


def _checked(q: Quantity, values: pa.Array) -> tuple[pa.Array, np.ndarray, list[str | None]]:
    """The values as the quantity's type; rows out of range null, with the reason."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if q.kind == "boolean":
        return (values if pa.types.is_boolean(values.type) else pc.not_equal(values, 0)), None, None
    if q.kind == "string":
        bad = pc.invert(pc.is_in(values, value_set=pa.array(q.values))).fill_null(False)
        wrong = np.asarray(bad.to_numpy(zero_copy_only=False))
        if not wrong.any():
            return values, None, None
        texts = values.to_pylist()
        reasons = [
            f"{q.name}: {texts[i]!r} is not one of {', '.join(q.values)}" if w else None for i, w in enumerate(wrong)
        ]
        return pc.if_else(bad, pa.scalar(None, pa.string()), values), wrong, reasons
    x = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        high = (x >= q.maximum) if q.exclusive_maximum else (x > q.maximum)
        wrong = (x < q.minimum) | high | np.isinf(x)
    if not wrong.any():
        return values.cast(pa.float64()), None, None
    reasons = []
    for i in range(len(x)):
        if not wrong[i]:
            reasons.append(None)
        elif x[i] < q.minimum:
            reasons.append(f"{q.name}: {x[i]:g} {q.unit} is below {q.minimum:g}")
        else:
            reasons.append(f"{q.name}: {x[i]:g} {q.unit} is above {q.maximum:g}")
    ok = pa.array(~wrong)
    return pc.if_else(ok, values.cast(pa.float64()), pa.scalar(None, pa.float64())), wrong, reasons


def normalize(
    decoded: pa.StructArray, mapping: dict[str, tuple[str, ...]], type_: pa.StructType
) -> tuple[pa.StructArray, list[str | None] | None]:
    """A class's decoded struct -> (the normalized struct of ``type_``, a warning per row or None).

    Quantities the class does not map are null; a row whose decoded struct is
    null (the row failed) has a null normalized struct."""
    n = len(decoded)
    leaves: dict[str, pa.Array] = {}
    warnings: list[list[str]] | None = None
    for name, source in mapping.items():
        values, wrong, reasons = _checked(_BY_NAME[name], _child(decoded, source))
        leaves[name] = values
        if wrong is not None:
            warnings = warnings or [[] for _ in range(n)]
            for i in np.flatnonzero(wrong):
                warnings[i].append(f"normalized {reasons[i]}")

    def build(t: pa.StructType, prefix: tuple[str, ...]) -> pa.StructArray:
        children = []
        for f in t:
            path = prefix + (f.name,)
            if pa.types.is_struct(f.type):
                children.append(build(f.type, path))
            else:
                children.append(leaves.get(".".join(path), pa.nulls(n, f.type)))
        return pa.StructArray.from_arrays(children, fields=list(t))

    struct = build(type_, ())
    if decoded.null_count:
        struct = pa.StructArray.from_arrays(
            [struct.field(i) for i in range(struct.type.num_fields)], fields=list(type_), mask=pc.is_null(decoded)
        )
    return struct, None if warnings is None else ["; ".join(w) if w else None for w in warnings]
