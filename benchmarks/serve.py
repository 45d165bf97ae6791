"""Benchmark: /predict over HTTP (LitServe, dynamic batching) against calling the run's model
in process, on the same windows of bars (SYNTHETIC EURUSD M1 bars).

A small chartnet run is trained first unless --run-dir names one (3 days of synthetic M1,
32 px charts, one epoch: the benchmark measures serving, not the model). The server is
started with ``python -m aio task=serve`` on a free loopback port; ``--clients``
concurrent clients post ``--requests`` windows. The in-process side calls
``RunModel.predict`` one window at a time (what a program embedding the model does).
The answers must agree to 1e-6.

Prints one JSON object as its last line; ratio = in-process seconds per request / served
seconds per request (> 1: serving with batching answers more requests per second).

    python benchmarks/serve.py [--run-dir RUN] [--requests 256] [--clients 16] [--window 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

SMALL = ["data=synthetic", "data.end=2024-03-07", "renderer.width=32", "renderer.height=32", "renderer.bars=16",
         "dataset.horizons=[5]", "dataset.progress=false", "model.folds=2", "model.image_size=32",
         "model.channels=[8,16]", "trainer.max_epochs=1"]


def main() -> None:
    import httpx
    import polars as pl

    from _model_data import small_bars
    from aio.serve.model import RunModel

    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir")
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--window", type=int, default=300)
    ap.add_argument("--max-batch", type=int, default=32)
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="aio-serve-bench-"))
    run_dir = Path(a.run_dir) if a.run_dir else tmp / "run"
    lib = tmp / "lib"
    if not a.run_dir:
        subprocess.run([sys.executable, "-m", "aio", "+experiment=eurusd_14d_ai", *SMALL, f"store.path={lib}",
                        f"hydra.run.dir={run_dir}"], cwd=REPO, check=True, capture_output=True)
    bars = small_bars(end="2024-03-07").frame
    p = pl.read_parquet(run_dir / "predictions.parquet")
    ends = p.filter(pl.col("fold") == p["fold"].max())["bar_index"].to_numpy()
    rng = np.random.default_rng(0)
    pick = rng.choice(ends[ends >= a.window], a.requests)
    frames = [bars.slice(int(e) + 1 - a.window, a.window) for e in pick]
    bodies = [{"bars": [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                        for r in f.to_dicts()]} for f in frames]

    # in process, one window per call
    model = RunModel.load(run_dir)
    model.predict(frames[:2])
    lat_in = []
    t0 = time.perf_counter()
    local = []
    for f in frames:
        s = time.perf_counter()
        local.append(model.predict([f])[0])
        lat_in.append(time.perf_counter() - s)
    t_in = time.perf_counter() - t0

    from tests._serve_process import serving

    with serving(run_dir, lib, tmp / "serve", f"serve.max_batch_size={a.max_batch}", "serve.batch_timeout=0.01",
                 timeout_s=600) as url:
        client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=a.clients))
        client.post(url + "/predict", json=bodies[0])  # warm

        def call(b):
            s = time.perf_counter()
            r = client.post(url + "/predict", json=b)
            return r, time.perf_counter() - s

        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.clients) as ex:
            res = list(ex.map(call, bodies))
        t_http = time.perf_counter() - t0
    bad = [r.status_code for r, _ in res if r.status_code != 200]
    served = [r.json() for r, _ in res if r.status_code == 200]
    agree = not bad and all(abs(s["p_up"] - l["p_up"]) < 1e-6 and abs(s["p_down"] - l["p_down"]) < 1e-6
                            for s, l in zip(served, local))
    lat_http = np.array([d for _, d in res]) * 1e3
    lat_in = np.array(lat_in) * 1e3
    out = {
        "benchmark": "serve", "data": "SYNTHETIC EURUSD M1 bars (aio synthetic simulator)", "requests": a.requests,
        "clients": a.clients, "window_bars": a.window, "max_batch_size": a.max_batch,
        "served_rps": round(a.requests / t_http, 2), "served_p50_ms": round(float(np.percentile(lat_http, 50)), 2),
        "served_p99_ms": round(float(np.percentile(lat_http, 99)), 2),
        "in_process_rps": round(a.requests / t_in, 2), "in_process_p50_ms": round(float(np.percentile(lat_in, 50)), 2),
        "in_process_p99_ms": round(float(np.percentile(lat_in, 99)), 2),
        "errors": len(bad), "agree": agree, "ratio": round((t_in / a.requests) / (t_http / a.requests), 4),
    }
    print(json.dumps(out))
    if not agree:
        sys.exit("served answers differ from the in-process model's")


if __name__ == "__main__":
    main()
