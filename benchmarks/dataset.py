"""The whole chart dataset from 14 days of M1 bars, stride 5: aio vs an mplfinance-drawn build.

    python benchmarks/dataset.py [--days 14] [--stride 5] [--peer-charts 40]

aio: synthetic EURUSD ticks -> M1 bars (aio.data.synthetic + aio.bars; a seeded random
walk if those are absent), the classic indicator set, then ``build_dataset`` with the
default renderer (224x224, 64 bars, volume, EMA(20) + Bollinger(20, 2)) and dataset
config: features, labels, splits, PNG rendering over all cores and the Lance store. A
second call must hit the cache. The peer draws the same charts (same windows, volume,
EMA and Bollinger overlays) with mplfinance; its time for all rows is extrapolated
from ``--peer-charts`` of them. Agreement: the stored rows are the decision bars the
stride and horizon imply, and a stored image equals a fresh render of its window.
The last line is JSON; ``ratio`` = peer time / aio build time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load_bars(days: int):
    """14 days of synthetic M1 bars (aio's generator) or, without it, a seeded walk."""
    start = np.datetime64("2024-03-04")
    end = start + np.timedelta64(days, "D")
    try:
        from aio.bars import bars_from_market
        from aio.data.synthetic import SyntheticDataConfig, SyntheticSource

        md = SyntheticSource(SyntheticDataConfig(start=str(start), end=str(end))).load()
        return bars_from_market(md, "1m", "mid"), "aio.data.synthetic"
    except ImportError:
        import polars as pl

        from aio.records import NS_PER_MINUTE, Bars

        rng = np.random.default_rng(42)
        ts = start.astype("datetime64[ns]").astype(np.int64) + np.arange(days * 1440) * NS_PER_MINUTE
        ts = ts[((ts // (86_400 * 10**9)) + 3) % 7 < 5]
        n = len(ts)
        c = 1.085 + np.cumsum(rng.normal(0, 8e-5, n))
        o = np.r_[c[0], c[:-1]]
        f = pl.DataFrame({"ts_event": ts, "ts_init": ts + NS_PER_MINUTE, "open": o,
                          "high": np.maximum(o, c) + np.abs(rng.normal(0, 4e-5, n)),
                          "low": np.minimum(o, c) - np.abs(rng.normal(0, 4e-5, n)), "close": c,
                          "volume": rng.integers(1, 300, n).astype(float), "ticks": rng.integers(1, 60, n),
                          "spread_mean": np.full(n, 6e-5)})
        return Bars(f, "EURUSD", "1m", synthetic=True), "random walk"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--peer-charts", type=int, default=40)
    args = ap.parse_args()

    from aio.dataset import build_dataset, dataset_config
    from aio.dataset.build import decision_bars
    from aio.dataset.torch_data import ChartDataset
    from aio.indicators import compute_indicator_set
    from aio.render import CandleRenderer, CandlesConfig
    from aio.render.parallel import POOL_THRESHOLD, worker_count

    t0 = time.perf_counter()
    bars, source = load_bars(args.days)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    indicators = compute_indicator_set(bars.frame, "classic")
    t_ind = time.perf_counter() - t0

    renderer = CandleRenderer(CandlesConfig())
    cfg = dataset_config({"stride": args.stride, "progress": False})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = build_dataset(bars, indicators, cfg, renderer, Path(tmp))
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = build_dataset(bars, indicators, cfg, renderer, Path(tmp))
        t_reuse = time.perf_counter() - t0

        # Agreement: the rows are the implied decision bars; a stored image is the window's render.
        ds = ChartDataset(info.path, "all", float_images=False, normalize=False)
        stored_bars = ds.reader.columns(["bar_index"]).column("bar_index").to_numpy()
        first = int(stored_bars[0])
        expected = decision_bars(len(bars), first, cfg.label_horizon, cfg.stride)
        rows_ok = np.array_equal(stored_bars, expected) and stored_bars[-1] + cfg.label_horizon <= len(bars) - 1
        series = renderer.series({k: bars.col(k) for k in ("open", "high", "low", "close", "volume")})
        k = len(ds) // 2
        fresh = renderer.render(series.windows(np.array([stored_bars[k]]), renderer.bars))[0]
        image_ok = np.array_equal(ds[k]["image"].numpy().transpose(1, 2, 0), fresh)

        # Peer: mplfinance drawing the same charts (volume, EMA(20), Bollinger(20, 2)).
        import matplotlib

        matplotlib.use("Agg")
        import logging

        logging.getLogger("matplotlib").setLevel(logging.ERROR)
        import mplfinance as mpf
        import pandas as pd

        ts = pd.to_datetime(bars.col("ts_event"), utc=True).tz_localize(None)
        df = pd.DataFrame({"Open": bars.col("open"), "High": bars.col("high"), "Low": bars.col("low"),
                           "Close": bars.col("close"), "Volume": bars.col("volume")}, index=ts)
        ema = indicators["ema_20"]
        bb = {c: indicators[c] for c in ("bb_upper", "bb_middle", "bb_lower")}
        sample = stored_bars[:: max(1, len(stored_bars) // args.peer_charts)][: args.peer_charts]
        t0 = time.perf_counter()
        for e in sample:
            sl = slice(int(e) - renderer.bars + 1, int(e) + 1)
            adds = [mpf.make_addplot(ema[sl])] + [mpf.make_addplot(v[sl]) for v in bb.values()]
            buf = io.BytesIO()
            mpf.plot(df.iloc[sl], type="candle", volume=True, addplot=adds, axisoff=True,
                     figsize=(2.24, 2.24), savefig=dict(fname=buf, dpi=100, format="png"))
        t_peer_sample = time.perf_counter() - t0
        t_peer = t_peer_sample / len(sample) * info.rows

    ok = bool(rows_ok and image_ok and again.reused and info.rows > 0)
    res = {
        "bench": "dataset",
        "data": source,
        "bars": len(bars),
        "days": args.days,
        "stride": args.stride,
        "rows": info.rows,
        "splits": {k: info.splits[k] for k in ("train", "val", "test", "gap")},
        "features": len(info.columns["features"]),
        "labels": len(info.columns["labels"]),
        "data_s": round(t_data, 2),
        "indicators_s": round(t_ind, 3),
        "aio_build_s": round(t_build, 2),
        "aio_rows_per_s": round(info.rows / t_build, 1),
        "aio_reuse_s": round(t_reuse, 3),
        "reused": again.reused,
        "render_mode": f"process pool x{worker_count(0)}" if info.rows >= POOL_THRESHOLD else "one process, vectorised",
        "peer": "mplfinance (volume + EMA + BB), extrapolated",
        "peer_charts_timed": len(sample),
        "peer_est_s": round(t_peer, 1),
        "ratio": round(t_peer / t_build, 1),
        "under_60s": t_build < 60,
        "agree": ok,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    print(f"built {info.rows} rows from {len(bars)} bars in {t_build:.2f} s (reuse {t_reuse:.3f} s); "
          f"mplfinance would take ~{t_peer:.0f} s for the charts alone")
    print(json.dumps(res))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
