"""Benchmark: the paper engine (ticks -> bars -> rules -> stepped broker -> journal) against the
batch backtest on the same 14 days of synthetic EURUSD ticks (M1 bars, SYNTHETIC data).

Batch side: ticks -> M1 bars (aio.bars.ticks_to_bars) + the Evaluator (rules over the whole
frame + the compiled broker loop). Live side: the same ticks replayed at speed 0 through
the engine, which closes each bar as ticks arrive, decides at its close (bar by bar with
TA-Lib's streaming handles; ``--full``: the rules over all bars so far), steps the broker
and journals the bars of each read in one SQLite (WAL) transaction. The trades must be
identical. Latency: from the arrival of the tick batch that closed a bar to its journal
commit (replay batches of ``--batch`` ticks: a bar waits for the others of its batch).

Prints one JSON object as its last line; ratio = batch time / live time (live is the slower
one; 1.0 would be as fast as the batch pass).

    python benchmarks/live.py [--strategy sma_cross] [--days 14] [--batch 1000] [--window 0] [--full]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aio.backtest import BacktestConfig  # noqa: E402
from aio.backtest.evaluator import Evaluator  # noqa: E402
from aio.bars import ticks_to_bars  # noqa: E402
from aio.config import build  # noqa: E402
from aio.data.synthetic import SyntheticDataConfig, SyntheticSource  # noqa: E402
from aio.live.engine import make_engine  # noqa: E402
from aio.live.sources import ReplaySource  # noqa: E402
from aio.strategy import load_spec  # noqa: E402

TF = 60_000_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strategy", default="sma_cross")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--batch", type=int, default=1000, help="ticks per replay read")
    ap.add_argument("--window", type=int, default=0, help="bars the rules see at each close (0: all)")
    ap.add_argument("--full", action="store_true", help="re-evaluate the rules over the history at each close")
    a = ap.parse_args()

    end = np.datetime64("2024-03-04") + np.timedelta64(a.days, "D")
    md = SyntheticSource(build(SyntheticDataConfig, {"start": "2024-03-04", "end": str(end)}, "data")).load()
    bt = build(BacktestConfig, yaml.safe_load((REPO / "conf" / "backtest" / "default.yaml").read_text()), "backtest")
    section = yaml.safe_load((REPO / "conf" / "strategy" / f"{a.strategy}.yaml").read_text())
    spec = load_spec(section)

    # warm both paths (numba compilation, imports) on a small slice
    bars_w, _ = ticks_to_bars(md.frame.head(20_000), TF, "mid")
    Evaluator(bars_w, bt, symbol="EURUSD").run(spec)
    with tempfile.TemporaryDirectory() as d:
        from aio.records import MarketData

        make_engine(section, bt, Path(d) / "w.sqlite").run(
            ReplaySource.of(MarketData("ticks", md.frame.head(20_000), "EURUSD", synthetic=True), batch=a.batch))

    t0, c0 = time.perf_counter(), time.process_time()
    bars, _ = ticks_to_bars(md.frame, TF, "mid")
    batch = Evaluator(bars, bt, symbol="EURUSD").run(spec)
    t_batch, c_batch = time.perf_counter() - t0, time.process_time() - c0

    with tempfile.TemporaryDirectory() as d:
        eng = make_engine(section, bt, Path(d) / "journal.sqlite", window=a.window, incremental=not a.full)
        t0, c0 = time.perf_counter(), time.process_time()
        stats = eng.run(ReplaySource.of(md, batch=a.batch))
        t_live, c_live = time.perf_counter() - t0, time.process_time() - c0
        got = eng.result()
        agree = bool(got.trades.equals(batch.result.trades)
                     and np.array_equal(got.equity_values, batch.result.equity_values))
        eng.journal.close()
    lat = np.asarray(stats.latencies_ns, dtype=np.float64) / 1e6
    out = {
        "benchmark": "live", "data": "SYNTHETIC EURUSD ticks (aio synthetic simulator, seed 42)",
        "days": a.days, "strategy": a.strategy, "ticks": md.frame.height, "bars": len(bars),
        "trades": batch.result.n_trades, "window": a.window,
        "incremental": eng.decider.inc is not None, "replay_batch": a.batch,
        "batch_s": round(t_batch, 4), "live_s": round(t_live, 3),
        "ticks_per_s": round(md.frame.height / t_live, 1), "bars_per_s": round(len(bars) / t_live, 1),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 3), "latency_ms_p99": round(float(np.percentile(lat, 99)), 3),
        "batch_cpu_s": round(c_batch, 4), "live_cpu_s": round(c_live, 3), "ratio_cpu": round(c_batch / c_live, 4),
        "agree": agree, "ratio": round(t_batch / t_live, 4),
    }
    print(json.dumps(out))
    if not agree:
        sys.exit("live trades differ from the batch backtest's")


if __name__ == "__main__":
    main()
