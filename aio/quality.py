"""Data quality of ticks and bars: the dict behind ``data_quality.json``.

Market hours follow the FX convention: a trading day runs from 17:00 New York to
17:00 New York, so the market is closed from Friday 17:00 to Sunday 17:00 New York
(21:00/22:00 UTC depending on US daylight saving, resolved with zoneinfo). A
missing bar in that window is expected; a missing bar in trading time is a gap.
The trading days of 25 December and 1 January are counted apart ("holiday"):
many feeds print a few thin bars then, others none.

``check_bars(bars)`` and ``check_ticks(frame)`` are pure: they read, never fix.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from aio.records import NS_PER_HOUR, NS_PER_SECOND, Bars

NY = "America/New_York"
NS_PER_DAY = 24 * NS_PER_HOUR
# The FX trading day starts at 17:00 New York: shifting New York wall time by +7 h
# makes that instant midnight, so "day of week of the shifted time" is the trading day.
FX_DAY_SHIFT_NS = 7 * NS_PER_HOUR
MAX_LISTED = 50  # ranges listed in the report; counts are always complete
MAX_SLOTS = 20_000_000  # missing-bar slots classified one by one; beyond that only counted
SCHEDULE = "fx: closed Fri 17:00 to Sun 17:00 New York (zoneinfo); 25 Dec and 1 Jan counted as holiday"


# -- calendar ------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _hourly_offsets(tz: str, h0: int, h1: int) -> np.ndarray:
    """UTC offset in ns of ``tz`` for every UTC hour index in [h0, h1].

    zoneinfo is asked once a day; only days whose offset changes (DST) are resolved
    per hour. Every DST rule of the zones we use switches on a whole UTC hour.
    """
    z = ZoneInfo(tz)

    def off(h: int) -> int:
        return int(datetime.fromtimestamp(h * 3600, tz=z).utcoffset().total_seconds()) * NS_PER_SECOND

    n = h1 - h0 + 1
    out = np.empty(n, dtype=np.int64)
    d0 = h0 - h0 % 24
    for day_start in range(d0, h1 + 1, 24):
        a, b = off(day_start), off(day_start + 23)
        lo, hi = max(day_start, h0), min(day_start + 23, h1)
        if a == b:
            out[lo - h0 : hi - h0 + 1] = a
        else:
            for h in range(lo, hi + 1):
                out[h - h0] = off(h)
    return out


def utc_offset_ns(ts: np.ndarray, tz: str) -> np.ndarray:
    """UTC offset (ns) of ``tz`` at each int64-ns UTC instant in ``ts``."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    hours = ts // NS_PER_HOUR
    h0, h1 = int(hours.min()), int(hours.max())
    if h1 - h0 > 24 * 366 * 60:  # absurd spans: fall back to the distinct hours only
        uniq, inv = np.unique(hours, return_inverse=True)
        offs = np.array([_hourly_offsets(tz, int(h), int(h))[0] for h in uniq], dtype=np.int64)
        return offs[inv]
    return _hourly_offsets(tz, h0, h1)[hours - h0]


def local_ns(ts: np.ndarray, tz: str) -> np.ndarray:
    """Wall-clock time of ``tz`` as ns since the local epoch (for time-of-day arithmetic)."""
    ts = np.asarray(ts, dtype=np.int64)
    return ts + utc_offset_ns(ts, tz)


def fx_trading_day(ts: np.ndarray) -> np.ndarray:
    """Trading day (days since 1970-01-01) of each instant: New York 17:00 starts a new day."""
    return (local_ns(ts, NY) + FX_DAY_SHIFT_NS) // NS_PER_DAY


def fx_closed(ts: np.ndarray) -> np.ndarray:
    """True where the FX market is in its weekly close (Fri 17:00 - Sun 17:00 New York)."""
    day = fx_trading_day(ts)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday (3); Monday = 0
    return weekday >= 5


def fx_holiday(ts: np.ndarray) -> np.ndarray:
    """True where the instant belongs to the trading day of 25 December or 1 January."""
    day = fx_trading_day(ts).astype("datetime64[D]")
    month = day.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (day - day.astype("datetime64[M]")).astype(np.int64) + 1
    return ((month == 12) & (dom == 25)) | ((month == 1) & (dom == 1))


# -- formatting ----------------------------------------------------------------------


def iso(ns: int | np.integer | None) -> str | None:
    """int ns UTC -> '2022-01-02T22:00:00Z' (fractional seconds only when present)."""
    if ns is None:
        return None
    ns = int(ns)
    secs, rem = divmod(ns, NS_PER_SECOND)
    t = datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if rem:
        t += f".{rem:09d}".rstrip("0")
    return t + "Z"


def _ranges(slots: np.ndarray, step: int, label: str = "bars") -> list[dict[str, Any]]:
    """Sorted slot starts -> merged runs [{'start', 'end' (exclusive), label: count}]."""
    if slots.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(slots) != step)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [slots.size - 1]])
    return [
        {"start": iso(slots[a]), "end": iso(slots[b] + step), label: int(b - a + 1)}
        for a, b in zip(starts, ends)
    ]


def _stats(values: np.ndarray, scale: float) -> dict[str, float] | None:
    v = values[np.isfinite(values)] / scale
    if v.size == 0:
        return None
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "p95": float(np.quantile(v, 0.95)),
        "p99": float(np.quantile(v, 0.99)),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def _order(ts: np.ndarray) -> dict[str, int]:
    d = np.diff(ts)
    return {"non_monotonic": int((d < 0).sum()), "duplicate_timestamps": int(ts.size - np.unique(ts).size)}


# -- bars ----------------------------------------------------------------------------


def modal_step(ts: np.ndarray) -> int | None:
    """Most common positive spacing of sorted unique times (the timeframe of bar files)."""
    u = np.unique(np.asarray(ts, dtype=np.int64))
    d = np.diff(u)
    d = d[d > 0]
    if d.size == 0:
        return None
    vals, counts = np.unique(d, return_counts=True)
    return int(vals[np.argmax(counts)])


def missing_slots(opens: np.ndarray, step: int) -> tuple[np.ndarray, int]:
    """Bar opens absent between the first and last bar on the ``step`` grid, and the
    number of bars whose spacing is not a multiple of ``step`` (misaligned)."""
    u = np.unique(opens)
    if u.size < 2:
        return np.zeros(0, dtype=np.int64), 0
    d = np.diff(u)
    misaligned = int((d % step != 0).sum())
    k = np.maximum(d // step - 1, 0)
    total = int(k.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), misaligned
    base = np.repeat(u[:-1], k)
    first_idx = np.repeat(np.cumsum(k) - k, k)
    j = np.arange(total, dtype=np.int64) - first_idx + 1
    return base + j * step, misaligned


def check_bars(bars: Bars | pl.DataFrame, *, pip: float | None = None) -> dict[str, Any]:
    """Quality of a bar frame: counts, order, gaps in trading time vs market closed,
    weekend bars (flat ones flagged), OHLC consistency, spread statistics (pips)."""
    frame = bars.frame if isinstance(bars, Bars) else bars
    pip = pip if pip is not None else (bars.pip if isinstance(bars, Bars) else 1e-4)
    out: dict[str, Any] = {"bars": int(frame.height), "schedule": SCHEDULE}
    if isinstance(bars, Bars):
        out.update(timeframe=bars.timeframe, side=bars.side, synthetic=bars.synthetic)
    if frame.height == 0:
        return out
    ts = frame.get_column("ts_event").to_numpy().astype(np.int64)
    ts_init = frame.get_column("ts_init").to_numpy().astype(np.int64)
    o, h, l, c = (frame.get_column(k).to_numpy().astype(np.float64) for k in ("open", "high", "low", "close"))
    # the timeframe is the modal bar length (ts_init - ts_event), else the modal spacing
    lengths, counts = np.unique(ts_init - ts, return_counts=True)
    step = int(lengths[np.argmax(counts)])
    step = step if step > 0 else modal_step(ts)
    out.update(first=iso(ts.min()), last=iso(ts.max()), first_close=iso(ts_init.min()), last_close=iso(ts_init.max()))
    out.update(_order(ts))
    out["init_not_after_event"] = int((ts_init <= ts).sum())  # a bar must close after it opens

    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c)
    out["non_finite_prices"] = int((~finite).sum())
    out["non_positive_prices"] = int((finite & (np.minimum.reduce([o, h, l, c]) <= 0)).sum())
    out["high_below_low"] = int((h < l).sum())
    out["open_close_outside_range"] = int(((o > h) | (o < l) | (c > h) | (c < l)).sum())
    flat = (o == h) & (h == l) & (l == c)

    if step:
        closed = fx_closed(ts) & fx_closed(ts + step - 1)
        out["timeframe_ns"] = int(step)
        out["bars_in_market_closed_time"] = int(closed.sum())
        out["flat_bars_in_market_closed_time"] = int((closed & flat).sum())
        out["flat_bars_in_trading_time"] = int((~closed & flat).sum())
        u = np.unique(ts)
        expected_missing = int(np.maximum(np.diff(u) // step - 1, 0).sum()) if u.size > 1 else 0
        out["missing_bars"] = expected_missing
        out["misaligned_bars"] = int((np.diff(u) % step != 0).sum())
        if expected_missing > MAX_SLOTS:
            out["gaps_note"] = f"{expected_missing} missing bars: too many to classify one by one"
        else:
            slots, _ = missing_slots(ts, step)
            s_closed = fx_closed(slots) & fx_closed(slots + step - 1)
            s_hol = ~s_closed & fx_holiday(slots)
            s_gap = ~s_closed & ~s_hol
            gaps = _ranges(slots[s_gap], step)
            out["missing_bars_market_closed"] = int(s_closed.sum())
            out["missing_bars_holiday"] = int(s_hol.sum())
            out["missing_bars_trading_time"] = int(s_gap.sum())
            out["gap_count"] = len(gaps)
            out["largest_gap"] = max(gaps, key=lambda g: g["bars"]) if gaps else None
            out["gaps"] = gaps[:MAX_LISTED]
            out["gaps_truncated"] = len(gaps) > MAX_LISTED
    else:
        out["flat_bars"] = int(flat.sum())

    if "spread_mean" in frame.columns:
        sp = frame.get_column("spread_mean").to_numpy().astype(np.float64)
        known = np.isfinite(sp)
        out["spread"] = {
            "unit": "pips",
            "bars_with_spread": int(known.sum()),
            "zero": int((sp == 0).sum()),
            "negative": int((sp < 0).sum()),
            "stats": _stats(sp, pip),
        }
    if "ticks" in frame.columns:
        t = frame.get_column("ticks").to_numpy()
        out["ticks_total"] = int(np.nansum(t))
    return out


# -- ticks ---------------------------------------------------------------------------


def check_ticks(frame: pl.DataFrame, *, pip: float = 1e-4) -> dict[str, Any]:
    """Quality of a tick frame: counts, order, crossed/zero spreads, ticks in the weekly
    close, hours without ticks in trading time, spread statistics (pips)."""
    out: dict[str, Any] = {"ticks": int(frame.height), "schedule": SCHEDULE}
    if frame.height == 0:
        return out
    ts = frame.get_column("ts_event").to_numpy().astype(np.int64)
    bid = frame.get_column("bid").to_numpy().astype(np.float64)
    ask = frame.get_column("ask").to_numpy().astype(np.float64)
    out.update(first=iso(ts.min()), last=iso(ts.max()))
    out.update(_order(ts))
    finite = np.isfinite(bid) & np.isfinite(ask)
    out["non_finite_prices"] = int((~finite).sum())
    out["non_positive_prices"] = int((finite & ((bid <= 0) | (ask <= 0))).sum())
    spread = ask - bid
    out["zero_spread_ticks"] = int((spread == 0).sum())
    out["negative_spread_ticks"] = int((spread < 0).sum())
    out["spread"] = {"unit": "pips", "stats": _stats(spread, pip)}
    closed = fx_closed(ts)
    out["ticks_in_market_closed_time"] = int(closed.sum())

    hours = ts // NS_PER_HOUR
    h0, h1 = int(hours.min()), int(hours.max())
    counts = np.bincount(hours - h0, minlength=h1 - h0 + 1)
    slots = (np.arange(h0, h1 + 1, dtype=np.int64)) * NS_PER_HOUR
    empty = counts == 0
    s_closed = fx_closed(slots) & fx_closed(slots + NS_PER_HOUR - 1)
    s_hol = ~s_closed & fx_holiday(slots)
    gap = empty & ~s_closed & ~s_hol
    gaps = _ranges(slots[gap], NS_PER_HOUR, "hours")
    out["hours"] = int(slots.size)
    out["hours_with_ticks"] = int((~empty).sum())
    out["empty_hours_market_closed"] = int((empty & s_closed).sum())
    out["empty_hours_holiday"] = int((empty & s_hol).sum())
    out["gap_hours"] = int(gap.sum())
    out["gaps"] = gaps[:MAX_LISTED]
    out["gaps_truncated"] = len(gaps) > MAX_LISTED
    open_counts = counts[~s_closed & ~empty]
    out["ticks_per_open_hour_median"] = float(np.median(open_counts)) if open_counts.size else 0.0
    return out
