"""Bytes -> uplinks: JSON Lines of every provider in, the normalized uplink and reception tables out.

source (open, gunzip, chunks of whole lines, the reader thread) -> scan (one
numba pass per chunk over every provider's declared paths) -> parse (the
Reader: shapes by marker keys, each provider's rows, the assembled tables),
with one module per provider owning its fields and its normalization
(firefly, helium, tts, chirpstack), one coercion rule for every field
(fields) and the shared columns (schema, columns, timestamps, radio).
"""

from __future__ import annotations

from .parse import NormalizedChunk, Reader, normalize_values
from .schema import RECEPTION_SCHEMA, UPLINK_SCHEMA, empty_uplinks
from .source import ChunkStream, read_chunks

__all__ = [
    "NormalizedChunk",
    "Reader",
    "normalize_values",
    "read_chunks",
    "ChunkStream",
    "UPLINK_SCHEMA",
    "RECEPTION_SCHEMA",
    "empty_uplinks",
]
