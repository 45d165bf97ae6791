"""Decode throughput: aio's numpy bi5 decoder vs a straightforward struct.iter_unpack decoder.

    python benchmarks/decode.py [--repeat 3]

Input: every real hourly tick file under the reference folder
(``$AIO_REFERENCE_DIR`` or ../shared/reference: dukascopy-node EURUSD/BTCUSD hours
and ninety47's GBPJPY December 2012), read into memory first so only decoding is
timed. Without the reference folder it encodes 200 synthetic hours with aio's
encoder. Both sides turn the same bytes into the same columns (ts_event ns, scaled
bid/ask, volumes); the run checks they agree, then prints figures. The last line is
JSON; ``ratio`` = peer time / aio time for the full decode (LZMA included, one
thread each); ``parse_ratio`` compares the record parsing alone.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aio.data.dukascopy import bi5  # noqa: E402
from aio.data.dukascopy.instruments import lookup  # noqa: E402


def reference_dir() -> Path | None:
    env = os.environ.get("AIO_REFERENCE_DIR")
    p = Path(env) if env else REPO.parent / "shared" / "reference"
    return p / "dukascopy" if (p / "dukascopy").is_dir() else None


def hour_of(symbol_root: Path, path: Path) -> int:
    """Hour index from a datafeed path .../{YYYY}/{MM0}/{DD}/{HH}h_ticks.bi5."""
    from datetime import datetime, timezone

    hh, dd, mm, yyyy = path.name[:2], path.parent.name, path.parent.parent.name, path.parent.parent.parent.name
    t = datetime(int(yyyy), int(mm) + 1, int(dd), int(hh), tzinfo=timezone.utc)
    return int(t.timestamp()) // 3600


def load_inputs() -> tuple[list[tuple[bytes, int, int]], str]:
    ref = reference_dir()
    items = []
    if ref is not None:
        for sym_dir in sorted([*(ref / "dukascopy-node").glob("[A-Z]*"), *(ref / "ninety47").glob("[A-Z]*")]):
            factor = lookup(sym_dir.name).decimal_factor
            for p in sorted(sym_dir.rglob("*h_ticks.bi5")):
                items.append((p.read_bytes(), hour_of(sym_dir, p), factor))
        return items, f"reference files under {ref}"
    rng = np.random.default_rng(0)
    for h in range(200):
        n = 6000
        ms = np.sort(rng.integers(0, 3_600_000, n))
        bid = 110_000 + np.cumsum(rng.integers(-2, 3, n))
        ask = bid + rng.integers(0, 6, n)
        vol = rng.uniform(0.1, 5, n).astype(np.float32)
        items.append((bi5.encode_ticks(ms, ask, bid, vol, vol), 430_000 + h, 100_000))
    return items, "200 synthetic hours (aio encoder)"


# -- the two decoders -----------------------------------------------------------------------


def aio_decode(items) -> dict[str, np.ndarray]:
    cols = [bi5.tick_columns(bi5.decode_ticks(data), hour, f) for data, hour, f in items if data]
    return {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}


def aio_decode_threads(items, workers: int) -> dict[str, np.ndarray]:
    def one(it):
        data, hour, f = it
        return bi5.tick_columns(bi5.decode_ticks(data), hour, f)

    with ThreadPoolExecutor(workers) as ex:
        cols = list(ex.map(one, [it for it in items if it[0]]))
    return {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}


def peer_decode(items) -> dict[str, list]:
    ts, bid, ask, bv, av = [], [], [], [], []
    for data, hour, f in items:
        if not data:
            continue
        raw = lzma.decompress(data, format=lzma.FORMAT_ALONE)
        base = hour * 3_600_000_000_000
        for ms, a, b, a_vol, b_vol in struct.iter_unpack(">3I2f", raw):
            ts.append(base + ms * 1_000_000)
            ask.append(a / f)
            bid.append(b / f)
            av.append(a_vol)
            bv.append(b_vol)
    return {"ts_event": ts, "bid": bid, "ask": ask, "bid_volume": bv, "ask_volume": av}


def best_of(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    items, what = load_inputs()
    raws = [(lzma.decompress(d, format=lzma.FORMAT_ALONE), h, f) for d, h, f in items if d]

    t_aio, a = best_of(lambda: aio_decode(items), args.repeat)
    t_thr, a2 = best_of(lambda: aio_decode_threads(items, os.cpu_count() or 2), args.repeat)
    t_peer, p = best_of(lambda: peer_decode(items), args.repeat)
    # parsing alone (bytes already inflated)
    t_aio_parse, _ = best_of(
        lambda: [bi5.tick_columns(np.frombuffer(r, dtype=bi5.TICK_DTYPE), h, f) for r, h, f in raws], args.repeat)
    def peer_parse():
        return [[(ms, a_ / f, b_ / f, x, y) for ms, a_, b_, x, y in struct.iter_unpack(">3I2f", r)] for r, h, f in raws]

    t_peer_parse, _ = best_of(peer_parse, args.repeat)

    n = len(a["ts_event"])
    for k in a:  # the two decoders agree exactly
        assert np.array_equal(a[k], np.asarray(p[k], dtype=a[k].dtype)), k
        assert np.array_equal(a[k], a2[k]), k
    print(f"input: {what}: {len(items)} files, {n:,} ticks, {sum(len(d) for d, _, _ in items) / 1e6:.1f} MB compressed")
    print(f"aio (numpy, 1 thread)   {t_aio:7.3f} s  {n / t_aio / 1e6:6.2f} M ticks/s")
    print(f"aio ({os.cpu_count()} threads)         {t_thr:7.3f} s  {n / t_thr / 1e6:6.2f} M ticks/s")
    print(f"peer (struct.iter_unpack) {t_peer:7.3f} s  {n / t_peer / 1e6:6.2f} M ticks/s")
    print(f"parsing only: aio {t_aio_parse:.3f} s, peer {t_peer_parse:.3f} s")
    print(json.dumps({
        "benchmark": "dukascopy_decode",
        "files": len(items),
        "ticks": n,
        "aio_s": round(t_aio, 4),
        "aio_threads_s": round(t_thr, 4),
        "peer_s": round(t_peer, 4),
        "aio_ticks_per_s": round(n / t_aio),
        "aio_threads_ticks_per_s": round(n / t_thr),
        "peer_ticks_per_s": round(n / t_peer),
        "parse_ratio": round(t_peer_parse / t_aio_parse, 2),
        "ratio": round(t_peer / t_aio, 2),
    }))


if __name__ == "__main__":
    main()
