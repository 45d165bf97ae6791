"""The bi5 formats of the Dukascopy datafeed: decode, verify, encode.

Hourly tick file ``{SYM}/{YYYY}/{MM0}/{DD}/{HH}h_ticks.bi5`` (month zero-based):
LZMA "alone" container around 20-byte big-endian records
``ms from the hour start, ask, bid (integer points), ask volume, bid volume
(float32, millions)``. Candle files ``{BID|ASK}_candles_{min|hour|day}_1.bi5``:
24-byte records ``seconds from the period start, open, close, low, high, volume``.
A 0-byte file is a valid hour without ticks.

Decoding is one ``np.frombuffer`` per file; nothing loops per tick in Python.
"""

from __future__ import annotations

import lzma
from datetime import datetime, timezone
from typing import Literal

import numpy as np

from aio.errors import DataError
from aio.records import NS_PER_HOUR

TICK_DTYPE = np.dtype([("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_volume", ">f4"), ("bid_volume", ">f4")])
CANDLE_DTYPE = np.dtype(
    [("seconds", ">u4"), ("open", ">u4"), ("close", ">u4"), ("low", ">u4"), ("high", ">u4"), ("volume", ">f4")]
)
MS_PER_HOUR = 3_600_000
# Busiest real hours hold ~1e5 ticks (2 MB); a body that inflates past this is not a tick file.
MAX_DECODED_BYTES = 256 * 1024 * 1024

CandleTimeframe = Literal["min", "hour", "day"]


class CorruptFileError(DataError):
    """Bytes that are not a complete, plausible bi5 (or JSON API) file; never cached."""


# -- paths ----------------------------------------------------------------------------


def hour_datetime(hour: int) -> datetime:
    """Hour index (hours since the Unix epoch, UTC) -> aware datetime."""
    return datetime.fromtimestamp(hour * 3600, tz=timezone.utc)


def tick_path(symbol: str, hour: int) -> str:
    """Datafeed path of one hour's ticks; the month folder is zero-based."""
    t = hour_datetime(hour)
    return f"{symbol}/{t.year:04d}/{t.month - 1:02d}/{t.day:02d}/{t.hour:02d}h_ticks.bi5"


def candle_path(symbol: str, side: Literal["BID", "ASK"], timeframe: CandleTimeframe, t: datetime) -> str:
    """Datafeed path of a candle file: m1 per day, h1 per month, d1 per year."""
    if timeframe == "min":
        folder = f"{t.year:04d}/{t.month - 1:02d}/{t.day:02d}"
    elif timeframe == "hour":
        folder = f"{t.year:04d}/{t.month - 1:02d}"
    else:
        folder = f"{t.year:04d}"
    return f"{symbol}/{folder}/{side}_candles_{timeframe}_1.bi5"


# -- LZMA -----------------------------------------------------------------------------


def decompress(data: bytes) -> bytes:
    """Inflate one LZMA-alone stream; a truncated stream or trailing junk is an error, not partial data."""
    if not data:
        return b""
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    try:
        out = dec.decompress(data, max_length=MAX_DECODED_BYTES)
    except lzma.LZMAError as exc:
        raise CorruptFileError(f"not an LZMA stream ({exc})") from None
    if not dec.eof:
        if not dec.needs_input:
            raise CorruptFileError(f"inflates past {MAX_DECODED_BYTES} bytes")
        raise CorruptFileError(f"truncated LZMA stream ({len(data)} bytes, {len(out)} inflated)")
    if dec.unused_data:
        raise CorruptFileError(f"{len(dec.unused_data)} bytes of trailing junk after the LZMA stream")
    return out


def compress(raw: bytes, preset: int = 6) -> bytes:
    """The encoder side (tests, mirrors): an empty hour is a 0-byte file, as on the datafeed."""
    return lzma.compress(raw, format=lzma.FORMAT_ALONE, preset=preset) if raw else b""


# -- ticks ----------------------------------------------------------------------------


def decode_ticks(data: bytes, *, verify: bool = True) -> np.ndarray:
    """Records of one hourly tick file (big-endian structured array, unscaled integers)."""
    raw = decompress(data)
    if len(raw) % TICK_DTYPE.itemsize:
        raise CorruptFileError(f"{len(raw)} inflated bytes is not a whole number of 20-byte tick records")
    ticks = np.frombuffer(raw, dtype=TICK_DTYPE)
    if verify:
        verify_ticks(ticks)
    return ticks


def verify_ticks(ticks: np.ndarray) -> None:
    """Plausibility of decoded records: times inside the hour, positive prices, ask >= bid."""
    if ticks.size == 0:
        return
    ms, ask, bid = ticks["ms"], ticks["ask"], ticks["bid"]
    if int(ms.max()) >= MS_PER_HOUR:
        raise CorruptFileError(f"tick time {int(ms.max())} ms is outside the hour")
    if int(bid.min()) <= 0 or int(ask.min()) <= 0:
        raise CorruptFileError("non-positive price")
    crossed = int(np.count_nonzero(ask < bid))
    if crossed:
        raise CorruptFileError(f"{crossed} ticks with ask < bid")
    av, bv = ticks["ask_volume"], ticks["bid_volume"]
    if not (np.isfinite(av).all() and np.isfinite(bv).all()) or av.min() < 0 or bv.min() < 0:
        raise CorruptFileError("negative or non-finite volume")


def encode_ticks(ms, ask, bid, ask_volume, bid_volume, *, preset: int = 6) -> bytes:
    """bi5 bytes for the given columns (integers in points, volumes in millions)."""
    n = len(ms)
    rec = np.empty(n, dtype=TICK_DTYPE)
    rec["ms"], rec["ask"], rec["bid"] = ms, ask, bid
    rec["ask_volume"], rec["bid_volume"] = ask_volume, bid_volume
    return compress(rec.tobytes(), preset)


def tick_columns(ticks: np.ndarray, hour: int, decimal_factor: int) -> dict[str, np.ndarray]:
    """Scaled native columns: ts_event int64 ns UTC, prices = integer / decimal factor."""
    f = float(decimal_factor)
    ms = ticks["ms"]
    if ms.size > 1 and bool((ms[1:] < ms[:-1]).any()):  # the feed is time-ordered; be safe if not
        ticks = ticks[np.argsort(ms, kind="stable")]
    return {
        "ts_event": ticks["ms"].astype(np.int64) * 1_000_000 + hour * NS_PER_HOUR,
        # division (not * 1e-5) gives the nearest double to the decimal price, e.g. 1.14545
        "bid": ticks["bid"].astype(np.float64) / f,
        "ask": ticks["ask"].astype(np.float64) / f,
        "bid_volume": ticks["bid_volume"].astype(np.float64),
        "ask_volume": ticks["ask_volume"].astype(np.float64),
    }


# -- candles --------------------------------------------------------------------------


def decode_candles(data: bytes) -> np.ndarray:
    raw = decompress(data)
    if len(raw) % CANDLE_DTYPE.itemsize:
        raise CorruptFileError(f"{len(raw)} inflated bytes is not a whole number of 24-byte candle records")
    candles = np.frombuffer(raw, dtype=CANDLE_DTYPE)
    if candles.size and (candles["high"] < candles["low"]).any():
        raise CorruptFileError("candle with high < low")
    return candles


def encode_candles(seconds, open_, close, low, high, volume) -> bytes:
    rec = np.empty(len(seconds), dtype=CANDLE_DTYPE)
    rec["seconds"], rec["open"], rec["close"] = seconds, open_, close
    rec["low"], rec["high"], rec["volume"] = low, high, volume
    return compress(rec.tobytes())
