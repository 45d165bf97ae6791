"""Quality: market-closed hours vs real gaps, spreads; encoder-made shapes (DST, empty, huge hours)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aio.config import build
from aio.data.dukascopy import DukascopyConfig, DukascopySource, bi5
from aio.data.dukascopy.mirror import Mirror
from aio.data.dukascopy.quality import market_closed

FAST = {"progress": False, "timeout_s": 2.0, "backoff_s": 0.01, "backoff_max_s": 0.2, "concurrency": 8}


def H(text: str) -> int:
    """'2024-03-08T22' -> hour index."""
    return int(datetime.fromisoformat(text + ":00").replace(tzinfo=timezone.utc).timestamp()) // 3600


def iso(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, tz=timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def source(tmp: Path, mirror: Mirror, symbol: str, start: str, end: str) -> DukascopySource:
    cfg = {"symbol": symbol, "start": start, "end": end, "base_url": mirror.base_url,
           "cache_dir": str(tmp / "raw"), "catalog_dir": str(tmp / "catalog"), **FAST}
    return DukascopySource(build(DukascopyConfig, cfg, "data"))


def write_hour(root: Path, symbol: str, hour: int, n: int, rng: np.random.Generator, preset: int = 0) -> dict:
    """Encode n plausible ticks into the mirror folder; returns the integer columns written."""
    ms = np.sort(rng.integers(0, 3_600_000, n)).astype(np.uint32)
    bid = (110_000 + np.cumsum(rng.integers(-3, 4, n))).astype(np.uint32)
    ask = bid + rng.integers(0, 8, n).astype(np.uint32)
    av = rng.uniform(0.1, 5, n).astype(np.float32)
    bv = rng.uniform(0.1, 5, n).astype(np.float32)
    p = root / bi5.tick_path(symbol, hour)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(bi5.encode_ticks(ms, ask, bid, av, bv, preset=preset))
    return {"ms": ms, "ask": ask, "bid": bid, "ask_volume": av, "bid_volume": bv}


# -- the real month: every 0-byte hour of GBPJPY December 2012 is a weekend or holiday ----------


def test_gbpjpy_december_2012_closed_hours_are_not_gaps(dukascopy_dir, tmp_path):
    root = dukascopy_dir / "ninety47"
    zero = sorted(
        H(f"2012-12-{p.parent.name and int(p.parent.name):02d}T{p.name[:2]}")
        for p in (root / "GBPJPY/2012/11").rglob("*_ticks.bi5") if p.stat().st_size == 0
    )
    assert len(zero) == 252
    with Mirror(root=root) as m:
        md = source(tmp_path, m, "GBPJPY", "2012-12-01", "2013-01-01").load()
        assert len(m.requests()) == 744
    q = md.quality
    assert q["hours"] == 744 and q["gap_hours"] == 0 and q["gaps"] == []
    assert q["market_closed_hours"] == 252 and q["hours_with_ticks"] == 744 - 252
    # the closed ranges are exactly the runs of 0-byte files
    runs, start = [], zero[0]
    for a, b in zip(zero, zero[1:] + [None]):
        if b != a + 1:
            runs.append(f"{iso(start)}/{iso(a + 1)}")
            start = b
    assert q["market_closed"] == runs
    # ticks inside closed windows exist (Sunday's early open, Christmas morning) and are counted, not hidden
    assert q["market_closed_hours_with_ticks"] > 0
    # spread statistics against a plain numpy computation
    f = md.frame
    spread = np.rint((f["ask"].to_numpy() - f["bid"].to_numpy()) * 1000)
    assert q["spread"]["mean"] == pytest.approx(spread.mean())
    assert q["spread"]["median"] == np.median(spread) and q["spread"]["max"] == spread.max()
    for k in (95, 99):
        assert q["spread"][f"p{k}"] == np.percentile(spread, k, method="inverted_cdf")
    assert q["spread"]["zero_spread_ticks"] == np.count_nonzero(spread == 0)
    assert q["spread"]["mean_pips"] == pytest.approx(spread.mean() / 10)
    assert q["ticks"] == f.height and md.point == pytest.approx(1e-3) and md.pip == pytest.approx(0.01)


# -- DST weekends, empty hours, gaps: files written by our encoder ---------------------------------


@pytest.mark.parametrize(
    "start,end,closed_from,closed_to",
    [
        # US clocks go forward Sun 2024-03-10: close Fri 17:00 EST = 22:00Z, reopen Sun 17:00 EDT = 21:00Z
        ("2024-03-07", "2024-03-13", "2024-03-08T22", "2024-03-10T21"),
        # US clocks go back Sun 2024-11-03: close Fri 17:00 EDT = 21:00Z, reopen Sun 17:00 EST = 22:00Z
        ("2024-10-31", "2024-11-06", "2024-11-01T21", "2024-11-03T22"),
    ],
)
def test_dst_weekend_closed_window_gaps_and_empty_hours(tmp_path, start, end, closed_from, closed_to):
    rng = np.random.default_rng(7)
    root = tmp_path / "feed"
    h0, h1 = H(start + "T00"), H(end + "T00")
    c0, c1 = H(closed_from), H(closed_to)
    gap_404 = c1 + 12  # a trading hour whose file is missing
    gap_empty = c1 + 30  # a trading hour whose file is 0 bytes
    sunday_tick_hour = c1 - 1  # one closed hour that still has ticks
    written = {}
    for h in range(h0, h1):
        if h == gap_404 or (c0 <= h < c1 and h != sunday_tick_hour):
            continue
        if h == gap_empty:
            p = root / bi5.tick_path("EURUSD", h)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
            continue
        written[h] = write_hour(root, "EURUSD", h, 40, rng)
    with Mirror(root=root) as m:
        md = source(tmp_path, m, "EURUSD", start, end).load()
    q = md.quality
    assert q["market_closed"] == [f"{iso(c0)}/{iso(sunday_tick_hour)}"]
    assert q["market_closed_hours"] == c1 - c0 - 1 and q["market_closed_hours_with_ticks"] == 1
    assert q["gaps"] == [f"{iso(gap_404)}/{iso(gap_404 + 1)}", f"{iso(gap_empty)}/{iso(gap_empty + 1)}"]
    assert q["gap_hours"] == 2 and q["ticks"] == 40 * len(written)
    # the ticks are exactly what the encoder wrote
    ts = md.frame["ts_event"].to_numpy()
    expect = np.concatenate([h * 3_600_000 + written[h]["ms"].astype(np.int64) for h in sorted(written)]) * 1_000_000
    np.testing.assert_array_equal(ts, expect)
    bids = np.concatenate([written[h]["bid"] for h in sorted(written)]) / 100_000
    np.testing.assert_array_equal(md.frame["bid"].to_numpy(), bids)
    # a Saturday without any tick is a zero-row day file, so re-runs know it is done
    saturday = datetime.fromtimestamp((c0 + 3) * 3600, tz=timezone.utc).date()
    part = tmp_path / "catalog" / "symbol=EURUSD" / f"date={saturday}" / "part-0.parquet"
    assert pl.read_parquet(part).height == 0


def test_huge_hour(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "feed"
    hour = H("2024-03-05T13")
    cols = write_hour(root, "EURUSD", hour, 200_000, rng)
    with Mirror(root=root) as m:
        md = source(tmp_path, m, "EURUSD", "2024-03-05T13:00", "2024-03-05T14:00").load()
    assert md.frame.height == 200_000
    np.testing.assert_array_equal(md.frame["ask"].to_numpy(), cols["ask"] / 100_000)
    np.testing.assert_array_equal(md.frame["ask_volume"].to_numpy(), cols["ask_volume"].astype(np.float64))
    assert md.quality["gap_hours"] == 0 and md.quality["hours"] == 1


# -- the schedule itself -----------------------------------------------------------------------


def test_market_closed_schedule():
    hours = np.array([H(t) for t in (
        "2024-01-05T21", "2024-01-05T22",  # Fri winter: 21Z open, 22Z closed
        "2024-07-05T20", "2024-07-05T21",  # Fri summer: 20Z open, 21Z closed
        "2024-01-07T21", "2024-01-07T22",  # Sun winter: 21Z closed, 22Z open
        "2024-12-24T21", "2024-12-24T22", "2024-12-25T21", "2024-12-25T22",  # Christmas trading day
        "2025-01-01T12", "2025-01-02T03",  # New Year closed, 2 Jan open
    )])
    got = market_closed(hours)
    assert got.tolist() == [False, True, False, True, True, False, False, True, True, False, True, False]
    assert not market_closed(hours, trades_weekends=True).any()
