"""Device classes as SQL functions in DuckDB: one vectorized function per class.

    import duckdb, decoder.duckdb
    con = duckdb.connect()
    decoder.duckdb.register(con, "samples/classes")     # -> ["decode_multi_sensor", ...]
    con.sql("SELECT fcnt, decode_test_device_class(payload, port).batteryLevel FROM read_json('p.jsonl')")

``decode_<slug>(payload [, port])`` takes a hex VARCHAR (or base64, with
``register(..., encoding="base64")``) or a BLOB of raw bytes, and an optional
FPort; it returns a STRUCT of the class's outputs, NULL on rows that did not
decode. DuckDB hands the function whole vectors as Arrow arrays (Python
runs per vector of about 2,048 rows, never per row).

DuckDB's Python functions cannot be overloaded and have no optional
parameters, so each class is two Arrow functions, ``decode_<slug>__text``
(VARCHAR, BIGINT) and ``decode_<slug>__blob`` (BLOB, BIGINT), behind a
macro ``decode_<slug>(payload, port := NULL)`` that picks one by the
payload's type when the query is bound.
"""

from __future__ import annotations

import os
import re
from typing import Any

import duckdb
import pyarrow as pa

from ._conform import class_sources, conform, fixed_decode, plain_type
from .errors import InputError

__all__ = ["function_name", "register"]

_ENCODINGS = ("hex", "base64")
_DUCKDB_TYPES = {
    pa.bool_(): "BOOLEAN",
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint32(): "UINTEGER",
    pa.uint64(): "UBIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
}


def function_name(class_name: str) -> str:
    """``decode_<slug>``: the class name lower-cased, each run of other characters one ``_``, none at the ends."""
    slug = re.sub(r"[^a-z0-9]+", "_", class_name.lower()).strip("_")
    if not slug:
        raise InputError(f"device class {class_name!r} has no letters or digits to name a SQL function after")
    return f"decode_{slug}"


def _duckdb_type(t: pa.DataType) -> Any:
    if pa.types.is_struct(t):
        if t.num_fields == 0:
            raise InputError("a class without outputs cannot be a DuckDB STRUCT")
        return duckdb.struct_type({f.name: _duckdb_type(f.type) for f in t})
    if pa.types.is_map(t):
        return duckdb.map_type(_duckdb_type(t.key_type), _duckdb_type(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return duckdb.list_type(_duckdb_type(t.value_type))
    return duckdb.sqltype(_DUCKDB_TYPES[t])


def _is_class(value: Any) -> bool:
    """A compiled class or a built-in format: anything with the interface of decoder.compile's result."""
    return callable(getattr(value, "decode", None)) and callable(getattr(value, "output_schema", None))


def _compiled(classes: Any) -> list[Any]:
    """Compiled classes of any source decoder.load_classes takes, a directory, compiled classes or a built-in name."""
    from . import builtin, load_classes

    if _is_class(classes):
        return [classes]
    if isinstance(classes, (list, tuple)) and classes and all(_is_class(c) for c in classes):
        return list(classes)
    if isinstance(classes, str) and not os.path.exists(classes):
        try:
            return [builtin(classes)]  # "cayenne-lpp"
        except ValueError:
            pass  # not a built-in name: load_classes says what is wrong with it
    return [dc for source in class_sources(classes) for dc in load_classes(source)]


def _decoder(dc: Any, encoding: str, target: pa.DataType, include_hidden: bool):
    """The Arrow function DuckDB calls per vector: payloads and ports in, the class's struct out."""

    def decode(payload: pa.Array, port: pa.Array) -> pa.Array:
        batch = fixed_decode(dc)(payload, encoding=encoding, ports=port, include_hidden=include_hidden)
        return conform(batch.to_struct_array(), target)

    return decode


def _existing_functions(con: Any) -> set[str]:
    found = con.execute("SELECT DISTINCT lower(function_name) FROM duckdb_functions()").fetchall()
    return {name for (name,) in found}


def register(con: Any, classes: Any, *, encoding: str = "hex", include_hidden: bool = False) -> list[str]:
    """Register ``decode_<slug>(payload [, port])`` for every class; returns the names registered.

    ``classes``: what :func:`decoder.load_classes` takes, a directory of
    class files, compiled classes, or a built-in format's name
    (``"cayenne-lpp"``). ``encoding`` says how VARCHAR payloads
    are written (``"hex"`` or ``"base64"``); BLOBs are raw bytes. A name that
    two classes share, or that the connection already has, is an
    :class:`~decoder.InputError` and nothing is registered.
    """
    if encoding not in _ENCODINGS:
        raise InputError(f"encoding must be one of {', '.join(_ENCODINGS)} for VARCHAR payloads, not {encoding!r}")
    compiled = _compiled(classes)
    names = [function_name(dc.name) for dc in compiled]
    taken = _existing_functions(con)
    seen: dict[str, str] = {}
    for dc, name in zip(compiled, names, strict=True):
        if name in seen:
            raise InputError(f"device classes {seen[name]!r} and {dc.name!r} would both be {name}")
        seen[name] = dc.name
        for sql_name in (name, f"{name}__text", f"{name}__blob"):
            if sql_name in taken:
                raise InputError(f"the connection already has a function {sql_name} (class {dc.name!r})")
    for dc, name in zip(compiled, names, strict=True):
        target = plain_type(pa.struct(list(dc.output_schema(include_hidden=include_hidden))))
        returns = _duckdb_type(target)
        for suffix, payload_type, how in (("text", "VARCHAR", encoding), ("blob", "BLOB", "raw")):
            con.create_function(
                f"{name}__{suffix}",
                _decoder(dc, how, target, include_hidden),
                [payload_type, "BIGINT"],
                returns,
                type="arrow",
                null_handling="special",
            )
        # typeof() is constant for a column, so DuckDB keeps only one branch when it binds the query.
        con.execute(
            f"CREATE TEMP MACRO {name}(payload, port := NULL) AS CASE WHEN typeof(payload) = 'BLOB' "
            f"THEN {name}__blob(payload::BLOB, port::BIGINT) ELSE {name}__text(payload::VARCHAR, port::BIGINT) END"
        )
    return names
