"""Benchmark: the classic indicator set on 1M bars, aio vs calling TA-Lib directly.

Both sides compute the same 16 columns from the same float64 arrays (aio also from a
polars frame, as the pipeline does); the script checks they agree bit for bit, then
times each (best of several interleaved runs) and prints, as its last line, a JSON
object with ``ratio`` = direct TA-Lib time / aio time (1.0 = no overhead).

    python benchmarks/indicators.py [--bars 1000000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import talib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aio.indicators import compute_indicator_set  # noqa: E402
from aio.indicators.sets import BUILTIN_SETS  # noqa: E402


def synthetic_bars(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    """A random-walk EURUSD-like series (the benchmark needs size, not market realism)."""
    rng = np.random.default_rng(seed)
    close = 1.10 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n)))
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.normal(0.0, 1.5e-4, (2, n)))
    return {
        "open": open_,
        "high": np.maximum(open_, close) + wick[0],
        "low": np.minimum(open_, close) - wick[1],
        "close": close,
        "volume": rng.integers(100, 10_000, n).astype(np.float64),
    }


def direct_talib(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What one would write by hand with TA-Lib for the classic set's columns."""
    o, h, l, c = b["open"], b["high"], b["low"], b["close"]
    macd = talib.EMA(c, 12) - talib.EMA(c, 26)
    signal = talib.EMA(macd, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    k, d = talib.STOCH(h, l, c, 14, 3, 0, 3, 0)
    return {
        "rsi_14": talib.RSI(c, 14),
        "macd": macd, "macd_signal": signal, "macd_hist": macd - signal,
        "bb_upper": upper, "bb_middle": middle, "bb_lower": lower,
        "atr_14": talib.ATR(h, l, c, 14),
        "ema_20": talib.EMA(c, 20), "ema_50": talib.EMA(c, 50),
        "sma_20": talib.SMA(c, 20), "sma_50": talib.SMA(c, 50), "sma_200": talib.SMA(c, 200),
        "stoch_k": k, "stoch_d": d,
        "adx_14": talib.ADX(h, l, c, 14),
    }


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)

    bars = synthetic_bars(args.bars)
    frame = pl.DataFrame(bars)
    cfg = BUILTIN_SETS["classic"]

    ours = compute_indicator_set(bars, cfg)
    ref = direct_talib(bars)
    assert list(ours) == list(ref), (list(ours), list(ref))
    for key in ref:
        assert np.array_equal(ours[key], ref[key], equal_nan=True), f"column {key} differs"
    from_frame = compute_indicator_set(frame, cfg)
    for key in ref:
        assert np.array_equal(from_frame[key], ref[key], equal_nan=True), f"column {key} differs (polars frame)"

    t_direct, t_aio, t_frame = float("inf"), float("inf"), float("inf")
    for _ in range(args.repeat):  # interleaved, so machine noise hits both sides alike
        t_direct = min(t_direct, best_of(lambda: direct_talib(bars), 1))
        t_aio = min(t_aio, best_of(lambda: compute_indicator_set(bars, cfg), 1))
        t_frame = min(t_frame, best_of(lambda: compute_indicator_set(frame, cfg), 1))

    result = {
        "benchmark": "indicators.classic",
        "bars": args.bars,
        "columns": len(ref),
        "repeat": args.repeat,
        "talib_direct_s": round(t_direct, 5),
        "aio_s": round(t_aio, 5),
        "aio_polars_frame_s": round(t_frame, 5),
        "ratio": round(t_direct / t_aio, 4),
        "ratio_polars_frame": round(t_direct / t_frame, 4),
        "agree": True,
    }
    print(f"classic set, {args.bars:,} bars: TA-Lib direct {t_direct * 1e3:.1f} ms, aio {t_aio * 1e3:.1f} ms "
          f"(from a polars frame {t_frame * 1e3:.1f} ms)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
