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
    "MIN_CHUNK_BYTES",
    "MAX_ROWS",
    "MAX_DELAY",
    "ROLL_ROWS",
    "ROLL_SECONDS",
    "POLL_LIMIT",
    "POLL_INTERVAL",
]

# -- reading ---------------------------------------------------------------------------
# Input bytes per chunk: a few chunks per core are held at once (source._AHEAD_BYTES). Each
# chunk pays a fixed cost to put its columns together (3.4 ms for the mixed file's three shapes,
# 1.5 for Firefly packets alone). 16 MB against 8 MB, 1M packets, 10 interleaved pairs: the
# mixed file 1.10x as fast (13% less CPU), Firefly 1.06x (9%); peak RSS 484-519 against 408-437
# MB, and as flat (Firefly: 490-525 MB at 1M packets, 504-516 at 4M). With numpy's arrays in 4 KB
# pages (the command's, cli._keep_start_up_lean) the peak is 427-446 MB. With the parsing pools
# ten nice levels behind the writer (since dropped: beside other busy programs they starved),
# 24 MB against 16 MB: the mixed file 1.04-1.08x as fast (22 interleaved pairs, 14 faster),
# Firefly 1.01x (12 pairs); peak RSS 469-511 MB against 402-426, as flat (460 MB at 4M Firefly
# packets). Without the levels, 16 MB against 24: 1.03x, within the noise (8 pairs).
CHUNK_BYTES = 24 << 20
MIN_CHUNK_BYTES = 1 << 20  # the smallest --chunk-size: below it the fixed cost per chunk dominates

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
}


_COMPRESSIBLE = ("csv", "jsonl")  # formats a .gz after the suffix compresses (Parquet and Arrow compress inside)


def detect_format(path: str, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else from the suffix (``ValueError`` if unknown).

    A suffix must mean what is written: ``.gz`` only after a CSV or JSON Lines
    suffix, never ``.json`` (the output is JSON Lines, not one JSON document),
    and a known suffix never contradicts ``fmt``.
    """
    if fmt and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if path == "-":
        return fmt or "jsonl"
    name = os.path.basename(path).lower()
    gz = name.endswith(".gz")
    suffix = os.path.splitext(name[:-3] if gz else name)[1]
    if suffix == ".json":
        raise ValueError(f"{path}: the output is JSON Lines, not JSON; name it .jsonl (or .ndjson)")
    named = _SUFFIXES.get(suffix)
    if fmt and named and named != fmt:
        raise ValueError(f"{path}: its suffix {suffix} means {named}, but --format is {fmt}")
    result = fmt or named
    if result is None:
        raise ValueError(f"cannot tell the output format of {path!r} from its suffix; use --format {'|'.join(FORMATS)}")
    if gz and result not in _COMPRESSIBLE:
        raise ValueError(
            f"{path}: .gz compresses only csv and jsonl output; {result} files are compressed inside, drop the .gz"
        )
    return result
