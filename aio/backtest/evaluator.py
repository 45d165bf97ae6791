"""The one evaluator: signals -> sizer chain -> broker -> invariant checks -> metrics.

The pipeline, the optimiser, the discovery funnel and the live engine all call it;
nobody writes that wiring a second time. One instance holds one set of bars (with
their instrument and account-currency conversion) and a series cache shared by every
strategy evaluated on them, so an optimiser trial or a discovery candidate costs one
rule evaluation plus one broker pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from aio.backtest.config import BacktestConfig
from aio.backtest.result import BacktestResult
from aio.backtest.signals import Signals, concat_signals, slice_signals


@dataclass
class Evaluation:
    result: BacktestResult
    metrics: dict[str, Any]
    start: int
    end: int
    signals: Signals  # as the broker got them (sized, cut to the window)

    @property
    def net_profit(self) -> float:
        return self.result.net_profit

    @property
    def trades(self):
        return self.result.trades

    @property
    def equity(self) -> np.ndarray:
        return self.result.equity_values

    @property
    def returns(self) -> np.ndarray:
        """Simple bar returns of the positive equity, stopped at ruin."""
        from aio.backtest.metrics import bar_returns

        eq = self.result.equity_values
        if self.result.ruin_bar is not None:
            eq = eq[: self.result.ruin_bar + 1]
        return bar_returns(eq, float(self.result.config.initial_capital))


class Evaluator:
    """Evaluate strategies on one set of bars; see the module doc.

    ``rates``: (rate at each bar's open, at each close) converting quote currency to
    account currency over the whole frame, or None when no conversion applies (the
    pipeline resolves them with :func:`aio.instruments.conversion_plan`).
    """

    def __init__(self, frame: Any, bt: BacktestConfig, *, sizer: Mapping[str, Any] | Any = None,
                 predictions: Mapping[str, np.ndarray] | None = None, symbol: str | None = None,
                 timeframe: str = "", rates: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        from aio.backtest.simulator import bar_arrays

        self.frame = frame
        self.bt = bt if symbol is None else dataclasses.replace(bt, symbol=symbol)
        self.instrument = self.bt.instrument_spec()
        self.symbol = self.instrument.symbol
        self.timeframe = timeframe
        self.predictions = {k: np.asarray(v) for k, v in (predictions or {}).items()}
        self.rates = rates
        self._bars = bar_arrays(frame)
        self.arrays = {c: np.ascontiguousarray(frame.get_column(c).to_numpy(), dtype=np.float64)
                       for c in ("open", "high", "low", "close", "volume") if c in frame.columns}
        self.chain = None
        if sizer is not None:
            from aio.sizing import parse_chain

            self.chain = sizer if hasattr(sizer, "steps") else parse_chain(sizer)
        self._cache = None

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_cache"] = None  # rebuilt per process
        return d

    @property
    def n(self) -> int:
        return self.frame.height

    @property
    def cache(self):
        if self._cache is None:
            from aio.strategy import SeriesCache

            self._cache = SeriesCache()
        return self._cache

    def signals(self, spec: Any, params: Mapping[str, Any] | None = None) -> Signals:
        """The rules over the whole frame (values at bar t read bars <= t only)."""
        from aio.strategy import signals

        return signals(spec, self.arrays, dict(params or {}), extra=self.predictions or None, cache=self.cache)

    def run(self, spec: Any, params: Mapping[str, Any] | None = None, *, start: int = 0, end: int | None = None,
            metrics: str | Sequence[str] = "full", check: bool = True) -> Evaluation:
        return self.run_signals(self.signals(spec, params), start=start, end=end, metrics=metrics, check=check)

    def run_signals(self, sig: Signals, *, start: int = 0, end: int | None = None,
                    metrics: str | Sequence[str] = "full", sliced: bool = False, check: bool = True) -> Evaluation:
        """Backtest ``sig`` on bars [start, end), flat at ``start``; ``sliced``: ``sig``
        already covers exactly that window."""
        from aio.backtest import invariants
        from aio.backtest.metrics import compute_metrics
        from aio.backtest.simulator import run_backtest

        end = self.n if end is None else int(end)
        start = int(start)
        s = sig if sliced or (start == 0 and end == self.n) else slice_signals(sig, start, end)
        bt = self.bt
        rates = None if self.rates is None else (self.rates[0][start:end], self.rates[1][start:end])
        if self.chain is not None:
            from aio.sizing import size_signals

            preds = {k: v[start:end] for k, v in self.predictions.items()}
            fw = self.frame if (start == 0 and end == self.n) else self.frame.slice(start, end - start)
            s, bt = size_signals(self.chain, fw, s, bt, preds, rates=rates)
        bars = self._bars if (start == 0 and end == self.n) else {k: v[start:end] for k, v in self._bars.items()}
        result = run_backtest(bars, s, bt, rates=rates)
        if check:
            invariants.check(result)
        keys = None if metrics == "full" else list(metrics)
        return Evaluation(result, compute_metrics(result, keys=keys), start, end, s)

    def run_stitched(self, parts: Sequence[tuple[Signals, int, int]], *, metrics: str | Sequence[str] = "full"
                     ) -> Evaluation:
        """Consecutive windows, each with its own signals (e.g. each fold's best
        parameters on its out-of-sample bars), as one account."""
        cut = [slice_signals(s, a, b) for s, a, b in parts]
        return self.run_signals(concat_signals(cut), start=parts[0][1], end=parts[-1][2], sliced=True,
                                metrics=metrics)


def backtest_config(run: Any) -> BacktestConfig:
    """The run's ``backtest`` section, for the instrument its data source delivers."""
    from aio.appconfig import section
    from aio.config import build

    bt = build(BacktestConfig, section(run.cfg, "backtest"), "backtest")
    market = getattr(run, "market", None)
    bars = getattr(run, "bars", None)
    symbol = market.symbol if market is not None else (bars.symbol if bars is not None else None)
    return dataclasses.replace(bt, symbol=symbol) if symbol else bt


def evaluator_for_run(run: Any, frame: Any = None) -> Evaluator:
    """The run's evaluator: its bars, backtest config, sizer, model series and rates."""
    from aio.appconfig import section

    ev = getattr(run, "evaluator", None)
    if ev is not None and frame is None:
        return ev
    sizer = section(run.cfg, "sizer") or None
    ev = Evaluator(run.bars.frame if frame is None else frame, backtest_config(run), sizer=sizer,
                   predictions=run.predictions, timeframe=run.bars.timeframe, rates=getattr(run, "rates", None))
    if frame is None:
        run.evaluator = ev
    return ev
