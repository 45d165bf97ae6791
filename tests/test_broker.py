"""The stepped broker and the account: bar-by-bar equals batch, money in account currency
to the cent (hand computations), margin calls, ruin and the books' invariants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aio.backtest import BacktestConfig, Brackets, OrderSlot, Signals, run_backtest
from aio.backtest.broker import Broker, Decisions
from aio.backtest.evaluator import Evaluator
from aio.backtest.invariants import InvariantError, check
from aio.instruments import conversion_plan, conversion_rates, instrument_spec

MIN = 60_000_000_000
T0 = 1_700_000_000_000_000_000


def frame(opens, highs=None, lows=None, closes=None, spread=0.0):
    n = len(opens)
    o = np.asarray(opens, dtype=float)
    c = np.asarray(closes if closes is not None else opens, dtype=float)
    h = np.asarray(highs if highs is not None else np.maximum(o, c), dtype=float)
    lo = np.asarray(lows if lows is not None else np.minimum(o, c), dtype=float)
    ts = T0 + np.arange(n, dtype=np.int64) * MIN
    return pl.DataFrame({"ts_event": ts, "ts_init": ts + MIN, "open": o, "high": h, "low": lo, "close": c,
                         "volume": np.ones(n), "ticks": np.ones(n, dtype=np.int64), "spread_mean": np.full(n, spread)})


def flags(n, *at):
    w = np.zeros(n, dtype=bool)
    w[list(at)] = True
    return w


def long_round_trip(n, enter_at, exit_at):
    """Long decided at the close of ``enter_at`` (fills next open), closed likewise."""
    return Signals(orders=[OrderSlot("L", "entry", 1, "market", flags(n, enter_at)),
                           OrderSlot("X", "close", 0, "market", flags(n, exit_at))])


# -- money in account currency, by hand ---------------------------------------------------------


def test_usdjpy_on_a_usd_account_to_the_cent():
    # long 10,000 USDJPY: in at 150.00 (bar 1 open), out at 152.00 (bar 3 open)
    fr = frame([149.0, 150.0, 151.0, 152.0, 152.0], closes=[149.5, 150.5, 151.5, 152.5, 152.0])
    bt = BacktestConfig.tradingview(symbol="USDJPY", qty=10_000.0, commission=0.002, initial_capital=100_000.0)
    plan = conversion_plan(bt.instrument_spec(), "USD")
    assert plan.kind == "self_inverse"
    ev = Evaluator(fr, bt, rates=conversion_rates(plan, fr))
    e = ev.run_signals(long_round_trip(5, 0, 2))
    t = e.trades.row(0, named=True)
    # gross 10,000 x 2.00 = 20,000 JPY at the exit fill's rate 1/152; fees 0.002% of the
    # order value in JPY at each fill's own rate: 30 JPY/150 + 30.4 JPY/152 = 0.20 + 0.20 USD
    assert t["pnl_quote"] == pytest.approx(20_000.0 - 30.0 - 30.4)
    assert round(t["pnl"], 2) == round(20_000.0 / 152.0 - 0.20 - 0.20, 2) == 131.18
    assert round(t["commission"], 2) == 0.40
    # at bar 2's close the position is marked at 151.50 and the bar's closing rate
    assert e.equity[2] == pytest.approx(100_000.0 + 10_000 * 1.5 / 151.5 - 0.20)
    assert e.metrics["net_profit"] == pytest.approx(t["pnl"])


def test_gbpjpy_with_a_usdjpy_conversion_series_to_the_cent():
    fr = frame([189.0, 190.0, 190.5, 191.0, 191.0])
    usdjpy = frame([158.0, 159.0, 159.5, 160.0, 160.5])
    bt = BacktestConfig.tradingview(symbol="GBPJPY", qty=10_000.0)
    plan = conversion_plan(bt.instrument_spec(), "USD")
    assert (plan.kind, plan.pair, plan.invert) == ("pair", "USDJPY", True)
    rates = conversion_rates(plan, fr, usdjpy)
    e = Evaluator(fr, bt, rates=rates).run_signals(long_round_trip(5, 0, 2))
    t = e.trades.row(0, named=True)
    assert t["pnl_quote"] == pytest.approx(10_000.0)  # 10,000 x 1.000 JPY
    assert round(t["pnl"], 2) == 62.50  # at USDJPY 160.00, the exit bar's open


def test_conversion_series_is_aligned_causally():
    fr = frame([1.0, 1.0, 1.0, 1.0])
    pair = frame([10.0, 20.0, 40.0, 80.0]).filter(pl.col("open") != 20.0)  # the pair lacks bar 1
    plan = conversion_plan(instrument_spec("GBPJPY"), "USD")
    o, c = conversion_rates(plan, fr, pair)
    # bar 1 has no conversion bar: it takes the last close known before it (bar 0's), never bar 2's
    assert list(1 / o) == [10.0, 10.0, 40.0, 80.0]


def test_eurgbp_on_a_eur_account_to_the_cent():
    fr = frame([0.84900, 0.85000, 0.85500, 0.86000, 0.86000])
    bt = BacktestConfig.tradingview(symbol="EURGBP", qty=100_000.0, account_currency="EUR")
    plan = conversion_plan(bt.instrument_spec(), "EUR")
    assert plan.kind == "self_inverse"
    e = Evaluator(fr, bt, rates=conversion_rates(plan, fr)).run_signals(long_round_trip(5, 0, 2))
    t = e.trades.row(0, named=True)
    assert t["pnl_quote"] == pytest.approx(1_000.0)  # GBP
    assert round(t["pnl"], 2) == 1162.79  # 1,000 GBP / 0.86000


def test_slippage_uses_the_instruments_own_tick():
    fr = frame([190.0, 190.0, 191.0, 191.0])
    bt = BacktestConfig.tradingview(symbol="GBPJPY", slippage_ticks=2, conversion_rate=0.01)
    t = Evaluator(fr, bt).run_signals(long_round_trip(4, 0, 1)).trades.row(0, named=True)
    assert (t["entry_price"], t["exit_price"]) == pytest.approx((190.002, 190.998))


def test_unknown_symbol_names_the_keys_to_set():
    from aio.errors import ConfigError

    with pytest.raises(ConfigError, match=r"backtest\.instrument\.base.*backtest\.instrument\.quote"):
        instrument_spec("FOOBAR")
    spec = instrument_spec("FOOBAR", {"base": "foo", "quote": "usd", "mintick": 0.01})
    assert (spec.base, spec.quote, spec.mintick) == ("FOO", "USD", 0.01)


def test_a_cross_without_any_pair_is_refused_with_the_ways_out():
    from aio.errors import ConfigError

    with pytest.raises(ConfigError, match=r"account_currency=JPY.*conversion_rate"):
        conversion_plan(instrument_spec("GBPJPY"), "GBX")


# -- margin and ruin ------------------------------------------------------------------------------


def test_margin_call_liquidates_four_times_the_shortfall_at_the_adverse_extreme():
    # 40,000 units long at 1.00 on 10,000 equity with 10% margin; bar 2 trades down to 0.83
    fr = frame([1.0, 1.0, 0.95, 0.95], lows=[1.0, 1.0, 0.83, 0.95], closes=[1.0, 0.98, 0.95, 0.95])
    bt = BacktestConfig.tradingview(initial_capital=10_000.0, qty=40_000.0, margin_long=10.0)
    e = Evaluator(fr, bt).run_signals(long_round_trip(4, 0, 3))
    mc = e.trades.filter(pl.col("exit_signal") == "Margin call")
    # equity at 0.83: 10,000 - 40,000 x 0.17 = 3,200 < margin 40,000 x 0.83 x 10% = 3,320;
    # shortfall 40,000 - 3,200 / 0.083 = 1,445.78 units; x4 -> 5,783.13 -> 5,784 (whole units)
    assert mc.height == 1
    assert mc["qty"][0] == 5_784.0 and mc["exit_price"][0] == pytest.approx(0.83)
    assert mc["pnl"][0] == pytest.approx(5_784 * (0.83 - 1.0))
    assert e.metrics["margin_calls"] == 1 and any("margin call" in w for w in e.metrics["warnings"])


def test_ruin_stops_trading_and_voids_the_ratios():
    n = 30
    o = np.full(n, 1.0)
    o[5:] = 0.97  # a 3% drop against 10,000,000 units on 100,000 capital
    fr = frame(o)
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "market", flags(n, 1, 10, 20)),
                          OrderSlot("S", "entry", -1, "market", flags(n, 15, 25))])
    bt = BacktestConfig.tradingview(initial_capital=100_000.0, qty=10_000_000.0)
    e = Evaluator(fr, bt).run_signals(sig)
    assert e.metrics["ruin"]["bar"] == 5
    assert e.result.trades.height == 1 and e.result.trades["exit_signal"][0] == "Ruin"
    assert np.all(e.equity[5:] == e.equity[5])  # nothing traded after ruin
    for k in ("sharpe", "sortino", "calmar"):
        assert np.isnan(e.metrics[k]) and "ruin at bar 5" in e.metrics["undefined"][k]
    assert any(w.startswith("ruin") for w in e.metrics["warnings"])
    assert len(e.returns) == 6  # returns stop at the ruin bar


def test_too_few_trades_warns():
    fr = frame([1.0, 1.1, 1.2, 1.3])
    e = Evaluator(fr, BacktestConfig.tradingview()).run_signals(long_round_trip(4, 0, 1))
    assert "too few trades (1) to judge" in e.metrics["warnings"][0]


# -- the books' invariants --------------------------------------------------------------------------


def test_a_broken_book_is_an_error_naming_the_invariant(tv_bars):
    from aio.strategy import load_builtin, signals

    arrays = {c: tv_bars.col(c) for c in ("open", "high", "low", "close", "volume")}
    res = run_backtest(tv_bars, signals(load_builtin("tv_macd"), arrays), BacktestConfig.tradingview())
    check(res)  # intact books pass
    bad = res.raw_trades.copy()
    bad[3, 6] += 0.01  # one trade's P&L a cent off
    res.raw_trades = bad
    with pytest.raises(InvariantError, match="trade P&L sums to final equity"):
        check(res)
    res.raw_trades = bad - np.where(np.arange(bad.shape[1]) == 6, 0.0, 0.0)
    res.commission_total += 1.0
    res.raw_trades[3, 6] -= 0.01
    with pytest.raises(InvariantError, match="commissions add up"):
        check(res)


# -- one broker: stepping bar by bar equals the batch pass ----------------------------------------


def _stepped(fr, sig, bt, rates=None):
    b = Broker.for_signals(sig, bt)
    for t in range(fr.height):
        row = fr.row(t, named=True)
        ro, rc = (1.0, 1.0) if rates is None else (rates[0][t], rates[1][t])
        b.step(row["ts_event"], row["open"], row["high"], row["low"], row["close"], Decisions.at(sig, t),
               spread_mean=row["spread_mean"] if row["spread_mean"] is not None else float("nan"),
               rate_open=ro, rate_close=rc)
    return b.result()


@pytest.mark.parametrize("name", ["tv_rsi", "tv_macd", "tv_bbands"])
def test_stepping_equals_the_batch_pass_on_tradingview_bars(tv_bars, name):
    from aio.strategy import load_builtin, signals

    arrays = {c: tv_bars.col(c) for c in ("open", "high", "low", "close", "volume")}
    sig = signals(load_builtin(name), arrays)
    bt = BacktestConfig.tradingview()
    batch = run_backtest(tv_bars, sig, bt)
    step = _stepped(tv_bars.frame, sig, bt)
    assert batch.n_trades > 100
    np.testing.assert_array_equal(step.raw_trades, batch.raw_trades)
    np.testing.assert_array_equal(step.equity_values, batch.equity_values)


def test_stepping_equals_batch_with_brackets_sizes_costs_and_conversion():
    from aio.strategy import load_spec

    rng = np.random.default_rng(3)
    n = 3000
    c = 190.0 + np.cumsum(rng.normal(0, 0.05, n))
    o = np.concatenate([[190.0], c[:-1]])
    fr = frame(o, o.clip(min=c) + rng.uniform(0, 0.04, n), np.minimum(o, c) - rng.uniform(0, 0.04, n), c, spread=0.02)
    spec = load_spec({
        "name": "sma_atr", "params": {"fast": 10, "slow": 40},
        "space": {"fast": {"type": "int", "low": 2, "high": 50}, "slow": {"type": "int", "low": 5, "high": 200}},
        "indicators": {"f": {"fn": "SMA", "inputs": {"close": "close"}, "params": {"timeperiod": "fast"}},
                       "s": {"fn": "SMA", "inputs": {"close": "close"}, "params": {"timeperiod": "slow"}}},
        "rules": [{"id": "L", "when": "crossover(f, s)", "action": "entry", "direction": "long"},
                  {"id": "S", "when": "crossunder(f, s)", "action": "entry", "direction": "short"}],
        "exit": {"stop_atr": 2.0, "take_atr": 3.0, "atr_length": 14},
    })
    bt = BacktestConfig(symbol="GBPJPY", qty=10_000.0)
    usdjpy = frame(150.0 + np.cumsum(rng.normal(0, 0.03, n)))
    rates = conversion_rates(conversion_plan(bt.instrument_spec(), "USD"), fr, usdjpy)
    ev = Evaluator(fr, bt, sizer={"name": "vol_target", "risk_pct": 0.5}, rates=rates)
    e = ev.run(spec)
    assert e.result.n_trades > 20 and (e.trades["exit_signal"] == "Exit").any()
    step = _stepped(fr, e.signals, bt, rates)
    np.testing.assert_array_equal(step.raw_trades, e.result.raw_trades)
    np.testing.assert_array_equal(step.equity_values, e.result.equity_values)
    check(step)


def _busy_book(seed: int, capital: float, margin: float):
    """Random bars (some without a spread) and every kind of order: market, stop and limit
    entries in an OCA group, cancel-when-false, a side-specific limit close, price
    brackets, sizer units, pyramiding and margin."""
    rng = np.random.default_rng(seed)
    n = 1500
    c = np.abs(1.1 + np.cumsum(rng.normal(0, 0.004, n))) + 0.05
    o = np.concatenate([[c[0]], c[:-1]])
    sp = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 0.0004, n))  # NaN: a bar without quotes
    fr = frame(o, np.maximum(o, c) + rng.uniform(0, 0.003, n), np.minimum(o, c) - rng.uniform(0, 0.003, n), c)
    fr = fr.with_columns(pl.Series("spread_mean", sp))
    w = [rng.random(n) < p for p in (0.03, 0.03, 0.05, 0.05, 0.02, 0.04)]
    sig = Signals(
        orders=[OrderSlot("L", "entry", 1, "market", w[0]), OrderSlot("S", "entry", -1, "market", w[1]),
                OrderSlot("LS", "entry", 1, "stop", w[2], price=c + rng.uniform(0, 0.004, n), cancel_when_false=True,
                          oca="g"),
                OrderSlot("SL", "entry", -1, "limit", w[3], price=c + rng.uniform(-0.001, 0.004, n), oca="g"),
                OrderSlot("X", "close", 0, "market", w[4]),
                OrderSlot("XL", "close", 1, "limit", w[5], price=c + rng.uniform(0, 0.003, n))],
        brackets=Brackets(stop_long=c - 0.005, limit_long=c + 0.007, stop_short=c + 0.005,
                          limit_short=np.where(rng.random(n) < 0.2, np.nan, c - 0.007)),
        size=np.where(rng.random(n) < 0.1, np.nan, rng.uniform(1000, 30000, n)),
    )
    bt = BacktestConfig(initial_capital=capital, qty=20_000.0, pyramiding=2, use_spread=True, margin_long=margin,
                        margin_short=margin, commission_type="cash_per_contract", commission=0.00005)
    return fr, sig, bt


@pytest.mark.parametrize("capital, margin, margin_calls, ruin_exit", [
    (10_000.0, 30.0, True, None),  # margin calls, no ruin
    (150.0, 10.0, True, False),  # margin calls, then ruin with nothing left open
    (500.0, 0.0, False, True),  # no margin: ruin closes the open position at the close
])
def test_stepping_equals_batch_with_stops_limits_margin_calls_and_ruin(capital, margin, margin_calls, ruin_exit):
    # Bars without a spread (NaN spread_mean) once put NaN prices into the batch pass's
    # margin-call trades while the stepped broker booked them at the extreme.
    fr, sig, bt = _busy_book(4, capital, margin)
    batch = run_backtest(fr, sig, bt)
    step = _stepped(fr, sig, bt)
    entries, exits = set(batch.raw_trades[:, 8].astype(int)), set(batch.raw_trades[:, 9].astype(int))
    assert {2, 3} <= entries and {-1, -2} <= exits  # stop and limit entries filled; bracket stop and take
    assert (batch.margin_calls > 0) == margin_calls and (-4 in exits) == margin_calls
    assert (batch.ruin_bar is not None) == (ruin_exit is not None) and (-5 in exits) == bool(ruin_exit)
    assert not np.isnan(batch.raw_trades).any() and not np.isnan(batch.equity_values).any()
    np.testing.assert_array_equal(step.raw_trades, batch.raw_trades)
    np.testing.assert_array_equal(step.equity_values, batch.equity_values)
    np.testing.assert_array_equal(step.position_values, batch.position_values)
    assert (step.ruin_bar, step.margin_calls, step.commission_total) == (
        batch.ruin_bar, batch.margin_calls, batch.commission_total)
    check(batch)


def test_broker_state_snapshot_resumes_identically(tv_bars):
    from aio.strategy import load_builtin, signals

    fr = tv_bars.frame.slice(0, 3000)
    arrays = {c: fr[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    sig = signals(load_builtin("tv_bbands"), arrays)
    bt = BacktestConfig.tradingview()
    whole = _stepped(fr, sig, bt)
    a = Broker.for_signals(sig, bt)
    rows = list(fr.iter_rows(named=True))
    for t, row in enumerate(rows[:1700]):
        a.step(row["ts_event"], row["open"], row["high"], row["low"], row["close"], Decisions.at(sig, t))
    b = Broker.for_signals(sig, bt)
    b.restore(a.snapshot())  # as a restarted process would from its journal
    for t, row in enumerate(rows[1700:], start=1700):
        b.step(row["ts_event"], row["open"], row["high"], row["low"], row["close"], Decisions.at(sig, t))
    np.testing.assert_array_equal(b.result().raw_trades, whole.raw_trades)


# -- the real GBPJPY ticks of December 2012 through the loopback datafeed ------------------------


@pytest.fixture()
def gbpjpy_mirror(dukascopy_dir):
    from aio.data.dukascopy.mirror import Mirror

    with Mirror(root=dukascopy_dir / "ninety47") as m:
        yield m


def _run_cli(tmp_path, mirror, *over):
    # 15M JPY (about 100k USD in 2012): the default 100,000 would be about 1,200 USD
    args = [sys.executable, "-m", "aio", "data=dukascopy", "data.symbol=GBPJPY", "data.start=2012-12-03",
            "data.end=2012-12-04", f"data.base_url={mirror.base_url}", f"data.cache_dir={tmp_path / 'raw'}",
            f"data.catalog_dir={tmp_path / 'cat'}", "data.progress=false", "strategy=sma_cross",
            "backtest.initial_capital=15000000", *over]
    if not any(o.startswith("hydra.run.dir=") for o in over):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)


@pytest.mark.slow
def test_real_gbpjpy_on_a_jpy_account_balances_and_slips_in_yen(tmp_path, gbpjpy_mirror):
    import json

    p = _run_cli(tmp_path, gbpjpy_mirror, "backtest.account_currency=JPY")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["account"]["conversion"].startswith("P&L is in JPY")
    trades = pl.read_csv(tmp_path / "run" / "trades.csv")
    assert trades.height > 5 and m["backtest"]["ruin"] is None
    assert trades["pnl"].sum() == pytest.approx(m["backtest"]["net_profit"], rel=1e-9)
    np.testing.assert_allclose(trades["pnl"].to_numpy(), trades["pnl_quote"].to_numpy(), rtol=1e-12)
    # slippage 2 ticks of 0.001 JPY: re-run without it, every fill moves by exactly 0.002 (plus no spread)
    p = _run_cli(tmp_path, gbpjpy_mirror, "backtest.account_currency=JPY", "backtest.slippage_ticks=0",
                 "backtest.use_spread=false", f"hydra.run.dir={tmp_path / 'run0'}")
    assert p.returncode == 0, p.stderr[-3000:]
    p2 = _run_cli(tmp_path, gbpjpy_mirror, "backtest.account_currency=JPY", "backtest.use_spread=false",
                  f"hydra.run.dir={tmp_path / 'run2'}")
    assert p2.returncode == 0, p2.stderr[-3000:]
    t0 = pl.read_csv(tmp_path / "run0" / "trades.csv")
    t2 = pl.read_csv(tmp_path / "run2" / "trades.csv")
    assert t0.height == t2.height > 5
    side = np.where(t0["side"].to_numpy() == "long", 1.0, -1.0)
    np.testing.assert_allclose(t2["entry_price"].to_numpy() - t0["entry_price"].to_numpy(), side * 0.002, atol=1e-9)


@pytest.mark.slow
def test_real_gbpjpy_on_a_usd_account_without_usdjpy_fails_up_front(tmp_path, gbpjpy_mirror):
    p = _run_cli(tmp_path, gbpjpy_mirror)
    assert p.returncode != 0
    err = p.stderr
    assert "USDJPY" in err and "backtest.account_currency=JPY" in err and "backtest.conversion_rate" in err
    # before any work: not one GBPJPY hour was requested
    assert not any(r.startswith("GBPJPY") for r in gbpjpy_mirror.requests())
