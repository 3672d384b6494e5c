"""Bytes -> uplinks: JSON Lines of every provider in, the normalized uplink and reception tables out.

source (open, gunzip, chunks of whole lines, the reader thread) -> scan (line
kernels) -> parse (Arrow's JSON reader per shape group; orjson for what it
rejects) -> raw (the raw table and its schema) -> normalize (the assembler),
with one module per provider owning its fields and its normalization
(firefly, helium) and the shared columns (schema, columns, timestamps, radio).
"""

from __future__ import annotations

from .parse import NormalizedChunk, Reader, normalize_values
from .schema import RECEPTION_SCHEMA, UPLINK_SCHEMA, empty_uplinks
from .source import read_chunks

__all__ = [
    "NormalizedChunk",
    "Reader",
    "normalize_values",
    "read_chunks",
    "UPLINK_SCHEMA",
    "RECEPTION_SCHEMA",
    "empty_uplinks",
]
