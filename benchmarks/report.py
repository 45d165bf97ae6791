"""Benchmark: the report of a 14-day M1 synthetic run with about 1,000 trades, aio vs backtesting.py.

aio: ``write_run_report`` on the finished run (report.html with every section; the PNGs
are timed apart, they need a browser). Peer: backtesting.py's ``Backtest.plot()`` on the
same bars and the same trades: a strategy that replays aio's entries (market orders at
the next bar's open, each entry reversing the position, as aio's SMA cross does). The
trade lists must agree (count, entry and exit bars, sides) before anything is timed.
Prints one JSON object as its last line; ratio = peer plot time / aio report time.

    python benchmarks/report.py [--repeats N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

OVERRIDES = ["+experiment=eurusd_14d", "data=synthetic", "model=none", "optimize=none",
             "strategy.params.fast=5", "strategy.params.slow=20"]


def aio_run(out: Path):
    from _report_runs import run_pipeline

    os.environ["AIO_REPORT_PNG"] = "0"  # the pipeline's own report; the timed ones follow
    return run_pipeline(out / "run", OVERRIDES)


def peer_backtest(run):
    """backtesting.py replaying aio's entries on the same bars."""
    import pandas as pd
    from backtesting import Backtest, Strategy

    f = run.bars.frame
    df = pd.DataFrame({"Open": f["open"].to_numpy(), "High": f["high"].to_numpy(), "Low": f["low"].to_numpy(),
                       "Close": f["close"].to_numpy(), "Volume": f["volume"].to_numpy()},
                      index=pd.DatetimeIndex(f["ts_event"].to_numpy().astype("datetime64[ns]")))
    t = run.backtest.trades
    # aio fills at the open of entry_bar: the decision was at the close of entry_bar - 1
    plan = dict(zip((t["entry_bar"].to_numpy() - 1).tolist(), t["side"].to_list()))

    class Replay(Strategy):
        def init(self):
            pass

        def next(self):
            side = plan.get(len(self.data) - 1)
            if side == "long":
                self.buy(size=1)
            elif side == "short":
                self.sell(size=1)

    bt = Backtest(df, Replay, cash=1e7, commission=0.0, exclusive_orders=True, finalize_trades=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.run()
    return bt, stats


def agree(run, stats) -> dict:
    a = run.backtest.trades
    b = stats["_trades"]
    n = min(a.height, len(b))
    ok_entry = np.array_equal(a["entry_bar"].to_numpy()[:n], b["EntryBar"].to_numpy()[:n])
    ok_side = np.array_equal(np.where(a["side"].to_numpy()[:n] == "long", 1, -1), np.sign(b["Size"].to_numpy()[:n]))
    # the last trade is still open at the end: aio closes it at the last close, backtesting.py at the last bar
    ok_exit = np.array_equal(a["exit_bar"].to_numpy()[: n - 1], b["ExitBar"].to_numpy()[: n - 1])
    if not (a.height == len(b) and ok_entry and ok_side and ok_exit):
        sys.exit(f"trade lists differ: aio {a.height}, backtesting.py {len(b)}, entries {ok_entry}, sides {ok_side}, "
                 f"exits {ok_exit}")
    return {"trades": a.height}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="keep the files here (default: a temporary folder)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="aio-bench-report-"))
    run = aio_run(out)
    bt, stats = peer_backtest(run)
    check = agree(run, stats)

    from aio.report.images import browser_path, write_pngs
    from aio.report.run_report import _Report, write_run_report

    aio_s = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        path = write_run_report(run, out / "run" / f"report_{i}.html", pngs=False)
        aio_s.append(time.perf_counter() - t0)
    size_mb = path.stat().st_size / 2**20
    plotly_mb = (out / "run" / "plotly.min.js").stat().st_size / 2**20
    png_s = None
    os.environ.pop("AIO_REPORT_PNG", None)
    if browser_path():
        rep = _Report(run, path)
        rep.build()
        t0 = time.perf_counter()
        written = write_pngs(rep.figs, out / "run" / "report")
        png_s = time.perf_counter() - t0 if written else None

    peer_s = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bt.plot(results=stats, filename=str(out / f"peer_{i}.html"), open_browser=False)
        peer_s.append(time.perf_counter() - t0)
    peer_mb = (out / "peer_0.html").stat().st_size / 2**20

    a, p = statistics.median(aio_s), statistics.median(peer_s)
    print(f"aio report.html: {a:.2f} s, {size_mb:.2f} MB (+ plotly.min.js {plotly_mb:.2f} MB once per run folder)")
    print(f"backtesting.py plot(): {p:.2f} s, {peer_mb:.2f} MB (bokeh from its CDN)")
    if png_s is not None:
        print(f"aio report/*.png via kaleido: {png_s:.2f} s")
    print(json.dumps({"benchmark": "report", "bars": len(run.bars), **check, "aio_s": round(a, 3),
                      "peer_s": round(p, 3), "aio_mb": round(size_mb, 3), "plotly_js_mb": round(plotly_mb, 3),
                      "peer_mb": round(peer_mb, 3), "png_s": None if png_s is None else round(png_s, 3),
                      "repeats": args.repeats, "ratio": round(p / a, 3)}))


if __name__ == "__main__":
    main()
