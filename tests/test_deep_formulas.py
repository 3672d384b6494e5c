"""Formulas as big as real scripts write them: long sums, lookup tables as chained ternaries,
deep parentheses, integer literals past the largest double. Compile raises nothing but
ScriptError; what compiles decodes as QuickJS computes it."""

from __future__ import annotations

import threading

import pytest
from helpers import run_cli
from js_oracle import evaluate_program, same_value

import decoder
from decoder.compiler.formula import MAX_NESTING


def one_formula(formula: str) -> dict:
    return {
        "name": "Deep",
        "id": 77,
        "script": {
            "parseElements": [{"type": "int", "target": "a", "bits": "8"}],
            "calculateElements": [{"target": "y", "formula": formula}],
        },
    }


def lookup(entries: int) -> str:
    """`a == 0 ? 0 : a == 1 ? 10 : ... : null`, a lookup table as firmware docs write it."""
    return " : ".join(f"a == {i} ? {i * 10 + 0.5}" for i in range(entries)) + " : null"


def decoded_y(dc, values: list[int]) -> list:
    return [row["y"] for row in dc.decode([f"{v:02X}" for v in values], encoding="hex").to_pylist()]


def js_y(formula: str, a: int):
    return evaluate_program({"a": float(a)}, [("y", formula)], ["y"])[0]


def test_a_256_entry_lookup_table_compiles_and_decodes_as_javascript():
    formula = lookup(256)
    dc = decoder.compile(one_formula(formula))
    values = list(range(256))
    ours = decoded_y(dc, values)
    for a in (0, 1, 17, 128, 254, 255):
        assert same_value(ours[a], js_y(formula, a)), a
    assert ours == [a * 10 + 0.5 for a in values]


def test_a_400_term_sum_and_500_nested_parentheses_compile():
    terms = " + ".join(f"a * {k}" for k in range(400))
    nested = "(" * 500 + "a + 1" + ")" * 500
    right = "(a + " * 300 + "1" + ")" * 300  # right-nested: a parenthesis and an operator per level
    for formula in (terms, nested, right):
        dc = decoder.compile(one_formula(formula))
        ours = decoded_y(dc, [0, 3, 200])
        for a, y in zip([0, 3, 200], ours):
            assert same_value(y, js_y(formula, a)), (formula[:40], a)


def test_deep_formulas_compile_in_a_thread_and_leave_the_recursion_limit_as_it_was():
    import sys

    before = sys.getrecursionlimit()
    results: list = []
    worker = threading.Thread(target=lambda: results.append(decoder.compile(one_formula(lookup(400)))))
    worker.start()
    worker.join()
    assert results and results[0].name == "Deep"
    assert sys.getrecursionlimit() == before


@pytest.mark.parametrize(
    "formula",
    [
        "(" * (MAX_NESTING + 1) + "a" + ")" * (MAX_NESTING + 1),
        " + ".join(["a"] * (MAX_NESTING + 2)),
        lookup(MAX_NESTING + 1),
        "-(" * 20_000 + "a" + ")" * 20_000,
    ],
    ids=["parentheses", "sum", "lookup", "very-deep"],
)
def test_nesting_past_the_limit_is_a_script_error_naming_the_formula(formula):
    with pytest.raises(decoder.ScriptError) as caught:
        decoder.compile(one_formula(formula))
    err = caught.value
    assert f"at most {MAX_NESTING}" in err.reason
    assert err.device_class == "Deep" and err.element == "calculateElements[0]"
    assert max(len(line) for line in str(err).splitlines()) < 200  # a window of the formula, not all of it


def test_check_reports_a_too_deep_formula_in_one_line(tmp_path):
    import json

    path = tmp_path / "deep.json"
    path.write_text(json.dumps(one_formula(" + ".join(["a"] * 5000))))
    res = run_cli("check", path, "--no-kernel")
    assert res.returncode == 1
    err = res.stderr.decode()
    assert err.startswith("decoder: error: ") and "Traceback" not in err and "at most" in err


@pytest.mark.parametrize(
    "literal",
    [
        "0x" + "F" * 300,  # far past the largest double
        "0x" + "F" * 256,  # 2**1024 - 1 rounds up to 2**1024: Infinity
        "0x" + "F" * 255,  # 2**1020 - 1: finite
        "0b" + "1" * 1100,
        "0o" + "7" * 400,
        "-0x" + "F" * 300,
    ],
)
def test_integer_literals_past_the_largest_double_are_infinity_as_in_javascript(literal):
    formula = f"{literal} + a"
    dc = decoder.compile(one_formula(formula))
    ours = decoded_y(dc, [1])[0]
    assert same_value(ours, js_y(formula, 1)), (literal[:8], ours)
