"""Only the metrics a trial's objectives need, from the backtest's own metric functions.

``compute_metrics`` computes everything (drawdown durations, VaR...), which costs more
than the simulation itself; a trial needs one or two numbers. Each entry below is the
same expression ``compute_metrics`` uses, so values are identical (tested).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from aio.backtest import metrics as M


class _Lazy:
    def __init__(self, result: Any) -> None:
        self.r = result
        self.cap = float(result.config.initial_capital)
        self._c: dict[str, Any] = {}

    def get(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._c:
            self._c[key] = fn()
        return self._c[key]

    @property
    def rets(self) -> np.ndarray:
        return self.get("rets", lambda: M.bar_returns(self.r.equity_values, self.cap))

    @property
    def ppy(self) -> float:
        return self.get("ppy", lambda: M.periods_per_year(self.r.ts_event))

    @property
    def dd(self) -> tuple[float, float]:
        return self.get("dd", lambda: M.max_drawdown(self.r.equity_values, self.cap))

    @property
    def cagr(self) -> float:
        return self.get("cagr", lambda: M.cagr(self.r.equity_values, self.cap, self.r.ts_event))


FAST: dict[str, Callable[[_Lazy], Any]] = {
    "net_profit": lambda z: M.net_profit(z.r.equity_values, z.cap),
    "return_pct": lambda z: M.return_pct(z.r.equity_values, z.cap),
    "cagr": lambda z: z.cagr,
    "sharpe": lambda z: M.sharpe(z.rets, z.ppy),
    "sortino": lambda z: M.sortino(z.rets, z.ppy),
    "calmar": lambda z: M.calmar(z.cagr, z.dd[1]),
    "max_drawdown": lambda z: z.dd[0],
    "max_drawdown_pct": lambda z: z.dd[1],
    "win_rate": lambda z: M.win_rate(z.r.trade_pnl),
    "profit_factor": lambda z: M.profit_factor(z.r.trade_pnl),
    "expectancy": lambda z: M.expectancy(z.r.trade_pnl),
    "sqn": lambda z: M.sqn(z.r.trade_pnl),
    "trade_count": lambda z: int(z.r.trade_pnl.size),
    "periods_per_year": lambda z: z.ppy,
}


def metrics_for(result: Any, keys: list[str]) -> dict[str, Any]:
    """``keys`` (plus trade_count and the per-bar Sharpe inputs); all of them when one is
    not in the fast table."""
    want = set(keys) | {"trade_count", "sharpe", "periods_per_year"}
    if not want <= FAST.keys():
        return dict(M.compute_metrics(result))
    z = _Lazy(result)
    return {k: FAST[k](z) for k in want}
