"""14 days (336 hourly files) from a loopback mirror: cold and warm wall time.

    python benchmarks/download.py [--latency-ms 0] [--concurrency 4]

The mirror serves real GBPJPY hours 2012-12-03 .. 2012-12-16 from the reference
folder (``$AIO_REFERENCE_DIR`` or ../shared/reference); without it, 336 synthetic
hours written by aio's encoder. ``--latency-ms`` adds a server-side delay per request,
a stand-in for a real network round trip.

* aio cold: empty cache -> download (concurrent, verified, cached) -> catalog -> load().
* aio warm: the same load() again: catalog only. The run counts LZMA calls during the
  warm load (must be 0) and times the Parquet read inside it.
* peer: a straightforward loader: one sequential httpx.Client GET per hour,
  lzma + struct.iter_unpack, one DataFrame; no cache, so every run is "cold".

The mirror runs in its own process (``python -m aio.data.dukascopy.mirror``), so its
threads share no GIL with either client. The frames must agree. Last line JSON: ``ratio`` = peer time / aio cold time;
``warm_ratio`` = peer time / aio warm time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import lzma
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import polars as pl  # noqa: E402

from aio.config import build  # noqa: E402
from aio.data.dukascopy import DukascopyConfig, DukascopySource, bi5  # noqa: E402
from aio.data.dukascopy import catalog as catalog_mod  # noqa: E402
from aio.data.dukascopy.instruments import lookup  # noqa: E402

START, END = "2012-12-03", "2012-12-17"


def reference_root() -> Path | None:
    env = os.environ.get("AIO_REFERENCE_DIR")
    p = Path(env) if env else REPO.parent / "shared" / "reference"
    root = p / "dukascopy" / "ninety47"
    return root if (root / "GBPJPY").is_dir() else None


def synthetic_root(folder: Path, first_hour: int) -> Path:
    rng = np.random.default_rng(0)
    for h in range(first_hour, first_hour + 336):
        n = 5000
        ms = np.sort(rng.integers(0, 3_600_000, n))
        bid = 150_000 + np.cumsum(rng.integers(-3, 4, n))
        ask = bid + rng.integers(1, 30, n)
        vol = rng.uniform(0.1, 5, n).astype(np.float32)
        p = folder / bi5.tick_path("GBPJPY", h)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bi5.encode_ticks(ms, ask, bid, vol, vol, preset=1))
    return folder


@contextlib.contextmanager
def mirror_process(root: Path, latency_ms: float):
    """The loopback mirror in a child process; yields its base URL."""
    code = (
        "import sys, time; from aio.data.dukascopy.mirror import Mirror; "
        f"m = Mirror(root=sys.argv[1], delay_s={latency_ms / 1000!r}).start(); "
        "print(m.base_url, flush=True); time.sleep(3600)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


def peer_load(base_url: str, first_hour: int, factor: int) -> pl.DataFrame:
    ts, bid, ask, bv, av = [], [], [], [], []
    with httpx.Client(timeout=30) as client:
        for h in range(first_hour, first_hour + 336):
            r = client.get(f"{base_url}/{bi5.tick_path('GBPJPY', h)}")
            if r.status_code == 404 or not r.content:
                continue
            r.raise_for_status()
            raw = lzma.decompress(r.content, format=lzma.FORMAT_ALONE)
            base = h * 3_600_000_000_000
            for ms, a, b, a_vol, b_vol in struct.iter_unpack(">3I2f", raw):
                ts.append(base + ms * 1_000_000)
                ask.append(a / factor)
                bid.append(b / factor)
                av.append(a_vol)
                bv.append(b_vol)
    return pl.DataFrame({"ts_event": ts, "bid": bid, "ask": ask, "bid_volume": bv, "ask_volume": av},
                        schema=catalog_mod.empty_ticks().schema)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    factor = lookup("GBPJPY").decimal_factor
    first_hour = 1354492800 // 3600  # 2012-12-03 00:00 UTC
    with tempfile.TemporaryDirectory(prefix="aio-bench-") as tmp:
        root = reference_root()
        what = f"real GBPJPY hours from {root}" if root else "336 synthetic hours (aio encoder)"
        if root is None:
            root = synthetic_root(Path(tmp) / "feed", first_hour)
        with mirror_process(root, args.latency_ms) as base_url:
            cfg = build(DukascopyConfig, {
                "symbol": "GBPJPY", "start": START, "end": END, "base_url": base_url,
                "cache_dir": f"{tmp}/raw", "catalog_dir": f"{tmp}/catalog", "progress": False,
                "concurrency": args.concurrency}, "data")

            t = time.perf_counter()
            src = DukascopySource(cfg)
            cold = src.load()
            t_cold = time.perf_counter() - t
            requests = src._outcome.requests

            # warm: count LZMA work and time the Parquet read inside load()
            calls = {"lzma": 0, "parquet_s": 0.0}
            real_decompress, real_scan = bi5.decompress, catalog_mod.Catalog.scan

            def counting_decompress(data):
                calls["lzma"] += 1
                return real_decompress(data)

            def timed_scan(self, days):
                lf = real_scan(self, days)
                t0 = time.perf_counter()
                df = lf.collect()
                calls["parquet_s"] += time.perf_counter() - t0
                return df.lazy()

            bi5.decompress = counting_decompress
            catalog_mod.Catalog.scan = timed_scan
            try:
                best_warm = float("inf")
                for _ in range(3):
                    calls["parquet_s"] = 0.0
                    t = time.perf_counter()
                    warm_src = DukascopySource(cfg)
                    warm = warm_src.load()
                    dt = time.perf_counter() - t
                    assert warm_src._outcome.requests == 0, "warm load touched the network"
                    if dt < best_warm:
                        best_warm, parquet_s = dt, calls["parquet_s"]
            finally:
                bi5.decompress, catalog_mod.Catalog.scan = real_decompress, real_scan

            t = time.perf_counter()
            peer = peer_load(base_url, first_hour, factor)
            t_peer = time.perf_counter() - t

    assert cold.frame.equals(warm.frame) and cold.frame.equals(peer), "aio and the peer disagree"
    n = cold.frame.height
    print(f"input: {what}, {START}..{END} (336 hours, {n:,} ticks), latency {args.latency_ms} ms, "
          f"concurrency {args.concurrency}")
    print(f"aio cold  {t_cold:7.3f} s  ({requests} requests)")
    print(f"aio warm  {best_warm:7.3f} s  (Parquet read {parquet_s:.3f} s = {100 * parquet_s / best_warm:.0f}%, "
          f"LZMA calls {calls['lzma']})")
    print(f"peer      {t_peer:7.3f} s  (sequential GET + struct.iter_unpack, no cache)")
    print(json.dumps({
        "benchmark": "dukascopy_download_14d",
        "hours": 336,
        "ticks": n,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "aio_cold_s": round(t_cold, 3),
        "aio_warm_s": round(best_warm, 4),
        "warm_parquet_s": round(parquet_s, 4),
        "warm_parquet_share": round(parquet_s / best_warm, 3),
        "warm_lzma_calls": calls["lzma"],
        "peer_s": round(t_peer, 3),
        "warm_ratio": round(t_peer / best_warm, 1),
        "ratio": round(t_peer / t_cold, 2),
    }))


if __name__ == "__main__":
    main()
