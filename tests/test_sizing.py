"""Sizer chains: each step checked against its formula computed independently
(ATR from TA-Lib directly), no lookahead in history-based steps, Pine export scope."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import talib

from aio.backtest.signals import OrderSlot, Signals
from aio.errors import ConfigError, ExportError
from aio.sizing import parse_chain, size_signals
from aio.sizing.pine import pine_sizing


def _bt(**kw):
    from aio.backtest.config import BacktestConfig

    return BacktestConfig(**{"initial_capital": 100_000.0, "qty": 10_000.0, **kw})


def bars(n: int = 600, seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 1.10 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 1.5e-4, n))
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    ts = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 60_000_000_000
    return pl.DataFrame({"ts_event": ts, "ts_init": ts + 60_000_000_000, "open": open_, "high": high, "low": low,
                         "close": close, "volume": np.full(n, 100.0), "ticks": np.full(n, 60, dtype=np.int64),
                         "spread_mean": np.full(n, 1e-5)})


def cross_signals(frame: pl.DataFrame, fast: int = 5, slow: int = 20) -> Signals:
    c = frame["close"].to_numpy()
    f, s = talib.SMA(c, fast), talib.SMA(c, slow)
    d = f - s
    prev = np.concatenate([[np.nan], d[:-1]])
    up = (d > 0) & (prev <= 0)
    dn = (d < 0) & (prev >= 0)
    return Signals(orders=[OrderSlot("L", "entry", 1, "market", up), OrderSlot("S", "entry", -1, "market", dn)])


def test_vol_target_without_history_matches_the_formula():
    fr = bars()
    sig = cross_signals(fr)
    section = {"name": "vol_target", "risk_pct": 1.0, "atr_length": 14, "atr_mult": 2.0, "compound": False,
               "limits": {"min_units": 0.0, "max_leverage": None, "lot_step": None}}  # the bare formula
    out, _ = size_signals(section, fr, sig, _bt())
    atr = talib.ATR(fr["high"].to_numpy(), fr["low"].to_numpy(), fr["close"].to_numpy(), 14)
    expect = np.where(np.isfinite(atr), 0.01 * 100_000.0 / (2.0 * np.nan_to_num(atr, nan=1.0)), 0.0)
    np.testing.assert_allclose(out.size_steps["vol_target"], expect, rtol=1e-12)
    # the broker trades whole units of EURUSD: the final size is rounded down to the step
    np.testing.assert_allclose(out.size, np.floor(expect + 1e-9), rtol=1e-12)
    assert list(out.size_steps) == ["vol_target", "constraints"]


def test_confidence_scales_and_limits_round_down_to_lots():
    fr = bars(200)
    sig = cross_signals(fr)
    conf = np.linspace(0.4, 0.95, 200)
    conf[10] = np.nan
    section = {"name": "fixed", "units": 25_000.0,
               "then": [{"name": "confidence", "low": 0.5, "high": 0.9, "min_scale": 0.0, "max_scale": 1.0}],
               "limits": {"lot_step": 1000.0, "min_units": 2000.0, "max_units": 20_000.0}}
    out, _ = size_signals(section, fr, sig, _bt(), {"model.confidence": conf})
    scale = np.clip((conf - 0.5) / 0.4, 0, 1)
    scaled = np.where(np.isfinite(conf), 25_000.0 * scale, 0.0)
    np.testing.assert_allclose(out.size_steps["confidence"], scaled)
    final = np.floor(np.minimum(scaled, 20_000.0) / 1000.0 + 1e-9) * 1000.0
    final = np.where(final < 2000.0, 0.0, final)
    np.testing.assert_allclose(out.size, final)
    assert out.size[10] == 0.0 and out.size.max() == 20_000.0
    assert list(out.size_steps) == ["fixed", "confidence", "constraints"]


def test_missing_prediction_and_unknown_step_are_config_errors():
    fr = bars(100)
    with pytest.raises(ConfigError, match="model.confidence"):
        size_signals({"name": "confidence"}, fr, cross_signals(fr), _bt(), {})
    with pytest.raises(ConfigError, match="Did you mean 'kelly'"):
        parse_chain({"name": "kely"})
    with pytest.raises(ConfigError, match="sizer.risk_pct"):
        parse_chain({"name": "vol_target", "risk_pct": -1})
    with pytest.raises(ConfigError, match=r"sizer.then\[0\]"):
        parse_chain({"name": "fixed", "then": [{"start_pct": 3}]})


def test_plain_fixed_and_percent_leave_sizing_to_the_simulator():
    fr = bars(100)
    sig = cross_signals(fr)
    out, bt = size_signals({"name": "fixed"}, fr, sig, _bt())
    assert out.size is None and bt.qty_type == "fixed"
    out, bt = size_signals({"name": "percent_of_equity", "percent": 25.0}, fr, sig, _bt())
    assert out.size is None and bt.qty_type == "percent_of_equity" and bt.qty == 25.0


def test_pine_scope():
    bt = _bt()
    assert pine_sizing({"name": "fixed"}, bt).qty is None
    p = pine_sizing({"name": "percent_of_equity", "percent": 5}, bt)
    assert ("default_qty_type", "strategy.percent_of_equity") in p.strategy_args
    v = pine_sizing({"name": "vol_target", "risk_pct": 0.5, "atr_length": 10, "atr_mult": 3,
                     "limits": {"max_leverage": 30, "lot_step": 1000, "min_units": 1000}}, bt)
    text = "\n".join(v.lines)
    assert v.qty == "sizer_qty" and "ta.atr(10)" in text and "math.floor" in text and "30.0 *" in text
    for bad in ({"name": "kelly"}, {"name": "confidence"},
                {"name": "vol_target", "then": [{"name": "drawdown_guard"}]}):
        with pytest.raises(ExportError, match="cannot be expressed in Pine"):
            pine_sizing(bad, bt)


# -- history-based steps against the real simulator ----------------------------------------


def _realised_at(result, bt, d: int) -> float:
    """Initial capital + P&L of the trades of ``result`` that closed at or before bar d."""
    t = result.trades
    closed = (t["exit_bar"].to_numpy() <= d) & (t["exit_signal"].to_numpy() != "Open")
    return bt.initial_capital + float(t["pnl"].to_numpy()[closed].sum())


def test_percent_of_equity_with_lots_sizes_each_trade_from_realised_equity():
    from aio.backtest import run_backtest

    fr = bars(1500, seed=11)
    bt = _bt(commission=0.002, initial_capital=10_000.0)
    section = {"name": "percent_of_equity", "percent": 50.0, "limits": {"lot_step": 100.0}}
    sig, bt2 = size_signals(section, fr, cross_signals(fr), bt)
    res = run_backtest(fr, sig, bt2)
    t = res.trades
    assert t.height > 20
    close = fr["close"].to_numpy()
    for row in t.iter_rows(named=True):
        d = row["entry_bar"] - 1  # market orders: decided at the previous close
        expect = np.floor(0.5 * _realised_at(res, bt, d) / close[d] / 100.0 + 1e-9) * 100.0
        assert row["qty"] == pytest.approx(expect), row
        assert row["size_constraints"] == pytest.approx(expect)
        assert row["size_percent_of_equity"] == pytest.approx(0.5 * _realised_at(res, bt, d) / close[d])


def test_drawdown_guard_reads_only_closed_trades():
    from aio.backtest import run_backtest

    fr = bars(1500, seed=4)
    bt = _bt(commission=0.01, initial_capital=1_000.0)  # costly: equity falls, the guard engages
    section = {"name": "fixed", "units": 10_000.0,
               "then": [{"name": "drawdown_guard", "start_pct": 1.0, "max_pct": 3.0, "floor": 0.5, "halt_pct": 6.0}]}
    sig, bt2 = size_signals(section, fr, cross_signals(fr, 3, 8), bt)
    res = run_backtest(fr, sig, bt2)
    t = res.trades
    scales = []
    for row in t.iter_rows(named=True):
        d = row["entry_bar"] - 1
        eq = _realised_at(res, bt, d)
        closed = (t["exit_bar"].to_numpy() <= d) & (t["exit_signal"].to_numpy() != "Open")
        path = bt.initial_capital + np.concatenate([[0.0], np.cumsum(t["pnl"].to_numpy()[closed])])
        dd = 100 * (1 - eq / path.max())
        scale = 0.0 if dd >= 6.0 else 1 - 0.5 * np.clip((dd - 1.0) / 2.0, 0, 1)
        scales.append(scale)
        assert row["size_drawdown_guard"] == pytest.approx(10_000.0 * scale), (row, dd)
    assert min(scales) < 1.0  # the guard did engage on this path


def test_kelly_uses_win_rate_and_payoff_of_earlier_trades_only():
    fr = bars(3000, seed=8)
    bt = _bt(initial_capital=100_000.0)
    section = {"name": "kelly", "fraction": 0.5, "cap": 0.05, "lookback": 30, "min_trades": 10, "warmup_risk": 0.001}
    sig_full, _ = size_signals(section, fr, cross_signals(fr), bt)
    # No lookahead: sizing a prefix of the bars gives the same sizes on that prefix.
    k = 1800
    sig_pre, _ = size_signals(section, fr.slice(0, k), cross_signals(fr.slice(0, k)), bt)
    np.testing.assert_allclose(sig_pre.size, sig_full.size[:k])
    np.testing.assert_allclose(sig_pre.size_steps["kelly"], sig_full.size_steps["kelly"][:k])
    # The formula at one bar from the paper trades (every entry taken at one size; P&L per
    # unit) that closed by then, computed here directly.
    from aio.backtest import run_backtest

    paper = cross_signals(fr)
    paper.size = np.full(fr.height, bt.qty)
    t = run_backtest(fr, paper, bt).trades.filter(pl.col("exit_signal") != "Open")
    unit = t["pnl"].to_numpy() / t["qty"].to_numpy()
    xb = t["exit_bar"].to_numpy()
    kel = sig_full.size_steps["kelly"]
    d = 1500 + int(np.flatnonzero(kel[1500:] > 0)[0])  # a bar where Kelly bets
    last = unit[np.argsort(xb, kind="stable")][: int((xb <= d).sum())][-30:]
    w = (last > 0).mean()
    r = last[last > 0].mean() / -last[last < 0].mean()
    f = min(0.5 * max(w - (1 - w) / r, 0.0), 0.05)
    assert f > 0
    # units * average loss per unit = f * realised equity at d
    eq = kel[d] * -last[last < 0].mean() / f
    assert eq == pytest.approx(_realised_equity_from_sizes(fr, sig_full, bt, d), rel=1e-9)
    assert (kel[1500:] == 0).any()  # and where the edge is gone, it does not bet


def _realised_equity_from_sizes(fr, sig, bt, d):
    from aio.backtest import run_backtest

    return _realised_at(run_backtest(fr, sig, bt), bt, d)


def test_pine_export_sizes_every_entry_or_refuses():
    from aio.backtest import BacktestConfig
    from aio.pine import export_strategy
    from aio.strategy import load_builtin

    spec = load_builtin("sma_cross")
    text = export_strategy(spec, None, BacktestConfig(), sizer={"name": "vol_target", "risk_pct": 0.5,
                                                                 "limits": {"lot_step": 1000.0}})
    assert text.count("qty=sizer_qty") == 2 and "ta.atr(14)" in text
    plain = export_strategy(spec, None, BacktestConfig(), sizer={"name": "percent_of_equity", "percent": 20})
    assert "default_qty_type=strategy.percent_of_equity" in plain and "qty=sizer_qty" not in plain
    with pytest.raises(ExportError, match="kelly"):
        export_strategy(spec, None, BacktestConfig(), sizer={"name": "kelly"})
