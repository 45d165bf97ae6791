"""ATR- and percent-based stop-loss/take-profit declared in a strategy's `exit` section:
distances are fixed at the close that decided the entry and measured from the fill."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from aio.backtest import BacktestConfig, run_backtest
from aio.strategy import load_builtin, load_spec, signals
from tests.test_strategy_tv_parity import TV_SETTINGS


def _spec(**exit_):
    base = load_builtin("sma_cross")
    section = {
        "name": "sma_cross_brackets", "params": {**base.params, "k_stop": 1.5},
        "space": {"fast": {"type": "int", "low": 2, "high": 100}, "slow": {"type": "int", "low": 5, "high": 300},
                  "k_stop": {"type": "float", "low": 0.5, "high": 5.0}},
        "indicators": {a: {"fn": b.fn, "inputs": b.inputs, "params": b.params} for a, b in base.indicators.items()},
        "rules": [{"id": r.id, "when": r.when, "action": r.action, "direction": r.direction} for r in base.rules],
        "exit": exit_,
    }
    return load_spec(section)


def test_atr_brackets_exit_at_entry_relative_levels(tv_bars):
    spec = _spec(stop_atr="k_stop", take_atr=3.0, atr_length=14)
    arrays = {c: tv_bars.col(c) for c in ("open", "high", "low", "close", "volume")}
    res = run_backtest(tv_bars, signals(spec, arrays), BacktestConfig(**TV_SETTINGS))
    trades = res.trades.to_dicts()
    atr = talib.ATR(arrays["high"], arrays["low"], arrays["close"], 14)
    o = arrays["open"]
    exits = [t for t in trades if t["exit_signal"] == "Exit"]
    assert len(exits) > 20 and len(exits) < len(trades)
    for t in exits:
        dec = t["entry_bar"] - 1  # market entry filled at the next open
        side = 1 if t["side"] == "long" else -1
        stop = t["entry_price"] - side * 1.5 * atr[dec]
        take = t["entry_price"] + side * 3.0 * atr[dec]
        x = t["exit_bar"]
        # either level (snapped to the tick grid on the side where it can fill, as TradingView does),
        # or the exit bar's open when price gapped through it
        hit = [lvl for lvl in (stop, take) if abs(t["exit_price"] - lvl) < 1e-5 + 1e-12]
        gapped = abs(t["exit_price"] - o[x]) < 1e-12
        assert hit or gapped, t
        pnl_sign = np.sign(t["exit_price"] - t["entry_price"]) * side
        if hit and hit[0] == stop:
            assert pnl_sign < 0
    # a bracket exit frees the position: the next trade's entry comes from a later signal
    assert all(b["entry_bar"] >= a["exit_bar"] for a, b in zip(trades, trades[1:]))


def test_percent_stop_changes_results_and_param_names_are_checked(tv_bars):
    arrays = {c: tv_bars.col(c) for c in ("open", "high", "low", "close", "volume")}
    plain = run_backtest(tv_bars, signals(_spec(), arrays), BacktestConfig(**TV_SETTINGS)).trades
    pct = run_backtest(tv_bars, signals(_spec(stop_pct=0.2), arrays), BacktestConfig(**TV_SETTINGS)).trades
    assert (pct["exit_signal"] == "Exit").sum() > 0 and (plain["exit_signal"] == "Exit").sum() == 0
    from aio.errors import ConfigError

    with pytest.raises(ConfigError, match="exit.stop_atr='nope' is not a strategy parameter"):
        _spec(stop_atr="nope")


def test_price_level_exits_follow_the_level_known_at_the_previous_close(tv_bars, tmp_path):
    spec = _spec(stop_long="lowest(low, 10)", stop_short="highest(high, 10)")
    arrays = {c: tv_bars.col(c) for c in ("open", "high", "low", "close", "volume")}
    trades = run_backtest(tv_bars, signals(spec, arrays), BacktestConfig(**TV_SETTINGS)).trades.to_dicts()
    low_lvl = talib.MIN(arrays["low"], 10)
    high_lvl = talib.MAX(arrays["high"], 10)
    o = arrays["open"]
    exits = [t for t in trades if t["exit_signal"] == "Exit"]
    assert len(exits) > 20
    for t in exits:
        x = t["exit_bar"]
        level = low_lvl[x - 1] if t["side"] == "long" else high_lvl[x - 1]
        assert abs(t["exit_price"] - level) < 1e-5 + 1e-12 or abs(t["exit_price"] - o[x]) < 1e-12, t
    from aio.pine import export_strategy
    from aio.pine.check import check_files

    text = export_strategy(spec)
    assert 'strategy.exit("Exit_Long", "Long", stop=ta.lowest(low, 10), comment="Exit")' in text
    assert 'strategy.exit("Exit_Short", "Short", stop=ta.highest(high, 10), comment="Exit")' in text
    path = tmp_path / "exits.pine"
    path.write_text(text)
    assert check_files([path])[0].ok


def test_price_levels_and_distances_do_not_mix():
    from aio.errors import ConfigError

    with pytest.raises(ConfigError, match="either price levels"):
        _spec(stop_long="low", take_atr=2.0)
