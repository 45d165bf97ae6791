"""Rules -> Signals: the numpy backend of a strategy definition."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from aio.backtest.signals import Brackets, OrderSlot, Signals
from aio.strategy.evaluate import evaluate, _truth
from aio.strategy.spec import StrategySpec

DIRECTION = {"long": 1, "short": -1, "both": 0}


def price_env(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    env = {k: np.ascontiguousarray(arrays[k], dtype=np.float64) for k in ("open", "high", "low", "close") if k in arrays}
    if "volume" in arrays:
        env["volume"] = np.ascontiguousarray(arrays["volume"], dtype=np.float64)
    if {"high", "low", "close"} <= env.keys():
        env["hl2"] = (env["high"] + env["low"]) / 2.0
        env["hlc3"] = (env["high"] + env["low"] + env["close"]) / 3.0
    if {"open", "high", "low", "close"} <= env.keys():
        env["ohlc4"] = (env["open"] + env["high"] + env["low"] + env["close"]) / 4.0
    return env


class SeriesCache:
    """Indicator results keyed by (function, inputs, params) for one set of bars.

    An optimiser re-evaluates a strategy thousands of times on the same bars; most
    trials share indicator calls (e.g. the same RSI length), so they are computed once.
    """

    def __init__(self) -> None:
        self.store: dict[tuple, dict[str, np.ndarray]] = {}

    def get(self, key: tuple, fn) -> dict[str, np.ndarray]:
        hit = self.store.get(key)
        if hit is None:
            hit = fn()
            self.store[key] = hit
        return hit


def _resolve(v: Any, params: Mapping[str, Any]) -> Any:
    return params[v] if isinstance(v, str) and v in params else v


def series_env(
    spec: StrategySpec,
    arrays: Mapping[str, np.ndarray],
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    cache: SeriesCache | None = None,
) -> dict[str, Any]:
    """Prices, parameters, indicator outputs and extra series (e.g. ``model.p_up``)."""
    from aio.indicators import compute_indicator, get_indicator

    params = {**spec.params, **(params or {})}
    env: dict[str, Any] = price_env(arrays)
    n = len(env["close"])
    env.update({k: v for k, v in params.items() if not isinstance(v, str)})
    if extra:
        env.update({k: np.asarray(v) for k, v in extra.items()})
    for alias in spec.indicator_order:
        b = spec.indicators[alias]
        if b.expr is not None:
            v = evaluate(spec.ast(f"ind:{alias}"), env, n)
            env[alias] = v if isinstance(v, np.ndarray) else np.full(n, float(v))
            continue
        idef = get_indicator(b.fn)
        inputs, in_key = {}, []
        for inp in idef.inputs:
            src = b.inputs.get(inp)
            if src is None:
                arr = env[inp]
                in_key.append((inp, inp))
            else:
                arr = evaluate(spec.ast(f"ind:{alias}:in:{src}"), env, n)
                arr = arr if isinstance(arr, np.ndarray) else np.full(n, float(arr))
                in_key.append((inp, src))
            inputs[inp] = np.ascontiguousarray(arr, dtype=np.float64)
        p = {k: _resolve(v, params) for k, v in b.params.items()}
        # Keyed by the input expressions, not arrays: an expression input's own
        # parameters are part of the key through the indicators it reads.
        dep_params = tuple(sorted((k, params[k]) for k in spec.param_deps(alias)))
        key = (b.fn, tuple(in_key), tuple(sorted(p.items())), dep_params)
        out = cache.get(key, lambda: compute_indicator(b.fn, inputs, p)) if cache else compute_indicator(b.fn, inputs, p)
        for oname, arr in out.items():
            env[f"{alias}.{oname}"] = arr
        first = b.output or idef.outputs[0]
        env[alias] = out[first]
    return env


def signals(
    spec: StrategySpec,
    arrays: Mapping[str, np.ndarray],
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    cache: SeriesCache | None = None,
) -> Signals:
    env = series_env(spec, arrays, params, extra, cache)
    n = len(env["close"])
    orders = []
    for r in spec.rules:
        when = _truth(evaluate(spec.ast(f"rule:{r.id}:when"), env, n), n)
        price = None
        if r.price is not None:
            pv = evaluate(spec.ast(f"rule:{r.id}:price"), env, n)
            price = np.ascontiguousarray(pv if isinstance(pv, np.ndarray) else np.full(n, float(pv)), dtype=np.float64)
        orders.append(
            OrderSlot(
                id=r.id,
                action=r.action,
                direction=DIRECTION[r.direction],
                type=r.type,
                when=np.ascontiguousarray(when, dtype=bool),
                price=price,
                cancel_when_false=r.cancel_when_false,
                oca=r.oca,
            )
        )
    return Signals(orders=orders, brackets=_brackets(spec, env, params or {}, n))


def _brackets(spec: StrategySpec, env: Mapping[str, Any], params: Mapping[str, Any], n: int) -> Brackets | None:
    ex = spec.exit
    levels = {}
    for k in ex.PRICE_KEYS:
        if getattr(ex, k) is not None:
            v = evaluate(spec.ast(f"exit:{k}"), env, n)
            levels[k] = np.ascontiguousarray(v if isinstance(v, np.ndarray) else np.full(n, float(v)), dtype=np.float64)
    if levels:
        return Brackets(stop_long=levels.get("stop_long"), limit_long=levels.get("take_long"),
                        stop_short=levels.get("stop_short"), limit_short=levels.get("take_short"), id=ex.id)
    allp = {**spec.params, **params}
    vals = {k: _resolve(getattr(ex, k), allp) for k in ("stop_atr", "take_atr", "stop_pct", "take_pct", "atr_length")}
    if all(vals[k] in (None, 0) for k in ("stop_atr", "take_atr", "stop_pct", "take_pct")):
        return None
    from aio.indicators import compute_indicator

    close = env["close"]
    atr = None
    if vals["stop_atr"] or vals["take_atr"]:
        atr = compute_indicator(
            "ATR", {"high": env["high"], "low": env["low"], "close": close}, {"timeperiod": int(vals["atr_length"])}
        )["real"]
    stop_dist, take_dist = exit_distances(vals, close, atr)
    return Brackets(stop_dist=stop_dist, take_dist=take_dist, id=ex.id)


def exit_distances(vals: Mapping[str, Any], close: np.ndarray, atr: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Stop and take distances from the close (and the ATR) of the same bars: ``*_atr`` units of
    ATR, else ``*_pct`` percent of the close, else NaN (none)."""
    n = len(close)
    stop_dist = np.full(n, np.nan)
    take_dist = np.full(n, np.nan)
    if vals["stop_atr"]:
        stop_dist = float(vals["stop_atr"]) * atr
    elif vals["stop_pct"]:
        stop_dist = close * float(vals["stop_pct"]) / 100.0
    if vals["take_atr"]:
        take_dist = float(vals["take_atr"]) * atr
    elif vals["take_pct"]:
        take_dist = close * float(vals["take_pct"]) / 100.0
    return stop_dist, take_dist
