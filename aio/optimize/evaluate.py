"""One trial = rule evaluation (indicators shared through a SeriesCache) + compiled
backtests of the in-sample blocks. Everything a worker process needs is in
:class:`Context`, which pickles, so spawned workers rebuild nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from aio.optimize.objectives import Objective
from aio.optimize.signals_ops import slice_signals
from aio.optimize.walkforward import Window, blocks


class Infeasible(Exception):
    """The parameters break a constraint or trade too little: the trial is discarded."""


@dataclass
class Context:
    frame: Any  # polars bars frame (BAR_SCHEMA)
    spec: Any  # StrategySpec
    bt: Any  # BacktestConfig
    sizer: dict[str, Any] | None
    predictions: dict[str, np.ndarray]
    objectives: list[Objective]
    cfg: Any  # OptimizeConfig
    space: dict[str, Any]  # name -> ParamSpace
    fixed: dict[str, Any]  # strategy params not searched
    timeframe: str = "1m"
    symbol: str = ""
    _cache: Any = field(default=None, repr=False)
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _chain: Any = field(default=None, repr=False)
    _bar_arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def constraints(self) -> list[str]:
        """The strategy's own parameter relations (e.g. fast < slow), then optimize.constraints."""
        own = list(getattr(self.spec, "constraints", None) or [])
        return own + [c for c in self.cfg.constraints if c not in own]

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_cache"], d["_arrays"], d["_chain"], d["_bar_arrays"] = None, None, None, None  # rebuilt per process
        return d

    # -- evaluation ---------------------------------------------------------------------
    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {c: np.ascontiguousarray(self.frame.get_column(c).to_numpy(), dtype=np.float64)
                            for c in ("open", "high", "low", "close", "volume") if c in self.frame.columns}
        return self._arrays

    @property
    def cache(self) -> Any:
        if self._cache is None:
            from aio.strategy import SeriesCache

            self._cache = SeriesCache()
        return self._cache

    @property
    def chain(self) -> Any:
        if self._chain is None and self.sizer:
            from aio.sizing import parse_chain

            self._chain = parse_chain(self.sizer) or False
        return self._chain or None

    def signals(self, params: Mapping[str, Any]) -> Any:
        from aio.strategy import signals

        return signals(self.spec, self.arrays, {**self.fixed, **dict(params)}, extra=self.predictions or None,
                       cache=self.cache)

    @property
    def bar_arrays(self) -> dict[str, np.ndarray]:
        if self._bar_arrays is None:
            from aio.backtest import bar_arrays

            self._bar_arrays = bar_arrays(self.frame)
        return self._bar_arrays

    def trial_backtest(self, sig: Any, w: Window) -> tuple[Any, dict[str, Any]]:
        """The fast path of a trial: bar arrays built once, only the metrics it needs."""
        from aio.backtest import run_backtest
        from aio.optimize.fastmetrics import metrics_for

        s = slice_signals(sig, w.start, w.end)
        bt = self.bt
        if self.chain is not None:
            from aio.sizing import size_signals

            preds = {k: np.asarray(v)[w.start:w.end] for k, v in (self.predictions or {}).items()}
            s, bt = size_signals(self.chain, self.frame.slice(w.start, len(w)), s, bt, preds)
        arr = {k: v[w.start:w.end] for k, v in self.bar_arrays.items()}
        result = run_backtest(arr, s, bt)
        return result, metrics_for(result, [o.key for o in self.objectives])

    def backtest(self, sig: Any, w: Window, sliced: bool = False) -> tuple[Any, dict[str, Any], Any]:
        """(result, metrics, bars frame) of ``sig`` over window ``w`` (flat at its start);
        ``sliced``: ``sig`` already covers exactly ``w``."""
        from aio.backtest import run_backtest
        from aio.backtest.metrics import compute_metrics

        s = sig if sliced else slice_signals(sig, w.start, w.end)
        fw = self.frame.slice(w.start, len(w))
        bt = self.bt
        if self.chain is not None:
            from aio.sizing import size_signals

            preds = {k: np.asarray(v)[w.start:w.end] for k, v in (self.predictions or {}).items()}
            s, bt = size_signals(self.chain, fw, s, bt, preds)
        bars = self.bars(fw)
        result = run_backtest(bars, s, bt)
        return result, dict(compute_metrics(result, bars)), fw

    def bars(self, frame: Any) -> Any:
        from aio.records import Bars

        return Bars(frame=frame, symbol=self.symbol, timeframe=self.timeframe)


def equity_of(result: Any) -> np.ndarray:
    """The equity curve of a BacktestResult as a float array (one value per bar)."""
    for name in ("equity", "equity_curve"):
        eq = getattr(result, name, None)
        if eq is None:
            continue
        if hasattr(eq, "columns"):  # a frame: take its equity column
            col = "equity" if "equity" in eq.columns else eq.columns[-1]
            return np.asarray(eq.get_column(col).to_numpy(), dtype=np.float64)
        return np.asarray(eq, dtype=np.float64)
    raise AttributeError("BacktestResult has no equity curve (expected .equity)")


def bar_returns(result: Any) -> np.ndarray:
    """Bar returns as the metrics define them (the first bar against the capital)."""
    from aio.backtest.metrics import bar_returns as _br

    r = _br(equity_of(result), float(result.config.initial_capital))
    return r[np.isfinite(r)]


@dataclass
class TrialOutcome:
    values: list[float]
    trades: int
    block_values: list[list[float]]
    sr: float  # per-bar Sharpe of the IS returns (for the deflated Sharpe)
    metrics: dict[str, Any]  # metrics of the last block


def evaluate_window(ctx: Context, params: Mapping[str, Any], window: Window, trial: Any = None) -> TrialOutcome:
    """Objective value(s) of ``params`` on an IS window: the mean over its blocks.

    With one objective, the running mean is reported after each block so a pruner
    can stop a poor trial early.
    """
    import optuna

    cfg = ctx.cfg
    parts = blocks(window, cfg.walk_forward.cv_blocks)
    need = math.ceil(cfg.min_trades / len(parts)) if cfg.min_trades else 0
    sig = ctx.signals(params)
    per_obj: list[list[float]] = [[] for _ in ctx.objectives]
    srs, weights, trades, m = [], [], 0, {}
    for b, w in enumerate(parts):
        result, m = ctx.trial_backtest(sig, w)
        n_tr = int(m.get("trade_count") or 0)
        trades += n_tr
        if n_tr < need:
            raise Infeasible(f"{n_tr} trades in IS block {b + 1}/{len(parts)} < {need} (optimize.min_trades)")
        vals = [o.value(m) for o in ctx.objectives]
        if any(math.isnan(v) for v in vals):
            raise Infeasible(f"objective undefined in IS block {b + 1} ({dict(zip([o.name for o in ctx.objectives], vals))})")
        for i, v in enumerate(vals):
            per_obj[i].append(v)
        # per-bar Sharpe (for the deflated Sharpe): the annualised one over sqrt(periods a year)
        ppy = m.get("periods_per_year") or float("nan")
        srs.append(float(m.get("sharpe", float("nan"))) / math.sqrt(ppy) if ppy and ppy > 0 else float("nan"))
        weights.append(len(w))
        if trial is not None and len(ctx.objectives) == 1 and len(parts) > 1:
            trial.report(float(np.mean(per_obj[0])), b)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after IS block {b + 1}/{len(parts)}")
    ok = [(x, wt) for x, wt in zip(srs, weights) if np.isfinite(x)]
    sr = float(np.average([x for x, _ in ok], weights=[wt for _, wt in ok])) if ok else float("nan")
    return TrialOutcome([float(np.mean(v)) for v in per_obj], trades, per_obj, sr, m)
