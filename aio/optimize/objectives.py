"""Objective plugins: a named figure of the backtest and whether to maximise it.

Built-ins read a key of the metrics dict. A plugin objective may instead compute
from the whole backtest (freqtrade's loss functions receive the trades): give it a
``fn(result, metrics) -> float``, where ``result`` is the BacktestResult (trades
table ``result.trades``, equity ``result.equity_values``)::

    def mean_trade(result, metrics):
        return float(result.trades["profit"].mean())

    registry.add("objective", "mean_trade", Objective("mean_trade", None, "maximize", fn=mean_trade))

Callers pass the result with ``value(metrics, result)``; ``value(metrics)`` still
works for objectives that read a metrics key.

Costs are always in: the metrics come from the backtest config's spread,
commission and slippage. A window with fewer than ``optimize.min_trades`` trades
does not count (the trial is discarded) - a handful of lucky trades is no evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from aio.config import param
from aio.errors import AioError

CLIP = 1e6  # profit factor with no loss is inf; keep every value finite for the samplers


@dataclass
class ObjectiveConfig:
    min_trades: int = param(10, ge=0)


@dataclass(frozen=True)
class Objective:
    """``value(metrics, result=None)``: ``key`` of compute_metrics' dict, or ``fn(result, metrics)``."""

    name: str
    key: str | None  # the metrics key read; None: computed by ``fn`` from the BacktestResult
    direction: Literal["maximize", "minimize"]
    doc: str = ""
    clip: float | None = None
    absolute: bool = False  # e.g. drawdown reported as a negative number
    fn: Callable[[Any, Mapping[str, Any]], float] | None = None

    def __post_init__(self) -> None:
        if (self.key is None) == (self.fn is None):
            raise AioError(f"objective {self.name!r}: give either a metrics key or fn(result, metrics), not "
                           f"{'both' if self.fn is not None else 'neither'}")
        if self.direction not in ("maximize", "minimize"):
            raise AioError(f"objective {self.name!r}: direction must be maximize or minimize, not {self.direction!r}")

    @property
    def needs_result(self) -> bool:
        """True when ``value`` must be given the BacktestResult (the trades), not only metrics."""
        return self.fn is not None

    def value(self, metrics: Mapping[str, Any], result: Any = None) -> float:
        if self.fn is not None:
            if result is None:
                raise AioError(f"objective {self.name!r} computes from the trades: call value(metrics, result) "
                               f"with the BacktestResult")
            v = self.fn(result, metrics)
        else:
            v = metrics.get(self.key)
        if v is None:
            return float("nan")
        v = float(v)
        if self.absolute:
            v = abs(v)
        if math.isinf(v):
            v = math.copysign(self.clip or CLIP, v)
        if self.clip is not None and not math.isnan(v):
            v = max(-self.clip, min(self.clip, v))
        return v

    @property
    def worst(self) -> float:
        return -CLIP if self.direction == "maximize" else CLIP


OBJECTIVES = [
    Objective("sharpe", "sharpe", "maximize", "Sharpe ratio of the equity curve (annualised)"),
    Objective("sortino", "sortino", "maximize", "Sortino ratio (downside deviation)"),
    Objective("calmar", "calmar", "maximize", "annual return / max drawdown"),
    Objective("profit_factor", "profit_factor", "maximize", "gross profit / gross loss (capped at 100)", clip=100.0),
    Objective("sqn", "sqn", "maximize", "System Quality Number (Van Tharp)"),
    Objective("net_profit", "net_profit", "maximize", "final equity - capital after costs (open trade marked at the last close)"),
    Objective("return_pct", "return_pct", "maximize", "net profit in percent of initial capital"),
    Objective("max_drawdown", "max_drawdown", "minimize", "largest peak-to-trough equity drop", absolute=True),
]


BY_NAME: dict[str, Objective] = {o.name: o for o in OBJECTIVES}


def register(registry) -> None:
    for o in OBJECTIVES:
        registry.add("objective", o.name, o, config=ObjectiveConfig, description=f"{o.direction} {o.doc}")
