"""The assembler: a raw table of any providers' objects -> the normalized uplink and reception tables.

Vectorized over a whole parse, one pass per provider present:

1. Firefly envelopes (``{"packets": [...]}``) become one row per packet.
2. Each row gets its shape by which marker fields it carries, in this order
   of precedence: a Helium event (``category`` or ``sub_category``), a
   Firefly packet (``device_eui``, ``gwrx`` or ``mtype``), a Helium
   integration body (``dev_eui`` or ``hotspots``); other rows are of no known
   shape, and the caller judges them on their text.
3. Each provider present (``firefly.Rows``, ``helium.Rows``) says which
   field groups its rows need (if the table lacks some, the result only says
   so: parse again with them), picks its uplink rows (counting the skipped
   event kinds and the bad lines), gives its receptions and its normalized
   columns.
4. Here the best gateway of every uplink is chosen (highest RSSI, ties by
   SNR), the payload text is decoded with the provider's encoding, and the
   providers' rows are put back in input order.

Receptions stay grouped by shape (each group in input order): ``packet_index``
is the uplink's row in the batch.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..payload import to_buffer
from . import firefly, helium
from .columns import combine, nulls
from .radio import Receptions, best_by_parent, concat_receptions
from .raw import RawRows
from .schema import PROVIDER_NAMES, PROVIDERS, RECEPTION_SCHEMA, UPLINK_SCHEMA

__all__ = ["Normalized", "normalize"]


@dataclass
class Normalized:
    """What one parse of raw rows yields (see :func:`normalize`)."""

    uplinks: pa.Table
    receptions: pa.Table
    bad: list[tuple[int, str]] = field(default_factory=list)
    skipped: collections.Counter = field(default_factory=collections.Counter)
    # Rows that match no known shape: the caller looks at the original text
    # (it may be an envelope this schema does not carry) and reports them.
    unknown: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # For each unknown row: its index in the envelope's packets (-1: not from an envelope).
    unknown_packet: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Field groups the rows need that the table lacks: parse again with them
    # (the other fields of this result are then empty).
    needs: frozenset = frozenset()
    # Field groups the rows used: what to parse the next batch with.
    used: frozenset = frozenset()


def _empty(**kwargs) -> Normalized:
    return Normalized(UPLINK_SCHEMA.empty_table(), RECEPTION_SCHEMA.empty_table(), **kwargs)


def normalize(
    t: pa.Table,
    lines: np.ndarray,
    row_errors: pa.Array | None = None,
    why: pa.Array | None = None,
) -> Normalized:
    """Raw rows (a schema from ``raw.raw_schema``) -> the normalized tables.

    ``lines[i]`` is the input line of row ``i``; ``row_errors`` (string, may be
    None) a row-level error already known (a payload that was not text);
    ``why`` (string, may be None) details added to the reason if the row turns
    out to be a bad line. If the rows need field groups the schema lacks, the
    result only says so (``needs``): parse again with them.
    """
    lines = np.asarray(lines, dtype=np.int64)
    skipped: collections.Counter = collections.Counter()
    bad: list[tuple[int, str]] = []
    src_row = src_packet = None
    if "packets" in t.column_names and t.column("packets").null_count < t.num_rows:
        t, lines, row_errors, why, src_row, src_packet = firefly.expand_envelopes(t, lines, row_errors, why, skipped)
    raw = RawRows(t, lines, row_errors, why)

    events = helium.is_event(raw)
    packets = ~events & firefly.is_packet(raw)
    bodies = ~events & ~packets & helium.is_body(raw)
    unknown = np.flatnonzero(~(events | packets | bodies))
    if src_row is not None:
        unknown_packet, unknown = src_packet[unknown], src_row[unknown]
    else:
        unknown_packet = np.full(len(unknown), -1, dtype=np.int64)

    providers = []
    if packets.any():
        providers.append(firefly.Rows(raw, packets))
    if events.any() or bodies.any():
        providers.append(helium.Rows(raw, events, bodies))
    used = frozenset().union(*(p.groups_needed() for p in providers))
    needs = used - raw.groups
    if needs:
        return _empty(needs=frozenset(needs), used=used)

    up = np.zeros(raw.n, dtype=bool)
    for p in providers:
        up |= p.select(bad, skipped)
    found = dict(bad=bad, skipped=skipped, unknown=unknown, unknown_packet=unknown_packet, used=used)
    if not up.any():
        return _empty(**found)
    receptions = concat_receptions([part for p in providers for part in p.receptions()])
    uplinks = _uplinks(raw, [p for p in providers if p.up.any()], up, receptions)
    new_row = np.cumsum(up) - 1  # raw row -> uplink row
    receptions_table = pa.Table.from_arrays(
        [pa.array(new_row[receptions.parent], pa.int64())]
        + [receptions.columns[f.name] for f in list(RECEPTION_SCHEMA)[1:]],
        schema=RECEPTION_SCHEMA,
    )
    return Normalized(uplinks, receptions_table, **found)


def _uplinks(raw: RawRows, providers: list, up: np.ndarray, receptions: Receptions) -> pa.Table:
    """The uplink table: every provider's columns for its uplink rows, in input order."""
    up_idx = np.flatnonzero(up)
    m = len(up_idx)
    best = best_by_parent(receptions.parent, receptions.rssi, receptions.snr, raw.n)
    has_best = best >= 0

    def best_of(rows: np.ndarray):
        """A column of the best reception of each of ``rows`` (null without receptions)."""
        at = best[rows]
        ok = has_best[rows]
        idx = pa.array(at) if ok.all() else pa.array(np.where(ok, at, 0), mask=~ok)

        def column(name: str) -> pa.Array:
            c = receptions.columns[name]
            return nulls(len(rows), c.type) if len(c) == 0 else c.take(idx)

        return column

    pieces = []  # per provider: its rows and its columns
    for p in providers:
        rows = np.flatnonzero(p.up)
        cols = p.columns(rows, best_of(rows))
        cols["payload"], cols["payload_error"], cols["payload_text"] = _payloads(cols["payload"], p.encoding)
        cols["provider"] = pa.array(np.full(len(rows), PROVIDER_NAMES.index(p.provider), np.int32))
        pieces.append((rows, cols))
    order = None
    if len(pieces) > 1:  # interleave the providers' rows back into input order
        order = pa.array(np.argsort(np.concatenate([rows for rows, _ in pieces]), kind="stable"))

    def column(name: str) -> pa.Array:
        arrays = [combine(cols[name]) for _, cols in pieces]
        if order is None:
            return arrays[0]
        type_ = arrays[0].type
        return pa.concat_arrays([a if a.type == type_ else a.cast(type_) for a in arrays]).take(order)

    dev_eui = column("dev_eui")
    if dev_eui.null_count < m:
        dev_eui = pc.ascii_upper(dev_eui)
    errors = column("payload_error")
    if raw.row_errors is not None:
        known = combine(raw.row_errors).take(pa.array(up_idx))
        if known.null_count < m:
            errors = known if errors.null_count == m else pc.coalesce(known, errors)
    best_up = best_of(up_idx)
    values = {
        "provider": pa.DictionaryArray.from_arrays(column("provider"), PROVIDERS),
        **{
            name: column(name)
            for name in (
                "packet_id",
                "device_id",
                "devaddr",
                "received_at",
                "fcnt",
                "port",
                "confirmed",
                "payload",
                "payload_text",
                "frequency_mhz",
                "spreading_factor",
                "bandwidth_khz",
                "coding_rate",
            )
        },
        "dev_eui": dev_eui,
        "rssi": best_up("rssi"),
        "snr": best_up("snr"),
        "gateway_id": best_up("gateway_id"),
        "gateway_count": pa.array(np.bincount(receptions.parent, minlength=raw.n)[up_idx], pa.int64()),
        "line": pa.array(raw.lines[up_idx], pa.int64()),
        "error": errors,
    }
    return pa.Table.from_arrays([_typed(values[f.name], f.type) for f in UPLINK_SCHEMA], schema=UPLINK_SCHEMA)


def _typed(a: pa.Array, type_: pa.DataType) -> pa.Array:
    return a if a.type == type_ else a.cast(type_)


def _payloads(text: pa.Array, encoding: str) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Payload text -> (bytes, error message per row, the text kept where it could not be decoded; null elsewhere)."""
    m = len(text)
    if m == 0:
        return pa.array([], pa.binary()), pa.array([], pa.string()), pa.array([], pa.string())
    buf = to_buffer(text, encoding)
    binary = buf.to_arrow()
    code = np.asarray(buf.error)
    bad = np.flatnonzero(code)
    if not len(bad):
        return binary, nulls(m, pa.string()), nulls(m, pa.string())
    messages = [None] * m
    for i in bad:
        messages[i] = buf.error_message(int(i))
    if binary.null_count < len(bad):  # a failed row is null, not empty bytes
        binary = pc.if_else(pa.array(code == 0), binary, pa.scalar(None, pa.binary()))
    kept = combine(text).take(pa.array(np.where(code != 0, np.arange(m), 0), mask=code == 0))
    return binary, pa.array(messages, pa.string()), kept
