"""The stepped broker's quiet-bar shortcut (no compiled call on a bar with nothing pending,
nothing decided and no bracket or margin to watch) leaves exactly the state the compiled
bar loop leaves: every array of the book, bar by bar."""

from __future__ import annotations

import numpy as np
import pytest

from aio.backtest import BacktestConfig, Brackets, OrderSlot, Signals
from aio.backtest.broker import Broker, Decisions


def _book(seed: int, brackets: bool, capital: float, pyramiding: int):
    rng = np.random.default_rng(seed)
    n = 2000
    c = np.abs(1.1 + np.cumsum(rng.normal(0, 0.004, n))) + 0.05
    o = np.concatenate([[c[0]], c[:-1]])
    h = np.maximum(o, c) + rng.uniform(0, 0.003, n)
    lo = np.minimum(o, c) - rng.uniform(0, 0.003, n)
    sp = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 0.0004, n))
    w = [rng.random(n) < p for p in (0.02, 0.02, 0.01)]
    sig = Signals(
        orders=[OrderSlot("L", "entry", 1, "market", w[0]), OrderSlot("S", "entry", -1, "market", w[1]),
                OrderSlot("X", "close", 0, "market", w[2])],
        brackets=Brackets(stop_long=c - 0.005, limit_long=c + 0.007, stop_short=c + 0.005,
                          limit_short=c - 0.007) if brackets else None)
    bt = BacktestConfig(initial_capital=capital, qty=20_000.0, pyramiding=pyramiding, use_spread=True,
                        commission_type="cash_per_contract", commission=0.00005)
    rates = rng.uniform(0.9, 1.1, (2, n))  # open and close conversion rates
    return (o, h, lo, c, sp, rates), sig, bt


def _state(b: Broker) -> list[np.ndarray]:
    n = int(b.ist[2])
    return [b.lots[: int(b.ist[0])], b.ist, b.st, b.pend, b.pf, b.tr[:n], np.asarray(b.equity),
            np.asarray(b.position)]


@pytest.mark.parametrize("brackets, capital, pyramiding", [
    (False, 100_000.0, 1), (False, 100_000.0, 3), (True, 100_000.0, 2), (False, 3000.0, 2)])
def test_quiet_bar_shortcut_leaves_the_compiled_loops_state(brackets, capital, pyramiding):
    (o, h, lo, c, sp, rates), sig, bt = _book(7, brackets, capital, pyramiding)
    fast, slow = Broker.for_signals(sig, bt), Broker.for_signals(sig, bt)
    slow._may_quiet = False  # every bar through the compiled call
    for t in range(len(c)):
        d = Decisions.at(sig, t)
        for b in (fast, slow):
            b.step(1_000 + t, o[t], h[t], lo[t], c[t], d, spread_mean=sp[t], rate_open=rates[0, t],
                   rate_close=rates[1, t])
        for x, y in zip(_state(fast), _state(slow)):
            np.testing.assert_array_equal(x, y, err_msg=f"bar {t}")
    ruin = capital < 10_000  # the small account is ruined; the ruined bars take the compiled path
    assert fast.quiet_bars > (100 if ruin else len(c) // 2) and slow.quiet_bars == 0
    assert fast.n_trades > 10
    r1, r2 = fast.result(), slow.result()
    np.testing.assert_array_equal(r1.raw_trades, r2.raw_trades)
    np.testing.assert_array_equal(r1.equity_values, r2.equity_values)
    assert r1.ruin_bar == r2.ruin_bar and (r1.ruin_bar is not None) == ruin
