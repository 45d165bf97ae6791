"""Ticks -> bars against Dukascopy's own candles, bars -> coarser bars, and no lookahead."""

from __future__ import annotations

import lzma
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from aio.bars import (
    TimeBarsConfig,
    bar_open,
    bars_from_market,
    format_timeframe,
    parse_timeframe,
    resample_bars,
    ticks_to_bars,
)
from aio.config import build
from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
from aio.errors import ConfigError
from aio.records import BAR_SCHEMA, MarketData

# Dukascopy formats (self-contained on purpose: the real decoder lives in aio/data/dukascopy)
TICK = np.dtype([("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_volume", ">f4"), ("bid_volume", ">f4")])
CANDLE = np.dtype([("s", ">u4"), ("open", ">u4"), ("close", ">u4"), ("low", ">u4"), ("high", ">u4"), ("volume", ">f4")])
POINT = 1e5  # EURUSD decimal factor
DAY = datetime(2019, 2, 4, tzinfo=timezone.utc)  # month folder 01 = February (zero-based)
DAY_NS = int(DAY.timestamp()) * 1_000_000_000
MIN_NS = 60_000_000_000


def _decode(path: Path, dtype: np.dtype) -> np.ndarray:
    data = path.read_bytes()
    return np.frombuffer(lzma.decompress(data), dtype=dtype) if data else np.empty(0, dtype)


def _hour_ticks(folder: Path, hour: int) -> pl.DataFrame:
    r = _decode(folder / f"{hour:02d}h_ticks.bi5", TICK)
    return pl.DataFrame(
        {
            "ts_event": r["ms"].astype(np.int64) * 1_000_000 + DAY_NS + hour * 3_600_000_000_000,
            "bid": r["bid"] / POINT,
            "ask": r["ask"] / POINT,
            "bid_volume": r["bid_volume"].astype(np.float64),
            "ask_volume": r["ask_volume"].astype(np.float64),
        }
    )


@pytest.fixture(scope="module")
def eurusd_day(dukascopy_dir) -> pl.DataFrame:
    folder = dukascopy_dir / "dukascopy-node" / "EURUSD" / "2019" / "01" / "04"
    return pl.concat([_hour_ticks(folder, h) for h in range(24)])


@pytest.fixture(scope="module")
def synthetic_ticks() -> MarketData:
    cfg = build(SyntheticDataConfig, {"start": "2024-03-07", "end": "2024-03-12", "seed": 3}, "data")
    return SyntheticSource(cfg).load()


def _check_against_candles(bars: pl.DataFrame, candles: np.ndarray, origin_ns: int, step_ns: int) -> None:
    k = (bars["ts_event"].to_numpy() - origin_ns) // step_ns
    ref = candles[k]
    assert np.array_equal(ref["s"].astype(np.int64) * 1_000_000_000, bars["ts_event"].to_numpy() - origin_ns)
    for col in ("open", "high", "low", "close"):
        ours = np.rint(bars[col].to_numpy() * POINT).astype(np.int64)
        assert np.array_equal(ours, ref[col].astype(np.int64)), col
    # float32 volumes in the file vs float64 sums of float32 ticks
    np.testing.assert_allclose(bars["volume"].to_numpy(), ref["volume"], rtol=1e-6)


def test_first_bid_minute_matches_dukascopy_reference(dukascopy_dir):
    ticks = _hour_ticks(dukascopy_dir / "dukascopy-node" / "EURUSD" / "2019" / "01" / "04", 0)
    bars, dropped = ticks_to_bars(ticks, "1m", "bid")
    first = bars.row(0, named=True)
    assert dropped == 0
    assert first["ts_event"] == DAY_NS and first["ts_init"] == DAY_NS + MIN_NS
    assert (first["open"], first["high"], first["low"], first["close"]) == (1.14543, 1.14570, 1.14542, 1.14569)
    assert first["volume"] == pytest.approx(293.76, abs=1e-4)
    inside = ticks.filter(pl.col("ts_event") < DAY_NS + MIN_NS)
    assert first["ticks"] == inside.height
    assert first["spread_mean"] == pytest.approx((inside["ask"] - inside["bid"]).mean())


def test_every_bid_minute_of_the_hour_matches_dukascopy_m1_candles(dukascopy_dir):
    folder = dukascopy_dir / "dukascopy-node" / "EURUSD" / "2019" / "01" / "04"
    bars, _ = ticks_to_bars(_hour_ticks(folder, 0), "1m", "bid")
    assert bars.height == 60  # every minute of that hour has ticks
    _check_against_candles(bars, _decode(folder / "BID_candles_min_1.bi5", CANDLE), DAY_NS, MIN_NS)


def test_whole_day_bid_and_ask_minutes_hours_and_day_match_dukascopy(eurusd_day, dukascopy_dir):
    root = dukascopy_dir
    bid, _ = ticks_to_bars(eurusd_day, "1m", "bid")
    assert bid.height == 1440
    _check_against_candles(bid, _decode(root / "dukascopy-node/EURUSD/2019/01/04/BID_candles_min_1.bi5", CANDLE), DAY_NS, MIN_NS)
    ask, _ = ticks_to_bars(eurusd_day, "1m", "ask")
    _check_against_candles(ask, _decode(root / "theorycraft/EURUSD/2019/01/04/ASK_candles_min_1.bi5", CANDLE), DAY_NS, MIN_NS)
    # minutes -> hours: the month file of February's hourly candles
    hours = resample_bars(bid, "1h")
    feb = int(datetime(2019, 2, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
    _check_against_candles(hours, _decode(root / "dukascopy-node/EURUSD/2019/01/BID_candles_hour_1.bi5", CANDLE), feb, 3_600_000_000_000)
    assert hours["ticks"].sum() == eurusd_day.height
    # hours -> the day: the year file of daily candles
    day = resample_bars(hours, "1d")
    jan1 = int(datetime(2019, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
    _check_against_candles(day, _decode(root / "dukascopy-node/EURUSD/2019/BID_candles_day_1.bi5", CANDLE), jan1, 86_400_000_000_000)


def test_mid_bars_follow_mid_prices_and_sum_both_volumes(eurusd_day):
    mid, _ = ticks_to_bars(eurusd_day, "5m", "mid")
    bid, _ = ticks_to_bars(eurusd_day, "5m", "bid")
    ask, _ = ticks_to_bars(eurusd_day, "5m", "ask")
    first5 = eurusd_day.filter(pl.col("ts_event") < DAY_NS + 5 * MIN_NS)
    m = ((first5["bid"] + first5["ask"]) / 2).to_numpy()
    row = mid.row(0, named=True)
    assert (row["open"], row["high"], row["low"], row["close"]) == (m[0], m.max(), m.min(), m[-1])
    np.testing.assert_allclose(mid["volume"].to_numpy(), bid["volume"].to_numpy() + ask["volume"].to_numpy())
    assert mid.schema == pl.Schema(BAR_SCHEMA)


def test_bars_use_only_ticks_before_their_close(synthetic_ticks):
    ticks = synthetic_ticks.frame
    bars = bars_from_market(synthetic_ticks, "5m", "mid")
    ts = ticks["ts_event"].to_numpy()
    opens, inits = bars.col("ts_event"), bars.col("ts_init")
    assert np.all(inits == opens + parse_timeframe("5m"))
    # each tick lies in exactly the bar whose [open, close) holds it: ts_event < ts_init
    k = np.searchsorted(opens, ts, side="right") - 1
    assert np.all(ts >= opens[k]) and np.all(ts < inits[k])
    assert np.array_equal(np.bincount(k, minlength=len(bars)), bars.col("ticks"))
    # truncating the ticks at any instant T leaves every bar with ts_init <= T unchanged
    for t_cut in (opens[100] + 7 * 1_000_000_000, opens[len(bars) // 2], inits[-3] - 1):
        part = ticks.filter(pl.col("ts_event") < t_cut)
        early, _ = ticks_to_bars(part, "5m", "mid")
        known_full = bars.frame.filter(pl.col("ts_init") <= t_cut)
        known_part = early.filter(pl.col("ts_init") <= t_cut)
        assert known_full.height > 0
        exact = ["ts_event", "ts_init", "open", "high", "low", "close", "ticks"]
        assert known_part.select(exact).equals(known_full.select(exact))
        for c in ("volume", "spread_mean"):  # float sums: summation order may differ in the last bit
            np.testing.assert_allclose(known_part[c].to_numpy(), known_full[c].to_numpy(), rtol=1e-12)


def test_bars_only_where_ticks_exist(synthetic_ticks):
    bars = bars_from_market(synthetic_ticks, "1m", "bid")
    minutes = np.unique(synthetic_ticks.frame["ts_event"].to_numpy() // MIN_NS)
    assert np.array_equal(bars.col("ts_event"), minutes * MIN_NS)
    assert bars.synthetic and bars.side == "bid" and bars.timeframe == "1m"
    assert "seed=3" in bars.meta["synthetic"]
    # no bar during the weekly close (Fri 17:00 - Sun 17:00 New York)
    ny = ZoneInfo("America/New_York")
    close = datetime(2024, 3, 8, 17, tzinfo=ny).timestamp() * 1e9
    reopen = datetime(2024, 3, 10, 17, tzinfo=ny).timestamp() * 1e9
    opens = bars.col("ts_event")
    assert not np.any((opens >= close) & (opens < reopen))
    # flat forward-filled bars would show as ticks == 0
    assert bars.col("ticks").min() >= 1


def test_resample_keeps_totals_and_matches_direct_aggregation(synthetic_ticks):
    m1 = bars_from_market(synthetic_ticks, "1m", "mid")
    h1_direct = bars_from_market(synthetic_ticks, "1h", "mid").frame
    h1 = resample_bars(m1.frame, "1h")
    for c in ("ts_event", "ts_init", "open", "high", "low", "close", "ticks"):
        assert np.array_equal(h1[c].to_numpy(), h1_direct[c].to_numpy()), c
    np.testing.assert_allclose(h1["volume"].to_numpy(), h1_direct["volume"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(h1["spread_mean"].to_numpy(), h1_direct["spread_mean"].to_numpy(), rtol=1e-9)
    with pytest.raises(ValueError, match="whole multiple"):
        resample_bars(h1, "90m")


def test_new_york_anchor_opens_daily_bars_at_17_new_york(synthetic_ticks):
    daily = bars_from_market(synthetic_ticks, "1d", "mid", anchor="new_york")
    ny = ZoneInfo("America/New_York")
    for ts in daily.col("ts_event"):
        local = datetime.fromtimestamp(ts / 1e9, tz=ny)
        assert (local.hour, local.minute) == (17, 0)
    # across the US DST switch of 2024-03-10 the UTC open moves from 22:00 to 21:00
    utc_hours = {datetime.fromtimestamp(t / 1e9, tz=timezone.utc).hour for t in daily.col("ts_event")}
    assert utc_hours == {21, 22}
    # bar_open on a single instant, checked with zoneinfo
    t = datetime(2024, 3, 11, 16, 59, tzinfo=ny)
    got = bar_open(np.array([int(t.timestamp() * 1e9)]), parse_timeframe("1d"), "new_york")[0]
    assert got == int(datetime(2024, 3, 10, 17, tzinfo=ny).timestamp() * 1e9)


def test_timeframes_parse_and_validate():
    assert parse_timeframe("1m") == MIN_NS
    assert parse_timeframe("15m") == 15 * MIN_NS
    assert parse_timeframe("4h") == 240 * MIN_NS
    assert parse_timeframe("1d") == 1440 * MIN_NS
    assert parse_timeframe("30s") == MIN_NS // 2
    assert parse_timeframe("H4") == parse_timeframe("4h") and parse_timeframe("M1") == MIN_NS
    assert format_timeframe(parse_timeframe("60m")) == "1h"
    for bad in ("", "0m", "5y", "m"):
        with pytest.raises(ValueError):
            parse_timeframe(bad)
    with pytest.raises(ConfigError, match="bars.timeframe"):
        build(TimeBarsConfig, {"timeframe": "7x"}, "bars")
    with pytest.raises(ConfigError, match="bars.side"):
        build(TimeBarsConfig, {"side": "last"}, "bars")


def test_time_plugin_builds_from_registry_and_refuses_finer_than_source(synthetic_ticks):
    import aio.bars
    from aio.registry import Registry

    reg = Registry()
    reg.discovered = True  # only this module's registration, not every subsystem's
    aio.bars.register(reg)
    plugin = reg.get_plugin("bars", "time")
    builder = plugin.obj(build(plugin.config, {"timeframe": "15m", "side": "ask"}, "bars"))
    bars = builder.build(synthetic_ticks)
    assert bars.timeframe == "15m" and bars.side == "ask"
    hourly = MarketData(kind="bars", frame=resample_bars(bars.frame, "1h"), symbol="EURUSD", source="test",
                        meta={"side": "ask"})
    assert bars_from_market(hourly).timeframe == "1h"  # auto keeps the data's timeframe
    assert bars_from_market(hourly, "4h").timeframe == "4h"
    with pytest.raises(ConfigError, match="whole multiple of 1h"):
        bars_from_market(hourly, "15m")
    assert timedelta(hours=1) == timedelta(microseconds=bars_from_market(hourly).meta["timeframe_ns"] / 1000)


def test_bars_are_bit_reproducible_and_sum_in_tick_order(synthetic_ticks):
    """Content hashes downstream (the dataset cache) need the same bytes on every build."""
    a, _ = ticks_to_bars(synthetic_ticks.frame, "5m", "mid")
    b, _ = ticks_to_bars(synthetic_ticks.frame.clone(), "5m", "mid")
    assert a.equals(b)
    np.testing.assert_array_equal(a["volume"].to_numpy(), b["volume"].to_numpy())
    # the first bars' volumes are the exact sums of their own ticks' volumes
    import math

    ts = synthetic_ticks.frame["ts_event"].to_numpy()
    vol = (synthetic_ticks.frame["bid_volume"] + synthetic_ticks.frame["ask_volume"]).to_numpy()
    tf = 5 * 60 * 10**9
    for row in a.head(5).iter_rows(named=True):
        mask = (ts >= row["ts_event"]) & (ts < row["ts_init"])
        assert row["ticks"] == mask.sum() and row["ts_init"] - row["ts_event"] == tf
        assert math.isclose(row["volume"], math.fsum(vol[mask]), rel_tol=1e-14)
