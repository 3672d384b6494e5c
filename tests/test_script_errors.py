"""Bad scripts raise ScriptError that points at the problem; nothing else escapes, nothing runs."""

from __future__ import annotations

import collections
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import decoder
from decoder.compiler.lower import lower
from decoder.compiler.script import load_specs
from decoder.errors import ScriptError


def _cls(formulas=(), parse=None, name="Sensor X"):
    parse = (
        parse
        if parse is not None
        else [{"type": "int", "target": "a", "bits": 8}, {"type": "int", "target": "gps.lat", "bits": 8}]
    )
    return {
        "name": name,
        "script": {
            "parseElements": parse,
            "calculateElements": [{"target": f"r{k}", "formula": f} for k, f in enumerate(formulas)],
        },
    }


@pytest.mark.parametrize(
    "formula, reason, column",
    [
        ("a + * 2", "unexpected '*'", 5),
        ("a +", "unexpected end of formula", 4),
        ("b + 1", "unknown name 'b'", 1),
        ("a + 'x'", "'+' with a string operand is not supported", 3),
        ("a ? 1 : 'one'", "the branches of '?:' give different types (number and string)", 3),
        ("-a ** 2", "unexpected '**'", 4),
        ("gps + 1", "'gps' is an object", 1),
        ("a.b", "'a' is a number; it has no member 'b'", 1),
        ("Math.random()", "Math.random is not supported", 1),
        ("Math.max", "Math.max is a function", 1),
        ("alert(1)", "alert() is not supported", 1),
        ("017", "leading zero", 1),
        ("'x' == 1", "between a string and a number is not supported", 5),
        ("a && 'x'", "the operands of '&&' give different types", 3),
        ("Math.atan2(1)", "Math.atan2 takes 2 arguments, got 1", 1),
    ],
)
def test_formula_errors_point_at_the_token(formula, reason, column):
    with pytest.raises(ScriptError) as info:
        decoder.compile(_cls(["a * 2", formula]))
    err = info.value
    assert reason in err.reason
    assert (err.device_class, err.element, err.line, err.column) == ("Sensor X", "calculateElements[1]", 1, column)
    text = str(err)
    assert text.startswith(f"device class 'Sensor X', calculateElements[1], line 1, column {column}: ")
    caret_line = text.splitlines()[-1]
    assert caret_line.index("^") - 4 == column - 1  # the caret sits under the bad token
    assert text.splitlines()[-2].strip() == formula


def test_multiline_formula_reports_line_and_column():
    with pytest.raises(ScriptError) as info:
        decoder.compile(_cls(["a > 1\n  ? a\n  : nope"]))
    assert (info.value.line, info.value.column) == (3, 5)


def test_if_condition_errors_name_the_parse_element():
    parse = [{"type": "int", "target": "a", "bits": 8}, {"type": "int", "target": "b", "bits": 8, "if": "a =="}]
    with pytest.raises(ScriptError, match=r"parseElements\[1\], line 1, column 5"):
        decoder.compile(_cls(parse=parse))


def test_mixed_types_are_fine_where_only_truthiness_counts():
    dc = decoder.compile(_cls(["(a && 'x') ? 1 : 2", "!(a || true)"]))
    assert dc.decode(["0000", "0100"]).to_pylist() == [
        {"a": 0, "gps": {"lat": 0}, "r0": 2.0, "r1": False},
        {"a": 1, "gps": {"lat": 0}, "r0": 1.0, "r1": False},
    ]


@pytest.mark.parametrize(
    "element, reason",
    [
        ({"type": "int", "target": "a", "bits": 65}, "int needs 1 to 64 bits, got 65"),
        ({"type": "int", "target": "a", "bits": "eight"}, "bits must be a whole number"),
        ({"type": "int", "target": "a"}, "bits is missing"),
        ({"type": "float", "target": "a", "bits": 24}, "float needs 16, 32 or 64 bits"),
        ({"type": "text", "target": "a", "bits": 8}, "unknown type 'text'"),
        ({"type": "int", "target": "a..b", "bits": 8}, "target must be a name or dotted path"),
        ({"type": "int", "target": " a", "bits": 8}, "target must be a name or dotted path"),
        ({"type": "int", "target": "Math.x", "bits": 8}, "target 'Math.x' would hide the built-in 'Math'"),
        ({"type": "int", "target": "a", "bits": 12, "endian": "little"}, "endian 'little' needs"),
        ({"type": "uint", "target": "a", "bits": 8, "signed": True}, "uint cannot be signed"),
    ],
)
def test_parse_element_errors(element, reason):
    with pytest.raises(
        ScriptError, match="device class 'Sensor X', parseElements\\[0\\]: " + reason.replace("(", r"\(")
    ):
        decoder.compile(_cls(parse=[element]))


def test_target_that_is_both_value_and_object():
    with pytest.raises(ScriptError, match="'gps' cannot be both a value and an object"):
        decoder.compile(
            _cls(
                ["1"],
                parse=[{"type": "int", "target": "gps", "bits": 8}, {"type": "int", "target": "gps.lat", "bits": 8}],
            )
        )


def test_unreadable_class_file(tmp_path):
    with pytest.raises(ScriptError, match="cannot read device classes"):
        decoder.load_classes(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ScriptError, match="not valid JSON"):
        decoder.load_classes(bad)


# ---- generated source never contains script text ----------------------------------------------

HOSTILE = "__import__('os').system('touch /tmp/pwned')"


def test_generated_source_holds_no_script_text(tmp_path):
    dc = decoder.compile(
        {
            "name": HOSTILE,
            "script": {
                "parseElements": [
                    {"type": "int", "target": "__import__", "bits": 8},
                    {"type": "int", "target": "os.system", "bits": 8},
                ],
                "calculateElements": [
                    {"target": "exec", "formula": "__import__ == 1 ? \"'); import os; os.system('x'); ('\" : 'ok'"},
                    {"target": "eval", "formula": "os.system + 1 // __import__('os')"},
                ],
            },
        }
    )
    for needle in ("__import__", "os.system", "import os", "exec", "eval", "pwned", "touch", "Sensor", "ok"):
        assert needle not in dc.source, needle
    rows = dc.decode(["0102", "0203"]).to_pylist()
    assert rows[0]["exec"] == "'); import os; os.system('x'); ('" and rows[1]["exec"] == "ok"
    assert rows[0]["eval"] == 3.0


def test_formula_with_python_code_is_a_script_error():
    for formula in [HOSTILE, "a; import os", "lambda: 1", "[x for x in a]", "a if a else 1", "`a`", "a = 1"]:
        with pytest.raises(ScriptError):
            decoder.compile(_cls([formula]))


# ---- fuzz: random script JSON and formula text --------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
element_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["int", "uint", "bool", "float", "skip", "text", 3]),
        "target": st.sampled_from(["a", "b", "gps.lat", "gps", "Math", "", "a.b.c", 5]),
        "bits": st.one_of(st.integers(-1, 70), st.sampled_from(["8", "x", "16", ""])),
        "signed": st.sampled_from([True, False, "yes", None]),
        "endian": st.sampled_from(["little", "big", "middle"]),
        "if": st.sampled_from(["a", "a ==", "port == 1", "b > 0", 1]),
    },
)
# Elements and formulas that are valid on their own, so that a fair share of the
# generated scripts compiles and the "or a decoder" half of the property is exercised.
valid_element = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["int", "uint", "bool"]),
        "target": st.sampled_from(["a", "b", "gps.lat"]),
        "bits": st.integers(1, 32),
    }
)
formula_text = st.text(alphabet=string.ascii_letters[:6] + string.digits + " .+-*/%&|^!~<>=?:()'\",", max_size=24)
valid_formula = st.sampled_from(
    [
        "a + 1",
        "a * 2 - b",
        "a > 3 ? 1 : null",
        "(a & 15) << 2",
        "Math.round(a / 3)",
        "port == 2 && a",
        "a ? 'on' : 'off'",
        "length * 8",
    ]
)
calc_like = st.fixed_dictionaries(
    {
        "target": st.sampled_from(["r", "a", "gps.lat", "x.y"]),
        "formula": st.one_of(valid_formula, formula_text, json_values),
    }
)
# Scripts built from valid parts only: most compile, so the "or a decoder" half is exercised
# whatever hypothesis draws (random parts alone made a compiling script rare).
valid_scripts = st.fixed_dictionaries(
    {
        "name": st.text(max_size=5),
        "script": st.fixed_dictionaries(
            {
                "parseElements": st.lists(valid_element, min_size=1, max_size=5),
                "calculateElements": st.lists(
                    st.fixed_dictionaries({"target": st.sampled_from(["r", "x.y"]), "formula": valid_formula}),
                    max_size=3,
                ),
            }
        ),
    }
)
scripts = st.one_of(
    json_values,
    valid_scripts,
    st.fixed_dictionaries(
        {
            "name": st.text(max_size=5),
            "script": st.fixed_dictionaries(
                {
                    "parseElements": st.lists(st.one_of(valid_element, valid_element, element_like), max_size=5),
                    "calculateElements": st.lists(calc_like, max_size=4),
                },
                optional={"variables": json_values},
            ),
        }
    ),
)


def test_fuzz_scripts_give_script_error_or_a_decoder():
    """Random script JSON: a ScriptError or a working decoder, never another exception;
    both outcomes occur, so neither half of the property is vacuous."""
    outcomes: collections.Counter = collections.Counter()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(scripts)
    def check(doc):
        try:
            classes = decoder.load_classes(doc)
        except ScriptError:
            outcomes["rejected"] += 1
            return
        for dc in classes:
            assert dc.source and dc.output_schema() is not None  # lowered and generated without running
        if any(dc.spec.parse_elements for dc in classes):
            outcomes["compiled"] += 1

    check()
    assert outcomes["compiled"] >= 15 and outcomes["rejected"] >= 15, outcomes


def test_fuzz_formula_text():
    """Random formula text: a ScriptError with a sane position, or a lowered formula; both occur."""
    outcomes: collections.Counter = collections.Counter()

    @settings(max_examples=500, deadline=None)
    @given(st.one_of(formula_text, valid_formula))
    def check(text):
        try:
            lower(load_specs(_cls([text]))[0])
        except ScriptError as err:
            assert err.line is None or err.line >= 1
            outcomes["rejected"] += 1
        else:
            outcomes["lowered"] += 1

    check()
    assert outcomes["lowered"] >= 25 and outcomes["rejected"] >= 25, outcomes


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(formula_text, valid_formula), min_size=8, max_size=8))
def test_fuzz_formulas_that_compile_also_run(texts):
    valid = []
    for text in texts:
        try:
            lower(load_specs(_cls([text]))[0])
            valid.append(text)
        except ScriptError:
            pass
    if valid:
        batch = decoder.compile(_cls(valid)).decode(["0102", "", "FFFF"])
        assert batch.num_rows == 3 and len(batch.to_pylist()) == 3


def test_targets_need_not_be_identifiers_and_formulas_may_end_with_a_semicolon():
    dc = decoder.compile(
        {
            "name": "free names",
            "script": {
                "parseElements": [
                    {"type": "int", "target": "Battery Voltage", "bits": 8},
                    {"type": "int", "target": "raw", "bits": 8},
                ],
                "calculateElements": [{"target": "env.temp-C", "formula": "raw / 2;"}],
            },
        }
    )
    assert dc.decode(["0A15"]).to_pylist() == [{"Battery Voltage": 10, "raw": 21, "env": {"temp-C": 10.5}}]
