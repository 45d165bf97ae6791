"""Ticks -> OHLC time bars, and bars -> coarser bars (polars).

A bar with open time ``t`` and timeframe ``tf`` holds exactly the ticks with
``t <= ts_event < t + tf``; its ``ts_init`` is ``t + tf`` (the bar close, the first
moment it is known), so every tick in a bar happened strictly before the bar is
published. Bars exist only where ticks exist: no flat forward-filled bars are
invented for quiet minutes or weekends (the quality report lists the gaps).

Bar opens are floored on a grid anchored at the UTC epoch (``anchor: utc``), or at
17:00 New York, the FX trading-day start (``anchor: new_york``: daily bars open at
17:00 NY, 4h bars at 17, 21, 01, ... NY, across daylight saving).

The ``time`` bars plugin is :class:`TimeBars`; ``bars_from_market`` is the same
thing as a function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import structlog

from aio.config import param
from aio.errors import ConfigError, DataError
from aio.records import BAR_SCHEMA, NS_PER_HOUR, NS_PER_MINUTE, NS_PER_SECOND, Bars, MarketData

log = structlog.get_logger(__name__)

Side = Literal["bid", "ask", "mid"]
UNITS = {"s": NS_PER_SECOND, "m": NS_PER_MINUTE, "h": NS_PER_HOUR, "d": 24 * NS_PER_HOUR}
_ALIASES = {"sec": "s", "second": "s", "min": "m", "minute": "m", "hour": "h", "day": "d"}
_NUM_UNIT = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$", re.I)
_UNIT_NUM = re.compile(r"^\s*([smhd])(\d+)\s*$", re.I)  # MetaTrader/Dukascopy style: M1, H4, D1
DEFAULT_TICK_TIMEFRAME = "1m"


# -- timeframes ----------------------------------------------------------------------


def parse_timeframe(tf: str) -> int:
    """'1m', '5m', '15m', '1h', '4h', '1d', 'N{s,m,h,d}' (also 'M1', 'H4', '30sec') -> ns."""
    text = str(tf).strip()
    m = _NUM_UNIT.match(text)
    if m:
        n, unit = int(m.group(1)), m.group(2).lower()
        unit = _ALIASES.get(unit.rstrip("s") if len(unit) > 1 else unit, unit)
    else:
        m = _UNIT_NUM.match(text)
        if not m:
            raise ValueError(f"timeframe {tf!r} is not N followed by s, m, h or d (e.g. 1m, 15m, 4h, 1d)")
        unit, n = m.group(1).lower(), int(m.group(2))
    if unit not in UNITS or n <= 0:
        raise ValueError(f"timeframe {tf!r} is not N followed by s, m, h or d (e.g. 1m, 15m, 4h, 1d)")
    return n * UNITS[unit]


def format_timeframe(ns: int) -> str:
    """ns -> the shortest canonical name ('1h' rather than '60m')."""
    for unit in ("d", "h", "m", "s"):
        if ns % UNITS[unit] == 0:
            return f"{ns // UNITS[unit]}{unit}"
    raise ValueError(f"timeframe of {ns} ns is not a whole number of seconds")


# -- grid ----------------------------------------------------------------------------


def bar_open(ts: np.ndarray, tf_ns: int, anchor: str = "utc") -> np.ndarray:
    """Open time of the bar each instant falls in (floor on the anchored grid)."""
    ts = np.asarray(ts, dtype=np.int64)
    if anchor == "utc":
        return ts // tf_ns * tf_ns
    if anchor == "new_york":
        from aio.quality import FX_DAY_SHIFT_NS, NY, utc_offset_ns

        # New York wall time shifted so 17:00 is midnight; the offset of the tick
        # itself is used, which is exact because DST switches inside the weekly close.
        shift = utc_offset_ns(ts, NY) + FX_DAY_SHIFT_NS
        return (ts + shift) // tf_ns * tf_ns - shift
    raise ValueError(f"bar anchor {anchor!r} is not 'utc' or 'new_york'")


# -- ticks -> bars -------------------------------------------------------------------


def _price(side: str) -> pl.Expr:
    if side == "bid":
        return pl.col("bid")
    if side == "ask":
        return pl.col("ask")
    if side == "mid":
        return (pl.col("bid") + pl.col("ask")) / 2.0
    raise ValueError(f"bar side {side!r} is not bid, ask or mid")


def _volume(side: str) -> pl.Expr:
    if side == "bid":
        return pl.col("bid_volume")
    if side == "ask":
        return pl.col("ask_volume")
    return pl.col("bid_volume") + pl.col("ask_volume")


def ticks_to_bars(
    ticks: pl.DataFrame,
    timeframe: str | int,
    side: str = "mid",
    *,
    anchor: str = "utc",
    spread_known: bool = True,
) -> tuple[pl.DataFrame, int]:
    """OHLC bars of ``side`` prices from a tick frame; returns (bars, ticks dropped).

    Ticks whose ``side`` price is missing, non-finite or not positive are dropped
    (and counted); ``spread_mean`` is the mean ask - bid of the bar's ticks (NaN
    when the source has no real spread); ``volume`` sums the side's volume (both
    sides for mid).
    """
    tf = timeframe if isinstance(timeframe, int) else parse_timeframe(timeframe)
    price = _price(side)
    if not ticks.get_column("ts_event").is_sorted():
        ticks = ticks.sort("ts_event", maintain_order=True)
    valid = price.is_not_null() & price.is_finite() & (price > 0)
    n_before = ticks.height
    ticks = ticks.filter(valid)
    dropped = n_before - ticks.height
    ts = ticks.get_column("ts_event").to_numpy()
    if anchor == "utc":
        opens = (ts // tf) * tf
    else:
        opens = bar_open(ts, tf, anchor)
    p = ticks.select(price).to_series().to_numpy().astype(np.float64, copy=False)
    v = ticks.select(_volume(side)).to_series().to_numpy().astype(np.float64, copy=False)
    # Ticks are sorted, so each bar is a contiguous run: numpy segment reductions add in
    # a fixed order (a parallel group-by sum differs in the last bit from run to run,
    # which would change content hashes of everything built on the bars).
    if len(ts):
        starts = np.flatnonzero(np.r_[True, opens[1:] != opens[:-1]])
    else:
        starts = np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(ts)].astype(np.int64)
    counts = ends - starts
    if spread_known and len(ts):
        sp = (ticks.get_column("ask").to_numpy() - ticks.get_column("bid").to_numpy()).astype(np.float64)
        spread_mean = np.add.reduceat(sp, starts) / counts
    else:
        spread_mean = np.full(len(starts), np.nan)
    bar_open_ns = opens[starts] if len(ts) else np.zeros(0, dtype=np.int64)
    bars = pl.DataFrame({
        "ts_event": bar_open_ns,
        "ts_init": bar_open_ns + tf,
        "open": p[starts] if len(ts) else np.zeros(0),
        "high": np.maximum.reduceat(p, starts) if len(ts) else np.zeros(0),
        "low": np.minimum.reduceat(p, starts) if len(ts) else np.zeros(0),
        "close": p[ends - 1] if len(ts) else np.zeros(0),
        "volume": np.add.reduceat(v, starts) if len(ts) else np.zeros(0),
        "ticks": counts,
        "spread_mean": spread_mean,
    }).select([pl.col(c).cast(t) for c, t in BAR_SCHEMA.items()])
    return bars, dropped


# -- bars -> coarser bars ------------------------------------------------------------


def bar_timeframe_ns(frame: pl.DataFrame) -> int | None:
    """Modal ts_init - ts_event of a bar frame (its timeframe)."""
    if frame.height == 0:
        return None
    d = (frame.get_column("ts_init") - frame.get_column("ts_event")).to_numpy()
    vals, counts = np.unique(d, return_counts=True)
    return int(vals[np.argmax(counts)])


def resample_bars(bars: pl.DataFrame, timeframe: str | int, *, anchor: str = "utc", source_tf: int | None = None) -> pl.DataFrame:
    """Bars -> coarser bars: open first, high max, low min, close last, volume and ticks
    summed, spread_mean weighted by ticks (plain mean where ticks are unknown)."""
    tf = timeframe if isinstance(timeframe, int) else parse_timeframe(timeframe)
    src = source_tf or bar_timeframe_ns(bars)
    if src is not None and (tf < src or tf % src != 0):
        raise ValueError(
            f"cannot resample {format_timeframe(src)} bars to {format_timeframe(tf)}: "
            "the target must be a whole multiple of the source timeframe"
        )
    if not bars.get_column("ts_event").is_sorted():
        bars = bars.sort("ts_event", maintain_order=True)
    opens = pl.Series("_open", bar_open(bars.get_column("ts_event").to_numpy(), tf, anchor))
    sp = pl.col("spread_mean").fill_nan(None)
    weighted = (sp * pl.col("ticks")).sum() / pl.col("ticks").filter(sp.is_not_null()).sum()
    spread = (
        pl.when(pl.col("ticks").filter(sp.is_not_null()).sum() > 0).then(weighted).otherwise(sp.mean())
    )
    out = (
        bars.lazy()
        .with_columns(opens)
        .group_by("_open", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.col("ticks").sum(),
            spread.alias("spread_mean"),
        )
        .sort("_open")
        .with_columns(
            pl.col("_open").alias("ts_event"),
            (pl.col("_open") + tf).alias("ts_init"),
            pl.col("spread_mean").fill_null(float("nan")),
        )
        .select([pl.col(c).cast(t) for c, t in BAR_SCHEMA.items()])
        .collect()
    )
    return out


# -- the plugin ----------------------------------------------------------------------


@dataclass
class TimeBarsConfig:
    """Time bars: ticks (or finer bars) aggregated on a fixed time grid."""

    # The section names its plugin (conf/<group>/time.yaml says name: time); a plugin-shipped
    # node without a YAML is offered to Hydra as is, so the name belongs to the schema.
    name: str = param("time", choices=["time"], help="the plugin")

    timeframe: str = param(
        "auto",
        help="bar length: 1m, 5m, 15m, 1h, 4h, 1d or N{s,m,h,d}; auto = 1m from ticks, the file's own timeframe from bars",
    )
    side: str = param("mid", choices=["bid", "ask", "mid"], help="which quote the OHLC follows (ticks only)")
    anchor: str = param("utc", choices=["utc", "new_york"], help="grid origin: UTC midnight or 17:00 New York (FX day)")

    def __post_init__(self) -> None:
        if self.timeframe != "auto":
            try:
                parse_timeframe(self.timeframe)
            except ValueError as exc:
                raise ConfigError(f"config key bars.timeframe={self.timeframe!r} is not allowed: {exc}") from None


def bars_from_market(md: MarketData, timeframe: str = "auto", side: str = "mid", anchor: str = "utc") -> Bars:
    """Bars of ``md`` (ticks aggregated, or bars passed through / resampled)."""
    meta: dict = {"source": md.source, "anchor": anchor}
    if md.synthetic:
        meta["synthetic"] = md.meta.get("synthetic", True)
    if md.kind == "ticks":
        tf_name = DEFAULT_TICK_TIMEFRAME if timeframe == "auto" else timeframe
        tf = parse_timeframe(tf_name)
        spread_known = bool(md.meta.get("spread_known", True))
        frame, dropped = ticks_to_bars(md.frame, tf, side, anchor=anchor, spread_known=spread_known)
        if dropped:
            log.warning("ticks without a usable price dropped", side=side, dropped=dropped, source=md.source)
        meta.update(built_from="ticks", dropped_ticks=dropped)
        out_side = side
    elif md.kind == "bars":
        src = md.meta.get("timeframe_ns") or bar_timeframe_ns(md.frame)
        out_side = md.meta.get("side", "mid")
        if side != out_side:
            log.warning("bars.side does not apply to bar data; keeping the data's side", requested=side, data_side=out_side)
        if timeframe == "auto" or src is None or parse_timeframe(timeframe) == src:
            tf = src or 0
            frame = md.frame
            meta.update(built_from="bars")
        else:
            tf = parse_timeframe(timeframe)
            if tf < src or tf % src:
                raise ConfigError(
                    f"config key bars.timeframe={timeframe!r} cannot be built from {format_timeframe(src)} bars "
                    f"of {md.source or 'the data'}: choose a whole multiple of {format_timeframe(src)} "
                    "(or bars.timeframe=auto to keep them), or load ticks"
                )
            frame = resample_bars(md.frame, tf, anchor=anchor, source_tf=src)
            meta.update(built_from=f"bars {format_timeframe(src)}")
        tf_name = format_timeframe(tf) if tf else "unknown"
    else:
        raise DataError(f"market data of kind {md.kind!r} from {md.source or 'source'}: expected ticks or bars")
    meta["timeframe_ns"] = tf
    return Bars(frame=frame, symbol=md.symbol, timeframe=tf_name, side=out_side, synthetic=md.synthetic,
                point=md.point, pip=md.pip, meta=meta)


class TimeBars:
    """Time bars from ticks (bid/ask/mid) or coarser bars from bars."""

    def __init__(self, cfg: TimeBarsConfig | None = None):
        self.cfg = cfg or TimeBarsConfig()

    def build(self, md: MarketData) -> Bars:
        return bars_from_market(md, self.cfg.timeframe, self.cfg.side, self.cfg.anchor)


def register(registry) -> None:
    registry.add("bars", "time", TimeBars, config=TimeBarsConfig,
                 description="time bars (any timeframe, bid/ask/mid) from ticks or finer bars")
