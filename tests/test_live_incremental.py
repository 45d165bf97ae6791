"""The rules bar by bar (aio.strategy.incremental) equal the batch evaluation, bit for bit.

The batch side is aio.strategy.signals over the whole series; TA-Lib's Function API is the
outside reference for the indicators. Bars: TradingView's EURUSD 1h reference (real data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import talib
import yaml

from aio.strategy import load_spec, signals
from aio.strategy.incremental import IncrementalMismatch, IncrementalSignals, stream_api

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (REPO / "conf" / "strategy").glob("*.yaml"))
N = 1500

# strategies exercising what the shipped ones do not: offsets, rolling windows, derived
# prices, multi-output TA-Lib functions, a TradingView variant (no TA-Lib handle), exits
EXTRA = {
    "offsets_rolling_hl2": {
        "name": "x1", "params": {"n": 12, "k": 3},
        "space": {"n": {"type": "int", "low": 2, "high": 50}, "k": {"type": "int", "low": 1, "high": 5}},
        "indicators": {"m": {"fn": "EMA", "inputs": {"close": "hl2"}, "params": {"timeperiod": "n"}},
                       "hi": {"expr": "highest(high, n)"},
                       "bb": {"fn": "BBANDS", "inputs": {"close": "close"}, "params": {"timeperiod": 20}}},
        "rules": [{"id": "L", "when": "crossover(close, m) and close[3] < hi[1] and rising(m, 2)", "action": "entry",
                   "direction": "long"},
                  {"id": "S", "when": "crossunder(close, bb.lowerband) or falling(m, k)", "action": "entry",
                   "direction": "short"}],
        "exit": {"stop_atr": 2.0, "take_pct": 0.5, "atr_length": 10},
    },
    "tv_variant_levels_stop_orders": {
        "name": "x2", "params": {},
        "indicators": {"md": {"fn": "MACD_TV", "inputs": {"close": "close"}},
                       "lo": {"expr": "lowest(low, 5)"}, "up": {"expr": "highest(ohlc4, 7)"}},
        "rules": [{"id": "L", "when": "crossover(md, 0)", "action": "entry", "direction": "long", "type": "stop",
                   "price": "up", "cancel_when_false": True},
                  {"id": "X", "when": "crossunder(md, 0)", "action": "close", "direction": "long"}],
        "exit": {"stop_long": "lo - 0.001", "take_long": "up + 0.002"},
    },
    # an expression input with NaN inside the series (0/0 on flat bars): TA-Lib's handle
    # refuses it, the indicator goes on through the Function API
    "nan_inside_an_input": {
        "name": "x3", "params": {},
        "indicators": {"r": {"fn": "SMA", "inputs": {"close": "(close - open) / (high - low)"},
                             "params": {"timeperiod": 5}}},
        "rules": [{"id": "L", "when": "r > 0.2", "action": "entry", "direction": "long"},
                  {"id": "S", "when": "r < -0.2", "action": "entry", "direction": "short"}],
    },
}


@pytest.fixture(scope="module")
def arrays(tv_bars):
    fr = tv_bars.frame.head(N)
    return {c: np.ascontiguousarray(fr.get_column(c).to_numpy(), dtype=np.float64)
            for c in ("open", "high", "low", "close", "volume")}


def _spec(name: str):
    if name in EXTRA:
        return load_spec(EXTRA[name])
    return load_spec(yaml.safe_load((REPO / "conf" / "strategy" / f"{name}.yaml").read_text()))


def _stepped(spec, arrays, groups=(1,), **kw):
    """Bars fed as they would close: in groups (the bars one source read closes) of the given sizes, cycled."""
    inc = IncrementalSignals(spec, **kw)
    n, t, out, i = len(arrays["close"]), 0, [], 0
    while t < n:
        k = min(groups[i % len(groups)], n - t)
        out += inc.step({c: a[: t + k] for c, a in arrays.items()}, k)
        t, i = t + k, i + 1
    return inc, out


def _assert_equal_batch(spec, arrays, out):
    sig = signals(spec, arrays)
    for k, o in enumerate(sig.orders):
        got = np.array([d.when[k] for d in out])
        assert np.array_equal(got, o.when), f"{o.id}.when"
        if o.price is not None:
            assert np.array_equal(np.array([d.price[k] for d in out]), o.price, equal_nan=True), f"{o.id}.price"
    br = sig.brackets
    for key in ("stop_long", "limit_long", "stop_short", "limit_short", "stop_dist", "take_dist"):
        want = getattr(br, key) if br is not None else None
        if want is not None:
            got = np.array([d.brackets[key] for d in out])
            assert np.array_equal(got, want, equal_nan=True), key
    return sig


@pytest.mark.parametrize("groups", [(1,), (3, 1, 8, 2, 17), (1200, 1)])  # (1200, 1): a catch-up
@pytest.mark.parametrize("name", [s for s in SHIPPED if not _spec(s).uses_model()] + list(EXTRA))
def test_bar_by_bar_equals_the_batch_signals(name, groups, arrays):
    spec = _spec(name)
    inc, out = _stepped(spec, arrays, groups)
    sig = _assert_equal_batch(spec, arrays, out)
    assert sum(int(o.when.sum()) for o in sig.orders) > 10, "the test needs decisions to compare"
    inc.audit(arrays)  # the engine's own check agrees
    handles = [st[1] for st in inc.steps if st[0] == "ind" and st[1].talib]
    if stream_api() is not None and name != "nan_inside_an_input":
        # the TA-Lib indicators really ran on streaming handles (not the whole-history fallback)
        assert all(h.handle is not None for h in handles)
        assert handles or name == "tv_variant_levels_stop_orders"


def test_a_nan_inside_an_input_leaves_the_handle_and_stays_exact(arrays):
    a = {k: v.copy() for k, v in arrays.items()}
    for t in (300, 301, 900):  # flat bars: 0/0 in the input
        a["open"][t] = a["high"][t] = a["low"][t] = a["close"][t]
    spec = _spec("nan_inside_an_input")
    inc, out = _stepped(spec, a, (1, 5))
    _assert_equal_batch(spec, a, out)
    (ind,) = [st[1] for st in inc.steps if st[0] == "ind"]
    assert ind.batch_only and ind.handle is None


def test_without_talib_handles_the_function_api_gives_the_same(arrays):
    spec = _spec("tv_macd")
    inc, out = _stepped(spec, arrays, use_stream=False)
    _assert_equal_batch(spec, arrays, out)
    assert all(st[1].handle is None for st in inc.steps if st[0] == "ind")


def test_the_audit_names_the_first_bar_that_differs(arrays):
    spec = _spec("tv_rsi")
    inc, _ = _stepped(spec, {k: a[:400] for k, a in arrays.items()})
    inc.audit({k: a[:400] for k, a in arrays.items()})
    g = inc.decisions["RsiLE.when"]
    bad = int(np.flatnonzero(g.view() == 0.0)[57])
    g.a[bad] = 1.0  # a decision the batch did not make
    with pytest.raises(IncrementalMismatch, match=rf"RsiLE.when at bar {bad} .*live.incremental=false"):
        inc.audit({k: a[:400] for k, a in arrays.items()})


def test_bars_must_come_once_and_in_order(arrays):
    inc = IncrementalSignals(_spec("sma_cross"))
    inc.step({k: a[:1] for k, a in arrays.items()})
    with pytest.raises(IncrementalMismatch, match="feed every closed bar once"):
        inc.step({k: a[:3] for k, a in arrays.items()})
    with pytest.raises(IncrementalMismatch, match="feed every closed bar once"):
        inc.step({k: a[:3] for k, a in arrays.items()}, 3)


def test_a_trailing_window_is_not_exact_even_for_sma(arrays):
    """Why windows are not used: TA-Lib's SMA (and STDDEV) keep a running sum from the first
    bar, so a trailing window's last value differs in the last bits at most bars."""
    c = arrays["close"]
    for fn, p in ((talib.SMA, 30), (talib.STDDEV, 20)):
        full = fn(c, p)
        differ = sum(fn(c[t - 99: t + 1], p)[-1] != full[t] for t in range(100, 600))
        assert differ > 100, fn.__name__


def test_no_lookahead_a_rewritten_future_changes_no_earlier_decision(arrays):
    spec = _spec("offsets_rolling_hl2")
    T = 900
    other = {k: a.copy() for k, a in arrays.items()}
    rng = np.random.default_rng(1)
    for k in other:
        other[k][T + 1:] = other[k][T + 1:][rng.permutation(len(other[k]) - T - 1)]
    _, a = _stepped(spec, arrays, (7,))
    _, b = _stepped(spec, other, (7,))
    assert repr(a[: T + 1]) == repr(b[: T + 1])  # repr: NaN equals NaN
    assert repr(a[T + 1:]) != repr(b[T + 1:])
