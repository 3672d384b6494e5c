"""Device-class JSON -> a validated, typed model of its script.

Accepts every shape the Firefly API returns (docs/script-language.md): the response of
``GET /device_classes`` and ``GET /device_classes/{id}``, one device class, a
list of them, or a bare ``script`` object; from parsed JSON, JSON text or a
file path. Nothing here evaluates a formula: formulas are only parsed later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import ScriptError
from ..json_source import read_json_source
from .normalized import parse_map

__all__ = ["ParseElement", "CalcElement", "ClassSpec", "class_objects", "load_specs"]

PARSE_TYPES = ("int", "uint", "bool", "float", "skip")
_RESERVED_ROOTS = {"Math"}


@dataclass(frozen=True)
class ParseElement:
    index: int
    kind: str  # one of PARSE_TYPES
    target: tuple[str, ...] | None
    bits: int
    signed: bool
    little_endian: bool
    condition: str | None  # the `if` formula, read only where truthy

    @property
    def label(self) -> str:
        return f"parseElements[{self.index}]"


@dataclass(frozen=True)
class CalcElement:
    index: int
    target: tuple[str, ...]
    formula: str

    @property
    def label(self) -> str:
        return f"calculateElements[{self.index}]"


@dataclass(frozen=True)
class ClassSpec:
    name: str
    id: int | None
    variable_types: dict[str, str]  # top-level variable -> declared type ("hidden", "gps", ...)
    parse_elements: tuple[ParseElement, ...]
    calculate_elements: tuple[CalcElement, ...]
    ports: tuple[int, ...] | None
    # normalized payload quantity ("air.temperature") -> the output it comes from
    normalized: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def is_hidden(self, root: str) -> bool:
        return self.variable_types.get(root) == "hidden"


def _read_source(source: Any) -> Any:
    return read_json_source(source, "device classes", ScriptError)


def _class_objects(doc: Any) -> list[dict]:
    """Unwrap the API envelopes into a list of device-class-like dicts."""
    if isinstance(doc, dict) and "device_classes" in doc:
        doc = doc["device_classes"]
    if isinstance(doc, dict) and "device_class" in doc and isinstance(doc["device_class"], dict):
        doc = doc["device_class"]
    if isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise ScriptError(f"expected a device class object or a list of them, got {type(doc).__name__}")
    out = []
    for pos, item in enumerate(items):
        if not isinstance(item, dict):
            raise ScriptError(f"device class #{pos} is a {type(item).__name__}, not an object")
        if "script" not in item and ("parseElements" in item or "calculateElements" in item):
            item = {"script": item}  # a bare script object
        out.append(item)
    return out


def _bits(raw: Any, where: str, cls: str) -> int:
    if isinstance(raw, bool):
        raise ScriptError(f"bits must be a number, got {raw!r}", device_class=cls, element=where)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    raise ScriptError(f"bits must be a whole number, got {raw!r}", device_class=cls, element=where)


def _target(raw: Any, where: str, cls: str) -> tuple[str, ...]:
    # Any non-empty segments make an output column ("Battery Voltage" too); only names
    # that are identifiers can also be read back by a formula.
    path = tuple(raw.split(".")) if isinstance(raw, str) else ()
    if not path or not all(part.strip() and part == part.strip() and part.isprintable() for part in path):
        raise ScriptError(
            f"target must be a name or dotted path like 'gps.latitude', got {raw!r}", device_class=cls, element=where
        )
    if path[0] in _RESERVED_ROOTS:
        raise ScriptError(f"target {raw!r} would hide the built-in {path[0]!r}", device_class=cls, element=where)
    return path


def _flag(el: dict, key: str, where: str, cls: str) -> bool:
    value = el.get(key, False)
    if value in (None, False, "false", 0):
        return False
    if value in (True, "true", 1):
        return True
    raise ScriptError(f"{key} must be true or false, got {value!r}", device_class=cls, element=where)


def _parse_element(index: int, el: Any, cls: str) -> ParseElement:
    where = f"parseElements[{index}]"
    if not isinstance(el, dict):
        raise ScriptError(f"expected an object, got {type(el).__name__}", device_class=cls, element=where)
    kind = el.get("type", "int")
    if kind not in PARSE_TYPES:
        raise ScriptError(
            f"unknown type {kind!r}; expected one of {', '.join(PARSE_TYPES)}", device_class=cls, element=where
        )
    if "bits" in el and el["bits"] is not None:
        bits = _bits(el["bits"], where, cls)
    elif kind == "bool":
        bits = 1
    else:
        raise ScriptError("bits is missing", device_class=cls, element=where)
    signed = _flag(el, "signed", where, cls)
    endian = el.get("endian", "big")
    if endian not in ("big", "little", None):
        raise ScriptError(f"endian must be 'big' or 'little', got {endian!r}", device_class=cls, element=where)
    little = endian == "little"
    condition = el.get("if")
    if condition is not None and not isinstance(condition, str):
        raise ScriptError(f"'if' must be a formula string, got {condition!r}", device_class=cls, element=where)

    if kind in ("int", "uint") and not 1 <= bits <= 64:
        raise ScriptError(f"{kind} needs 1 to 64 bits, got {bits}", device_class=cls, element=where)
    if kind == "bool" and not 1 <= bits <= 64:
        raise ScriptError(f"bool needs 1 to 64 bits, got {bits}", device_class=cls, element=where)
    if kind == "float" and bits not in (16, 32, 64):
        raise ScriptError(f"float needs 16, 32 or 64 bits, got {bits}", device_class=cls, element=where)
    if kind == "skip" and bits < 1:
        raise ScriptError(f"skip needs at least 1 bit, got {bits}", device_class=cls, element=where)
    if kind == "uint" and signed:
        raise ScriptError("uint cannot be signed; use int", device_class=cls, element=where)
    if little and (kind not in ("int", "uint", "float") or bits % 8):
        raise ScriptError("endian 'little' needs an int, uint or float of whole bytes", device_class=cls, element=where)
    if kind == "skip":
        target = None
    else:
        if "target" not in el:
            raise ScriptError("target is missing", device_class=cls, element=where)
        target = _target(el["target"], where, cls)
    return ParseElement(
        index=index,
        kind=kind,
        target=target,
        bits=bits,
        signed=signed and kind == "int",
        little_endian=little,
        condition=condition,
    )


def _calc_element(index: int, el: Any, cls: str) -> CalcElement:
    where = f"calculateElements[{index}]"
    if not isinstance(el, dict):
        raise ScriptError(f"expected an object, got {type(el).__name__}", device_class=cls, element=where)
    if "target" not in el:
        raise ScriptError("target is missing", device_class=cls, element=where)
    formula = el.get("formula")
    if not isinstance(formula, str):
        raise ScriptError(f"formula must be a string, got {formula!r}", device_class=cls, element=where)
    return CalcElement(index=index, target=_target(el["target"], where, cls), formula=formula)


def _spec(obj: dict, position: int) -> ClassSpec:
    raw_name = obj.get("name")
    raw_id = obj.get("id")
    if raw_name is not None and not str(raw_name).strip():
        raw_name = None  # a blank name names nothing (and is the partition of rows without a class)
    name = (
        str(raw_name) if raw_name is not None else (f"class {raw_id}" if raw_id is not None else f"class #{position}")
    )
    class_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    script = obj.get("script")
    if isinstance(script, str):  # some exports store the script as JSON text
        try:
            script = orjson.loads(script)
        except orjson.JSONDecodeError as err:
            raise ScriptError(f"script is not valid JSON: {err}", device_class=name) from None
    if not isinstance(script, dict):
        raise ScriptError("script is missing or not an object", device_class=name)

    variables = script.get("variables") or {}
    if not isinstance(variables, dict):
        raise ScriptError("variables must be an object", device_class=name)
    variable_types = {str(key): (val.get("type") if isinstance(val, dict) else None) for key, val in variables.items()}
    parse_raw = script.get("parseElements") or []
    calc_raw = script.get("calculateElements") or []
    if not isinstance(parse_raw, list) or not isinstance(calc_raw, list):
        raise ScriptError("parseElements and calculateElements must be lists", device_class=name)
    parse = tuple(_parse_element(i, el, name) for i, el in enumerate(parse_raw))
    calc = tuple(_calc_element(i, el, name) for i, el in enumerate(calc_raw))
    if not any(el.target for el in parse) and not calc:
        raise ScriptError("script has no parseElements or calculateElements with a target", device_class=name)

    ports = obj.get("ports", script.get("ports"))
    if ports is not None:
        if isinstance(ports, int) and not isinstance(ports, bool):
            ports = [ports]
        if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 255 for p in ports
        ):
            raise ScriptError(f"ports must be a list of integers 0-255, got {ports!r}", device_class=name)
        ports = tuple(ports)
    return ClassSpec(
        name=name,
        id=class_id,
        variable_types=variable_types,
        parse_elements=parse,
        calculate_elements=calc,
        ports=ports,
        normalized=parse_map(obj.get("normalized", script.get("normalized")), name),
    )


def class_objects(source: Any) -> list[dict]:
    """The device-class objects in ``source`` (parsed JSON, JSON text or a path), not yet checked."""
    return _class_objects(_read_source(source))


def load_specs(source: Any) -> list[ClassSpec]:
    """Load every device class in `source` (parsed JSON, JSON text or a path)."""
    if isinstance(source, os.PathLike):
        source = Path(source)
    return [_spec(obj, i) for i, obj in enumerate(_class_objects(_read_source(source)))]
