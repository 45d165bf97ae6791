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
  below it. The functions return fractions; the metrics dict reports them as percents
  (``var_95_pct``, ``cvar_95_pct``) and positive for losses.
- Units: a key ending in ``_pct`` is a percent; durations are in bars and days.
- Ruin: returns and ratios stop at the ruin bar; ratios after ruin are undefined (null)
  with the reason in ``undefined``.
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


def sharpe_interval(returns: np.ndarray, ppy: float, z: float = 1.96) -> tuple[float, float]:
    """95% interval of the annualised Sharpe from its standard error under non-normal
    returns (Mertens 2002: var(SR) = (1 + SR^2/2 - skew*SR + (kurt-3)/4*SR^2) / (T-1))."""
    from aio.optimize.dsr import return_moments

    r = np.asarray(returns, dtype=np.float64)
    if r.size < 3 or r.std(ddof=1) == 0:
        return float("nan"), float("nan")
    m = return_moments(r)
    sr, sk, ku = m["sr"], m["skew"], m["kurtosis"]
    var = (1.0 + 0.5 * sr * sr - sk * sr + (ku - 3.0) / 4.0 * sr * sr) / (r.size - 1)
    se = math.sqrt(max(var, 0.0))
    k = math.sqrt(ppy)
    return float((sr - z * se) * k), float((sr + z * se) * k)


def psr(returns: np.ndarray, benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe ratio: P(true per-bar Sharpe > benchmark)."""
    from aio.optimize.dsr import probabilistic_sharpe, return_moments

    r = np.asarray(returns, dtype=np.float64)
    if r.size < 3 or r.std(ddof=1) == 0:
        return float("nan")
    m = return_moments(r)
    return float(probabilistic_sharpe(m["sr"], benchmark, m["n_obs"], m["skew"], m["kurtosis"]))


# Ratios of returns: undefined after ruin, with fewer than 2 returns, or with zero variance.
RATIO_KEYS = ("sharpe", "sortino", "calmar", "cagr_pct", "sharpe_ci_low", "sharpe_ci_high", "psr", "var_95_pct",
              "cvar_95_pct")


class _Metrics:
    """Each metric computed once, on demand: a trial asks for one or two of them."""

    def __init__(self, result) -> None:
        self.r = result
        self.cap = float(result.config.initial_capital)
        self.eq = result.equity_values
        self.ts = result.ts_event
        self.pnl = result.trade_pnl
        self._c: dict[str, Any] = {}

    def get(self, key: str, fn):
        if key not in self._c:
            self._c[key] = fn()
        return self._c[key]

    @property
    def live(self) -> int:
        """Bars with a meaningful equity: all of them, or up to the ruin bar."""
        rb = getattr(self.r, "ruin_bar", None)
        return self.eq.shape[0] if rb is None else rb + 1

    @property
    def rets(self) -> np.ndarray:
        return self.get("rets", lambda: bar_returns(self.eq[: self.live], self.cap))

    @property
    def ppy(self) -> float:
        return self.get("ppy", lambda: periods_per_year(self.ts))

    @property
    def dd(self) -> tuple[float, float]:
        return self.get("dd", lambda: max_drawdown(self.eq, self.cap))

    @property
    def cagr(self) -> float:
        return self.get("cagr", lambda: cagr(self.eq, self.cap, self.ts))

    @property
    def ci(self) -> tuple[float, float]:
        return self.get("ci", lambda: sharpe_interval(self.rets, self.ppy))

    @property
    def var(self) -> tuple[float, float]:
        return self.get("var", lambda: var_cvar(self.rets))

    @property
    def dur(self) -> tuple[int, float]:
        return self.get("dur", lambda: max_drawdown_duration(self.eq, self.cap, self.ts))


METRICS: dict[str, Any] = {
    "net_profit": lambda z: net_profit(z.eq, z.cap),
    "return_pct": lambda z: return_pct(z.eq, z.cap),
    "cagr_pct": lambda z: z.cagr * 100.0,
    "sharpe": lambda z: sharpe(z.rets, z.ppy),
    "sharpe_ci_low": lambda z: z.ci[0],
    "sharpe_ci_high": lambda z: z.ci[1],
    "psr": lambda z: psr(z.rets),
    "sortino": lambda z: sortino(z.rets, z.ppy),
    "calmar": lambda z: calmar(z.cagr, z.dd[1]),
    "max_drawdown": lambda z: z.dd[0],
    "max_drawdown_pct": lambda z: z.dd[1],
    "max_drawdown_duration_bars": lambda z: z.dur[0],
    "max_drawdown_duration_days": lambda z: z.dur[1] / 86400.0,
    "win_rate_pct": lambda z: win_rate(z.pnl),
    "profit_factor": lambda z: profit_factor(z.pnl),
    "expectancy": lambda z: expectancy(z.pnl),
    "avg_win": lambda z: avg_win(z.pnl),
    "avg_loss": lambda z: avg_loss(z.pnl),
    "exposure_pct": lambda z: exposure_pct(z.r.position_values),
    "trade_count": lambda z: int(z.pnl.size),
    "var_95_pct": lambda z: z.var[0] * 100.0,
    "cvar_95_pct": lambda z: z.var[1] * 100.0,
    "sqn": lambda z: sqn(z.pnl),
    "periods_per_year": lambda z: z.ppy,
}


def _undefined_reason(key: str, z: _Metrics) -> str:
    if getattr(z.r, "ruin_bar", None) is not None and key in RATIO_KEYS:
        return f"ruin at bar {z.r.ruin_bar}: no ratio is computed past it"
    if key in ("profit_factor", "expectancy", "win_rate_pct", "sqn", "avg_win", "avg_loss"):
        if z.pnl.size == 0:
            return "no trades"
        if key == "avg_win":
            return "no winning trade"
        if key == "avg_loss":
            return "no losing trade"
        if key == "profit_factor":
            return "no losing trade (gross loss 0)"
        return "fewer than 2 trades" if z.pnl.size < 2 else "zero variance of trade P&L"
    if z.rets.size < 2:
        return "fewer than 2 returns"
    if key == "calmar":
        return "no drawdown"
    return "zero variance of returns"


def compute_metrics(result, bars: Any = None, keys: list[str] | None = None) -> dict[str, Any]:
    """Metrics of a :class:`~aio.backtest.result.BacktestResult`, all or only ``keys``.

    Undefined values (ruin, fewer than 2 returns, zero variance, no trades) are NaN in
    the dict (null in JSON) and their reasons are in ``undefined``; ``warnings`` says
    what a reader must not overlook. ``bars`` is accepted for symmetry with the pipeline.
    """
    z = _Metrics(result)
    want = list(METRICS) if keys is None else [k for k in dict.fromkeys(list(keys) + ["trade_count"]) if k in METRICS]
    out: dict[str, Any] = {k: METRICS[k](z) for k in want}
    rb = getattr(result, "ruin_bar", None)
    if rb is not None:
        for k in RATIO_KEYS:
            if k in out:
                out[k] = float("nan")
    if keys is not None:
        return out
    undefined = {k: _undefined_reason(k, z) for k, v in out.items()
                 if isinstance(v, float) and math.isnan(v) and k != "periods_per_year"}
    out["undefined"] = undefined
    out["ruin"] = None
    if rb is not None:
        import datetime as dt

        t = dt.datetime.fromtimestamp(int(result.ts_event[rb]) / 1e9, tz=dt.timezone.utc)
        out["ruin"] = {"bar": int(rb), "time": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
    out["margin_calls"] = int(getattr(result, "margin_calls", 0) or 0)
    out["account_currency"] = result.config.account_currency
    out["warnings"] = warnings(out, int(result.config.min_trades))
    return out


def warnings(m: dict[str, Any], min_trades: int) -> list[str]:
    """Plain-words warnings for a metrics block."""
    out = []
    n = m.get("trade_count")
    if n is not None and n < min_trades:
        out.append(f"too few trades ({n}) to judge (fewer than backtest.min_trades={min_trades})")
    if m.get("ruin"):
        out.append(f"ruin: equity reached 0 at bar {m['ruin']['bar']} ({m['ruin']['time']}); trading stopped there")
    ratios = [k for k in ("sharpe", "sortino", "calmar") if k in (m.get("undefined") or {})]
    if ratios:
        reasons = sorted({m["undefined"][k] for k in ratios})
        out.append(f"ratios undefined ({', '.join(ratios)}): {'; '.join(reasons)}")
    if m.get("margin_calls"):
        out.append(f"{m['margin_calls']} margin call(s): positions were partly liquidated")
    return out
