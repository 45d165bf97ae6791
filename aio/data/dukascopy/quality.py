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


def spread_stats(frame: pl.DataFrame, decimal_factor: int, pip: float) -> dict:
    if frame.height == 0:
        return {"ticks": 0}
    s = ((pl.col("ask") - pl.col("bid")) * decimal_factor).round(0)
    r = frame.select(
        s.mean().alias("mean"), s.median().alias("median"), s.quantile(0.95, "nearest").alias("p95"),
        s.quantile(0.99, "nearest").alias("p99"), s.min().alias("min"), s.max().alias("max"),
        (s == 0).sum().alias("zero"),
    ).row(0, named=True)
    points = {k: float(r[k]) for k in ("mean", "median", "p95", "p99", "min", "max")}
    return {
        "unit": "points",
        **points,
        "mean_pips": points["mean"] / (decimal_factor * pip),
        "zero_spread_ticks": int(r["zero"]),
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
    per_hour = np.bincount(ts // NS_PER_HOUR - first_hour, minlength=hours.size) if ts.size else np.zeros(hours.size, np.int64)
    has_ticks = per_hour[: hours.size] > 0
    closed = market_closed(hours, trades_weekends)
    gaps = ~has_ticks & ~closed & ~unavailable
    dups = int(frame.height - frame.get_column("ts_event").n_unique()) if frame.height else 0
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
