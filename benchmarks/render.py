"""Charts per second at 224x224, 64 bars: aio's numpy renderer vs mplfinance, same candles.

    python benchmarks/render.py [--charts 2000] [--peer-charts 60]

Both draw the same 64-bar windows of one seeded random walk as plain candles (no
volume, no overlays, mplfinance without axes). Modes:
  png     aio palette PNG bytes, one process   vs  mplfinance savefig(png)
  arrays  aio (B, 224, 224, 3) uint8, one process  vs  mplfinance canvas -> RGBA array
  pool    aio PNG over all cores (process pool), for information
Agreement: from each image, the top of the ink in each of 64 column bins is read back
and correlated with the bars' highs; aio's and mplfinance's read-backs must agree.
The last line is JSON; ``ratio`` = mplfinance time / aio time per chart (PNG mode).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aio.render import CandleRenderer, CandlesConfig, render_pngs  # noqa: E402
from aio.render.parallel import worker_count  # noqa: E402

W = H = 224
N = 64


def walk(n: int, seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = 1.085 + np.cumsum(rng.normal(0, 1e-4, n))
    o = np.r_[c[0], c[:-1]] + rng.normal(0, 2e-5, n)
    h = np.maximum(o, c) + np.abs(rng.normal(0, 5e-5, n))
    l = np.minimum(o, c) - np.abs(rng.normal(0, 5e-5, n))
    return {"open": o, "high": h, "low": l, "close": c, "volume": rng.integers(1, 500, n).astype(np.float64)}


def ink_tops(rgb: np.ndarray, bins: int = N) -> np.ndarray:
    """Per column bin across the inked x-extent: the highest inked row (smaller = higher price)."""
    ink = (np.abs(rgb[..., :3].astype(np.int16) - 255).sum(axis=2) > 60)
    cols = np.flatnonzero(ink.any(axis=0))
    x0, x1 = cols.min(), cols.max() + 1
    edges = np.linspace(x0, x1, bins + 1).round().astype(int)
    tops = []
    for a, b in zip(edges[:-1], edges[1:]):
        rows = np.flatnonzero(ink[:, a:max(b, a + 1)].any(axis=1))
        tops.append(rows.min() if rows.size else np.nan)
    return np.asarray(tops, dtype=np.float64)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def mpl_setup():
    import matplotlib

    matplotlib.use("Agg")
    import logging

    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    import mplfinance as mpf
    import pandas as pd

    return mpf, pd


def mpl_frame(pd, a: dict[str, np.ndarray], end: int):
    sl = slice(end - N + 1, end + 1)
    idx = pd.date_range("2024-03-04", periods=N, freq="min")
    return pd.DataFrame({"Open": a["open"][sl], "High": a["high"][sl], "Low": a["low"][sl], "Close": a["close"][sl],
                         "Volume": a["volume"][sl]}, index=idx)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--charts", type=int, default=2048, help="charts aio renders per mode")
    ap.add_argument("--peer-charts", type=int, default=60, help="charts mplfinance renders per mode")
    args = ap.parse_args()

    a = walk(args.charts + N + 10)
    ends = np.arange(N - 1, N - 1 + args.charts)
    r = CandleRenderer(CandlesConfig(width=W, height=H, bars=N, volume=False, overlays=[], png_level=1))
    series = r.series(a)
    batch = series.windows(ends, N)

    workers = worker_count(0)
    modes = {
        "png": lambda: r.render_png(batch),
        "arrays": lambda: [r.render(batch.slice(i, i + 256)) for i in range(0, len(batch), 256)],
        "pool": lambda: render_pngs(r, series, ends, workers=workers, progress=False, pool_threshold=0),
    }
    r.render_png(batch.slice(0, 8))  # warm caches
    # Rounds interleave the modes so a burst of load from other processes hits them alike; best of 3.
    times: dict[str, list[float]] = {k: [] for k in modes}
    outs: dict[str, object] = {}
    for _ in range(3):
        for k, fn in modes.items():
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    t_png, t_arr, t_pool = (min(times[k]) for k in ("png", "arrays", "pool"))
    pngs, arrays = outs["png"], outs["arrays"]
    assert outs["pool"] == pngs, "pool and single process gave different bytes"

    mpf, pd = mpl_setup()
    import matplotlib.pyplot as plt

    peer_ends = ends[:: max(1, len(ends) // args.peer_charts)][: args.peer_charts]
    kw = dict(type="candle", axisoff=True, figsize=(W / 100, H / 100), style="default")
    frames = [mpl_frame(pd, a, int(e)) for e in peer_ends]
    mpf.plot(frames[0], **kw, savefig=dict(fname=io.BytesIO(), dpi=100, format="png"))  # warm-up
    t0 = time.perf_counter()
    mpl_pngs = []
    for f in frames:
        buf = io.BytesIO()
        mpf.plot(f, **kw, savefig=dict(fname=buf, dpi=100, format="png"))
        mpl_pngs.append(buf.getvalue())
    t_mpl_png = time.perf_counter() - t0
    t0 = time.perf_counter()
    mpl_arrays = []
    for f in frames:
        fig, _ = mpf.plot(f, **kw, returnfig=True)
        fig.set_dpi(100)
        fig.canvas.draw()
        mpl_arrays.append(np.asarray(fig.canvas.buffer_rgba()).copy())
        plt.close(fig)
    t_mpl_arr = time.perf_counter() - t0

    # Agreement: both images put the candle tops where the highs are, and where each other does.
    from PIL import Image

    agree_aio, agree_mpl, agree_pair = [], [], []
    pos = {int(e): k for k, e in enumerate(ends)}
    for e, mpl_png in zip(peer_ends, mpl_pngs):
        highs = a["high"][int(e) - N + 1 : int(e) + 1]
        ours = ink_tops(np.asarray(Image.open(io.BytesIO(pngs[pos[int(e)]])).convert("RGB")))
        theirs = ink_tops(np.asarray(Image.open(io.BytesIO(mpl_png)).convert("RGB")))
        agree_aio.append(corr(-ours, highs))
        agree_mpl.append(corr(-theirs, highs))
        agree_pair.append(corr(ours, theirs))
    arr_shapes_ok = arrays[0].shape[1:] == (H, W, 3) and mpl_arrays[0].shape[:2] == (H, W)
    agree = min(np.median(agree_aio), np.median(agree_mpl), np.median(agree_pair))
    ok = agree > 0.9 and arr_shapes_ok

    n, m = len(ends), len(frames)
    res = {
        "bench": "render",
        "size": f"{W}x{H}",
        "bars": N,
        "aio_charts": n,
        "peer_charts": m,
        "aio_png_per_s": round(n / t_png, 1),
        "aio_arrays_per_s": round(n / t_arr, 1),
        "aio_png_pool_per_s": round(n / t_pool, 1),
        "pool_workers": workers,
        "mplfinance_png_per_s": round(m / t_mpl_png, 1),
        "mplfinance_arrays_per_s": round(m / t_mpl_arr, 1),
        "ratio_png": round((t_mpl_png / m) / (t_png / n), 1),
        "ratio_arrays": round((t_mpl_arr / m) / (t_arr / n), 1),
        "ratio_png_pool": round((t_mpl_png / m) / (t_pool / n), 1),
        "agreement_corr": {"aio_vs_highs": round(float(np.median(agree_aio)), 4),
                           "mplfinance_vs_highs": round(float(np.median(agree_mpl)), 4),
                           "aio_vs_mplfinance": round(float(np.median(agree_pair)), 4)},
        "agree": bool(ok),
        "aio_png_bytes_mean": round(float(np.mean([len(p) for p in pngs])), 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    res["ratio"] = res["ratio_png"]
    print(f"aio png {res['aio_png_per_s']}/s, arrays {res['aio_arrays_per_s']}/s, pool({workers}) {res['aio_png_pool_per_s']}/s; "
          f"mplfinance png {res['mplfinance_png_per_s']}/s, arrays {res['mplfinance_arrays_per_s']}/s")
    print(json.dumps(res))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
