"""Numpy backend of the rule language: an AST over whole series at once.

Semantics follow Pine where Pine defines them: comparisons with na are false,
``crossover(a, b)`` is ``a > b and a[1] <= b[1]``, ``x[n]`` is the value n bars ago
(na before the first bar). Every function only looks backwards, so a value at
bar t depends on bars <= t only.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from aio.errors import AioError
from aio.strategy.expr import Binary, Bool, Call, History, Name, Node, Num, Unary

Value = np.ndarray | float | bool


class EvalError(AioError):
    pass


def shift(x: np.ndarray, n: int) -> np.ndarray:
    if n == 0:
        return x
    out = np.empty_like(x, dtype=np.float64 if x.dtype != bool else bool)
    if x.dtype == bool:
        out[:n] = False
    else:
        out[:n] = np.nan
    out[n:] = x[:-n] if n < len(x) else out[n:]
    if n >= len(x):
        out[:] = False if x.dtype == bool else np.nan
    return out


def _rolling(x: np.ndarray, n: int, fn) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if n <= 0 or n > len(x):
        return out
    from numpy.lib.stride_tricks import sliding_window_view

    out[n - 1:] = fn(sliding_window_view(x, n), axis=1)
    return out


def _as_int(v: Value, what: str) -> int:
    if isinstance(v, np.ndarray):
        raise EvalError(f"{what} must be a constant or a parameter, not a series")
    return int(round(float(v)))


def _series(v: Value, n: int) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v.astype(np.float64, copy=False) if v.dtype != bool else v
    return np.full(n, float(v))


def evaluate(node: Node, env: Mapping[str, Value], n: int) -> Value:
    """Evaluate ``node`` with ``env`` (series arrays of length n, or scalars)."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Bool):
        return node.value
    if isinstance(node, Name):
        key = node.key
        if key not in env:
            raise EvalError(f"unknown name {key!r}; known: {', '.join(sorted(env))}")
        return env[key]
    if isinstance(node, History):
        v = evaluate(node.operand, env, n)
        if not isinstance(v, np.ndarray):
            return v
        return shift(v, node.offset)
    if isinstance(node, Unary):
        v = evaluate(node.operand, env, n)
        if node.op == "-":
            return -v
        return np.logical_not(_truth(v, n))
    if isinstance(node, Binary):
        a = evaluate(node.left, env, n)
        b = evaluate(node.right, env, n)
        op = node.op
        if op in ("and", "or"):
            ta, tb = _truth(a, n), _truth(b, n)
            return np.logical_and(ta, tb) if op == "and" else np.logical_or(ta, tb)
        with np.errstate(invalid="ignore", divide="ignore"):
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return a / b
            if op == "<":
                return np.less(a, b)
            if op == "<=":
                return np.less_equal(a, b)
            if op == ">":
                return np.greater(a, b)
            if op == ">=":
                return np.greater_equal(a, b)
            if op == "==":
                return np.equal(a, b)
            if op == "!=":
                # na != x is false in Pine, as every comparison with na
                r = np.not_equal(a, b)
                if isinstance(r, np.ndarray):
                    r &= ~(np.isnan(_series(a, n).astype(float)) | np.isnan(_series(b, n).astype(float)))
                return r
        raise EvalError(f"unknown operator {op!r}")
    if isinstance(node, Call):
        return _call(node, env, n)
    raise EvalError(f"cannot evaluate {node!r}")


def _truth(v: Value, n: int) -> np.ndarray:
    if isinstance(v, np.ndarray):
        if v.dtype == bool:
            return v
        return np.nan_to_num(v, nan=0.0) != 0.0
    return np.full(n, bool(v))


def _call(node: Call, env: Mapping[str, Value], n: int) -> Value:
    fn = node.fn
    args = [evaluate(a, env, n) for a in node.args]
    with np.errstate(invalid="ignore"):
        if fn in ("crossover", "crossunder", "cross"):
            a, b = _series(args[0], n).astype(float), _series(args[1], n).astype(float)
            a1, b1 = shift(a, 1), shift(b, 1)
            up = (a > b) & (a1 <= b1)
            down = (a < b) & (a1 >= b1)
            return up if fn == "crossover" else down if fn == "crossunder" else up | down
        if fn == "abs":
            return np.abs(args[0])
        if fn == "min":  # Pine's math.min: na if either is na
            return np.minimum(args[0], args[1])
        if fn == "max":
            return np.maximum(args[0], args[1])
        if fn in ("highest", "lowest"):
            length = _as_int(args[1], f"{fn}() length")
            x = _series(args[0], n).astype(float)
            return _rolling(x, length, np.max if fn == "highest" else np.min)
        if fn in ("rising", "falling"):
            length = _as_int(args[1], f"{fn}() length")
            x = _series(args[0], n).astype(float)
            # Pine: x is strictly greater (less) than every one of the previous `length` values
            prev = _rolling(shift(x, 1), length, np.max if fn == "rising" else np.min)
            return x > prev if fn == "rising" else x < prev
        if fn == "na":
            x = args[0]
            return np.isnan(_series(x, n).astype(float))
        if fn == "nz":
            repl = args[1] if len(args) > 1 else 0.0
            x = _series(args[0], n).astype(float)
            return np.where(np.isnan(x), repl, x)
    raise EvalError(f"unknown function {fn!r}")


def lookback(node: Node, params: Mapping[str, Value]) -> int | None:
    """How many bars before t the value at bar t of ``node`` reads from its named series
    (None: not bounded, e.g. a length that is not a constant).

    Every operation above is elementwise, a fixed shift or a fixed-length rolling window,
    so the last value over the last ``lookback + 1`` bars of each series equals the last
    value over the whole series, bit for bit: the same operations on the same numbers.
    """
    if isinstance(node, (Num, Bool, Name)):
        return 0
    if isinstance(node, History):
        inner = lookback(node.operand, params)
        return None if inner is None else inner + node.offset
    if isinstance(node, Unary):
        return lookback(node.operand, params)
    if isinstance(node, Binary):
        a, b = lookback(node.left, params), lookback(node.right, params)
        return None if a is None or b is None else max(a, b)
    if isinstance(node, Call):
        parts = [lookback(a, params) for a in node.args]
        if any(p is None for p in parts):
            return None
        inner = max(parts, default=0)
        if node.fn in ("crossover", "crossunder", "cross"):
            return inner + 1
        if node.fn in ("highest", "lowest", "rising", "falling"):
            arg = node.args[1] if len(node.args) > 1 else None
            if isinstance(arg, Num):
                length = int(round(arg.value))
            elif isinstance(arg, Name) and isinstance(params.get(arg.key), (int, float)):
                length = int(round(float(params[arg.key])))
            else:
                return None
            return inner + (length if node.fn in ("rising", "falling") else max(length - 1, 0))
        if node.fn in ("abs", "min", "max", "na", "nz"):
            return inner
    return None
