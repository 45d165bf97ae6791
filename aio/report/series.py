"""Display series for the report (pure numpy): closed-market gaps, candle aggregation,
drawdown, period returns, calibration bins. Full data stays in the run's Parquet files;
these only decide what a chart draws.
"""

from __future__ import annotations

import numpy as np

MINUTE_NS = 60_000_000_000
# bucket widths (minutes) a candle chart may aggregate to, smallest first
BUCKETS_MIN = (1, 2, 3, 5, 10, 15, 30, 60, 120, 240, 480, 1440, 10080)


def bar_interval_ns(ts: np.ndarray) -> int:
    """The bars' timeframe: the most common step between consecutive bars."""
    if len(ts) < 2:
        return MINUTE_NS
    d = np.diff(np.asarray(ts, dtype=np.int64))
    d = d[d > 0]
    if not len(d):
        return MINUTE_NS
    vals, counts = np.unique(d, return_counts=True)
    return int(vals[np.argmax(counts)])


def gaps(ts: np.ndarray, step_ns: int, min_gap_ns: int | None = None, limit: int = 200) -> list[tuple[int, int]]:
    """Closed-market stretches [start, end) between bars: a break longer than
    ``min_gap_ns`` (default: 5 bars and at least an hour). At most ``limit`` (the longest)."""
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) < 2:
        return []
    thr = min_gap_ns if min_gap_ns is not None else max(5 * step_ns, 60 * MINUTE_NS)
    d = np.diff(ts)
    idx = np.flatnonzero(d - step_ns > thr)
    if len(idx) > limit:
        idx = np.sort(idx[np.argsort(d[idx])[-limit:]])
    return [(int(ts[i] + step_ns), int(ts[i + 1])) for i in idx]


def rangebreaks(gap_list: list[tuple[int, int]]) -> list[dict]:
    """plotly ``rangebreaks``: one (value, length) per gap, times as ISO strings (UTC)."""
    out = []
    for a, b in gap_list:
        start = np.datetime64(a, "ns").astype("datetime64[ms]")
        out.append({"values": [str(start).replace("T", " ")], "dvalue": (b - a) // 1_000_000})
    return out


def bucket_minutes(n_bars: int, step_ns: int, max_points: int) -> int:
    """The smallest bucket (a multiple of the bar step) that keeps the chart under ``max_points``."""
    step_min = max(1, step_ns // MINUTE_NS)
    for b in BUCKETS_MIN:
        if b >= step_min and b % step_min == 0 and n_bars * step_min / b <= max_points:
            return b
    return BUCKETS_MIN[-1]


def aggregate_ohlc(ts: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                   bucket_ns: int) -> tuple[np.ndarray, ...]:
    """OHLC resampled into time buckets (first open, highest high, lowest low, last close);
    each candle stamped with its first bar's time. Bars must be sorted by time."""
    ts = np.asarray(ts, dtype=np.int64)
    key = ts // bucket_ns
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(ts)]
    return (ts[starts], o[starts], np.maximum.reduceat(h, starts), np.minimum.reduceat(lo, starts), c[ends - 1])


def bucket_index(ts: np.ndarray, bucket_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) row indices of each time bucket."""
    key = np.asarray(ts, dtype=np.int64) // bucket_ns
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return starts, np.r_[starts[1:], len(key)]


def drawdown_pct(equity: np.ndarray) -> np.ndarray:
    """Percent below the running peak (<= 0); a non-positive peak is ruin: -100 %."""
    eq = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(eq)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 100.0 * (eq / peak - 1.0), -100.0)
    return np.maximum(dd, -100.0)


def period_returns(ts: np.ndarray, equity: np.ndarray, base: float, freq: str) -> tuple[np.ndarray, np.ndarray]:
    """Compounded percent return per UTC day (``freq="D"``) or calendar month (``"M"``):
    each period's last equity over the previous period's last (the first over ``base``).
    Returns (period start as datetime64, return %)."""
    ts = np.asarray(ts, dtype=np.int64).astype("datetime64[ns]")
    unit = "D" if freq == "D" else "M"
    key = ts.astype(f"datetime64[{unit}]")
    last = np.flatnonzero(np.r_[key[1:] != key[:-1], True])
    closes = np.asarray(equity, dtype=np.float64)[last]
    prev = np.r_[base, closes[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(prev > 0, 100.0 * (closes / prev - 1.0), np.nan)
    return key[last], ret


def reliability(proba: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-class calibration bins as :func:`aio.models.metrics.ece` cuts them:
    (mean confidence, hit rate, rows) per non-empty bin."""
    conf = np.max(proba, axis=1)
    hit = (np.argmax(proba, axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    n = np.bincount(idx, minlength=bins).astype(np.float64)
    sc = np.bincount(idx, weights=conf, minlength=bins)
    sh = np.bincount(idx, weights=hit, minlength=bins)
    m = n > 0
    return sc[m] / n[m], sh[m] / n[m], n[m].astype(np.int64)
