"""Acceptance: TradingView's own trade lists for its built-in RSI, MACD and Bollinger Bands
strategies on EURUSD 1h (23,054 bars) are reproduced trade for trade: count, sides,
entry/exit bar times, signal names and prices to the tick.

The Signals are built here straight from talib, the way the Pine scripts define them
(order size 1, no costs), so these tests prove the simulator alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import talib

from aio.backtest import BacktestConfig, OrderSlot, Signals, run_backtest
from aio.backtest.metrics import compute_metrics
from aio.backtest.tradingview import compare_trades, load_tv_ohlcv, load_tv_trades

# TradingView's strategy-tester defaults: 1 contract, no commission/slippage, no pyramiding
TV = BacktestConfig.tradingview(mintick=1e-5)


def crossover(a, b):
    """ta.crossover: a > b now and a <= b on the previous bar; false while a value is na."""
    a = np.asarray(a, dtype=float)
    b = np.broadcast_to(np.asarray(b, dtype=float), a.shape)
    out = np.zeros(a.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        out[1:] = (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
    return out


def crossunder(a, b):
    a = np.asarray(a, dtype=float)
    b = np.broadcast_to(np.asarray(b, dtype=float), a.shape)
    out = np.zeros(a.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        out[1:] = (a[1:] < b[1:]) & (a[:-1] >= b[:-1])
    return out


def rsi_signals(close):
    r = talib.RSI(close, timeperiod=14)
    return Signals(orders=[
        OrderSlot("RsiLE", "entry", 1, "market", crossover(r, 30)),
        OrderSlot("RsiSE", "entry", -1, "market", crossunder(r, 70)),
    ])


def macd_signals(close):
    macd = talib.EMA(close, 12) - talib.EMA(close, 26)
    # talib.EMA skips the leading NaNs of its input, so the signal EMA seeds on the
    # first 9 MACD values like TradingView's ta.ema does
    delta = macd - talib.EMA(macd, 9)
    return Signals(orders=[
        OrderSlot("MacdLE", "entry", 1, "market", crossover(delta, 0.0)),
        OrderSlot("MacdSE", "entry", -1, "market", crossunder(delta, 0.0)),
    ])


def bollinger_signals(close):
    basis = talib.SMA(close, 20)
    dev = 2.0 * talib.STDDEV(close, 20, 1)  # population stdev, as ta.stdev
    upper, lower = basis + dev, basis - dev
    # Pine: if crossover(source, lower) strategy.entry(stop=lower, oca cancel) else strategy.cancel
    return Signals(orders=[
        OrderSlot("BBandLE", "entry", 1, "stop", crossover(close, lower), price=lower,
                  cancel_when_false=True, oca="BollingerBands"),
        OrderSlot("BBandSE", "entry", -1, "stop", crossunder(close, upper), price=upper,
                  cancel_when_false=True, oca="BollingerBands"),
    ])


@pytest.fixture(scope="module")
def tv_bars(tv_dir):
    return load_tv_ohlcv(tv_dir / "ohlcv.csv")


CASES = [
    ("rsi_trades.csv", rsi_signals, 194),
    ("macd_trades.csv", macd_signals, 1808),
    ("bollinger_trades.csv", bollinger_signals, 579),
]


@pytest.mark.parametrize("trades_file,build,count", CASES, ids=["rsi", "macd", "bollinger"])
def test_tradingview_trade_list_reproduced(tv_dir, tv_bars, trades_file, build, count):
    tv = load_tv_trades(tv_dir / trades_file)
    assert tv.height == count  # the reference itself
    result = run_backtest(tv_bars, build(tv_bars["close"].to_numpy()), TV)
    problems = compare_trades(result, tv, tick=1e-5)
    assert not problems, "\n".join(problems[:20])
    ours = result.trades
    # the last trade is still open: closed at the last close, listed as "Open"
    assert ours["exit_signal"][-1] == "Open"
    assert ours["exit_price"][-1] == tv_bars["close"][-1]
    # every trade except the last one is closed by the entry that reversed it
    assert (ours["exit_signal"][:-1] == ours["entry_signal"][1:]).all()
    # P&L agrees with TradingView's "Net P&L", which the export rounds to two decimals
    # (one significant digit below 0.005): same sign, within that rounding
    got = ours["pnl"].to_numpy()
    want = tv["pnl"].to_numpy()
    assert np.all(np.abs(got - want) <= 0.005)
    assert np.all(np.sign(got[want != 0]) == np.sign(want[want != 0]))


def test_bollinger_exercises_intrabar_and_gap_stop_fills(tv_bars, tv_dir):
    """The Bollinger list covers both stop-fill cases: at the open (most) and inside the bar."""
    result = run_backtest(tv_bars, bollinger_signals(tv_bars["close"].to_numpy()), TV)
    t = result.trades
    opens = tv_bars["open"].to_numpy()[t["entry_bar"].to_numpy()]
    at_open = np.isclose(t["entry_price"].to_numpy(), opens, atol=1e-9)
    assert at_open.sum() > 500 and (~at_open).sum() >= 2


def test_metrics_on_the_macd_run(tv_bars):
    result = run_backtest(tv_bars, macd_signals(tv_bars["close"].to_numpy()), TV)
    m = compute_metrics(result)
    assert m["trade_count"] == 1808
    assert m["periods_per_year"] == pytest.approx(6240.0)  # 1h bars under the FX 24x5 convention
    assert m["net_profit"] == pytest.approx(float(result.trades["pnl"].sum()), abs=1e-9)
