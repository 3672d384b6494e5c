"""numba kernels of the Cayenne LPP decoder (imported on first decode: `import decoder` stays cheap).

``decode_items`` is the decode: one pass over every byte of the batch that
checks each item and records it as (key, position). The other kernels turn
those items into output layouts, one pass over the items each, reading the
value bytes again (re-reading ~20 bytes a payload costs less than storing
every value twice). The type tables come from :mod:`.cayenne_lpp`.
"""

from __future__ import annotations

import numba
import numpy as np

from .cayenne_lpp import _INPUT, _NO_TYPE, _OK, _TRUNCATED, _UNKNOWN

# error_model "numpy": no zero-division branch before each division (scales are never zero)
_OPTIONS = {"nogil": True, "cache": True, "error_model": "numpy"}


@numba.njit(inline="always", **_OPTIONS)
def _component(data, p, width, signed):
    """The big-endian integer of `width` (1..3) bytes at data[p], sign-extended if `signed`.

    A switch on the width measured faster than a loop of 1 to 3 rounds and
    than reading three bytes and shifting (item types come in any order).
    """
    if width == 2:
        v = (np.int64(data[p]) << 8) | np.int64(data[p + 1])
    elif width == 1:
        v = np.int64(data[p])
    else:
        v = (np.int64(data[p]) << 16) | (np.int64(data[p + 1]) << 8) | np.int64(data[p + 2])
    shift = 64 - 8 * width
    extended = (v << shift) >> shift  # int64 >> is arithmetic: the sign bit fills
    return extended if signed else v


@numba.njit(**_OPTIONS)
def decode_items(
    data,
    offsets,
    in_err,
    slot_of,
    value_bytes,
    item_key,
    item_pos,
    row_items,
    row_err,
    err_at,
    err_type,
    key_rows,
    last_row,
    last_item,
):
    """Check every row's items; record each as its key (slot * 256 + channel) and value position.

    item_pos is relative to the row's start. A row's items are
    row_items[r] .. row_items[r + 1]. A key repeated in a row points its
    earlier item at the later value (the last value wins, one item per key
    and row). key_rows[key] counts the rows holding that key. Returns the
    number of items.
    """
    m = 0
    row_items[0] = 0
    for r in range(in_err.shape[0]):
        start = offsets[r]
        end = offsets[r + 1]
        pos = start
        outcome = _OK
        if in_err[r] != 0:
            outcome = _INPUT
        while outcome == _OK and pos < end:
            if end - pos < 2:
                outcome = _NO_TYPE
                break
            slot = np.int64(slot_of[data[pos + 1]])
            if slot < 0:
                outcome = _UNKNOWN
                err_type[r] = data[pos + 1]
                break
            if end - pos - 2 < value_bytes[slot]:
                outcome = _TRUNCATED
                err_type[r] = data[pos + 1]
                break
            key = slot * 256 + np.int64(data[pos])
            if last_row[key] == r:
                item_pos[last_item[key]] = pos + 2 - start
            else:
                last_row[key] = r
                last_item[key] = m
                key_rows[key] += 1
                item_key[m] = key
                item_pos[m] = pos + 2 - start
                m += 1
            pos += 2 + value_bytes[slot]
        row_err[r] = outcome
        err_at[r] = pos - start
        row_items[r + 1] = m
    return m


@numba.njit(**_OPTIONS)
def read_raw(data, offsets, row_items, item_key, item_pos, width, components, signed, raw):
    """Every item's raw component integers into raw[item, component]."""
    for r in range(row_items.shape[0] - 1):
        for k in range(row_items[r], row_items[r + 1]):
            s = np.int64(item_key[k]) >> 8
            p = offsets[r] + item_pos[k]
            for c in range(components[s]):
                raw[k, c] = _component(data, p + c * width[s], width[s], signed[s])


@numba.njit(**_OPTIONS)
def fill_maps(
    data,
    offsets,
    row_items,
    item_key,
    item_pos,
    width,
    components,
    signed,
    scale,
    slot_start,
    value_start,
    map_offsets,
    map_valid,
    map_channel,
    map_values,
):
    """The fixed form: per type its map entries in row order, with offsets and validity per row.

    Type s owns entries slot_start[s] .. slot_start[s + 1] of map_channel, and
    map_values[value_start[s]:] holds its components one after the other
    (component c of its j-th entry at value_start[s] + c * count + j).
    map_offsets[s] are relative to slot_start[s]; map_valid[s] is an Arrow
    validity bitmap, zeroed by the caller.
    """
    slots = slot_start.shape[0] - 1
    cursor = slot_start[:-1].copy()
    for s in range(slots):
        map_offsets[s, 0] = 0
    for r in range(row_items.shape[0] - 1):
        for k in range(row_items[r], row_items[r + 1]):
            key = np.int64(item_key[k])
            s = key >> 8
            j = cursor[s]
            cursor[s] += 1
            map_channel[j] = key & 255
            count = slot_start[s + 1] - slot_start[s]
            p = offsets[r] + item_pos[k]
            for c in range(components[s]):
                v = _component(data, p + c * width[s], width[s], signed[s])
                # float64 division: the correctly rounded quotient (an integer type has scale 1)
                map_values[value_start[s] + c * count + j - slot_start[s]] = v / scale[s, c]
            map_valid[s, r >> 3] |= np.uint8(1 << (r & 7))
        for s in range(slots):
            map_offsets[s, r + 1] = cursor[s] - slot_start[s]


@numba.njit(**_OPTIONS)
def fill_columns(
    data,
    offsets,
    row_items,
    item_key,
    item_pos,
    width,
    components,
    signed,
    scale,
    integer,
    column_of,
    leaf_of,
    floats,
    ints,
    valid,
):
    """The batch form: each item's components into rows of its key's leaves, its bit into valid.

    An integer type's leaf is a row of ints (its raw value), any other's
    leaves are rows of floats (raw / scale), from leaf_of[key] on.
    """
    for r in range(row_items.shape[0] - 1):
        for k in range(row_items[r], row_items[r + 1]):
            key = np.int64(item_key[k])
            s = key >> 8
            leaf = leaf_of[key]
            p = offsets[r] + item_pos[k]
            if integer[s]:
                ints[leaf, r] = _component(data, p, width[s], signed[s])
            else:
                for c in range(components[s]):
                    floats[leaf + c, r] = _component(data, p + c * width[s], width[s], signed[s]) / scale[s, c]
            valid[column_of[key], r >> 3] |= np.uint8(1 << (r & 7))
