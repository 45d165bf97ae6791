"""Benchmark: TradingView's MACD strategy on the 23k-bar EURUSD 1h reference, aio vs backtesting.py.

Both sides run the same strategy: delta = EMA12 - EMA26 - EMA9(that) via talib; long on
crossover(delta, 0), short on crossunder(delta, 0) (TradingView's definitions), market
orders filled at the next bar's open, an entry reversing the open position, 1 unit, no
costs. Each timed call includes the signal
computation and produces the trade list. The trades must be identical (entry/exit bars
and prices; the position still open at the end is closed at the last close by aio, as
TradingView does, and at the last bar's open by backtesting.py). Prints one JSON object as its last line; ratio = peer time / aio time.

    python benchmarks/backtest.py [--reference-dir DIR] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import talib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aio.backtest import BacktestConfig, OrderSlot, Signals, bar_arrays, run_backtest  # noqa: E402
from aio.backtest.tradingview import load_tv_ohlcv  # noqa: E402


def reference_dir(arg: str | None) -> Path:
    for cand in (arg, os.environ.get("AIO_REFERENCE_DIR"), REPO.parent / "shared" / "reference"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    sys.exit("reference data not found: pass --reference-dir or set AIO_REFERENCE_DIR")


def macd_delta(close: np.ndarray) -> np.ndarray:
    macd = talib.EMA(close, 12) - talib.EMA(close, 26)
    return macd - talib.EMA(macd, 9)


# --- aio -----------------------------------------------------------------------------------

def aio_run(arrays: dict, cfg: BacktestConfig):
    close = arrays["close"]
    d = macd_delta(close)
    prev = np.concatenate(([np.nan], d[:-1]))
    with np.errstate(invalid="ignore"):
        up = (d > 0) & (prev <= 0)
        down = (d < 0) & (prev >= 0)
    sig = Signals(orders=[OrderSlot("MacdLE", "entry", 1, "market", up),
                          OrderSlot("MacdSE", "entry", -1, "market", down)])
    result = run_backtest(arrays, sig, cfg)
    return result, result.trades  # the trade table is part of the work, as in the peer's stats


# --- backtesting.py ------------------------------------------------------------------------

def peer_frame(bars):
    import pandas as pd

    idx = pd.to_datetime(bars["ts_event"].to_numpy(), utc=True)
    return pd.DataFrame({
        "Open": bars["open"].to_numpy(), "High": bars["high"].to_numpy(), "Low": bars["low"].to_numpy(),
        "Close": bars["close"].to_numpy(), "Volume": bars["volume"].to_numpy(),
    }, index=idx)


def peer_run(df):
    from backtesting import Backtest, Strategy

    class MacdStrategy(Strategy):
        def init(self):
            self.delta = self.I(lambda c: macd_delta(np.asarray(c, dtype=float)), self.data.Close)

        def next(self):
            d = self.delta
            if len(d) < 2 or np.isnan(d[-1]) or np.isnan(d[-2]):
                return
            if d[-1] > 0 and d[-2] <= 0:
                self.buy(size=1)
            elif d[-1] < 0 and d[-2] >= 0:
                self.sell(size=1)

    bt = Backtest(df, MacdStrategy, cash=1_000_000, commission=0.0, trade_on_close=False,
                  exclusive_orders=True, finalize_trades=True)
    stats = bt.run()
    return stats["_trades"]


def best_of(fn, repeats: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference-dir")
    ap.add_argument("--repeats", type=int, default=20, help="aio repetitions (the peer runs 3)")
    args = ap.parse_args()
    ref = reference_dir(args.reference_dir)
    bars = load_tv_ohlcv(ref / "tradingview" / "ohlcv.csv")
    arrays = bar_arrays(bars)
    cfg = BacktestConfig.tradingview(mintick=1e-5)

    t = time.perf_counter()
    aio_run(arrays, cfg)  # numba: compile or load the cached machine code
    warmup = time.perf_counter() - t
    aio_min, aio_med, (result, ours) = best_of(lambda: aio_run(arrays, cfg), args.repeats)

    df = peer_frame(bars)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer_min, peer_med, theirs = best_of(lambda: peer_run(df), 3)

    a = np.column_stack([ours["entry_bar"].to_numpy(), ours["exit_bar"].to_numpy()])
    b = np.column_stack([theirs["EntryBar"].to_numpy(), theirs["ExitBar"].to_numpy()])
    same_bars = a.shape == b.shape and bool(np.array_equal(a, b))
    # The trade still open at the end is closed by convention: TradingView (and aio) at
    # the last close, backtesting.py's finalize_trades at the last bar's open. Every
    # other price must agree exactly; the last exit must follow each side's convention.
    last_open, last_close = float(bars["open"][-1]), float(bars["close"][-1])
    same_prices = same_bars and bool(
        np.allclose(ours["entry_price"].to_numpy(), theirs["EntryPrice"].to_numpy(), atol=1e-9, rtol=0)
        and np.allclose(ours["exit_price"].to_numpy()[:-1], theirs["ExitPrice"].to_numpy()[:-1], atol=1e-9, rtol=0)
        and ours["exit_price"][-1] == last_close and ours["exit_signal"][-1] == "Open"
        and float(theirs["ExitPrice"].iloc[-1]) == last_open
    )
    same_side = same_bars and bool(
        np.array_equal(np.where(ours["side"].to_numpy() == "long", 1, -1), np.sign(theirs["Size"].to_numpy()))
    )
    identical = same_bars and same_prices and same_side
    print(f"aio: {aio_min * 1e3:.2f} ms (median {aio_med * 1e3:.2f} ms, warm-up {warmup:.2f} s), "
          f"backtesting.py: {peer_min:.3f} s (median {peer_med:.3f} s); "
          f"trades {ours.height} vs {len(theirs)}, identical={identical}")
    out = {
        "benchmark": "backtest",
        "strategy": "tv_macd",
        "bars": int(bars.height),
        "trades_aio": int(ours.height),
        "trades_peer": int(len(theirs)),
        "trades_identical": identical,
        "aio_s": aio_min,
        "aio_median_s": aio_med,
        "aio_warmup_s": warmup,
        "peer": "backtesting.py",
        "peer_s": peer_min,
        "peer_median_s": peer_med,
        "ratio": peer_min / aio_min,
    }
    print(json.dumps(out))
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
