"""One trial = rule evaluation (indicators shared through a SeriesCache) + compiled
backtests of the in-sample blocks. Everything a worker process needs is in
:class:`Context`, which pickles, so spawned workers rebuild nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from aio.optimize.objectives import Objective
from aio.optimize.walkforward import Window, blocks


class Infeasible(Exception):
    """The parameters break a constraint or trade too little: the trial is discarded."""


@dataclass
class Context:
    """A search over one strategy's parameters on one Evaluator's bars.

    Everything a trial needs goes through :class:`aio.backtest.evaluator.Evaluator`;
    the context only adds the search space and the objectives. It pickles (the
    evaluator drops its series cache), so spawned workers rebuild nothing else.
    """

    ev: Any  # aio.backtest.evaluator.Evaluator
    spec: Any  # StrategySpec
    objectives: list[Objective]
    cfg: Any  # OptimizeConfig
    space: dict[str, Any]  # name -> ParamSpace
    fixed: dict[str, Any]  # strategy params not searched

    @property
    def frame(self) -> Any:
        return self.ev.frame

    @property
    def bt(self) -> Any:
        return self.ev.bt

    @property
    def constraints(self) -> list[str]:
        """The strategy's own parameter relations (e.g. fast < slow), then optimize.constraints."""
        own = list(getattr(self.spec, "constraints", None) or [])
        return own + [c for c in self.cfg.constraints if c not in own]

    def signals(self, params: Mapping[str, Any]) -> Any:
        return self.ev.signals(self.spec, {**self.fixed, **dict(params)})

    def trial_backtest(self, sig: Any, w: Window) -> tuple[Any, dict[str, Any]]:
        """The fast path of a trial: only the metrics the objectives (and the DSR) need."""
        keys = [o.key for o in self.objectives if o.key] + ["sharpe", "periods_per_year", "trade_count"]
        e = self.ev.run_signals(sig, start=w.start, end=w.end, metrics=keys)
        return e.result, e.metrics

    def backtest(self, sig: Any, w: Window, sliced: bool = False) -> tuple[Any, dict[str, Any], Any]:
        """(result, metrics, bars frame) of ``sig`` over window ``w`` (flat at its start);
        ``sliced``: ``sig`` already covers exactly ``w``."""
        e = self.ev.run_signals(sig, start=w.start, end=w.end, sliced=sliced)
        return e.result, e.metrics, self.frame.slice(w.start, len(w))


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
        vals = [o.value(m, result) for o in ctx.objectives]
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
