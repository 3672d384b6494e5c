"""Radio columns: data-rate text, Helium's float32 values, and the best gateway of each uplink."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import radio_kernels as kernels
from .columns import combine, nulls
from .schema import RECEPTION_SCHEMA

__all__ = [
    "Gateways",
    "REC_TYPES",
    "table_rows",
    "parse_datr",
    "float32_shortest",
    "best_by_parent",
    "best_reception",
]

_DATR_RE = r"^\s*[Ss][Ff](?P<sf>\d{1,2})\s*[Bb][Ww](?P<bw>\d+(?:\.\d+)?)\s*$"


_DATR_PY = re.compile(_DATR_RE)


def _datr_one(text: str | None) -> tuple[int | None, float | None]:
    m = _DATR_PY.match(text) if text is not None else None
    if m is None:
        return None, None
    return int(m.group("sf")), float(m.group("bw"))


def parse_datr(a: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """'SF9BW125' -> (spreading factor int64, bandwidth kHz float64); null if not that form.

    A batch holds a handful of distinct data rates: they are dictionary-encoded
    and each distinct one parsed once."""
    a = combine(a)
    n = len(a)
    if n == 0 or a.null_count == n:
        return nulls(n, pa.int64()), nulls(n, pa.float64())
    if not pa.types.is_dictionary(a.type):
        if a.type != pa.string():
            a = a.cast(pa.string())
        a = pc.dictionary_encode(a)
    parsed = [_datr_one(v) for v in a.dictionary.to_pylist()]
    sf_d = pa.array([p[0] for p in parsed], pa.int64())
    bw_d = pa.array([p[1] for p in parsed], pa.float64())
    idx = a.indices
    return sf_d.take(idx), bw_d.take(idx)


def float32_shortest(values: np.ndarray) -> np.ndarray:
    """Each value rounded through float32 and printed as the shortest decimal
    that reads back as the same float32 (905.2999877929688 -> 905.3).

    NaN stays NaN. Vectorized: a numba kernel for magnitudes 1e-12..1e22
    (where powers of ten are exact doubles), Python's repr for the rest.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.ascontiguousarray(values, dtype=np.float64).astype(np.float32)
    out = np.empty(f.shape, dtype=np.float64)
    todo = kernels.f32_shortest(f, f.view(np.uint32), out)
    if todo:
        for i in np.flatnonzero(np.isnan(out) & ~np.isnan(f)):
            out[i] = float(str(f[i]))  # numpy's shortest repr of a float32
    return out


def best_by_parent(parent: np.ndarray, rssi: np.ndarray, snr: np.ndarray, n: int) -> np.ndarray:
    """best_reception for receptions in any order: parent[j] is the packet (0..n-1)
    of reception j. -1 for a packet without receptions."""
    return kernels.best_by_parent(
        np.ascontiguousarray(parent, dtype=np.int64),
        np.ascontiguousarray(rssi, dtype=np.float64),
        np.ascontiguousarray(snr, dtype=np.float64),
        int(n),
    )


def best_reception(counts: np.ndarray, rssi: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """For each packet (its receptions are the next counts[i] entries of the
    reception arrays, in order), the index of the best reception: highest RSSI,
    ties broken by the higher SNR, first wins a full tie; NaN (null) ranks last.
    -1 for a packet without receptions."""
    return kernels.best_index(
        np.ascontiguousarray(counts, dtype=np.int64),
        np.ascontiguousarray(rssi, dtype=np.float64),
        np.ascontiguousarray(snr, dtype=np.float64),
    )


# The reception columns every provider's gateways give (the schema's, without packet_index).
REC_TYPES = {f.name: f.type for f in RECEPTION_SCHEMA if f.name != "packet_index"}


@dataclass
class Gateways:
    """One provider's gateways (receptions) of its uplink records: ``parent[j]`` is the record
    of gateway j; rssi/snr are float64 (NaN: none) for choosing the best one; ``columns`` are
    the reception columns over the same rows (``REC_TYPES``; a provider may add more, such as
    Helium's data-rate text)."""

    parent: np.ndarray
    rssi: np.ndarray
    snr: np.ndarray
    columns: dict[str, pa.Array]

    def __len__(self) -> int:
        return len(self.parent)

    @classmethod
    def empty(cls) -> Gateways:
        z = np.zeros(0)
        return cls(np.zeros(0, np.int64), z, z, {})

    def column(self, name: str) -> pa.Array:
        col = self.columns.get(name)
        if col is None:
            col = nulls(len(self.parent), REC_TYPES.get(name, pa.string()))
        return col


def table_rows(rec, table: str, records: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(rows of a child table whose record is in ``records``, or None for all of them; their records)."""
    parent = rec.res.parent(table)
    keep = np.zeros(rec.n, bool)
    keep[records] = True
    inside = keep[parent]
    if inside.all():
        return None, parent
    rows = np.flatnonzero(inside)
    return rows, parent[rows]
