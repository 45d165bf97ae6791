"""The backtest's typed config (the ``backtest`` Hydra group is wired by the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

from aio.config import param


@dataclass
class BacktestConfig:
    """TradingView strategy() properties that the simulator honours.

    Defaults are TradingView's strategy-tester defaults except the capital.
    """

    initial_capital: float = param(100000.0, gt=0, help="starting equity in account currency")
    qty_type: str = param("fixed", choices=["fixed", "percent_of_equity", "cash"],
                          help="default order size: units, percent of equity, or cash value")
    qty: float = param(1.0, gt=0, help="units (fixed), percent (percent_of_equity) or cash amount (cash)")
    commission_type: str = param("percent", choices=["percent", "cash_per_order", "cash_per_contract"])
    commission: float = param(0.0, ge=0, help="percent of order value, or cash per order / per unit")
    slippage_ticks: int = param(0, ge=0, help="ticks added against the trader on market and stop fills")
    mintick: float = param(1e-5, gt=0, help="price increment of one tick")
    use_spread: bool = param(True, help="buys pay and sells receive half of the bars' spread_mean")
    pyramiding: int = param(0, ge=0, help="entries allowed in one direction; 0 and 1 both mean one (TradingView)")
    process_orders_on_close: bool = param(False, help="fill market orders at the signal bar's close")
