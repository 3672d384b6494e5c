"""Decoded chunks -> files: Parquet, Arrow IPC, CSV, JSON Lines (``files``), rolling Parquet for streams
(``rolling``), the Parquet layout they share (``parquet``) and columns as text (``text``)."""

from __future__ import annotations

from .files import (
    FORMATS,
    STDOUT_FORMATS,
    ErrorSink,
    JsonlSink,
    Sink,
    detect_format,
    open_sink,
    refusal,
    remove_stale_temporaries,
)
from .rolling import RollingParquetSink

__all__ = [
    "FORMATS",
    "STDOUT_FORMATS",
    "Sink",
    "ErrorSink",
    "JsonlSink",
    "RollingParquetSink",
    "detect_format",
    "open_sink",
    "refusal",
    "remove_stale_temporaries",
]
