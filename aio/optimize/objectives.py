"""Objective plugins: a named metric of the backtest and whether to maximise it.

Costs are always in: the metrics come from the backtest config's spread,
commission and slippage. A window with fewer than ``optimize.min_trades`` trades
does not count (the trial is discarded) - a handful of lucky trades is no evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from aio.config import param

CLIP = 1e6  # profit factor with no loss is inf; keep every value finite for the samplers


@dataclass
class ObjectiveConfig:
    min_trades: int = param(10, ge=0)


@dataclass(frozen=True)
class Objective:
    """``value(metrics)`` reads ``key`` from compute_metrics' dict."""

    name: str
    key: str
    direction: Literal["maximize", "minimize"]
    doc: str = ""
    clip: float | None = None
    absolute: bool = False  # e.g. drawdown reported as a negative number

    def value(self, metrics: Mapping[str, Any]) -> float:
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


def register(registry) -> None:
    for o in OBJECTIVES:
        registry.add("objective", o.name, o, config=ObjectiveConfig, description=f"{o.direction} {o.doc}")
