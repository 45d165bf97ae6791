"""Per-bar numeric features, all causal: the value at bar ``i`` uses bars ``<= i`` only.

Every function takes whole-series arrays and returns whole-series arrays; the dataset
then picks the rows of its decision bars. Warm-up values are NaN.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from aio.dataset.config import DatasetConfig, RegimeConfig

REGIMES = ("trending", "ranging", "volatile", "quiet")

# FX sessions in each centre's local time, [open, close) in minutes of the local day.
# Local clocks make DST automatic: London 08:00-17:00 is 07:00-16:00 UTC in summer.
SESSIONS: dict[str, tuple[str, int, int]] = {
    "asia": ("Asia/Tokyo", 9 * 60, 18 * 60),
    "london": ("Europe/London", 8 * 60, 17 * 60),
    "newyork": ("America/New_York", 8 * 60, 17 * 60),
}


def column_safe(name: str) -> str:
    """A store-safe column name (Lance forbids '.' in top-level names)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", str(name))


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), 0.0)


def lagged(x: np.ndarray, k: int) -> np.ndarray:
    """``x[i - k]`` (NaN for ``i < k``)."""
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def rolling(x: np.ndarray, w: int, fn: str) -> np.ndarray:
    """Trailing-window mean/std/sum over ``x[i-w+1 .. i]`` (NaN until the window is full)."""
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        view = np.lib.stride_tricks.sliding_window_view(x, w)
        out[w - 1 :] = getattr(view, fn)(axis=1)
    return out


def trailing_mean(x: np.ndarray, w: int, min_periods: int) -> np.ndarray:
    """Mean of the finite values among the last ``w`` (fewer at the start, at least ``min_periods``)."""
    finite = np.isfinite(x)
    vals = np.where(finite, x, 0.0)
    csum = np.concatenate([[0.0], np.cumsum(vals)])
    ccnt = np.concatenate([[0], np.cumsum(finite)])
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(0, i - w)
    s, c = csum[i] - csum[lo], ccnt[i] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c >= min_periods, s / np.maximum(c, 1), np.nan)


def missing_inputs(a: dict[str, np.ndarray]) -> dict[str, str]:
    """Bar columns with no value at all (a file without spread or volume) -> the note saying
    which features are left out. Partly missing columns stay: their NaNs are warm-up or gaps."""
    notes = {
        "spread_mean": "spread_pips left out: the bars have no spread (a file source can assume one: data.spread_pips)",
        "volume": "volume_z left out: the bars have no volume",
    }
    return {k: why for k, why in notes.items() if k in a and not np.isfinite(np.asarray(a[k], dtype=np.float64)).any()}


def ohlcv_features(a: dict[str, np.ndarray], cfg: DatasetConfig, pip: float) -> dict[str, np.ndarray]:
    o, h, l, c, v = (a[k] for k in ("open", "high", "low", "close", "volume"))
    rng = h - l
    f: dict[str, np.ndarray] = {
        "body_ratio": _safe_div(c - o, rng),
        "upper_wick_ratio": _safe_div(h - np.maximum(o, c), rng),
        "lower_wick_ratio": _safe_div(np.minimum(o, c) - l, rng),
        "range_pips": rng / pip,
        "close_pos": _safe_div(c - l, rng),  # where the close sits in the bar's range
    }
    logc = np.log(c)
    for k in cfg.features.return_lags:
        f[f"logret_{k}"] = logc - lagged(logc, int(k))
    r1 = logc - lagged(logc, 1)
    w = cfg.features.vol_window
    f[f"vol_{w}"] = rolling(r1, w, "std")
    if "volume" not in missing_inputs(a):
        vw = cfg.features.volume_window
        mean, std = rolling(v, vw, "mean"), rolling(v, vw, "std")
        f[f"volume_z_{vw}"] = np.where(np.isfinite(std), _safe_div(v - mean, std), np.nan)
    return f


def time_features(ts_init: np.ndarray) -> dict[str, np.ndarray]:
    """Cyclic hour-of-day and day-of-week of the decision time (bar close), UTC."""
    t = pl.Series(ts_init).cast(pl.Datetime("ns", "UTC"))
    minute = (t.dt.hour().cast(pl.Int32) * 60 + t.dt.minute().cast(pl.Int32)).to_numpy().astype(np.float64)
    weekday = (t.dt.weekday().cast(pl.Int32) - 1).to_numpy().astype(np.float64)  # Monday = 0
    day = 2 * np.pi * minute / 1440.0
    week = 2 * np.pi * (weekday + minute / 1440.0) / 7.0
    return {"hour_sin": np.sin(day), "hour_cos": np.cos(day), "dow_sin": np.sin(week), "dow_cos": np.cos(week)}


def session_flags(ts_init: np.ndarray) -> dict[str, np.ndarray]:
    """1.0 while a session is open at the decision time (local clock, Mon-Fri), else 0.0."""
    t = pl.Series(ts_init).cast(pl.Datetime("ns", "UTC"))
    out: dict[str, np.ndarray] = {}
    for name, (tz, start, end) in SESSIONS.items():
        local = t.dt.convert_time_zone(tz)
        minute = (local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute().cast(pl.Int32)).to_numpy()
        weekday = local.dt.weekday().to_numpy()  # 1 = Monday .. 7 = Sunday
        out[f"session_{name}"] = ((minute >= start) & (minute < end) & (weekday <= 5)).astype(np.float64)
    out["session_overlap"] = out["session_london"] * out["session_newyork"]
    return out


def regime(close: np.ndarray, cfg: RegimeConfig) -> np.ndarray:
    """Regime code per bar (index into :data:`REGIMES`), -1 during warm-up."""
    L = cfg.lookback
    logc = np.log(close)
    r1 = logc - lagged(logc, 1)
    v = rolling(r1, L, "std")
    base = trailing_mean(v, cfg.baseline, min_periods=L)
    moves = rolling(np.abs(np.diff(close, prepend=np.nan)), L, "sum")
    er = _safe_div(np.abs(close - lagged(close, L)), moves)
    ratio = _safe_div(v, base)
    code = np.where(er >= cfg.trend_er, 0, 1)
    code = np.where(ratio <= cfg.quiet_ratio, 3, code)
    code = np.where(ratio >= cfg.volatile_ratio, 2, code)
    warm = ~(np.isfinite(v) & np.isfinite(base) & np.isfinite(moves) & np.isfinite(lagged(close, L)))
    return np.where(warm, -1, code).astype(np.int8)


def compute_features(
    arrays: dict[str, np.ndarray],
    ts_init: np.ndarray,
    indicators: dict[str, np.ndarray],
    cfg: DatasetConfig,
    pip: float,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(feature name -> whole-series float64 array, regime codes)."""
    f = ohlcv_features(arrays, cfg, pip)
    if "spread_mean" not in missing_inputs(arrays):
        f["spread_pips"] = np.asarray(arrays["spread_mean"], dtype=np.float64) / pip
    f.update(time_features(ts_init))
    f.update(session_flags(ts_init))
    reg = regime(np.asarray(arrays["close"], dtype=np.float64), cfg.regime)
    for k, name in enumerate(REGIMES):
        f[f"regime_{name}"] = np.where(reg < 0, np.nan, (reg == k).astype(np.float64))
    if cfg.features.indicators:
        n = len(ts_init)
        for name in sorted(indicators):
            col = np.asarray(indicators[name], dtype=np.float64)
            if col.shape != (n,):
                raise ValueError(f"indicator {name!r} has shape {col.shape}, expected ({n},) like the bars")
            f[f"ind_{column_safe(name)}"] = col
    return f, reg
