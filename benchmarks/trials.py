"""Trials per second: a 500-trial TPE study on 14 days of M1 bars.

    python benchmarks/trials.py [--trials 500] [--peer-trials 20] [--days 14]

Data: 14 days of SYNTHETIC EURUSD M1 bars (aio.data.synthetic ticks -> aio.bars; about
10 trading days, 14,400 bars). Strategy ``tv_macd`` (fastLength, slowlength, MACDLength
searched, fastLength < slowlength), objective Sharpe, costs in (commission, slippage,
spread), one study in memory, one process, no walk-forward (the benchmark measures the
trial loop). The peer is the same Optuna TPE study driving backtesting.py (a run per
trial, talib EMAs); its trials/s comes from ``--peer-trials`` trials. The last line is
JSON; ``ratio`` = aio trials/s / peer trials/s (= peer time per trial / aio time per trial).
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

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load_bars(days: int):
    from aio.bars import bars_from_market
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource

    start = np.datetime64("2024-03-04")
    end = start + np.timedelta64(days, "D")
    md = SyntheticSource(SyntheticDataConfig(start=str(start), end=str(end))).load()
    return bars_from_market(md, "1m", "mid")


def run_aio(bars, n_trials: int):
    from aio.backtest import BacktestConfig
    from aio.config import build
    from aio.optimize.config import OptimizeConfig
    from aio.optimize.evaluate import Context
    from aio.optimize.run import optimize_bars, resolve_objectives
    from aio.optimize.space import search_space
    from aio.optimize.storage import parse_storage
    from aio.strategy import load_builtin

    cfg = build(OptimizeConfig, {
        "name": "tpe", "objective": "sharpe", "n_trials": n_trials, "min_trades": 5, "pruner": "none",
        "constraints": ["fastLength < slowlength"], "walk_forward": {"folds": 0}, "write_plots": False,
        "space": {"slowlength": {"low": 5, "high": 120}},
    }, "optimize")
    spec = load_builtin("tv_macd")
    bt = BacktestConfig(initial_capital=100_000.0, qty=100_000.0, commission=0.002, slippage_ticks=2)
    ctx = Context(frame=bars.frame, spec=spec, bt=bt, sizer=None, predictions={}, objectives=resolve_objectives(cfg),
                  cfg=cfg, space=search_space(spec, cfg.params, cfg.space), fixed={}, timeframe="1m",
                  symbol="EURUSD")
    t0 = time.perf_counter()
    res = optimize_bars(ctx, parse_storage(None), "trials", seed=7)
    return time.perf_counter() - t0, res


def run_peer(bars, n_trials: int):
    import optuna
    import pandas as pd
    from backtesting import Backtest
    from sweep import Macd

    f = bars.frame
    pdf = pd.DataFrame({"Open": f["open"].to_numpy(), "High": f["high"].to_numpy(), "Low": f["low"].to_numpy(),
                        "Close": f["close"].to_numpy(), "Volume": f["volume"].to_numpy()},
                       index=pd.to_datetime(f["ts_event"].to_numpy(), utc=True).tz_localize(None))
    # commission 0.002 % per side like aio's config; spread as backtesting.py's own spread
    bt = Backtest(pdf, Macd, cash=1_000_000, commission=2e-5, spread=6e-5 / 1.085,
                  exclusive_orders=True)

    def objective(trial):
        fast = trial.suggest_int("fastLength", 2, 50)
        slow = trial.suggest_int("slowlength", 5, 120)
        trial.suggest_int("MACDLength", 2, 50)  # the peer's strategy keeps 9: same sampler work per trial
        if fast >= slow:
            raise optuna.TrialPruned()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st = bt.run(fast=fast, slow=slow)
        v = st["Sharpe Ratio"]
        return float(v) if np.isfinite(v) else -1e6

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=7))
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=n_trials)
    return time.perf_counter() - t0, study


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--peer-trials", type=int, default=20)
    ap.add_argument("--days", type=int, default=14)
    args = ap.parse_args()
    bars = load_bars(args.days)
    print(f"bars: {len(bars)} synthetic M1 ({args.days} days)", flush=True)
    run_aio(bars, 5)  # warm-up: compiled code and imports
    aio_s, res = run_aio(bars, args.trials)
    study = res.folds[0].study
    states = [t.state.name for t in study.trials]
    aio_tps = len(study.trials) / aio_s
    print(f"aio: {len(study.trials)} trials in {aio_s:.2f} s = {aio_tps:.1f} trials/s; best {res.best_params} "
          f"sharpe {study.best_value:.3f}", flush=True)
    peer_s, pst = run_peer(bars, args.peer_trials)
    peer_tps = len(pst.trials) / peer_s
    print(f"backtesting.py + optuna: {len(pst.trials)} trials in {peer_s:.2f} s = {peer_tps:.2f} trials/s", flush=True)
    print(json.dumps({
        "benchmark": "trials", "data": "synthetic EURUSD M1", "days": args.days, "bars": len(bars),
        "aio_trials": len(study.trials), "aio_s": round(aio_s, 3), "aio_trials_per_s": round(aio_tps, 2),
        "aio_complete": states.count("COMPLETE"), "aio_pruned": states.count("PRUNED"),
        "peer": "backtesting.py + optuna TPE", "peer_trials": len(pst.trials), "peer_s": round(peer_s, 3),
        "peer_trials_per_s": round(peer_tps, 3), "ratio": round(aio_tps / peer_tps, 2),
    }))


if __name__ == "__main__":
    main()
