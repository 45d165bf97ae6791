"""The backtest's typed config (the ``backtest`` Hydra group is wired by the pipeline).

The dataclass defaults are the shipped ``conf/backtest/default.yaml`` (costs always);
a test keeps the two identical. ``tradingview.yaml`` inherits it and switches to
TradingView's strategy-tester defaults, as :meth:`BacktestConfig.tradingview` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aio.config import param


@dataclass
class BacktestConfig:
    """TradingView strategy() properties that the broker honours, plus the account."""

    initial_capital: float = param(100000.0, gt=0, help="starting equity in account currency")
    qty_type: str = param("fixed", choices=["fixed", "percent_of_equity", "cash"],
                          help="default order size: units, percent of equity, or cash value (account currency)")
    qty: float = param(100000.0, gt=0, help="units (fixed), percent (percent_of_equity) or cash amount (cash)")
    commission_type: str = param("percent", choices=["percent", "cash_per_order", "cash_per_contract"])
    commission: float = param(0.002, ge=0, help="percent of order value, or account cash per order / per unit")
    slippage_ticks: int = param(2, ge=0, help="ticks (the instrument's mintick) against the trader on market and stop fills")
    use_spread: bool = param(True, help="buys pay and sells receive half of the bars' spread_mean")
    pyramiding: int = param(0, ge=0, help="entries allowed in one direction; 0 and 1 both mean one (TradingView)")
    process_orders_on_close: bool = param(False, help="fill market orders at the signal bar's close")
    account_currency: str = param("USD", help="currency of capital, P&L, commission and every money metric")
    conversion_rate: float | None = param(None, gt=0,
                                          help="fixed account-currency units per 1 quote unit (instead of a series)")
    conversion_data: dict[str, Any] = param(default_factory=dict,
                                            help="overrides of the data section when loading the conversion pair "
                                                 "(e.g. a synthetic base_price or a file path)")
    margin_long: float = param(0.0, ge=0, le=100, help="margin for longs in percent of position value; 0 = no margin calls")
    margin_short: float = param(0.0, ge=0, le=100, help="margin for shorts in percent of position value; 0 = no margin calls")
    min_trades: int = param(30, ge=0, help="fewer trades than this get a 'too few trades' warning")
    symbol: str = param("EURUSD", help="the traded instrument; the pipeline sets it from the data source")
    mintick: float | None = param(None, gt=0, help="override of the instrument's tick (backtest.instrument.mintick)")
    instrument: dict[str, Any] = param(default_factory=dict,
                                       help="overrides of the instrument spec: base quote mintick point pip "
                                            "contract_size qty_step qty_min")

    def instrument_spec(self):
        from aio.instruments import instrument_spec

        ov = dict(self.instrument or {})
        if self.mintick is not None:
            ov.setdefault("mintick", self.mintick)
        return instrument_spec(self.symbol, ov)

    @classmethod
    def tradingview(cls, **overrides: Any) -> "BacktestConfig":
        """TradingView's strategy-tester defaults: 1 contract, no commission, slippage or spread."""
        base = dict(initial_capital=1_000_000.0, qty=1.0, commission=0.0, slippage_ticks=0, use_spread=False)
        return cls(**{**base, **overrides})

    def replace(self, **changes: Any) -> "BacktestConfig":
        return dataclasses.replace(self, **changes)
