"""A device class as a polars expression.

    import polars as pl, decoder, decoder.polars
    dc = decoder.compile("samples/classes/test_device_class.json")
    df.with_columns(decoded=decoder.polars.decode(pl.col("payload"), dc, encoding="hex", port=pl.col("port")))

The expression is a struct of the class's outputs, null where a row did not
decode. polars hands each batch of payloads and ports over as Arrow, the
class decodes it with its kernel, and the struct goes back as Arrow: no
Python per row. Strings come out as ``String`` (not Categorical) and
unsigned integers keep their types.
"""

from __future__ import annotations

import functools
from typing import Any

import polars as pl
import pyarrow as pa

from ._conform import conform, fixed_decode, plain_type

__all__ = ["decode", "errors"]


def _inputs(payload: pl.Expr | str, port: pl.Expr | str | int | None) -> pl.Expr:
    payload_expr = pl.col(payload) if isinstance(payload, str) else payload
    if port is None:
        port_expr = pl.lit(None, dtype=pl.Int64)
    elif isinstance(port, int) and not isinstance(port, bool):
        port_expr = pl.lit(port, dtype=pl.Int64)
    else:
        port_expr = (pl.col(port) if isinstance(port, str) else port).cast(pl.Int64)
    return pl.struct(payload_expr.alias("payload"), port_expr.alias("port"))


def _decode_batch(
    inputs: pl.Series, *, device_class: Any, encoding: str, include_hidden: bool, target: pa.DataType | None
) -> pl.Series:
    """One batch: the struct of payload and port in, the decoded struct (or the errors) out."""
    arrow = inputs.to_arrow()
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    batch = fixed_decode(device_class)(
        arrow.field("payload"), encoding=encoding, ports=arrow.field("port"), include_hidden=include_hidden
    )
    if target is None:
        return pl.Series(inputs.name, conform(batch.error_array(), pa.large_string()))
    return pl.Series(inputs.name, conform(batch.to_struct_array(), target))


def decode(
    payload: pl.Expr | str,
    device_class: Any,
    *,
    encoding: str = "hex",
    port: pl.Expr | str | int | None = None,
    include_hidden: bool = False,
) -> pl.Expr:
    """The class's outputs as a struct expression, null on rows that did not decode.

    ``payload``: an expression (or column name) of hex or base64 text, or of
    binary with ``encoding="raw"``. ``port``: an expression, column name or
    int with the FPort (null: unknown). ``device_class``: a compiled class
    (:func:`decoder.compile`). :func:`errors` gives the reasons.
    """
    target = plain_type(pa.struct(list(device_class.output_schema(include_hidden=include_hidden))))
    dtype = pl.from_arrow(pa.array([], target)).dtype
    run = functools.partial(
        _decode_batch, device_class=device_class, encoding=encoding, include_hidden=include_hidden, target=target
    )
    return _inputs(payload, port).map_batches(run, return_dtype=dtype, is_elementwise=True)


def errors(
    payload: pl.Expr | str, device_class: Any, *, encoding: str = "hex", port: pl.Expr | str | int | None = None
) -> pl.Expr:
    """Why each row did not decode (a String expression, null on decoded rows)."""
    run = functools.partial(
        _decode_batch, device_class=device_class, encoding=encoding, include_hidden=False, target=None
    )
    return _inputs(payload, port).map_batches(run, return_dtype=pl.String, is_elementwise=True)
