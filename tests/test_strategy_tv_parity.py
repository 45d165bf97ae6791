"""Acceptance: the shipped tv_* strategies, run through the rule language and the
simulator, reproduce TradingView's own "List of trades" exports trade for trade."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from aio.backtest import BacktestConfig, run_backtest
from aio.strategy import load_builtin, signals

TV_SETTINGS = dict(initial_capital=1_000_000.0, qty_type="fixed", qty=1.0, commission=0.0,
                   slippage_ticks=0, use_spread=False, pyramiding=0)


def tv_trades(path) -> list[dict]:
    df = pl.read_csv(path)
    rows = df.to_dicts()
    trades = []
    for entry, exit_ in zip(rows[0::2], rows[1::2]):
        assert entry["Trade #"] == exit_["Trade #"] and entry["Type"].startswith("Entry")
        trades.append({
            "side": "long" if "long" in entry["Type"] else "short",
            "entry_time": _utc(entry["Date/Time"]),
            "entry_price": entry["Price USD"],
            "entry_signal": entry["Signal"],
            "exit_time": _utc(exit_["Date/Time"]),
            "exit_price": exit_["Price USD"],
            "exit_signal": exit_["Signal"],
        })
    return trades


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").astimezone(timezone.utc)


@pytest.mark.parametrize(
    "strategy, csv",
    [("tv_rsi", "rsi_trades.csv"), ("tv_macd", "macd_trades.csv"), ("tv_bbands", "bollinger_trades.csv")],
)
def test_tv_strategy_reproduces_tradingview_trade_list(tv_bars, tv_dir, strategy, csv):
    spec = load_builtin(strategy)
    arrays = {c: tv_bars.col(c) for c in ("open", "high", "low", "close", "volume")}
    result = run_backtest(tv_bars, signals(spec, arrays), BacktestConfig(**TV_SETTINGS))
    ours = result.trades.to_dicts()
    theirs = tv_trades(tv_dir / csv)
    assert len(ours) == len(theirs)
    tick = 1e-5
    for i, (a, b) in enumerate(zip(ours, theirs)):
        where = f"trade {i + 1} of {strategy}"
        assert a["side"] == b["side"], where
        assert _as_utc(a["entry_time"]) == b["entry_time"], where
        assert _as_utc(a["exit_time"]) == b["exit_time"], where
        assert abs(a["entry_price"] - b["entry_price"]) < tick / 2, where
        assert abs(a["exit_price"] - b["exit_price"]) < tick / 2, where
        assert a["entry_signal"] == b["entry_signal"], where
        assert a["exit_signal"] == b["exit_signal"], where


def _as_utc(value) -> datetime:
    if isinstance(value, (int, np.integer)):
        return datetime.fromtimestamp(int(value) / 1e9, tz=timezone.utc)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)
