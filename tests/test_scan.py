"""The scanner (decoder.ingest.scan) against orjson: every line either fails in both (the scanner
naming a reason and a byte offset) or gives the same values at every declared path, the same
records, child rows, parents and items. One difference is by design: a number beyond the range of
a double is valid JSON, read as infinity (orjson rejects the line; the reader drops the value with
a row warning instead of losing the line).

Ported from the scanner's prototype; hypothesis example counts are kept small (the file runs in
well under 30 s).
"""

from __future__ import annotations

import json
import math
import random
import re
import weakref
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoder.ingest import scan_kernels as K
from decoder.ingest.parse import _the_plan
from decoder.ingest.scan import Plan, ScanBuffer, line_bounds, scan

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "samples" / "packets").glob("*.jsonl"))
_NUMBER = re.compile(r"-?[0-9.eE+-]+")


def _reject(name):
    raise ValueError(f"not JSON: {name}")


def _loads(line: bytes):
    """orjson's parse of a line, except that numbers beyond a double read as infinity (orjson
    rejects them; Python's json, strict about everything else here, reads them so)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as e:
        if "infinity" not in str(e):
            raise
    text = line.decode("utf-8")  # invalid UTF-8 raises: bad in both
    probe = text
    while True:  # is infinity the only complaint? numbers made 0 one by one until orjson accepts
        try:
            orjson.loads(probe)
            break
        except orjson.JSONDecodeError as e:
            m = re.search(r"\(char (\d+)\)", str(e))
            if "infinity" not in str(e) or not m:
                raise
            at = int(m.group(1))
            token = _NUMBER.match(probe, at)
            probe = probe[:at] + "0" + probe[token.end() :]
    return json.loads(text, parse_constant=_reject)


# --------------------------------------------------------------------------- the oracle


class Oracle:
    """What the scan must give, computed from orjson's parse of each line,
    from the declared paths alone (no use of the plan's compiled tables)."""

    def __init__(self, fields: dict, tables: dict | None = None):
        self.fields = fields
        self.tables = {"records": {}}  # table -> tree of the objects its rows are
        self.alias = {}  # path of an aliased array/object -> table
        self.where = {}  # declared path -> (table, path relative to the table's rows)
        for name, paths in (tables or {}).items():
            self.tables[name] = {}
            for p in paths:
                self.alias[p.removesuffix("[]")] = (name, p.endswith("[]"))
                tree = self.tables["records"]
                segs = p.split(".")
                for seg in segs[:-1]:
                    tree = tree.setdefault(seg, {"sub": {}, "leaf": None})["sub"]
                last = segs[-1].removesuffix("[]")
                tree.setdefault(last, {"sub": {}, "leaf": None}).update(table=name, array=p.endswith("[]"))
        for path, spec in fields.items():
            self._declare(path, spec)

    def _declare(self, path: str, spec: str) -> None:
        segs = path.split(".")
        table, tree, rel = "records", self.tables["records"], []
        for i, seg in enumerate(segs):
            last = i == len(segs) - 1
            key = seg.removesuffix("[]")
            prefix = ".".join(s.removesuffix("[]") for s in segs[: i + 1])
            node = tree.setdefault(key, {"sub": {}, "leaf": None})
            rel.append(key)
            if last and spec == "records":
                node["records"] = True
                self.where[path] = ("records", None)
                return
            if last and not seg.endswith("[]"):
                node["leaf"] = spec
                self.where[path] = (table, ".".join(rel))
                return
            if prefix in self.alias or seg.endswith("[]"):
                name, is_array = self.alias.get(prefix, (prefix, True))
                self.tables.setdefault(name, {})
                node["table"] = name
                node["array"] = is_array
                table, tree, rel = name, self.tables[name], []
                if last:  # an array of scalars: rows hold the item itself
                    node["scalar"] = spec
                    self.where[path] = (name, "")
                    return
            else:
                tree = node["sub"]

    def run(self, lines: list[bytes]):
        """-> (bad line indices, {table: [row dict]}); row dicts hold
        _parent, _item (and _line for records) and the relative paths."""
        rows = {t: [] for t in self.tables}
        bad = set()
        for li, line in enumerate(lines):
            if not line.strip(b" \t\r"):
                continue
            try:
                value = _loads(line)
            except (orjson.JSONDecodeError, ValueError):
                bad.add(li)
                continue
            if isinstance(value, list):
                for j, item in enumerate(value):
                    self._record(item, li, -1, j, rows)
            else:
                self._record(value, li, -1, -1, rows)
        return bad, rows

    def _record(self, value, li, parent, item, rows):
        row = {"_parent": parent, "_item": item, "_line": li}
        rows["records"].append(row)
        r = len(rows["records"]) - 1
        if isinstance(value, dict):
            self._walk(value, self.tables["records"], "records", row, r, "", li, rows)

    def _walk(self, obj: dict, tree: dict, table: str, row: dict, r: int, prefix: str, li, rows):
        for key, v in obj.items():
            node = tree.get(key)
            if node is None:
                continue
            rel = prefix + key
            if node["leaf"]:
                row[rel] = v
            if node.get("records") and isinstance(v, list):
                for j, item in enumerate(v):
                    self._record(item, li, r, j, rows)
            elif "table" in node:
                t = node["table"]
                if node["array"] and isinstance(v, list):
                    for j, item in enumerate(v):
                        if "scalar" in node:
                            rows[t].append({"_parent": r, "_item": j, "": item})
                        elif isinstance(item, dict):
                            child = {"_parent": r, "_item": j}
                            rows[t].append(child)
                            self._walk(item, self.tables[t], t, child, len(rows[t]) - 1, "", li, rows)
                elif not node["array"] and isinstance(v, dict):
                    child = {"_parent": r, "_item": -1}
                    rows[t].append(child)
                    self._walk(v, self.tables[t], t, child, len(rows[t]) - 1, "", li, rows)
            elif isinstance(v, dict) and node["sub"]:
                self._walk(v, node["sub"], table, row, r, rel + ".", li, rows)


def _typed(value, spec: str):
    """What a column of type spec holds for the JSON value orjson gave (None: null)."""
    if spec == "str":
        return value if isinstance(value, str) else None
    if spec == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < (1 << 63)
        return value if ok else None
    if spec == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None
    if spec == "bool":
        return value if isinstance(value, bool) else None
    raise AssertionError(spec)


def _scan_parts(data: bytes, plan: Plan, parts: int = 1) -> list:
    """Scan data whole, or cut into parts at line boundaries scanned one by one (as the reader
    cuts a big chunk), -> ScanResults in line order, each with its first line index."""
    a = ScanBuffer.of(data).a
    starts, ends = line_bounds(a, len(data))
    m = len(starts)
    cuts = [m * k // max(parts, 1) for k in range(max(parts, 1) + 1)]
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        if hi == lo and out:
            continue
        s0 = int(starts[lo]) if lo < m else len(data)
        e0 = int(ends[hi - 1]) if hi > lo else s0
        res = scan(ScanBuffer.of(data[s0:e0]), plan, (starts[lo:hi] - s0, ends[lo:hi] - s0))
        out.append((lo, res))
    return out


def _table_rows(res, t: int, line0: int) -> list[dict]:
    rows = [{"_parent": int(p), "_item": int(i)} for p, i in zip(res.parent(t), res.item(t))]
    if t == 0:
        for r, li in zip(rows, res.record_line):
            r["_line"] = int(li) + line0
    return rows


def check(data: bytes, fields: dict, tables: dict | None = None, threads: int = 1, markers=()):
    """Scan data with a plan of fields and compare everything with the oracle."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    plan = Plan(fields, tables=tables, markers=markers)
    parts = _scan_parts(data, plan, threads)
    bad, rows = Oracle(fields, tables).run(lines)
    got_bad = {li + line0 for line0, p in parts for li, _, _ in p.bad_lines()}
    assert got_bad == bad, f"only scan: {sorted(got_bad - bad)[:5]}, only orjson: {sorted(bad - got_bad)[:5]}"
    offsets: dict[int, int] = {}
    got: dict[str, list] = {}
    for line0, p in parts:  # concatenate parts, shifting parents by the rows of earlier parts
        for t, name in enumerate(plan.table_names):
            parent = plan.table_parent[t]
            tbl = _table_rows(p, t, line0)
            for rowd in tbl:
                if rowd["_parent"] >= 0:
                    rowd["_parent"] += offsets.get(parent if t else 0, 0)
            got.setdefault(name, []).extend(tbl)
        for t in range(plan.n_tables):
            offsets[t] = offsets.get(t, 0) + p.rows(t)
    for name in plan.table_names:
        want, have = rows[name], got[name]
        assert len(have) == len(want), f"table {name}: {len(have)} rows, want {len(want)}"
        for i, (h, w) in enumerate(zip(have, want)):
            assert (h["_parent"], h["_item"]) == (w["_parent"], w["_item"]), (name, i, h, w)
            if name == "records":
                assert h["_line"] == w["_line"], (i, h, w)
    oracle = Oracle(fields, tables)
    for path, spec in fields.items():
        if spec == "records":
            continue
        table, rel = oracle.where[path]
        for type_ in spec.split("|"):
            if type_ in ("any", "raw"):
                continue
            col = []
            for _, p in parts:
                col.extend(p.column(path, type_).to_pylist())
            want = [_typed(r.get(rel), type_) for r in rows[table]]
            for i, (h, w) in enumerate(zip(col, want)):
                same = h == w or (isinstance(h, float) and isinstance(w, float) and math.isnan(h) and math.isnan(w))
                if type_ == "float" and same and h is not None:
                    same = math.copysign(1, h) == math.copysign(1, w) or h != 0
                assert same, f"{path} ({type_}) row {i}: scan {h!r}, orjson {w!r}"
    return [p for _, p in parts]


def _provider_fields(*modules) -> tuple[dict, dict]:
    fields: dict = {}
    tables: dict = {}
    for m in modules:
        for k, v in m.FIELDS.items():
            fields[k] = (
                v if k not in fields or fields[k] == v else "|".join(dict.fromkeys(fields[k].split("|") + v.split("|")))
            )
        tables.update(m.TABLES)
    return fields, tables


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_firefly_plan(path):
    from decoder.ingest import firefly

    check(path.read_bytes(), firefly.FIELDS)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_every_provider(path):
    from decoder.ingest import chirpstack, firefly, helium, tts

    fields, tables = _provider_fields(firefly, helium, tts, chirpstack)
    check(path.read_bytes(), fields, tables, threads=2)


# --------------------------------------------------------------------------- nasty lines

NASTY_FIELDS = {
    "s": "str",
    "i": "int",
    "f": "float",
    "b": "bool",
    "n.s": "str",
    "n.f": "float",
    "n.deep.i": "int",
    "arr[].s": "str",
    "arr[].f": "float",
    "arr[].sub.i": "int",
    "tags[]": "str",
    "nums[]": "float",
    "packets[]": "records",
    "dévice": "str",
    'k"q': "str",
    "a_key_longer_than_sixteen_bytes": "str",
    "a_key_longer_than_sixteen_bytez": "int",
}

GOOD = [
    b'{"s":"plain","i":1,"f":2.5,"b":true}',
    b'  {  "s" : "sp" ,\t"i"\t:\t-7 , "f" :\r 1e3 }  \r',
    b'{"s":"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t end"}',
    b'{"s":"\\u00e9\\u4e2d\\ud83d\\ude00 and \\u0000 nul"}',
    '{"s":"raw é 中 😀 ok","dévice":"d1"}'.encode(),
    b'{"\\u0073":"escaped key","\\u0064\\u00e9vice":"escaped non-ascii key","k\\"q":"quote key"}',
    b'{"a_key_longer_than_sixteen_bytes":"long","a_key_longer_than_sixteen_bytez":5}',
    b'{"a_key_longer_than_sixteen_bytex":"near miss","a_key_longer_than_sixteen_byte":"shorter"}',
    b'{"i":-0,"f":-0.0}',
    b'{"i":0,"f":-0}',
    b'{"f":1E-5}',
    b'{"f":1.5e+300}',
    b'{"f":4.9e-324}',
    b'{"f":2.2250738585072011e-308}',
    b'{"f":2.2250738585072014e-308}',
    b'{"f":1.7976931348623157e308}',
    b'{"f":123456789012345678901234567890}',
    b'{"f":0.1}',
    b'{"f":3.14159265358979323846264338327950288}',
    b'{"f":9007199254740993}',
    b'{"f":9007199254740992.5}',
    b'{"f":1e-400}',
    b'{"f":0.000000000000000000000001}',
    b'{"f":7.2057594037927933e16}',
    b'{"f":1e23}',
    b'{"f":8.98846567431158e307}',
    b'{"f":2.4703282292062328e-324}',
    b'{"f":2.4703282292062327e-324}',
    b'{"f":1000000000000000000000000e-20}',
    b'{"i":9223372036854775807}',
    b'{"i":9223372036854775808}',
    b'{"i":-9223372036854775808}',
    b'{"i":-9223372036854775809}',
    b'{"i":18446744073709551615}',
    b'{"i":18446744073709551616}',
    b'{"i":1.0}',
    b'{"i":1e2}',
    b'{"i":"12"}',
    b'{"s":12}',
    b'{"f":"1.5"}',
    b'{"b":1}',
    b'{"b":null}',
    b'{"s":null,"i":null,"f":null,"arr":null,"n":null}',
    b'{"n":{"s":"nested","f":-1.25,"deep":{"i":42}}}',
    b'{"n":"not an object"}',
    b'{"n":[1,2]}',
    b'{"arr":[{"s":"a","f":1},{"s":"b","sub":{"i":3}},null,5,"x",[1],{"f":"bad"}]}',
    b'{"arr":[]}',
    b'{"arr":{}}',
    b'{"arr":"x"}',
    b'{"tags":["a","b",null,3,{"x":1},"\\u00e9"]}',
    b'{"nums":[1,2.5,-0,1e400e]}'[:0] + b'{"nums":[1,2.5,-0,"x"]}',
    b'{"packets":[{"s":"p0","i":0},{"s":"p1","packets":[{"s":"inner"}]},7,[],{"arr":[{"s":"deep"}]}],"s":"env"}',
    b'{"packets":[]}',
    b'{"packets":"not an array"}',
    b'[{"s":"top0"},{"s":"top1","i":1},"scalar item",[1,2],{}]',
    b"[]",
    b"[ ]",
    b"{}",
    b"{ }",
    b'"a top-level string"',
    b"42",
    b"-1.5",
    b"true",
    b"false",
    b"null",
    b'{"x":' * 1023 + b'{"s":"deep"}' + b"}" * 1023,
    b"[" * 1024 + b"]" * 1024,
    b'{"other":' + b"[" * 1023 + b"]" * 1023 + b',"s":"after deep"}',
    b'{"s":"dup1","s":"dup2"}',
    b'{"s":"\x7f del is fine"}',
    b'{"unknown":{"a":[1,2,{"b":"\\u00e9"}],"c":true,"d":null},"s":"ok"}',
    b"",
    b"   ",
    b"\t",
    b"\r",
]

BAD = [
    b'{"s":"truncated',
    b'{"s":"x"',
    b'{"s":',
    b'{"s"',
    b"{",
    b"[1,2",
    b'{"arr":[{"s":"a"}',
    b'{"s" "missing colon"}',
    b'{"s":"x"}{"s":"two values"}',
    b'{"s":"x"} 5',
    b"1 2",
    b"[] []",
    b'{"s":tru}',
    b'{"s":nul}',
    b'{"s":falsy}',
    b'{"s":True}',
    b'{"s":NaN}',
    b'{"s":Infinity}',
    b'{"s":-Infinity}',
    b'{"i":01}',
    b'{"i":-}',
    b'{"i":1.}',
    b'{"i":.5}',
    b'{"i":1e}',
    b'{"i":1e+}',
    b'{"i":+1}',
    b'{"i":0x10}',
    b'{"s":"tab\tinside"}',
    b'{"s":"nul\x00inside"}',
    b'{"s":"bad \\x escape"}',
    b'{"s":"\\u12G4"}',
    b'{"s":"\\ud800"}',
    b'{"s":"\\udc00"}',
    b'{"s":"\\ud800\\u0041"}',
    b'{"s":"\\ud800x"}',
    b'{"s":"\xff"}',
    b'{"s":"\xc3"}',
    b'{"s":"\xc0\x80"}',
    b'{"s":"\xed\xa0\x80"}',
    b'{"s":"\xf4\x90\x80\x80"}',
    b'{"s":"\xe2\x82"}',
    b'{"\xff":1}',
    b'\xef\xbb\xbf{"s":"bom"}',
    b'{"s":1,}',
    b"[1,]",
    b"{,}",
    b"[,1]",
    b"{'s':'single'}",
    b'{s:"unquoted"}',
    b'{"s":"x"]',
    b'["x"}',
    b"}",
    b"]",
    b'{"a":1 "b":2}',
    b'{"x":' * 1024 + b"1" + b"}" * 1024,
    b"[" * 1025 + b"]" * 1025,
    b'\x0c{"s":"form feed"}',
    b'{"packets":[{"s":"ok"},{"s":"bad}]}',
]


# Valid JSON that orjson rejects: numbers beyond a double (read as infinity, see the module docstring).
HUGE = [b'{"f":1e400}', b'{"f":-1e400}', b'{"f":1.7976931348623159e308}', b'{"other":1e999}', b'{"i":1e400}']


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_good_lines(threads):
    check(b"\n".join(GOOD + HUGE) + b"\n", NASTY_FIELDS, markers=["s", "packets"], threads=threads)


def test_huge_numbers_are_infinity():
    (res,) = check(b"\n".join(HUGE) + b"\n", NASTY_FIELDS)
    assert res.column("f").to_pylist()[:3] == [math.inf, -math.inf, math.inf]
    assert res.column("i", "int").to_pylist()[4] is None and res.types("i")[4] == K.T_FLOAT


def test_no_final_newline():
    check(b"\n".join(GOOD[:3]), NASTY_FIELDS)
    check(b'{"s":"trunc', NASTY_FIELDS)


def test_bad_lines():
    parts = check(b"\n".join(BAD + GOOD[:3]) + b"\n", NASTY_FIELDS)
    reasons = {li: (why, off) for li, why, off in parts[0].bad_lines()}
    assert reasons[0][0] == K.ERROR_TEXT[K.E_END]
    assert reasons[BAD.index(b'{"s" "missing colon"}')][0] == K.ERROR_TEXT[K.E_COLON]
    assert reasons[BAD.index(b'{"s":"x"}{"s":"two values"}')] == (K.ERROR_TEXT[K.E_TRAILING], 9)
    assert reasons[BAD.index(b'{"s":"\xff"}')] == (K.ERROR_TEXT[K.E_UTF8], 6)
    assert reasons[BAD.index(b'{"s":"\\ud800"}')][0] == K.ERROR_TEXT[K.E_SURROGATE]


def test_bad_lines_roll_back_their_rows():
    data = b'{"arr":[{"s":"a"},{"s":"b"}],"s":"x","i":}\n{"arr":[{"s":"c"}],"s":"y"}\n'
    (res,) = check(data, NASTY_FIELDS)
    assert res.rows(0) == 1 and res.rows(res.plan.table_of("arr")) == 1
    assert res.column("arr[].s").to_pylist() == ["c"]


def test_wrong_types_duplicates_and_items_are_warnings():
    data = b'{"s":1,"i":"x","arr":[1,{"s":"ok"}],"n":"str","s":"again"}\n'
    (res,) = check(data, NASTY_FIELDS)
    plan = res.plan
    w = res.warnings()
    got = sorted((plan.path_of(int(node)), K.WARNING_TEXT[int(code)]) for node, code in zip(w[0], w[2]))
    assert got == [
        ("arr", "array item is not an object"),
        ("i", "wrong JSON type"),
        ("n", "wrong JSON type"),
        ("s", "duplicate key (last value kept)"),
        ("s", "wrong JSON type"),
    ]


def test_some_rows_of_a_text_path_are_the_rows_of_its_column():
    """strings_at (what a provider reads of a text path in a chunk shared with others) gives the
    values the whole column has at those rows: escaped text unescaped, a repeated key's last
    value, null for absent, null and other types; in a child table too."""
    data = (
        b'{"s":"plain","arr":[{"s":"a\\u00e9\\n"},{"s":1}]}\n'
        b'{"s":"first","s":"last \\"quoted\\"","arr":[{"s":"x"}]}\n'
        b'{"i":1}\n'
        b'{"s":null,"arr":[{}]}\n'
        b'{"s":42}\n'
        b'{"s":"caf\xc3\xa9 \\t tab","arr":[{"s":"' + b"long " * 40 + b'"}]}\n'
    )
    (res,) = check(data, NASTY_FIELDS)
    for path in ("s", "arr[].s"):
        whole = res.column(path, "str").to_pylist()
        n = len(whole)
        for rows in ([], [0], list(range(n)), list(range(n - 1, -1, -1)), [r for r in range(n) if r % 2], [1, 1, 0]):
            got = res.strings_at(path, np.array(rows, np.int64))
            got.validate(full=True)
            assert got.to_pylist() == [whole[r] for r in rows], (path, rows)
    assert res.strings_at("s", np.array([1, 5])).to_pylist() == ['last "quoted"', "caf\u00e9 \t tab"]


def test_unread_paths_are_read_past_like_undeclared_keys():
    """A reader that builds no reception table leaves the paths only receptions show unread: their
    values are validated like any key's, never stored, never warned about; the rest is as before."""
    data = b'{"s":1,"i":"x","f":2.5,"arr":[{"s":"a","f":[]},{"f":1}]}\n{"i":3,"arr":[{"s":"b"}]}\n{"s":"x",}\n'
    full = _scan_parts(data, Plan(NASTY_FIELDS))[0][1]
    lean = _scan_parts(data, Plan(NASTY_FIELDS, unread=["s", "arr[].f"]))[0][1]
    assert lean.bad_lines() == full.bad_lines() and len(lean.bad_lines()) == 1  # still validated
    for res in (full, lean):
        assert res.column("i", "int").to_pylist() == [None, 3] and res.column("arr[].s").to_pylist() == ["a", None, "b"]
    assert (lean.types("s") == K.T_ABSENT).all() and (lean.types("arr[].f") == K.T_ABSENT).all()
    assert full.column("f").to_pylist() == lean.column("f").to_pylist() == [2.5, None]
    warned = lambda res: sorted(res.plan.path_of(int(n)) for n in res.warnings()[0])  # noqa: E731
    assert warned(full) == ["arr[].f", "i", "s"] and warned(lean) == ["i"]
    with pytest.raises(ValueError, match="marker"):
        Plan(NASTY_FIELDS, markers=["s"], unread=["s"])
    with pytest.raises(ValueError, match="leaf"):
        Plan(NASTY_FIELDS, unread=["n"])


def test_markers():
    data = b'{"s":"x"}\n{"packets":[]}\n{"s":null,"i":1}\n'
    (res,) = check(data, NASTY_FIELDS, markers=["s", "packets", "i"])
    assert res.record_mask.tolist() == [1, 2, 4]


def test_growing_outputs():
    """Outputs start small and grow (the kernel stops and resumes at a line)."""
    line = b'{"arr":[' + b",".join(b'{"s":"%d","f":%d.5}' % (i, i) for i in range(300)) + b'],"s":"rec"}'
    check(b"\n".join([line] * 40) + b"\n", NASTY_FIELDS)


def test_small_batches_of_alternating_providers_are_scanned_once(monkeypatch):
    """A batch without one provider's messages must not leave that provider's string regions sized
    at nothing: the next batch of its messages would stop and scan again at every full region."""
    from helpers import sample_generator

    from decoder.ingest import scan as scan_module
    from decoder.ingest.parse import normalize_values

    generate = sample_generator()
    shapes = {}
    for mix in ("firefly=1", "helium_event=1", "helium_body=1"):
        g = generate.Generator([generate.parse_group("Test Device Class:9:2")], 20, generate.parse_mix(mix), 3)
        shapes[mix] = [line.encode() for line in g.lines(600)]
    grown = []
    original = scan_module._Out.grow
    monkeypatch.setattr(scan_module._Out, "grow", lambda out: (grown.append(1), original(out))[1])
    for start in range(0, 600, 100):
        if start == 100:  # the first round learns the sizes of each kind
            grown.clear()
        for lines in shapes.values():
            assert normalize_values(lines[start : start + 100]).uplinks.num_rows == 100
    assert len(grown) <= 2  # of 15 batches; it was 5-6 re-scans in every batch


def test_a_new_plans_first_big_scan_learns_its_sizes_first(monkeypatch):
    """The first chunk a plan scans is on the way to the first output: it learns its sizes from
    its first lines instead of growing its string regions over and over (13 times for a chunk
    of Firefly packets); what it reads is the same as a plan that knew them."""
    from helpers import sample_generator

    from decoder.ingest import scan as scan_module
    from decoder.ingest.parse import _merged_fields

    generate = sample_generator()
    g = generate.Generator([generate.parse_group("Test Device Class:9:2")], 50, generate.parse_mix("firefly=1"), 5)
    data = b"\n".join(line.encode() for line in g.lines(3000)) + b"\n"
    calls = []  # (first line, lines) of each kernel call: a resumed scan is a new call
    kernel = scan_module.K.scan_lines
    monkeypatch.setattr(
        scan_module.K, "scan_lines", lambda *a: (calls.append((a[3], a[4])), kernel(*a))[1], raising=True
    )
    fresh = Plan(_merged_fields())
    (_, first), (_, again) = _scan_parts(data, fresh)[0], _scan_parts(data, fresh)[0]
    whole = [c for c in calls if c[1] == 3000]
    assert len(whole) <= 3 and fresh.learned["probed"]  # was 14: 13 regions full, one by one
    for path in ("uid", "payload", "gwrx[].gweui"):
        assert first.column(path).to_pylist() == again.column(path).to_pylist()
    assert first.column("uid").to_pylist()[:3] == [json.loads(x)["uid"] for x in data.splitlines()[:3]]


def test_a_scan_that_starts_while_the_plan_probes_waits_for_the_sizes(monkeypatch):
    """Two workers start on a new plan at once: the second one's first scan waits for the first
    one's probe and uses the sizes it learns. Racing past it with the first guesses, its string
    regions grew over and over (11-13 times for a 16 MB chunk), on the way to the first output."""
    import threading
    import time

    from helpers import sample_generator

    from decoder.ingest import scan as scan_module
    from decoder.ingest.parse import _merged_fields

    generate = sample_generator()
    g = generate.Generator([generate.parse_group("Test Device Class:9:2")], 50, generate.parse_mix("firefly=1"), 5)
    data = b"\n".join(line.encode() for line in g.lines(3000)) + b"\n"
    fresh = Plan(_merged_fields())
    probing, second_started = threading.Event(), threading.Event()
    calls: dict[str, list] = {"first": [], "second": []}
    kernel = scan_module.K.scan_lines

    def counted(*a):
        name = threading.current_thread().name
        if name == "first" and a[4] == scan_module._PROBE_LINES and not calls["first"]:
            probing.set()
            second_started.wait(5)  # the probe: the second scan starts while it runs
            time.sleep(0.2)
        calls[name].append(a[3])
        return kernel(*a)

    monkeypatch.setattr(scan_module.K, "scan_lines", counted, raising=True)
    results = {}

    def run(name: str) -> None:
        if name == "second":
            second_started.set()
        results[name] = scan(ScanBuffer.of(data), fresh)

    first = threading.Thread(target=run, args=("first",), name="first")
    first.start()
    assert probing.wait(10)
    second = threading.Thread(target=run, args=("second",), name="second")
    second.start()
    first.join(10)
    second.join(10)
    assert len(calls["second"]) <= 2, calls["second"]  # the whole chunk, at most one growth
    for path in ("uid", "payload"):
        assert results["second"].column(path).to_pylist() == results["first"].column(path).to_pylist()


def test_a_released_scans_outputs_serve_the_next_scan_only_once_nothing_refers_to_them():
    """Fresh pages cost a fifth of a scan, so a thread's next scan reuses the outputs of its last
    released one; a column still alive keeps its values whatever is scanned next."""
    plan = Plan(NASTY_FIELDS)
    first = b"\n".join(b'{"s":"a%d","f":%d.5,"i":%d}' % (k, k, k) for k in range(300)) + b"\n"
    other = b"\n".join(b'{"s":"zz%d","f":-%d.25,"i":7}' % (k, k) for k in range(300)) + b"\n"

    def scanned(data: bytes):
        buf = ScanBuffer.of(data)
        return scan(buf, plan, line_bounds(buf.a, len(data)))

    # Weak references, not id()s: an array freed between two scans may leave its id to the next.
    res = scanned(first)
    res.release()
    before = [weakref.ref(res.out.fl), weakref.ref(res.out.arena)]
    kept_f, kept_s = res.column("f"), res.column("s")  # zero-copy views of the outputs
    del res
    again = scanned(other)
    assert again.out.fl is not before[0]() and again.out.arena is not before[1]()  # still referred to
    assert kept_f.to_pylist()[:2] == [0.5, 1.5] and kept_s.to_pylist()[:2] == ["a0", "a1"]
    assert again.column("s").to_pylist()[:2] == ["zz0", "zz1"]
    again.release()
    reused = [weakref.ref(again.out.fl), weakref.ref(again.out.vt)]
    del again, kept_f, kept_s
    last = scanned(first)
    assert last.out.fl is reused[0]() and last.out.vt is reused[1]()  # nothing refers to them: reused
    assert last.column("f").to_pylist()[:2] == [0.5, 1.5] and last.column("s").to_pylist()[299] == "a299"
    assert last.column("i", "int").to_pylist()[:3] == [0, 1, 2]
    assert (last.types("n") == K.T_ABSENT).all()  # a reused vt starts empty again


def test_every_provider_shape_in_the_readers_plan():
    """The Things Stack and ChirpStack uplinks with the samples, through the reader's plan."""
    tts = {
        "end_device_ids": {"device_id": "dev1", "dev_eui": "70B3D57ED0000001"},
        "correlation_ids": ["as:up:01", "rpc:/x"],
        "received_at": "2020-08-26T13:46:55.398327083Z",
        "uplink_message": {
            "f_port": 1,
            "frm_payload": "AQI=",
            "rx_metadata": [{"gateway_ids": {"gateway_id": "gw1"}, "rssi": -51, "snr": 9.75}],
            "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}}, "frequency": "868100000"},
        },
    }
    cs = {
        "deduplicationId": "3ac7e3c4",
        "deviceInfo": {"devEui": "0101010101010101"},
        "data": "qg==",
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -36, "snr": 10.5}],
        "txInfo": {"frequency": 868300000},
    }
    from decoder.ingest import chirpstack, firefly, helium
    from decoder.ingest import tts as tts_module

    lines = [orjson.dumps(tts), orjson.dumps(cs)] + SAMPLES[-1].read_bytes().splitlines()
    fields, tables = _provider_fields(firefly, helium, tts_module, chirpstack)
    check(b"\n".join(lines) + b"\n", fields, tables)
    plan = _the_plan()
    ((_, res),) = _scan_parts(b"\n".join(lines[:2]) + b"\n", plan)
    marks = res.record_mask.tolist()
    names = plan.markers
    assert {"end_device_ids", "uplink_message"} <= {names[b] for b in range(len(names)) if marks[0] >> b & 1}
    assert {"deduplicationId", "deviceInfo", "data", "rxInfo", "txInfo"} == {
        names[b] for b in range(len(names)) if marks[1] >> b & 1
    }
    assert res.column("uplink_message.settings.frequency", "str").to_pylist() == ["868100000", None]
    assert res.column("txInfo.frequency").to_pylist() == [None, 868300000]
    assert res.column("data", "str").to_pylist() == [None, "qg=="]
    assert res.column("correlation_ids[]").to_pylist() == ["as:up:01", "rpc:/x"]


# --------------------------------------------------------------------------- random JSON

KEYS = ["s", "i", "f", "b", "n", "arr", "tags", "nums", "packets", "deep", "sub", "dévice", "x", 'k"q']
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)),
    max_leaves=30,
)


def _dump(value, rnd: random.Random) -> bytes:
    """JSON text in one of several styles: compact, spaced, ASCII-escaped."""
    style = rnd.randrange(4)
    if style == 3:
        text = json.dumps(value, ensure_ascii=False, indent=1)  # whitespace everywhere, one line
        return text.replace("\n", rnd.choice([" ", "\t", "\r", " \t "])).encode()
    seps = (", ", ": ") if style == 1 else (",", ":")
    return json.dumps(value, ensure_ascii=style == 2, separators=seps).encode()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_json, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_random_values(values, rnd):
    data = b"\n".join(_dump(v, rnd) for v in values) + b"\n"
    check(data, NASTY_FIELDS)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json, st.randoms(use_true_random=False), st.integers(0, 5))
def test_random_corruption(value, rnd, how):
    """Cut, flip or insert bytes: bad exactly when orjson says so."""
    text = bytearray(_dump(value, rnd))
    if text:
        k = rnd.randrange(len(text))
        if how == 0:
            del text[k:]
        elif how == 1:
            text[k] = rnd.choice(b'{}[]:,"\\ 0e.-tfn\x00\xff\xc3')
        elif how == 2:
            text.insert(k, rnd.choice(b'{}[]:,"\\ 0e.-\xe2'))
        elif how == 3:
            del text[k]
    check(bytes(text).replace(b"\n", b" ") + b"\n", NASTY_FIELDS)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(1 << 80), 1 << 80)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
    st.sampled_from(["{}", "{:e}", "{:.17g}", "{:.25e}", "{:.3f}"]),
)
def test_random_numbers(number, fmt):
    if isinstance(number, str):
        text = number.replace("E", "e")
        if not text.lstrip("-")[:1].isdigit() or "." in text and text.endswith("."):
            return
    else:
        try:
            text = fmt.format(number)
        except (ValueError, OverflowError):
            return
    if text.lstrip("-").startswith("0") and len(text.lstrip("-")) > 1 and text.lstrip("-")[1].isdigit():
        text = text.replace("0", "", 1) if text[0] != "-" else "-" + text[1:].replace("0", "", 1)
    check(b'{"f":%s,"i":%s,"other":%s}\n' % ((text.encode(),) * 3), NASTY_FIELDS)


def test_numbers_of_every_digit_count_read_as_python_reads_them():
    """Runs of 1 to 26 digits, around the 19 significant digits kept: in the integer part,
    in the fraction (after leading zeros, which are not kept digits), before an exponent."""
    digits = "9876543210123456789012345678"
    texts = []
    for k in range(1, 27):
        texts += [digits[:k], f"-{digits[:k]}", f"1.{digits[:k]}", f"0.{digits[:k]}", f"0.0000000{digits[:k]}"]
        texts += [f"{digits[:k]}.5", f"{digits[:k]}e-7", f"{digits[: (k % 9) + 1]}.{digits[:k]}E+3"]
    lines = [b'{"f":%s,"i":%s,"other":[%s]}' % ((t.encode(),) * 3) for t in texts]
    check(b"\n".join(lines) + b"\n", NASTY_FIELDS)


# --------------------------------------------------------------------------- numbers, kernel level


def test_an_array_reached_by_its_address_stays_allocated_until_alive():
    """scan_lines decodes escaped keys into a scratch array it reaches only by address. numba
    frees an array right after its last use, the _addr call, and the next allocation of that
    size took the same memory while the scratch was still written: _alive marks the last use."""
    from numba import njit

    @njit
    def addresses():
        scratch = np.zeros(400, np.uint8)
        scr = K._addr(scratch)
        other = np.empty(400, np.uint8)  # what the kernel allocates next
        for k in range(400):
            K._st1(scr + k, 7)
        K._alive(scratch)
        return scr, K._addr(other), other[0]

    scr, other, _ = addresses()
    assert scr != other


def test_decimal_to_double_is_correctly_rounded():
    """Random mantissas and exponents over the whole double range, subnormals,
    overflow, and decimals exactly halfway between two doubles (ties to even)."""
    from fractions import Fraction

    rnd = random.Random(7)
    cases = [(rnd.randrange(1, 10 ** rnd.randint(1, 19)), rnd.randint(-345, 310)) for _ in range(20000)]
    for _ in range(10000):
        m, e2 = rnd.randrange(2**52, 2**53), rnd.randint(-80, 60)
        f = Fraction(2 * m + 1) * Fraction(2) ** (e2 - 1)  # a midpoint between two doubles
        k = f.denominator.bit_length() - 1
        num, q = f.numerator * 5**k, -k
        while num % 10 == 0:
            num, q = num // 10, q + 1
        if num < 10**19:
            cases.append((num, q))
    for man, q in cases:
        v, status = K._to_double(np.uint64(man), q, False, False)
        want = float(f"{man}e{q}")
        assert (status == 2 and want == math.inf) or (status == 0 and v == want), (man, q, v, status, want)


def test_a_scan_without_bounds_finds_the_lines_that_line_bounds_finds():
    """Given no line bounds, the kernel finds the lines as it parses (no separate pass over the
    bytes): the same lines, errors, types and values as with line_bounds, for blank lines,
    CRLF, trailing values, lines cut short, long strings, a last line without its newline, and
    more lines than it made room for (it grows the room, and its outputs, and goes on)."""
    plan = Plan(NASTY_FIELDS)
    kinds = [
        b'{"s":"a","i":1}',
        b"",
        b"   ",
        b'{"s":"b"}  \r',
        b'{"s":"c"} x',
        b'{"s":"d',
        b'[{"s":"e"}]',
        b'{"s":"\\u00e9\\n","tags":["t"]}',
        b"tru",
        b'\t{"i":2}\t',
        b'{"s":"f"}{"s":"g"}',
        b'{"s":"' + b"x" * 5000 + b'"}',
        b'{"n":{"s":"h"},"arr":[{"s":"i"},{"s":"j"}]}',
    ]
    lines = kinds * 40 + [b'{"s":"last"}']  # the last without a newline
    data = b"\n".join(lines)
    given = scan(ScanBuffer.of(data), plan, line_bounds(ScanBuffer.of(data).a, len(data)))
    plan.learned.update(bytes_per_line=10_000.0, rows_per_line=1.0, probed=True)  # room for too few
    plan.learned["slot_bytes"] = plan.learned["slot_bytes"] * 0
    found = scan(ScanBuffer.of(data), plan)
    assert found.n_lines == given.n_lines == len(lines)
    assert found.starts.tolist() == given.starts.tolist() and found.ends.tolist() == given.ends.tolist()
    assert found.bad_lines() == given.bad_lines() and len(found.bad_lines()) == 4 * 40
    assert found.line_types.tolist() == given.line_types.tolist()
    for path in ("s", "i", "n.s", "arr[].s", "tags[]"):
        assert found.column(path).to_pylist() == given.column(path).to_pylist()
    assert found.column("s").to_pylist()[-1] == "last"


def test_a_buffer_past_the_reach_of_32_bit_spans_scans_the_same_with_64_bit_ones(monkeypatch, tmp_path):
    """Strings' spans are int32 in buffers shorter than SPANS_32_BELOW and int64 in longer ones
    (a line of gigabytes): the same columns, records and uplinks either way, for escaped, long,
    nested and raw strings, and a string region that had to grow."""
    from helpers import sample_generator

    import decoder.ingest.scan as scan_module
    from decoder.ingest.parse import Reader

    kinds = [
        '{"s":"a","i":1,"dévice":"d"}'.encode(),
        b'{"s":"\\u00e9\\n","tags":["t","u"],"k\\"q":"q"}',
        b'{"s":"' + b"x" * 5000 + b'"}',
        b'{"n":{"s":"h"},"arr":[{"s":"i"},{"s":"j"}],"a_key_longer_than_sixteen_bytes":"l"}',
        b'{"packets":[{"s":"p1"},{"s":"p2"}]}',
        b'{"s":"cut',
    ]
    data = b"\n".join(kinds * 50) + b"\n"
    gen = sample_generator()
    shapes = gen.parse_mix("firefly=0.4,helium_event=0.3,helium_body=0.3")
    packets = "\n".join(gen.Generator([gen.parse_group(gen.DEFAULT_GROUP)], 8, shapes, 5).lines(300)).encode()
    narrow_plan, wide_plan = Plan(NASTY_FIELDS), Plan(NASTY_FIELDS)
    narrow = scan(ScanBuffer.of(data), narrow_plan)
    narrow_uplinks = Reader().process(bytearray(packets), 1, parallel=False)
    monkeypatch.setattr(scan_module, "SPANS_32_BELOW", 0)
    wide = scan(ScanBuffer.of(data), wide_plan)
    wide_uplinks = Reader().process(bytearray(packets), 1, parallel=False)
    assert (narrow.out.sp0.dtype, wide.out.sp0.dtype) == (np.int32, np.int64)
    assert narrow.bad_lines() == wide.bad_lines() and len(wide.bad_lines()) == 50
    for path in ("$", "s", "n.s", "arr[].s", "tags[]", "dévice", 'k"q', "a_key_longer_than_sixteen_bytes"):
        assert narrow.column(path).to_pylist() == wide.column(path).to_pylist(), path
    assert wide.column("s").to_pylist()[1] == "é\n" and wide.record_text(0) == kinds[0]
    assert narrow_uplinks.uplinks.equals(wide_uplinks.uplinks) and wide_uplinks.uplinks.num_rows > 250


def test_long_lines_after_tiny_ones_get_room_for_their_own_rows():
    """The room a scan makes for its rows is learned from the lines before; after a run of
    tiny lines, a buffer of long ones must not get (and zero) tables for 20 times its rows."""
    from helpers import sample_generator

    from decoder.ingest.parse import _merged_fields

    plan = Plan(_merged_fields())
    tiny = scan(ScanBuffer.of(b"{}\n" * 200_000), plan)
    assert tiny.n_lines == 200_000 and plan.learned["bytes_per_line"] == 3.0
    generate = sample_generator()
    g = generate.Generator([generate.parse_group("Test Device Class:9:2")], 50, generate.parse_mix("firefly=1"), 7)
    long = b"\n".join(line.encode() for line in g.lines(1500)) + b"\n"
    res = scan(ScanBuffer.of(long), plan)
    assert res.n_lines == 1500 and res.column("uid").null_count == 0
    assert res.out.vt.shape[1] < 20 * 1500 * 4  # rows of room: about 18,000; 385,000 without the floor
