"""Performance metrics: pure functions of an equity curve, bar times and trade P&Ls.

Conventions (documented in docs/backtest.md):

- Bar returns: ``r[t] = equity[t] / equity[t-1] - 1`` with ``equity[-1]`` the initial
  capital, so the first bar's move counts too.
- Annualisation: periods per year from the bars' spacing under the FX 24x5 convention,
  i.e. 52 weeks x 5 days x 24 h of trading (6,240 h a year: 1h bars -> 6,240, 1m bars ->
  374,400, daily bars -> 260). Bars a week or longer use calendar time (weekly -> ~52).
- CAGR uses calendar time: from the first bar's open to the last bar's close.
- Drawdowns are measured from the running peak including the initial capital and are
  reported as positive magnitudes (currency and percent of the peak).
- VaR/CVaR are historical, of bar returns, at 95%: VaR is minus the 5% quantile (the
  lower observed value, no interpolation), CVaR minus the mean of the returns at or
  below it. Both are positive numbers for losses (fractions, not percent).
- Sharpe and Sortino have a zero risk-free rate; Sortino's downside deviation is the
  root mean square of min(r, 0) over all bars.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NS_PER_SECOND = 1_000_000_000
SECONDS_PER_YEAR = 365.25 * 86400.0
# FX trades around the clock five days a week: 52 x 5 x 24 hours of bars a year.
FX_TRADING_SECONDS_PER_YEAR = 52 * 5 * 24 * 3600.0
WEEK_SECONDS = 7 * 86400.0


def bar_seconds(ts: np.ndarray) -> float:
    """Typical bar spacing in seconds: the median gap (weekend gaps do not move it)."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size < 2:
        return float("nan")
    return float(np.median(np.diff(ts))) / NS_PER_SECOND


def periods_per_year(ts: np.ndarray) -> float:
    sec = bar_seconds(ts)
    if not sec > 0:
        return float("nan")
    if sec >= WEEK_SECONDS:
        return SECONDS_PER_YEAR / sec
    return FX_TRADING_SECONDS_PER_YEAR / sec


def bar_returns(equity: np.ndarray, initial_capital: float) -> np.ndarray:
    eq = np.asarray(equity, dtype=np.float64)
    prev = np.concatenate(([initial_capital], eq[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        return eq / prev - 1.0


def net_profit(equity: np.ndarray, initial_capital: float) -> float:
    return float(equity[-1] - initial_capital) if len(equity) else 0.0


def return_pct(equity: np.ndarray, initial_capital: float) -> float:
    return net_profit(equity, initial_capital) / initial_capital * 100.0


def years_spanned(ts: np.ndarray) -> float:
    """Calendar years from the first bar's open to the last bar's close."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size < 2:
        return float("nan")
    span = (ts[-1] - ts[0]) / NS_PER_SECOND + bar_seconds(ts)
    return span / SECONDS_PER_YEAR


def cagr(equity: np.ndarray, initial_capital: float, ts: np.ndarray) -> float:
    """Compound annual growth rate as a fraction (0.1 = 10% a year)."""
    years = years_spanned(ts)
    if not years > 0 or len(equity) == 0:
        return float("nan")
    ratio = equity[-1] / initial_capital
    if ratio <= 0:
        return -1.0
    return float(ratio ** (1.0 / years) - 1.0)


def sharpe(returns: np.ndarray, ppy: float) -> float:
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return float("nan")
    sd = r.std(ddof=1)
    if sd == 0:
        return float("nan")
    return float(r.mean() / sd * math.sqrt(ppy))


def sortino(returns: np.ndarray, ppy: float) -> float:
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 1:
        return float("nan")
    dd = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if dd == 0:
        return float("nan")
    return float(r.mean() / dd * math.sqrt(ppy))


def drawdown_series(equity: np.ndarray, initial_capital: float) -> tuple[np.ndarray, np.ndarray]:
    """(drawdown in currency <= 0, drawdown as a fraction of the peak <= 0) per bar."""
    eq = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(np.concatenate(([initial_capital], eq)))[1:]
    dd = eq - peak
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(peak > 0, dd / peak, 0.0)
    return dd, frac


def max_drawdown(equity: np.ndarray, initial_capital: float) -> tuple[float, float]:
    """(largest drawdown in currency, largest drawdown in percent of its peak), both >= 0."""
    if len(equity) == 0:
        return 0.0, 0.0
    dd, frac = drawdown_series(equity, initial_capital)
    return float(0.0 - dd.min()), float(0.0 - frac.min() * 100.0)  # 0.0 - x: no -0.0


def max_drawdown_duration(equity: np.ndarray, initial_capital: float, ts: np.ndarray) -> tuple[int, float]:
    """Longest time under water: (bars, seconds) from a peak to the bar that regains it.

    A drawdown still open at the end lasts to the last bar. The initial capital is the
    peak before bar 0 (at index -1, one bar spacing before the first bar's open).
    """
    eq = np.asarray(equity, dtype=np.float64)
    if eq.size == 0:
        return 0, 0.0
    ts = np.asarray(ts, dtype=np.int64)
    step = bar_seconds(ts) if ts.size > 1 else 0.0

    def t_of(i: int) -> float:
        return ts[0] / NS_PER_SECOND - step if i < 0 else ts[i] / NS_PER_SECOND

    peak, peak_i, under = initial_capital, -1, False
    best_bars, best_sec = 0, 0.0
    for i, v in enumerate(eq):
        if v >= peak:
            if under and i - peak_i > best_bars:
                best_bars, best_sec = i - peak_i, t_of(i) - t_of(peak_i)
            peak, peak_i, under = v, i, False
        else:
            under = True
    last = eq.size - 1
    if under and last - peak_i > best_bars:
        best_bars, best_sec = last - peak_i, t_of(last) - t_of(peak_i)
    return best_bars, best_sec


def calmar(cagr_value: float, max_dd_pct: float) -> float:
    if not max_dd_pct > 0:
        return float("nan")
    return float(cagr_value / (max_dd_pct / 100.0))


def win_rate(pnl: np.ndarray) -> float:
    p = np.asarray(pnl, dtype=np.float64)
    return float((p > 0).mean() * 100.0) if p.size else float("nan")


def profit_factor(pnl: np.ndarray) -> float:
    p = np.asarray(pnl, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    gp, gl = p[p > 0].sum(), -p[p < 0].sum()
    if gl == 0:
        return float("inf") if gp > 0 else float("nan")
    return float(gp / gl)


def expectancy(pnl: np.ndarray) -> float:
    p = np.asarray(pnl, dtype=np.float64)
    return float(p.mean()) if p.size else float("nan")


def avg_win(pnl: np.ndarray) -> float:
    w = np.asarray(pnl, dtype=np.float64)
    w = w[w > 0]
    return float(w.mean()) if w.size else float("nan")


def avg_loss(pnl: np.ndarray) -> float:
    lo = np.asarray(pnl, dtype=np.float64)
    lo = lo[lo < 0]
    return float(lo.mean()) if lo.size else float("nan")


def exposure_pct(position: np.ndarray) -> float:
    p = np.asarray(position, dtype=np.float64)
    return float((p != 0).mean() * 100.0) if p.size else 0.0


def var_cvar(returns: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    q = float(np.quantile(r, 1.0 - level, method="lower"))
    return 0.0 - q, float(0.0 - r[r <= q].mean())


def sqn(pnl: np.ndarray) -> float:
    """Van Tharp's system quality number: sqrt(N) * mean / std of trade P&L."""
    p = np.asarray(pnl, dtype=np.float64)
    if p.size < 2:
        return float("nan")
    sd = p.std(ddof=1)
    return float(math.sqrt(p.size) * p.mean() / sd) if sd > 0 else float("nan")


def compute_metrics(result, bars: Any = None) -> dict[str, float]:
    """All metrics of a :class:`~aio.backtest.result.BacktestResult` as a flat dict.

    ``bars`` is accepted for symmetry with the pipeline; the result already carries
    the bar times.
    """
    cap = float(result.config.initial_capital)
    eq = result.equity_values
    ts = result.ts_event
    pnl = result.trade_pnl
    ppy = periods_per_year(ts)
    rets = bar_returns(eq, cap)
    g = cagr(eq, cap, ts)
    dd_abs, dd_pct = max_drawdown(eq, cap)
    dur_bars, dur_sec = max_drawdown_duration(eq, cap, ts)
    var95, cvar95 = var_cvar(rets)
    return {
        "net_profit": net_profit(eq, cap),
        "return_pct": return_pct(eq, cap),
        "cagr": g,
        "sharpe": sharpe(rets, ppy),
        "sortino": sortino(rets, ppy),
        "calmar": calmar(g, dd_pct),
        "max_drawdown": dd_abs,
        "max_drawdown_pct": dd_pct,
        "max_drawdown_duration_bars": dur_bars,
        "max_drawdown_duration_seconds": dur_sec,
        "win_rate": win_rate(pnl),
        "profit_factor": profit_factor(pnl),
        "expectancy": expectancy(pnl),
        "avg_win": avg_win(pnl),
        "avg_loss": avg_loss(pnl),
        "exposure_pct": exposure_pct(result.position_values),
        "trade_count": int(pnl.size),
        "var_95": var95,
        "cvar_95": cvar95,
        "sqn": sqn(pnl),
        "periods_per_year": ppy,
    }
