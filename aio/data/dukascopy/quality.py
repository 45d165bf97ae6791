"""Data quality of a tick range: market-closed hours vs real gaps, spread statistics, counts.

Market hours follow the FX convention: a trading day runs from 17:00 New York time
to 17:00 the next day, so the weekly close is Friday 17:00 to Sunday 17:00 New York
(22:00/21:00 UTC depending on US daylight saving) and the Christmas and New Year
closes are the trading days of 25 December and 1 January. The data itself stays UTC;
New York time only decides which empty hours are expected. Crypto trades around the
clock. An hour without ticks outside those windows is a real gap.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import polars as pl

from aio.records import NS_PER_HOUR

NY = "America/New_York"
MAX_LISTED = 50  # ranges listed in data_quality.json; counts are always complete


def market_closed(hours: np.ndarray, trades_weekends: bool = False) -> np.ndarray:
    """Boolean per hour index (hours since the epoch, UTC): is the market closed then?"""
    hours = np.asarray(hours, dtype=np.int64)
    if trades_weekends or hours.size == 0:
        return np.zeros(hours.shape, dtype=bool)
    utc = pd.DatetimeIndex(hours * NS_PER_HOUR, tz="UTC")
    # the trading day an instant belongs to: New York wall time shifted by 7 h (17:00 -> 00:00)
    day = utc.tz_convert(NY).tz_localize(None) + pd.Timedelta(hours=7)
    weekend = day.day_of_week >= 5
    holiday = ((day.month == 12) & (day.day == 25)) | ((day.month == 1) & (day.day == 1))
    return np.asarray(weekend | holiday)


def suspect_empty(first_hour: int, has_ticks: np.ndarray, trades_weekends: bool = False) -> np.ndarray:
    """Which hours of a window without ticks look like holes in the feed, not a quiet market.

    An empty hour is suspect when the market is open then and the run of empty open
    hours it belongs to has ticks on both sides. A run that touches a closed hour
    (weekend, 25 Dec, 1 Jan) is the thin edge of a close and is believed. Beyond the
    window's edges nothing is fetched yet, so there the calendar decides: an open hour
    across the edge counts as one with ticks.
    """
    has_ticks = np.asarray(has_ticks, dtype=bool)
    n = has_ticks.size
    hours = np.arange(first_hour - 1, first_hour + n + 1, dtype=np.int64)
    closed = market_closed(hours, trades_weekends)
    ticks = np.concatenate([[not closed[0]], has_ticks, [not closed[-1]]])
    empty_open = ~ticks & ~closed
    out = np.zeros(hours.size, dtype=bool)
    i = 1
    while i <= n:
        if not empty_open[i]:
            i += 1
            continue
        j = i
        while j <= n and empty_open[j]:
            j += 1
        if ticks[i - 1] and ticks[j]:  # bounded by ticks, not by a closed hour
            out[i:j] = True
        i = j
    return out[1:-1]


def hour_ranges(hours: np.ndarray) -> list[str]:
    """Consecutive hour indices -> ['2012-12-01T00:00Z/2012-12-02T22:00Z', ...] (end exclusive)."""
    out: list[str] = []
    if len(hours) == 0:
        return out
    hours = np.sort(np.asarray(hours, dtype=np.int64))
    breaks = np.flatnonzero(np.diff(hours) != 1)
    starts = np.concatenate([[hours[0]], hours[breaks + 1]])
    ends = np.concatenate([hours[breaks], [hours[-1]]]) + 1
    for a, b in zip(starts, ends):
        out.append(f"{_iso(a)}/{_iso(b)}")
    return out


def _iso(hour: int) -> str:
    return datetime.fromtimestamp(int(hour) * 3600, tz=timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def _kth(cum: np.ndarray, k: int) -> int:
    """k-th smallest value (0-based) from the cumulative counts of a bincount."""
    return int(np.searchsorted(cum, k + 1))


def spread_stats(frame: pl.DataFrame, decimal_factor: int, pip: float) -> dict:
    """Spread in points; quantiles from a histogram of the integer spreads (O(n), no sort)."""
    n = frame.height
    if n == 0:
        return {"ticks": 0}
    spread = np.rint((frame.get_column("ask").to_numpy() - frame.get_column("bid").to_numpy()) * decimal_factor)
    spread = spread.astype(np.int64)
    lo, hi = int(spread.min()), int(spread.max())
    if lo >= 0 and hi < 10_000_000:
        cum = np.cumsum(np.bincount(spread))
        median = (_kth(cum, (n - 1) // 2) + _kth(cum, n // 2)) / 2
        p95, p99 = (_kth(cum, int(np.ceil(q * n)) - 1) for q in (0.95, 0.99))
    else:  # negative or absurd spreads: the generic (sorting) way
        median = float(np.median(spread))
        p95, p99 = (float(np.percentile(spread, q, method="inverted_cdf")) for q in (95, 99))
    mean = float(spread.mean())
    return {
        "unit": "points",
        "mean": mean,
        "median": float(median),
        "p95": float(p95),
        "p99": float(p99),
        "min": float(lo),
        "max": float(hi),
        "mean_pips": mean / (decimal_factor * pip),
        "zero_spread_ticks": int(np.count_nonzero(spread == 0)),
    }


def quality_report(
    frame: pl.DataFrame,
    first_hour: int,
    end_hour: int,
    *,
    decimal_factor: int,
    pip: float,
    trades_weekends: bool,
    unavailable_hours: np.ndarray | None = None,
) -> dict:
    """Everything data_quality.json says about one symbol's ticks over [first_hour, end_hour)."""
    hours = np.arange(first_hour, end_hour, dtype=np.int64)
    unavailable = np.zeros(hours.shape, dtype=bool)
    if unavailable_hours is not None and len(unavailable_hours):
        unavailable = np.isin(hours, unavailable_hours)
    ts = frame.get_column("ts_event").to_numpy() if frame.height else np.empty(0, np.int64)
    per_hour = np.zeros(hours.size, np.int64)
    if ts.size:
        per_hour = np.bincount(ts // NS_PER_HOUR - first_hour, minlength=hours.size)
    has_ticks = per_hour[: hours.size] > 0
    closed = market_closed(hours, trades_weekends)
    gaps = ~has_ticks & ~closed & ~unavailable
    dups = int(np.count_nonzero(np.diff(ts) == 0))  # ts is sorted
    gap_list = hour_ranges(hours[gaps])
    return {
        "ticks": int(frame.height),
        "first_tick": _ns_iso(ts[0]) if ts.size else None,
        "last_tick": _ns_iso(ts[-1]) if ts.size else None,
        "hours": int(hours.size),
        "hours_with_ticks": int(has_ticks.sum()),
        "market_closed_hours": int((closed & ~has_ticks).sum()),
        "market_closed_hours_with_ticks": int((closed & has_ticks).sum()),
        "market_closed": hour_ranges(hours[closed & ~has_ticks])[:MAX_LISTED],
        "gap_hours": int(gaps.sum()),
        "gaps": gap_list[:MAX_LISTED],
        "gaps_truncated": len(gap_list) > MAX_LISTED,
        "not_yet_available_hours": int(unavailable.sum()),
        "ticks_per_open_hour_median": float(np.median(per_hour[has_ticks])) if has_ticks.any() else 0.0,
        "duplicate_timestamps": dups,
        "schedule": "24x7" if trades_weekends else "fx: closed Fri 17:00 to Sun 17:00 New York, 25 Dec, 1 Jan",
        "spread": spread_stats(frame, decimal_factor, pip),
    }


def _ns_iso(ns: int) -> str:
    return datetime.fromtimestamp(int(ns) / 1e9, tz=timezone.utc).isoformat().replace("+00:00", "Z")
