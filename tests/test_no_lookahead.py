"""No lookahead from bar to trade: change every bar after T and nothing known at T may move.

Indicators, strategy signals, sizes and fills are each checked on TradingView's EURUSD 1h
reference bars: the future is replaced by a different price path (a mirrored, rescaled
walk), and everything up to T must be bit-identical while something after T differs.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from aio.backtest import BacktestConfig, run_backtest
from aio.indicators import compute_indicator_set
from aio.records import Bars
from aio.sizing.chain import size_signals
from aio.strategy import load_builtin, signals

T = 12_000  # bars 0..T-1 are the past; bar T onwards is rewritten


def _perturbed(bars: Bars) -> Bars:
    f = bars.frame
    close = f["close"].to_numpy().copy()
    o, h, l = (f[c].to_numpy().copy() for c in ("open", "high", "low"))
    pivot = close[T - 1]
    # mirror the future around the last known close and stretch it: a genuinely different path
    for a in (o, h, l, close):
        a[T:] = pivot - 1.7 * (a[T:] - pivot)
    hi, lo = np.maximum(h, l), np.minimum(h, l)
    hi = np.maximum.reduce([hi, o, close])
    lo = np.minimum.reduce([lo, o, close])
    vol = f["volume"].to_numpy().copy()
    vol[T:] = vol[T:][::-1]
    frame = f.with_columns(pl.Series("open", o), pl.Series("high", hi), pl.Series("low", lo),
                           pl.Series("close", close), pl.Series("volume", vol))
    return Bars(frame=frame, symbol=bars.symbol, timeframe=bars.timeframe, side=bars.side)


def _arrays(bars: Bars) -> dict[str, np.ndarray]:
    return {c: bars.col(c) for c in ("open", "high", "low", "close", "volume")}


@pytest.fixture(scope="module")
def pair(tv_bars):
    return tv_bars, _perturbed(tv_bars)


@pytest.mark.parametrize("indicator_set", ["classic", "tradingview"])
def test_indicators_at_t_ignore_the_future(pair, indicator_set):
    a, b = (compute_indicator_set(x.frame, indicator_set) for x in pair)
    changed = 0
    for col in a:
        np.testing.assert_array_equal(a[col][:T], b[col][:T], err_msg=col)
        changed += not np.allclose(a[col][T + 300:], b[col][T + 300:], equal_nan=True)
    assert changed >= len(a) // 2  # the perturbation did reach the future


@pytest.mark.parametrize("name", ["tv_rsi", "tv_macd", "tv_bbands", "sma_cross"])
def test_signals_sizes_and_fills_up_to_t_ignore_the_future(pair, name):
    spec = load_builtin(name)
    bars_a, bars_b = pair
    sig_a, sig_b = signals(spec, _arrays(bars_a)), signals(spec, _arrays(bars_b))
    for oa, ob in zip(sig_a.orders, sig_b.orders):
        np.testing.assert_array_equal(oa.when[:T], ob.when[:T], err_msg=oa.id)
        if oa.price is not None:
            np.testing.assert_array_equal(oa.price[:T], ob.price[:T], err_msg=oa.id)
    bt = BacktestConfig(initial_capital=100_000.0, qty=10_000.0, commission=0.002, slippage_ticks=1)
    sizer = {"name": "vol_target", "risk_pct": 0.5}
    sig_a, bt_a = size_signals(sizer, bars_a.frame, sig_a, bt)
    sig_b, bt_b = size_signals(sizer, bars_b.frame, sig_b, bt)
    np.testing.assert_array_equal(sig_a.size[:T], sig_b.size[:T])
    ra, rb = run_backtest(bars_a, sig_a, bt_a), run_backtest(bars_b, sig_b, bt_b)
    # fills at bar <= T use decisions at closes < T only
    ta = ra.trades.filter(pl.col("exit_bar") <= T - 1).drop("id")
    tb = rb.trades.filter(pl.col("exit_bar") <= T - 1).drop("id")
    assert ta.height > 5 and ta.equals(tb)
    np.testing.assert_array_equal(ra.equity["equity"].to_numpy()[:T], rb.equity["equity"].to_numpy()[:T])
    assert not ra.trades.equals(rb.trades)  # the future did change what happened later
