"""Fill rules of the simulator on tiny hand-made bars; every expected number is worked
out by hand from TradingView's documented broker-emulator rules (see docs/backtest.md)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from aio.backtest import (
    BacktestConfig,
    Brackets,
    OrderSlot,
    Signals,
    run_backtest,
    write_equity_parquet,
    write_trades_csv,
)
from aio.errors import ConfigError

HOUR = 3_600_000_000_000
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z


def bars(rows, spread=None) -> pl.DataFrame:
    """OHLC rows -> BAR_SCHEMA frame of 1h bars from 2024-01-01T00:00Z."""
    n = len(rows)
    o, h, l, c = (np.array([r[i] for r in rows], dtype=float) for i in range(4))
    assert np.all(h >= np.maximum(o, c)) and np.all(l <= np.minimum(o, c)), "malformed test bar"
    ts = T0 + HOUR * np.arange(n, dtype=np.int64)
    return pl.DataFrame({
        "ts_event": ts, "ts_init": ts + HOUR, "open": o, "high": h, "low": l, "close": c,
        "volume": np.zeros(n), "ticks": np.zeros(n, dtype=np.int64),
        "spread_mean": np.full(n, np.nan) if spread is None else np.asarray(spread, dtype=float),
    })


def flags(n, *idx) -> np.ndarray:
    w = np.zeros(n, dtype=bool)
    w[list(idx)] = True
    return w


def prices(n, values: dict[int, float]) -> np.ndarray:
    p = np.full(n, np.nan)
    for i, v in values.items():
        p[i] = v
    return p


def rows(result) -> list[tuple]:
    t = result.trades
    return list(zip(t["side"], t["entry_bar"], t["entry_price"], t["exit_bar"], t["exit_price"],
                    t["entry_signal"], t["exit_signal"]))


CFG = BacktestConfig.tradingview(initial_capital=1000.0, mintick=0.01)

FIVE = [  # o, h, l, c
    (10.0, 11.0, 9.0, 10.0),
    (10.5, 12.0, 10.0, 11.0),
    (11.2, 12.0, 11.0, 11.5),
    (11.4, 11.6, 10.0, 10.2),
    (10.1, 10.5, 9.5, 10.0),
]


def test_market_orders_fill_next_open_and_reverse():
    b = bars(FIVE)
    sig = Signals(orders=[
        OrderSlot("L", "entry", 1, "market", flags(5, 0)),
        OrderSlot("S", "entry", -1, "market", flags(5, 2)),
    ])
    r = run_backtest(b, sig, CFG)
    # long decided at bar 0's close fills at bar 1's open; the short decided at bar 2
    # reverses it at bar 3's open; the short is still open at the end: last close, "Open".
    assert rows(r) == [
        ("long", 1, 10.5, 3, 11.4, "L", "S"),
        ("short", 3, 11.4, 4, 10.0, "S", "Open"),
    ]
    assert r.trades["pnl"].to_list() == pytest.approx([0.9, 1.4])
    # equity at each close: 1000 | +0.5 open | +1.0 open | 0.9 realised + 1.2 open | 0.9 + 1.4
    assert r.equity["equity"].to_list() == pytest.approx([1000.0, 1000.5, 1001.0, 1002.1, 1002.3])
    assert r.equity["position"].to_list() == [0.0, 1.0, 1.0, -1.0, -1.0]
    # drawdown from the running peak (initial capital included): none here
    assert r.equity["drawdown"].to_list() == pytest.approx([0.0] * 5)
    # times are the fill bars' open times
    assert r.trades["entry_time"][0] == pl.Series([T0 + HOUR]).cast(pl.Datetime("ns", "UTC"))[0]


def test_pyramiding_zero_ignores_same_direction_entry_and_two_allows_two():
    b = bars(FIVE)
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "market", flags(5, 0, 1))])
    r = run_backtest(b, sig, CFG)
    assert rows(r) == [("long", 1, 10.5, 4, 10.0, "L", "Open")]
    r2 = run_backtest(b, sig, BacktestConfig(**{**CFG.__dict__, "pyramiding": 2}))
    assert rows(r2) == [("long", 1, 10.5, 4, 10.0, "L", "Open"), ("long", 2, 11.2, 4, 10.0, "L", "Open")]
    assert r2.equity["position"].to_list() == [0.0, 1.0, 2.0, 2.0, 2.0]


STOP_BARS = [
    (10.0, 10.2, 9.8, 10.0),
    (10.0, 11.5, 9.9, 11.0),  # does not reach 12
    (11.8, 12.3, 11.5, 12.1),  # reaches 12 from below
    (12.0, 12.2, 8.5, 9.0),  # falls through 9
    (9.0, 9.5, 8.8, 9.2),
]


def test_stop_entry_persists_until_touched_and_fills_at_the_stop():
    b = bars(STOP_BARS)
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "stop", flags(5, 0), price=prices(5, {0: 12.0}))])
    r = run_backtest(b, sig, CFG)
    assert rows(r) == [("long", 2, 12.0, 4, 9.2, "L", "Open")]


def test_stop_entry_gapped_past_fills_at_the_open():
    b = bars(STOP_BARS)
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "stop", flags(5, 1), price=prices(5, {1: 11.5}))])
    # bar 2 opens at 11.8, already above the 11.5 stop: filled at the open
    assert rows(run_backtest(b, sig, CFG)) == [("long", 2, 11.8, 4, 9.2, "L", "Open")]


def test_stop_entry_cancelled_at_a_close_where_the_condition_is_false():
    b = bars(STOP_BARS)
    slot = OrderSlot("L", "entry", 1, "stop", flags(5, 0), price=prices(5, {0: 12.0}), cancel_when_false=True)
    assert run_backtest(b, Signals(orders=[slot]), CFG).n_trades == 0
    # re-armed at bar 1's close it survives into bar 2 and fills
    slot.when = flags(5, 0, 1)
    slot.price = prices(5, {0: 12.0, 1: 12.0})
    assert rows(run_backtest(b, Signals(orders=[slot]), CFG)) == [("long", 2, 12.0, 4, 9.2, "L", "Open")]


def test_oca_cancel_and_reversal_by_a_stop_entry():
    b = bars(STOP_BARS)

    def slots(oca):
        return [
            OrderSlot("L", "entry", 1, "stop", flags(5, 0), price=prices(5, {0: 12.0}), oca=oca),
            OrderSlot("S", "entry", -1, "stop", flags(5, 0), price=prices(5, {0: 9.0}), oca=oca),
        ]

    # without OCA the short stop at 9 stays and reverses the long in bar 3 (at 9.0)
    assert rows(run_backtest(b, Signals(orders=slots(None)), CFG)) == [
        ("long", 2, 12.0, 3, 9.0, "L", "S"),
        ("short", 3, 9.0, 4, 9.2, "S", "Open"),
    ]
    # in one OCA cancel group, the long's fill cancels the short stop
    assert rows(run_backtest(b, Signals(orders=slots("g")), CFG)) == [("long", 2, 12.0, 4, 9.2, "L", "Open")]


def test_stop_price_snaps_to_the_tick_grid_against_the_trader():
    b = bars([(1.13, 1.131, 1.129, 1.13), (1.133, 1.135, 1.1330, 1.134), (1.134, 1.1345, 1.1300, 1.131),
              (1.131, 1.132, 1.130, 1.131)])
    sig = Signals(orders=[
        OrderSlot("L", "entry", 1, "stop", flags(4, 0), price=prices(4, {0: 1.1339334})),
        OrderSlot("S", "entry", -1, "stop", flags(4, 1), price=prices(4, {1: 1.1327251})),
    ])
    r = run_backtest(b, sig, BacktestConfig.tradingview(mintick=1e-5))
    # buy stop 1.1339334 -> 1.13394 (first tick at or above); sell stop 1.1327251 -> 1.13272
    assert rows(r) == [("long", 1, 1.13394, 2, 1.13272, "L", "S"), ("short", 2, 1.13272, 3, 1.131, "S", "Open")]


def test_limit_entry_fills_at_the_limit_or_better_open():
    b = bars([(10.0, 10.2, 9.8, 10.0), (9.8, 9.9, 9.4, 9.6), (9.3, 9.6, 9.2, 9.5)])
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "limit", flags(3, 0), price=prices(3, {0: 9.5}))])
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 9.5, 2, 9.5, "L", "Open")]
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "limit", flags(3, 1), price=prices(3, {1: 9.5}))])
    # bar 2 opens at 9.3 below the 9.5 limit: filled at the better open price
    assert rows(run_backtest(b, sig, CFG)) == [("long", 2, 9.3, 2, 9.5, "L", "Open")]


def _long_then(bar2, stop=9.0, take=11.0, **extra):
    b = bars([(10.0, 10.1, 9.9, 10.0), (10.0, 10.5, 9.5, 10.0), bar2, (10.0, 10.2, 9.8, 10.0)])
    n = 4
    br = Brackets(stop_long=np.full(n, stop), limit_long=np.full(n, take), id="Exit", **extra)
    return b, Signals(orders=[OrderSlot("L", "entry", 1, "market", flags(n, 0))], brackets=br)


def test_bracket_take_profit_first_when_high_is_nearer_the_open():
    # open 10, high 11.2 (1.2 away), low 8.5 (1.5 away): open->high->low, take profit at 11
    b, sig = _long_then((10.0, 11.2, 8.5, 9.0))
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 10.0, 2, 11.0, "L", "Exit")]


def test_bracket_stop_loss_first_when_low_is_nearer_the_open():
    # open 10, high 11.5 (1.5 away), low 8.8 (1.2 away): open->low->high, stop at 9
    b, sig = _long_then((10.0, 11.5, 8.8, 11.0))
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 10.0, 2, 9.0, "L", "Exit")]


def test_bracket_gap_through_the_stop_fills_at_the_open():
    b, sig = _long_then((8.7, 9.2, 8.6, 9.0))
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 10.0, 2, 8.7, "L", "Exit")]


def test_bracket_can_exit_on_the_entry_bar():
    # the exit is placed with the entry: stop 9.6 is active from the entry fill at bar 1's open
    b, sig = _long_then((10.0, 10.1, 9.9, 10.0), stop=9.6)
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 10.0, 1, 9.6, "L", "Exit")]


def test_distance_brackets_are_fixed_from_the_entry_price():
    b = bars([(10.0, 10.1, 9.9, 10.0), (10.2, 10.5, 10.0, 10.3), (10.3, 10.4, 9.6, 9.8), (9.8, 9.9, 9.7, 9.8)])
    n = 4
    # distance 0.5 decided at bar 0 (the entry's decision bar) -> stop at 10.2 - 0.5 = 9.7 for the
    # trade; the later distances (9.0) must not move it
    br = Brackets(stop_dist=np.array([0.5, 9.0, 9.0, 9.0]), take_dist=np.array([1.0, 9.0, 9.0, 9.0]))
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "market", flags(n, 0))], brackets=br)
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 10.2, 2, 9.7, "L", "Exit")]


def test_close_action_exits_at_next_open_and_does_nothing_when_flat():
    b = bars(FIVE)
    sig = Signals(orders=[
        OrderSlot("L", "entry", 1, "market", flags(5, 0)),
        OrderSlot("X", "close", 1, "market", flags(5, 2, 3)),
    ])
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 10.5, 3, 11.4, "L", "X")]
    # a close for the short side leaves a long alone
    sig.orders[1].direction = -1
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 10.5, 4, 10.0, "L", "Open")]


def test_process_orders_on_close_fills_at_the_signal_bar_close():
    b = bars(FIVE)
    sig = Signals(orders=[
        OrderSlot("L", "entry", 1, "market", flags(5, 0)),
        OrderSlot("S", "entry", -1, "market", flags(5, 2)),
    ])
    cfg = BacktestConfig(**{**CFG.__dict__, "process_orders_on_close": True})
    assert rows(run_backtest(b, sig, cfg)) == [("long", 0, 10.0, 2, 11.5, "L", "S"),
                                              ("short", 2, 11.5, 4, 10.0, "S", "Open")]


ROUND_TRIP = [(100.0, 101.0, 99.0, 100.0), (100.0, 101.0, 99.0, 100.0), (110.0, 111.0, 109.0, 110.0),
              (110.0, 111.0, 109.0, 110.0)]


def _round_trip(cfg, spread=None):
    b = bars(ROUND_TRIP, spread=spread)
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "market", flags(4, 0)),
                          OrderSlot("X", "close", 0, "market", flags(4, 1))])
    return run_backtest(b, sig, cfg)


def test_percent_commission_per_order():
    cfg = BacktestConfig.tradingview(initial_capital=1000.0, commission_type="percent", commission=0.1,
                         use_spread=False, mintick=0.01)
    r = _round_trip(cfg)
    # 0.1% of 100 at entry + 0.1% of 110 at exit = 0.1 + 0.11
    assert r.trades["commission"][0] == pytest.approx(0.21)
    assert r.trades["pnl"][0] == pytest.approx(10.0 - 0.21)
    assert r.equity["equity"][-1] == pytest.approx(1000.0 + 10.0 - 0.21)
    # the entry commission is paid at entry: bar 1's equity is 1000 - 0.1 (no open P&L at 100)
    assert r.equity["equity"][1] == pytest.approx(999.9)


def test_cash_commissions():
    base = dict(initial_capital=1000.0, qty=3.0, use_spread=False, mintick=0.01)
    r = _round_trip(BacktestConfig.tradingview(**base, commission_type="cash_per_order", commission=2.0))
    assert r.trades["commission"][0] == pytest.approx(4.0)  # 2 per order, two orders
    r = _round_trip(BacktestConfig.tradingview(**base, commission_type="cash_per_contract", commission=0.5))
    assert r.trades["commission"][0] == pytest.approx(3.0)  # 0.5 x 3 units, two orders
    assert r.trades["pnl"][0] == pytest.approx(3 * 10.0 - 3.0)


def test_slippage_ticks_and_spread():
    r = _round_trip(BacktestConfig.tradingview(slippage_ticks=2, mintick=0.01))
    # buy 2 ticks higher, sell 2 ticks lower
    assert (r.trades["entry_price"][0], r.trades["exit_price"][0]) == pytest.approx((100.02, 109.98))
    spread = [0.1, 0.04, 0.06, 0.1]  # full spread per bar; the fill bar's applies
    r = _round_trip(BacktestConfig.tradingview(mintick=0.01, use_spread=True), spread=spread)
    assert (r.trades["entry_price"][0], r.trades["exit_price"][0]) == pytest.approx((100.02, 109.97))
    r = _round_trip(BacktestConfig.tradingview(mintick=0.01), spread=spread)
    assert (r.trades["entry_price"][0], r.trades["exit_price"][0]) == pytest.approx((100.0, 110.0))


def test_qty_types_and_sizer_sizes():
    # percent_of_equity: 50% of equity 1000 at the decision close 100 -> 5 units
    r = _round_trip(BacktestConfig.tradingview(initial_capital=1000.0, qty_type="percent_of_equity", qty=50.0,
                                   use_spread=False))
    assert r.trades["qty"][0] == pytest.approx(5.0)
    # cash: 250 at close 100 -> 2.5 units, rounded down to the instrument's quantity step
    r = _round_trip(BacktestConfig.tradingview(initial_capital=1000.0, qty_type="cash", qty=250.0,
                                               instrument={"qty_step": 0.1, "qty_min": 0.1}))
    assert r.trades["qty"][0] == pytest.approx(2.5)
    r = _round_trip(BacktestConfig.tradingview(initial_capital=1000.0, qty_type="cash", qty=250.0))
    assert r.trades["qty"][0] == pytest.approx(2.0)  # EURUSD's step: 1 unit
    # Signals.size overrides, taken from the decision bar; its audit steps become columns
    b = bars(ROUND_TRIP)
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "market", flags(4, 0)),
                          OrderSlot("X", "close", 0, "market", flags(4, 1))],
                  size=np.array([3.0, np.nan, np.nan, np.nan]),
                  size_steps={"kelly": np.array([4.0, 0, 0, 0]), "cap": np.array([3.0, 0, 0, 0])})
    r = run_backtest(b, sig, CFG)
    assert r.trades["qty"][0] == 3.0
    assert r.trades["pnl"][0] == pytest.approx(30.0)
    assert (r.trades["size_kelly"][0], r.trades["size_cap"][0]) == (4.0, 3.0)


def test_writers(tmp_path):
    b = bars(FIVE)
    sig = Signals(orders=[OrderSlot("L", "entry", 1, "market", flags(5, 0)),
                          OrderSlot("S", "entry", -1, "market", flags(5, 2))])
    r = run_backtest(b, sig, CFG)
    text = write_trades_csv(r, tmp_path / "trades.csv").read_text().splitlines()
    assert text[0].startswith("id,side,entry_time,entry_price,exit_time,exit_price,qty,pnl,pnl_quote,entry_signal,exit_signal")
    assert text[0].endswith(",synthetic")
    assert text[1].split(",")[2] == "2024-01-01T01:00:00Z"  # bar 1's open
    eq = pl.read_parquet(write_equity_parquet(r, b, tmp_path / "equity.parquet"))
    assert eq.columns[:4] == ["ts_init", "equity", "position", "drawdown"]
    assert eq["ts_init"].to_list() == b["ts_init"].to_list()


def test_bad_signals_name_the_problem():
    b = bars(FIVE)
    with pytest.raises(ConfigError, match="'when' has shape"):
        run_backtest(b, Signals(orders=[OrderSlot("L", "entry", 1, "market", np.zeros(3, bool))]), CFG)
    with pytest.raises(ConfigError, match="has no price"):
        run_backtest(b, Signals(orders=[OrderSlot("L", "entry", 1, "stop", flags(5, 0))]), CFG)
    r = run_backtest(b, Signals(), CFG)
    assert r.n_trades == 0 and math.isclose(r.net_profit, 0.0)


def test_intrabar_reversal_by_stop_entry_then_the_new_sides_bracket():
    b = bars([(10.0, 10.1, 9.9, 10.0), (10.0, 10.2, 9.9, 10.1), (10.0, 10.3, 9.0, 10.2), (10.2, 10.3, 10.1, 10.2)])
    n = 4
    sig = Signals(
        orders=[OrderSlot("L", "entry", 1, "market", flags(n, 0)),
                OrderSlot("S", "entry", -1, "stop", flags(n, 1), price=prices(n, {1: 9.5}))],
        brackets=Brackets(stop_long=np.full(n, 9.2), stop_short=np.full(n, 10.0)),
    )
    # bar 2: high (0.3 away) before low (1.0 away): 10 -> 10.3 -> 9.0 -> 10.2. Falling from
    # 10.3 the short stop at 9.5 reverses the long before its own stop at 9.2 is reached;
    # rising from 9.0 to 10.2 the short's stop at 10.0 closes it in the same bar.
    assert rows(run_backtest(b, sig, CFG)) == [("long", 1, 10.0, 2, 9.5, "L", "S"),
                                              ("short", 2, 9.5, 2, 10.0, "S", "Exit")]


def test_backtest_yamls_are_the_dataclass_defaults():
    """Each default in one place: default.yaml is BacktestConfig(), tradingview.yaml
    (which inherits it) is BacktestConfig.tradingview()."""
    from pathlib import Path

    import yaml

    from aio.config import build

    conf = Path(__file__).resolve().parent.parent / "conf" / "backtest"
    base = yaml.safe_load((conf / "default.yaml").read_text())
    assert set(base) == {f for f in BacktestConfig.__dataclass_fields__}
    assert build(BacktestConfig, base, "backtest") == BacktestConfig()
    tv = yaml.safe_load((conf / "tradingview.yaml").read_text())
    assert tv.pop("defaults") == ["default", "_self_"]
    assert build(BacktestConfig, {**base, **tv}, "backtest") == BacktestConfig.tradingview()
