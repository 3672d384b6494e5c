"""What a user chooses, and the defaults: one copy, importable without numpy or pyarrow.

Each stage takes its defaults from here, and the command line shows them,
so ``decoder --help`` stays fast (no numba, numpy or pyarrow import).
"""

from __future__ import annotations

import os

__all__ = [
    "FORMATS",
    "STDOUT_FORMATS",
    "detect_format",
    "CHUNK_BYTES",
    "MAX_ROWS",
    "MAX_DELAY",
    "ROLL_ROWS",
    "ROLL_SECONDS",
    "POLL_LIMIT",
    "POLL_INTERVAL",
]

# -- reading ---------------------------------------------------------------------------
CHUNK_BYTES = 16 << 20  # input bytes per chunk: a few chunks per core are held at once

# -- the stream stage --------------------------------------------------------------------
MAX_ROWS = 10_000  # messages per micro-batch at most
MAX_DELAY = 1.0  # seconds a message may wait in the stage
ROLL_ROWS = 50_000  # rows per rolling Parquet file at most
ROLL_SECONDS = 60.0  # seconds a rolling Parquet file stays open at most

# -- polled sources (Firefly http_pull queues) ------------------------------------------
POLL_LIMIT = 1000  # events asked for per poll at most
POLL_INTERVAL = 1.0  # seconds after a poll that did not come back full

# -- output formats ------------------------------------------------------------------------
FORMATS = ("parquet", "arrow", "csv", "jsonl")
STDOUT_FORMATS = ("arrow", "csv", "jsonl")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".arrows": "arrow",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def detect_format(path: str, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else from the suffix (``ValueError`` if unknown)."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    if path == "-":
        return "jsonl"
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = os.path.splitext(name)[1]
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    raise ValueError(f"cannot tell the output format of {path!r} from its suffix; use --format {'|'.join(FORMATS)}")
