"""Bar-level broker with TradingView strategy-tester semantics, its evaluator and metrics.

Only the config is imported eagerly (validation needs it within a second); the compiled
broker, polars and the result types load on first use (PEP 562).
"""

from aio.backtest.config import BacktestConfig

_LAZY = {
    "BacktestResult": "aio.backtest.result", "write_equity_parquet": "aio.backtest.result",
    "write_trades_csv": "aio.backtest.result", "Brackets": "aio.backtest.signals", "OrderSlot": "aio.backtest.signals",
    "Signals": "aio.backtest.signals", "bar_arrays": "aio.backtest.simulator", "run_backtest": "aio.backtest.simulator",
    "Evaluator": "aio.backtest.evaluator", "Evaluation": "aio.backtest.evaluator",
}

__all__ = ["BacktestConfig", *_LAZY]


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'aio.backtest' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
