"""Metrics against small cases worked out by hand (the arithmetic is spelled out in each test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aio.backtest import BacktestConfig, BacktestResult
from aio.backtest import engine as E
from aio.backtest import metrics as M

HOUR = 3_600_000_000_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z, a Monday

# Five hourly bars; equity at each close, from an initial capital of 100.
CAP = 100.0
EQUITY = np.array([110.0, 99.0, 99.0, 121.0, 110.0])
TS = T0 + HOUR * np.arange(5, dtype=np.int64)
# bar returns: 110/100-1, 99/110-1, 99/99-1, 121/99-1, 110/121-1
RETURNS = [1 / 10, -1 / 10, 0.0, 2 / 9, -1 / 11]
# closed trade P&Ls
PNL = np.array([10.0, -5.0, 20.0, -10.0, 0.0])


def test_periods_per_year_fx_24x5():
    # 52 weeks x 5 days x 24 hours = 6240 trading hours a year
    assert M.periods_per_year(TS) == 6240.0
    assert M.periods_per_year(T0 + 60_000_000_000 * np.arange(10)) == 6240.0 * 60
    # daily bars Mon-Fri with a weekend gap: the median spacing is one day -> 52 x 5 = 260
    days = np.array([0, 1, 2, 3, 4, 7, 8, 9, 10, 11]) * DAY + T0
    assert M.periods_per_year(days) == 260.0
    # weekly bars use calendar time: 365.25 / 7
    assert M.periods_per_year(T0 + 7 * DAY * np.arange(5)) == pytest.approx(365.25 / 7)


def test_bar_returns_net_profit_and_return():
    assert M.bar_returns(EQUITY, CAP) == pytest.approx(RETURNS)
    assert M.net_profit(EQUITY, CAP) == 10.0  # 110 - 100
    assert M.return_pct(EQUITY, CAP) == pytest.approx(10.0)  # 10 / 100


def test_sharpe_and_sortino():
    n = 5
    mean = (1 / 10 - 1 / 10 + 0 + 2 / 9 - 1 / 11) / n  # = 13/495
    assert mean == pytest.approx(13 / 495)
    var = sum((r - mean) ** 2 for r in RETURNS) / (n - 1)  # sample variance
    expected_sharpe = mean / math.sqrt(var) * math.sqrt(6240)
    assert M.sharpe(np.array(RETURNS), 6240.0) == pytest.approx(expected_sharpe)
    # downside deviation: root mean square of min(r, 0) over all five bars
    downside = math.sqrt(((-1 / 10) ** 2 + (-1 / 11) ** 2) / n)
    assert M.sortino(np.array(RETURNS), 6240.0) == pytest.approx(mean / downside * math.sqrt(6240))


def test_max_drawdown_amount_percent_and_duration():
    # running peak incl. the initial 100: 110, 110, 110, 121, 121 -> drawdowns 0, -11, -11, 0, -11
    assert M.max_drawdown(EQUITY, CAP) == pytest.approx((11.0, 10.0))  # 11 of 110 = 10% (11/121 is 9.1%)
    # under water from the peak at bar 0 until bar 3 regains it: 3 bars = 3 hours;
    # the drawdown open at the end (bar 3 -> bar 4) is shorter
    assert M.max_drawdown_duration(EQUITY, CAP, TS) == (3, 3 * 3600.0)
    # a drawdown from the initial capital that never recovers lasts to the last bar,
    # timed from one bar before the first (where the capital stood)
    assert M.max_drawdown_duration(np.array([90.0, 95.0]), 100.0, TS[:2]) == (2, 2 * 3600.0)


def test_cagr_and_calmar():
    # two yearly bars: the span is two years (first open to last close); 100 -> 121 is 10% a year
    year = int(365.25 * DAY)
    ts = T0 + year * np.arange(2, dtype=np.int64)
    eq = np.array([110.0, 121.0])
    assert M.cagr(eq, 100.0, ts) == pytest.approx(0.1)
    # calmar = CAGR / max drawdown (as a fraction): 0.1 / 0.05 = 2
    assert M.calmar(0.1, 5.0) == pytest.approx(2.0)


def test_trade_statistics():
    # two winners (10, 20), two losers (-5, -10), one flat trade
    assert M.win_rate(PNL) == pytest.approx(40.0)
    assert M.profit_factor(PNL) == pytest.approx(30.0 / 15.0)
    assert M.expectancy(PNL) == pytest.approx(15.0 / 5)
    assert M.avg_win(PNL) == pytest.approx(15.0)
    assert M.avg_loss(PNL) == pytest.approx(-7.5)
    # SQN = sqrt(5) * 3 / sd; deviations from 3: 7, -8, 17, -13, -3 -> squares sum 580,
    # sample variance 580/4 = 145 -> SQN = 3 sqrt(5/145) = 3 / sqrt(29)
    assert M.sqn(PNL) == pytest.approx(3 / math.sqrt(29))
    assert M.profit_factor(np.array([1.0, 2.0])) == math.inf
    assert math.isnan(M.win_rate(np.array([])))


def test_exposure():
    assert M.exposure_pct(np.array([0.0, 1.0, 1.0, -1.0, 0.0])) == pytest.approx(60.0)  # 3 of 5 bars


def test_var_cvar_historical():
    # 40 bar returns: three losses and 37 gains of 1%
    r = np.array([0.01] * 37 + [-0.05, -0.04, -0.03])
    np.random.default_rng(0).shuffle(r)
    # the 5% quantile of 40 sorted values, no interpolation: position 0.05 * 39 = 1.95 -> the
    # lower one, index 1 = -0.04; CVaR averages the returns at or below it: (-0.05 - 0.04) / 2
    var, cvar = M.var_cvar(r)
    assert var == pytest.approx(0.04)
    assert cvar == pytest.approx(0.045)


def test_compute_metrics_on_a_result():
    raw = np.zeros((5, E.T_NCOL))
    raw[:, E.T_PNL] = PNL  # the trade P&L column of the engine's buffer
    res = BacktestResult(
        raw_trades=raw, equity_values=EQUITY, position_values=np.array([0.0, 1.0, 1.0, -1.0, 0.0]),
        ts_event=TS, order_ids=[], exit_id="Exit", config=BacktestConfig(initial_capital=CAP),
    )
    m = M.compute_metrics(res)
    assert m["net_profit"] == 10.0 and m["trade_count"] == 5
    assert m["max_drawdown_pct"] == pytest.approx(10.0)
    assert m["exposure_pct"] == pytest.approx(60.0)
    assert m["sqn"] == pytest.approx(3 / math.sqrt(29))
    # the equity table's drawdown agrees with the metric
    assert res.equity["drawdown"].to_list() == pytest.approx([0.0, -11.0, -11.0, 0.0, -11.0])
    assert set(m) >= {"cagr_pct", "sharpe", "sortino", "calmar", "win_rate_pct", "profit_factor", "expectancy",
                      "avg_win", "avg_loss", "var_95_pct", "cvar_95_pct", "max_drawdown_duration_bars",
                      "max_drawdown_duration_days", "return_pct", "max_drawdown", "sharpe_ci_low", "sharpe_ci_high",
                      "psr", "warnings", "undefined", "ruin"}
