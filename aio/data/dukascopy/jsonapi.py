"""The Dukascopy JSON API (the feed dukascopy-node moved to in 2026): failover source.

Ticks of one hour come from ``{api}/ticks/{CODE}/{YYYY}/{M}/{D}/{H}`` (CODE like
``EUR-USD``, month and day one-based, unpadded). The body is delta-encoded::

    {"timestamp": hour start ms, "multiplier": price unit, "ask": first ask, "bid": first bid,
     "times": [ms deltas], "asks": [deltas in units], "bids": [...],
     "askVolumes": [...], "bidVolumes": [...]}

``times[0]`` is the first tick's offset from ``timestamp``. Prices and times equal the
bi5 feed's exactly; volumes are in other units (not millions), so the bi5 volume
scale is approximated by /1e6 and results from this source say so in their quality.
Candles: ``{api}/candles/{minute|hour|day}/{CODE}/{BID|ASK}/{YYYY}[/{M}][/{D}]`` with
``times`` deltas in units of ``shift`` ms and OHLC deltas in units of ``multiplier``.
"""

from __future__ import annotations

import json

import numpy as np

from aio.data.dukascopy.bi5 import MS_PER_HOUR, TICK_DTYPE, CorruptFileError, hour_datetime, verify_ticks

VOLUME_SCALE = 1e6  # JSON volumes are units, bi5 volumes millions (approximately; see module doc)


def tick_url(api_url: str, code: str, hour: int) -> str:
    t = hour_datetime(hour)
    return f"{api_url.rstrip('/')}/ticks/{code}/{t.year}/{t.month}/{t.day}/{t.hour}"


def _load(body: bytes) -> dict:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"not a JSON document ({exc})") from None
    if not isinstance(doc, dict):
        raise CorruptFileError("JSON API body is not an object")
    return doc


def _units(first: float | None, deltas: np.ndarray, multiplier: float) -> np.ndarray:
    if first is None:
        raise CorruptFileError("JSON API body has deltas but no first value")
    return np.int64(round(first / multiplier)) + np.cumsum(deltas, dtype=np.int64)


def _to_points(units: np.ndarray, multiplier: float, decimal_factor: int) -> np.ndarray:
    ratio = multiplier * decimal_factor
    if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
        return units * int(round(ratio))
    return np.rint(units * ratio).astype(np.int64)


def decode_json_ticks(body: bytes, hour: int, decimal_factor: int) -> np.ndarray:
    """One hour of JSON API ticks as bi5 records (same dtype, points, volumes / 1e6)."""
    doc = _load(body)
    try:
        times = np.asarray(doc.get("times") or [], dtype=np.int64)
        cols = {k: np.asarray(doc.get(k) or [], dtype=np.float64) for k in ("asks", "bids", "askVolumes", "bidVolumes")}
        multiplier = float(doc["multiplier"])
        stamp = int(doc["timestamp"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(f"JSON API tick body lacks a field or has a bad value ({exc})") from None
    if stamp != hour * 3_600_000:
        raise CorruptFileError(f"JSON API body is for timestamp {stamp}, not hour start {hour * 3_600_000}")
    n = times.size
    if any(c.size != n for c in cols.values()):
        raise CorruptFileError("JSON API tick arrays differ in length")
    out = np.empty(n, dtype=TICK_DTYPE)
    if n == 0:
        return out
    if multiplier <= 0 or (times < 0).any():
        raise CorruptFileError("JSON API ticks with a non-positive multiplier or negative time delta")
    ms = np.cumsum(times)
    if ms[-1] >= MS_PER_HOUR:
        raise CorruptFileError("JSON API tick outside the hour")
    out["ms"] = ms
    for side in ("ask", "bid"):
        units = _units(doc.get(side), cols[side + "s"].astype(np.int64), multiplier)
        out[side] = _to_points(units, multiplier, decimal_factor)
    out["ask_volume"] = cols["askVolumes"] / VOLUME_SCALE
    out["bid_volume"] = cols["bidVolumes"] / VOLUME_SCALE
    verify_ticks(out)
    return out


def decode_json_candles(body: bytes) -> dict[str, np.ndarray]:
    """Candles as columns: ``ms`` (UTC epoch ms), open/high/low/close (floats), volume."""
    doc = _load(body)
    try:
        m = float(doc["multiplier"])
        shift = int(doc.get("shift") or 60_000)
        times = np.asarray(doc.get("times") or [], dtype=np.int64)
        stamp = int(doc["timestamp"])
        out: dict[str, np.ndarray] = {"ms": stamp + np.cumsum(times) * shift}
        for key, first in (("opens", "open"), ("highs", "high"), ("lows", "low"), ("closes", "close")):
            deltas = np.asarray(doc.get(key) or [], dtype=np.int64)
            if deltas.size != times.size:
                raise CorruptFileError(f"JSON API candle array {key} differs in length from times")
            units = _units(doc.get(first), deltas, m) if deltas.size else deltas
            out[first] = units * m
        out["volume"] = np.asarray(doc.get("volumes") or [], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(f"JSON API candle body lacks a field or has a bad value ({exc})") from None
    return out
