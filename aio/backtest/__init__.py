"""Bar-level backtester with TradingView strategy-tester semantics, and its metrics."""

from aio.backtest.config import BacktestConfig
from aio.backtest.result import BacktestResult, write_equity_parquet, write_trades_csv
from aio.backtest.signals import Brackets, OrderSlot, Signals
from aio.backtest.simulator import bar_arrays, run_backtest

__all__ = [
    "BacktestConfig", "BacktestResult", "Brackets", "OrderSlot", "Signals",
    "bar_arrays", "run_backtest", "write_equity_parquet", "write_trades_csv",
]
