"""The rule language: parsing, error columns, numpy semantics (Pine's where defined)."""

from __future__ import annotations

import numpy as np
import pytest

from aio.strategy.evaluate import evaluate
from aio.strategy.expr import Binary, Call, History, Name, Num, RuleSyntaxError, parse


def test_precedence_and_structure():
    node = parse("a + b * 2 > c[1] and not d or e")
    assert isinstance(node, Binary) and node.op == "or"
    left = node.left
    assert left.op == "and"
    cmp_ = left.left
    assert cmp_.op == ">" and isinstance(cmp_.right, History) and cmp_.right.offset == 1
    assert cmp_.left.op == "+" and cmp_.left.right.op == "*"


def test_attribute_names_and_calls():
    node = parse("crossover(bb.upperband, close)")
    assert isinstance(node, Call) and node.fn == "crossover"
    assert node.args[0] == Name("bb", "upperband", node.args[0].col)


@pytest.mark.parametrize(
    "source, col, words",
    [
        ("rsi > 30 andd x", 9, "expected an operator"),
        ("rsi > $", 6, "unexpected character"),
        ("crossovr(a, b)", 0, "did you mean 'crossover'"),
        ("crossover(a)", 0, "takes 2 arguments"),
        ("a[b]", 2, "history offset"),
        ("(a > b", 6, "expected ')'"),
        ("a < b < c", 6, "chained comparisons"),
        ("", 0, "empty rule"),
    ],
)
def test_errors_point_at_the_column(source, col, words):
    with pytest.raises(RuleSyntaxError) as info:
        parse(source)
    assert info.value.col == col
    assert words in str(info.value)
    # the message shows the rule and a caret under the bad token
    lines = str(info.value).splitlines()
    assert lines[-1].index("^") - 2 == col


def test_never_evals_python():
    with pytest.raises(RuleSyntaxError):
        parse("__import__('os').system('true')")


def test_crossover_semantics_match_pine_definition():
    a = np.array([np.nan, 1.0, 2.0, 3.0, 2.0, 2.0, 3.0])
    b = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    env = {"a": a, "b": b}
    up = evaluate(parse("crossover(a, b)"), env, len(a))
    down = evaluate(parse("crossunder(a, b)"), env, len(a))
    # Pine: crossover = a > b and a[1] <= b[1]; touching (2 == 2) then rising is a cross
    assert up.tolist() == [False, False, False, True, False, False, True]
    # falling to touch b (3 -> 2 == 2) is not a crossunder: a must end strictly below
    assert down.tolist() == [False] * 7
    a2 = np.array([3.0, 2.0, 1.0])
    d2 = evaluate(parse("crossunder(a, b)"), {"a": a2, "b": b[:3]}, 3)
    assert d2.tolist() == [False, False, True]


def test_history_and_na_comparisons():
    x = np.array([1.0, 2.0, np.nan, 4.0])
    env = {"x": x}
    prev = evaluate(parse("x[1]"), env, 4)
    assert prev[1] == 1.0
    np.testing.assert_array_equal(np.isnan(prev), [True, False, False, True])
    gt = evaluate(parse("x > x[1]"), env, 4)
    assert gt.tolist() == [False, True, False, False]  # any comparison with na is false
    ne = evaluate(parse("x != 4"), env, 4)
    assert ne.tolist() == [True, True, False, False]


def test_arithmetic_functions_backward_only():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    env = {"x": x, "n": 3.0}
    hi = evaluate(parse("highest(x, n)"), env, len(x))
    np.testing.assert_array_equal(hi[2:], [4, 4, 5, 9, 9])
    assert np.isnan(hi[:2]).all()
    rising = evaluate(parse("rising(x, 2)"), env, len(x))
    assert rising.tolist() == [False, False, True, False, True, True, False]
    y = evaluate(parse("-x * 2 + abs(-1)"), env, len(x))
    np.testing.assert_array_equal(y, -x * 2 + 1)


def test_number_literals():
    assert parse("1.5") == Num(1.5, 0)
    assert parse("-2").value == -2.0
