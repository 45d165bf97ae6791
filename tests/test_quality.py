"""Data quality: FX market hours (zoneinfo), gaps vs weekends, duplicates, spreads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from aio.config import build
from aio.data.file import FileDataConfig, FileSource
from aio.quality import check_bars, check_ticks, fx_closed, fx_holiday, iso
from aio.records import BAR_SCHEMA, Bars

NY = ZoneInfo("America/New_York")
H = 3_600_000_000_000


def ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def closed_reference(t: datetime) -> bool:
    """Independent rule: closed from Friday 17:00 to Sunday 17:00 New York wall time."""
    local = t.astimezone(NY)
    wd, hm = local.weekday(), (local.hour, local.minute)
    return (wd == 4 and hm >= (17, 0)) or wd == 5 or (wd == 6 and hm < (17, 0))


@pytest.mark.parametrize(
    "when, closed",
    [
        (datetime(2024, 3, 8, 21, 59, 59, tzinfo=timezone.utc), False),  # Fri 16:59:59 EST
        (datetime(2024, 3, 8, 22, 0, tzinfo=timezone.utc), True),  # Fri 17:00 EST
        (datetime(2024, 3, 10, 20, 59, 59, tzinfo=timezone.utc), True),  # Sun 16:59:59 EDT (DST began that morning)
        (datetime(2024, 3, 10, 21, 0, tzinfo=timezone.utc), False),  # Sun 17:00 EDT
        (datetime(2024, 7, 5, 21, 0, tzinfo=timezone.utc), True),  # Fri 17:00 EDT
        (datetime(2024, 11, 3, 21, 30, tzinfo=timezone.utc), True),  # Sun 16:30 EST (DST ended that morning)
        (datetime(2024, 11, 3, 22, 0, tzinfo=timezone.utc), False),
    ],
)
def test_fx_closed_at_the_edges(when, closed):
    assert closed_reference(when) == closed
    assert bool(fx_closed(np.array([ns(when)]))[0]) == closed


def test_fx_closed_matches_zoneinfo_every_quarter_hour_for_a_year():
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    times = [start + timedelta(minutes=15 * i) for i in range(4 * 24 * 366)]
    ref = np.array([closed_reference(t) for t in times])
    got = fx_closed(np.array([ns(t) for t in times], dtype=np.int64))
    assert np.array_equal(got, ref)
    hol = fx_holiday(np.array([ns(datetime(2023, 12, 24, 22, 30, tzinfo=timezone.utc)),  # 17:30 NY on the 24th
                               ns(datetime(2023, 12, 24, 21, 30, tzinfo=timezone.utc))]))
    assert hol.tolist() == [True, False]


def _hourly_bars(opens: list[int]) -> pl.DataFrame:
    n = len(opens)
    rng = np.random.default_rng(0)
    o = 1.1 + rng.normal(0, 1e-3, n)
    c = o + rng.normal(0, 5e-4, n)
    return pl.DataFrame(
        {
            "ts_event": opens,
            "ts_init": [t + H for t in opens],
            "open": o,
            "high": np.maximum(o, c) + 2e-4,
            "low": np.minimum(o, c) - 2e-4,
            "close": c,
            "volume": np.ones(n),
            "ticks": np.full(n, 100),
            "spread_mean": np.full(n, 1e-4),
        },
        schema=BAR_SCHEMA,
    )


def test_check_bars_separates_weekend_from_trading_gaps_and_counts_defects():
    # two weeks of hourly bars in trading time only, built with zoneinfo here
    t0 = datetime(2024, 3, 4, tzinfo=timezone.utc)
    opens = [ns(t0 + timedelta(hours=i)) for i in range(14 * 24)]
    opens = [t for t in opens if not closed_reference(datetime.fromtimestamp(t / 1e9, tz=timezone.utc))]
    weekend_hours = 14 * 24 - len(opens)
    assert weekend_hours == 47 + 48  # Mar 8-10 spans the US DST switch: one hour shorter
    gap_start = ns(datetime(2024, 3, 6, 10, tzinfo=timezone.utc))
    trading = [t for t in opens if not gap_start <= t < gap_start + 3 * H]  # 3 bars missing on a Wednesday
    frame = _hourly_bars(trading)
    # defects: a duplicate, one row out of order, a flat bar in the weekend, zero and negative spreads
    sat = ns(datetime(2024, 3, 9, 12, tzinfo=timezone.utc))
    extra = _hourly_bars([trading[5], sat]).with_columns(
        pl.lit(1.1).alias("open"), pl.lit(1.1).alias("high"), pl.lit(1.1).alias("low"), pl.lit(1.1).alias("close")
    )
    frame = pl.concat([frame[:10], extra[:1], frame[10:], extra[1:]])
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 20).then(0.0)
        .when(pl.int_range(pl.len()) == 21).then(-1e-5)
        .otherwise(pl.col("spread_mean")).alias("spread_mean")
    )
    bars = Bars(frame=frame, symbol="EURUSD", timeframe="1h", side="mid")
    q = check_bars(bars)
    assert q["bars"] == frame.height
    assert q["first"] == "2024-03-04T00:00:00Z" and q["last_close"] == iso(trading[-1] + H)
    assert q["duplicate_timestamps"] == 1
    assert q["non_monotonic"] == 2  # the duplicate of bar 5 after bar 9, the Saturday bar appended last
    assert q["bars_in_market_closed_time"] == 1 and q["flat_bars_in_market_closed_time"] == 1
    assert q["missing_bars_trading_time"] == 3
    assert q["gaps"] == [{"start": "2024-03-06T10:00:00Z", "end": "2024-03-06T13:00:00Z", "bars": 3}]
    assert q["missing_bars_market_closed"] == weekend_hours - 1  # the Saturday bar fills one weekend hour
    assert q["missing_bars"] == q["missing_bars_market_closed"] + q["missing_bars_trading_time"] + q["missing_bars_holiday"]
    assert q["spread"]["zero"] == 1 and q["spread"]["negative"] == 1
    assert q["spread"]["stats"]["median"] == pytest.approx(1.0)  # 1e-4 = one pip


def test_check_bars_on_tradingview_file_agrees_with_an_hour_by_hour_zoneinfo_count(tv_dir):
    cfg = build(FileDataConfig, {"path": str(tv_dir / "ohlcv.csv"), "timezone": "US/Eastern"}, "data")
    md = FileSource(cfg).load()
    bars = Bars(frame=md.frame, symbol="EURUSD", timeframe="1h")
    q = check_bars(bars)
    have = set(md.frame["ts_event"].to_list())
    first, last = min(have), max(have)
    closed = trading = 0
    for t in range(first, last, H):
        if t in have:
            continue
        dt = datetime.fromtimestamp(t // 1_000_000_000, tz=timezone.utc)
        if closed_reference(dt) and closed_reference(dt + timedelta(minutes=59)):
            closed += 1
        else:
            trading += 1
    assert q["bars"] == 23_054 and q["duplicate_timestamps"] == 0 and q["non_monotonic"] == 0
    assert q["missing_bars_market_closed"] == closed
    assert q["missing_bars_trading_time"] + q["missing_bars_holiday"] == trading
    assert q["bars_in_market_closed_time"] == 0
    assert q["spread"]["bars_with_spread"] == 0  # TradingView bars carry no spread


def test_check_ticks_counts_spreads_order_and_gap_hours():
    t0 = ns(datetime(2024, 3, 6, 0, tzinfo=timezone.utc))  # a Wednesday
    ts = np.concatenate([t0 + np.arange(0, 2 * H, 60_000_000_000), t0 + 5 * H + np.arange(0, H, 60_000_000_000)])
    n = ts.size
    bid = np.full(n, 1.1)
    ask = bid + 1e-4
    ask[3] = bid[3]  # zero spread
    ask[4] = bid[4] - 1e-5  # crossed
    ts = ts.copy()
    ts[7] = ts[6]  # duplicate timestamp
    ts[10], ts[11] = ts[11], ts[10]  # out of order
    frame = pl.DataFrame({"ts_event": ts, "bid": bid, "ask": ask, "bid_volume": np.ones(n), "ask_volume": np.ones(n)})
    q = check_ticks(frame)
    assert q["ticks"] == n
    assert q["zero_spread_ticks"] == 1 and q["negative_spread_ticks"] == 1
    assert q["duplicate_timestamps"] == 1 and q["non_monotonic"] == 1
    assert q["gap_hours"] == 3 and q["gaps"] == [{"start": "2024-03-06T02:00:00Z", "end": "2024-03-06T05:00:00Z", "hours": 3}]
    assert q["ticks_in_market_closed_time"] == 0
    spreads = (ask - bid) / 1e-4
    assert q["spread"]["stats"]["mean"] == pytest.approx(spreads.mean())
    assert q["spread"]["stats"]["p95"] == pytest.approx(np.quantile(spreads, 0.95))
