"""Grid sweep: aio's optimiser vs backtesting.py's ``Backtest.optimize`` on the same grid.

    python benchmarks/sweep.py [--csv /work/shared/reference/tradingview/ohlcv.csv]

TradingView's "MACD Strategy" (``tv_macd``: delta = MACD - EMA(MACD, 9) crossing zero,
each entry reverses) over fastLength 5..30 step 5 x slowlength 10..70 step 5 with
fastLength < slowlength (63 points) on the 23k-bar reference file. Both sides trade one
unit without costs, fill market orders at the next bar's open and score a point by its
final equity (the trade still open at the end marked at the last close: backtesting.py's
"Equity Final" without finalize_trades, aio's ``net_profit``); both must pick the same
parameters. aio runs ``optimize=grid`` (one study, in memory, one process);
backtesting.py runs its own grid optimiser (which may use several processes). The last
line is JSON; ``ratio`` = backtesting.py time / aio time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's per-run progress bars (read at tqdm import)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_CSV = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "tradingview" / "ohlcv.csv"
FAST = range(5, 31, 5)
SLOW = range(10, 71, 5)
SIGNAL = 9


def load(csv: Path):
    import pandas as pd
    import polars as pl

    df = pd.read_csv(csv)
    t = pd.to_datetime(df["time"], utc=True)
    ts = t.astype("int64").to_numpy()
    step = int(np.median(np.diff(ts)))
    frame = pl.DataFrame({
        "ts_event": ts, "ts_init": ts + step, "open": df["open"].to_numpy(float), "high": df["high"].to_numpy(float),
        "low": df["low"].to_numpy(float), "close": df["close"].to_numpy(float),
        "volume": df["Volume"].to_numpy(float), "ticks": np.zeros(len(df), dtype=np.int64),
        "spread_mean": np.zeros(len(df)),
    })
    pdf = pd.DataFrame({"Open": df["open"].to_numpy(float), "High": df["high"].to_numpy(float),
                        "Low": df["low"].to_numpy(float), "Close": df["close"].to_numpy(float),
                        "Volume": df["Volume"].to_numpy(float)}, index=t.dt.tz_localize(None))
    return frame, pdf


def run_aio(frame):
    from aio.backtest import BacktestConfig
    from aio.config import build
    from aio.optimize.config import OptimizeConfig
    from aio.optimize.evaluate import Context
    from aio.optimize.run import optimize_bars, resolve_objectives
    from aio.optimize.space import search_space
    from aio.optimize.storage import parse_storage
    from aio.strategy import load_builtin

    cfg = build(OptimizeConfig, {
        "name": "grid", "objective": "net_profit", "n_trials": 10_000, "min_trades": 0, "pruner": "none",
        "params": ["fastLength", "slowlength"],
        "space": {"fastLength": {"low": FAST.start, "high": FAST.stop - 1, "step": FAST.step},
                  "slowlength": {"low": SLOW.start, "high": SLOW.stop - 1, "step": SLOW.step}},
        "constraints": ["fastLength < slowlength"], "walk_forward": {"folds": 0}, "write_plots": False,
    }, "optimize")
    spec = load_builtin("tv_macd", MACDLength=SIGNAL)
    bt = BacktestConfig(initial_capital=1_000_000.0, qty_type="fixed", qty=1.0, commission=0.0, slippage_ticks=0,
                        use_spread=False)
    space = search_space(spec, cfg.params, cfg.space)
    ctx = Context(frame=frame, spec=spec, bt=bt, sizer=None, predictions={}, objectives=resolve_objectives(cfg),
                  cfg=cfg, space=space, fixed={"MACDLength": SIGNAL}, timeframe="1h", symbol="EURUSD")
    t0 = time.perf_counter()
    res = optimize_bars(ctx, parse_storage(None), "sweep", seed=0)
    dt = time.perf_counter() - t0
    study = res.folds[0].study
    values = {(t.params["fastLength"], t.params["slowlength"]): t.value for t in study.trials}
    return dt, res.best_params, values


def _delta(close, fast, slow, signal):
    import talib

    macd = talib.EMA(close, fast) - talib.EMA(close, slow)
    return macd - talib.EMA(macd, signal)


def _peer_strategy():
    from backtesting import Strategy
    from backtesting.lib import crossover

    class Macd(Strategy):
        fast = 12
        slow = 26

        def init(self):
            self.delta = self.I(_delta, self.data.Close.astype(float), self.fast, self.slow, SIGNAL)

        def next(self):
            if crossover(self.delta, 0):
                self.buy(size=1)
            elif crossover(0, self.delta):
                self.sell(size=1)

    return Macd


try:  # module level, so backtesting.py's worker processes can unpickle it
    Macd = _peer_strategy()
    Macd.__qualname__ = "Macd"
except ImportError:  # pragma: no cover
    Macd = None


def run_peer(pdf):
    from backtesting import Backtest

    bt = Backtest(pdf, Macd, cash=1_000_000, commission=0.0, exclusive_orders=True, finalize_trades=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats, heat = bt.optimize(fast=list(FAST), slow=list(SLOW), constraint=lambda p: p.fast < p.slow,
                                  maximize="Equity Final [$]", return_heatmap=True)
    dt = time.perf_counter() - t0
    best = {"fastLength": int(stats._strategy.fast), "slowlength": int(stats._strategy.slow)}
    values = {(int(f), int(s)): float(v) - 1_000_000 for (f, s), v in heat.items()}
    return dt, best, values


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=os.environ.get("AIO_SWEEP_CSV", str(DEFAULT_CSV)))
    args = ap.parse_args()
    frame, pdf = load(Path(args.csv))
    print(f"bars: {frame.height} ({args.csv}); grid: {sum(f < s for f in FAST for s in SLOW)} points", flush=True)
    run_aio(frame.slice(0, 500))  # warm-up: numba's compiled cache, imports (not timed)
    aio_s, aio_best, aio_vals = run_aio(frame)
    print(f"aio: {aio_s:.3f} s, best {aio_best}", flush=True)
    peer_s, peer_best, peer_vals = run_peer(pdf)
    print(f"backtesting.py: {peer_s:.3f} s, best {peer_best}", flush=True)
    common = sorted(set(aio_vals) & set(peer_vals))
    diffs = [abs(aio_vals[k] - peer_vals[k]) for k in common]
    same = aio_best["fastLength"] == peer_best["fastLength"] and aio_best["slowlength"] == peer_best["slowlength"]
    out = {
        "benchmark": "sweep", "bars": frame.height, "points": len(aio_vals), "aio_s": round(aio_s, 4),
        "peer": "backtesting.py Backtest.optimize", "peer_s": round(peer_s, 4),
        "aio_best": {k: aio_best[k] for k in ("fastLength", "slowlength")}, "peer_best": peer_best,
        "same_best": same, "points_compared": len(common), "max_abs_diff_profit": max(diffs) if diffs else None,
        "ratio": round(peer_s / aio_s, 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
