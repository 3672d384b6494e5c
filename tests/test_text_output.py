"""Columns printed as text for the text outputs (CSV, JSON Lines, error records)."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc

from decoder.output.text import to_iso


def _strftime_iso(arr: pa.Array) -> list:
    """The reference: Arrow's strftime in UTC, the fraction's trailing zeros trimmed, ``Z``."""
    if arr.type.tz is None:
        arr = pc.assume_timezone(arr, "UTC")
    text = pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"\.0+$", "")
    text = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
    return pc.binary_join_element_wise(text, pa.scalar("Z"), pa.scalar("")).to_pylist()


def test_times_print_as_arrows_strftime_prints_them_from_1677_to_2262():
    """Nanosecond times in UTC are printed by a kernel; it must give Arrow's text for every
    time a column can hold: before 1970, the ends of the range, whole seconds, nulls, slices."""
    rng = random.Random(3)
    ns = [rng.randrange(-(2**63), 2**63) for _ in range(5000)]
    ns += [rng.randrange(-9 * 10**9, 9 * 10**9) * 10**9 for _ in range(2000)]  # whole seconds
    ns += [rng.randrange(-9 * 10**15, 9 * 10**15) * 10**3 for _ in range(2000)]  # microseconds
    ns += [0, -1, 1, 2**63 - 1, -(2**63), 86_400 * 10**9 - 1, -86_400 * 10**9, 951_782_400 * 10**9]
    for tz in ("UTC", None):
        times = pa.array(ns, pa.timestamp("ns", tz))
        assert to_iso(times).to_pylist() == _strftime_iso(times), tz
    with_nulls = pa.array([None if i % 3 == 0 else t for i, t in enumerate(ns)], pa.timestamp("ns", "UTC"))
    for part in (with_nulls, with_nulls.slice(5, 1000), with_nulls.slice(len(ns) - 1)):
        printed = to_iso(part)
        assert printed.to_pylist() == _strftime_iso(part) and printed.null_count == part.null_count
    examples = pa.array([0, -1, 1_709_164_800_500_000_000, 2**63 - 1], pa.timestamp("ns", "UTC"))
    assert to_iso(examples).to_pylist() == [
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999999Z",
        "2024-02-29T00:00:00.5Z",
        "2262-04-11T23:47:16.854775807Z",
    ]
