"""Holes in the feed: empty answers inside market hours are suspect, not verified empty hours.

Real GBPJPY ticks of December 2012 (month folder 11: the feed counts months from 0)
served by the loopback mirror, with 404s and empty files injected where the real
feed has ticks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from structlog.testing import capture_logs

from aio.config import build
from aio.data.dukascopy import DukascopyConfig, DukascopySource, bi5
from aio.data.dukascopy.instruments import lookup
from aio.data.dukascopy.mirror import Mirror
from aio.data.dukascopy.quality import suspect_empty
from aio.errors import DataError

MON = 1354492800 // 3600  # 2012-12-03T00:00Z, a Monday: hour index
SAT = MON - 48  # 2012-12-01T00:00Z
FAST = {"progress": False, "timeout_s": 2.0, "backoff_s": 0.01, "backoff_max_s": 0.1, "retries": 2}
H10 = "GBPJPY/2012/11/03/10h_ticks.bi5"


def make_source(tmp: Path, m: Mirror, start: str = "2012-12-03", end: str = "2012-12-04", **over) -> DukascopySource:
    cfg = {"symbol": "GBPJPY", "start": start, "end": end, "base_url": m.base_url, "json_api_url": m.json_api_url,
           "cache_dir": str(tmp / "raw"), "catalog_dir": str(tmp / "catalog"), **FAST, **over}
    return DukascopySource(build(DukascopyConfig, cfg, "data"))


def decode(root: Path, hours: range, skip: tuple[int, ...] = ()) -> pl.DataFrame:
    f = lookup("GBPJPY").decimal_factor
    cols = []
    for h in hours:
        p = root / bi5.tick_path("GBPJPY", h)
        if h not in skip and p.stat().st_size:
            cols.append(bi5.tick_columns(bi5.decode_ticks(p.read_bytes()), h, f))
    return pl.DataFrame({k: np.concatenate([c[k] for c in cols]) for k in cols[0]})


@pytest.fixture(scope="module")
def feed(dukascopy_dir: Path) -> Path:
    return dukascopy_dir / "ninety47"


@pytest.fixture()
def mirror(feed):
    with Mirror(root=feed) as m:
        yield m


def catalogued(tmp: Path) -> list[str]:
    return sorted(p.parent.name for p in (tmp / "catalog").rglob("*.parquet"))


def test_a_404_inside_market_hours_is_suspect_then_repaired_by_the_next_run(feed, mirror, tmp_path):
    mirror.inject(H10, "404")  # once: the feed answers properly next time
    with capture_logs() as logs:
        md = make_source(tmp_path, mirror).load()
    q = md.quality
    assert q["suspect_empty_hours"] == 1 and q["suspect_empty"] == ["2012-12-03T10:00Z/2012-12-03T11:00Z"]
    assert q["download"]["hours"]["suspect_empty"] == 1 and "empty" not in q["download"]["hours"]
    assert "2012-12-03T10:00Z/2012-12-03T11:00Z" in q["gaps"]  # the hole shows as a gap, not as a quiet hour
    assert md.frame.equals(decode(feed, range(MON, MON + 24), skip=(MON + 10,)))  # this run uses the rest
    warn = [e for e in logs if e["log_level"] == "warning" and "suspect_empty" in e["event"]]
    assert warn and warn[0]["ranges"] == ["2012-12-03T10:00Z/2012-12-03T11:00Z"]
    # recorded as suspect, never as a verified empty hour; the day stays out of the catalog
    raw = tmp_path / "raw" / "GBPJPY/2012/11/03"
    assert not (raw / "10h_ticks.bi5").exists() and (raw / "10h_ticks.suspect").read_text() == "404"
    assert catalogued(tmp_path) == []
    # the next run asks for that hour only, and now the day is whole and catalogued
    mirror.clear()
    summary = make_source(tmp_path, mirror).download()
    assert mirror.requests() == [H10]
    assert summary["suspect_empty"] == [] and summary["hours"] == {"cache": 23, "bi5": 1, "failed": 0}
    assert catalogued(tmp_path) == ["date=2012-12-03"] and not (raw / "10h_ticks.suspect").exists()
    again = make_source(tmp_path, mirror).load()
    assert again.frame.equals(decode(feed, range(MON, MON + 24)))
    assert again.quality["suspect_empty_hours"] == 0 and again.quality["gap_hours"] == 0


def test_an_empty_file_at_midnight_is_suspect_and_strict_fails(mirror, tmp_path):
    # 00h of a Monday: its left neighbour is Sunday 23h (open since 22:00 UTC) across the day edge
    mirror.inject("GBPJPY/2012/11/03/00h_ticks.bi5", "empty")
    with pytest.raises(DataError) as err:
        make_source(tmp_path, mirror, strict=True).download()
    msg = str(err.value)
    assert "1 hours of GBPJPY came back empty inside market hours" in msg
    assert "2012-12-03T00:00Z/2012-12-03T01:00Z" in msg and "empty file (HTTP 200, 0 bytes)" in msg
    assert "data.strict=false" in msg and "data.failover=json_api" in msg and "Re-run later" in msg
    assert (tmp_path / "raw/GBPJPY/2012/11/03/00h_ticks.suspect").is_file()
    # offline, the recorded suspect hour is judged again: the run warns and uses the rest
    off = make_source(tmp_path, mirror, offline=True)
    off.cfg.base_url = "http://127.0.0.1:9/datafeed"
    md = off.load()
    assert md.quality["suspect_empty"] == ["2012-12-03T00:00Z/2012-12-03T01:00Z"]


def test_closed_hours_stay_cached_as_empty(feed, mirror, tmp_path):
    # a weekend and Christmas: the feed serves 0-byte files; a 404 on Saturday noon and on the
    # Sunday reopen hour (22:00 UTC, its left neighbour is closed) is the quiet edge of a close
    mirror.inject("GBPJPY/2012/11/01/12h_ticks.bi5", "404")
    mirror.inject("GBPJPY/2012/11/02/22h_ticks.bi5", "404")
    src = make_source(tmp_path, mirror, start="2012-12-01", end="2012-12-03")
    summary = src.download()
    assert summary["suspect_empty"] == [] and summary["days_written"] == 2
    xmas = make_source(tmp_path, mirror, start="2012-12-25", end="2012-12-26").download()
    assert xmas["suspect_empty"] == [] and xmas["hours"]["empty"] == 13  # 09:00-22:00 UTC of 25 Dec
    assert catalogued(tmp_path) == ["date=2012-12-01", "date=2012-12-02", "date=2012-12-25"]
    for rel in ("01/12h_ticks.bi5", "02/22h_ticks.bi5", "01/00h_ticks.bi5", "25/15h_ticks.bi5"):
        assert (tmp_path / "raw/GBPJPY/2012/11" / rel).read_bytes() == b""  # verified empty hours
    assert not list((tmp_path / "raw").rglob("*.suspect"))
    mirror.clear()
    md = make_source(tmp_path, mirror, start="2012-12-01", end="2012-12-03").load()
    assert mirror.requests() == []  # settled: nothing is asked again
    sunday_22 = decode(feed, range(SAT + 46, SAT + 47))
    assert md.frame.height == decode(feed, range(SAT, SAT + 48)).height - sunday_22.height


def _json_body(feed: Path, hour: int) -> bytes:
    """The JSON API's delta encoding of a real bi5 hour (multiplier 0.001 = one GBPJPY point)."""
    t = bi5.decode_ticks((feed / bi5.tick_path("GBPJPY", hour)).read_bytes())
    ms, ask, bid = t["ms"].astype(np.int64), t["ask"].astype(np.int64), t["bid"].astype(np.int64)
    return json.dumps({
        "timestamp": hour * 3_600_000, "multiplier": 0.001, "ask": float(ask[0]) / 1000, "bid": float(bid[0]) / 1000,
        "times": np.diff(ms, prepend=0).tolist(), "asks": np.diff(ask, prepend=ask[0]).tolist(),
        "bids": np.diff(bid, prepend=bid[0]).tolist(),
        "askVolumes": (t["ask_volume"].astype(np.float64) * 1e6).round().tolist(),
        "bidVolumes": (t["bid_volume"].astype(np.float64) * 1e6).round().tolist(),
    }).encode()


def test_suspect_hours_are_asked_from_the_json_api(feed, tmp_path):
    jdir = tmp_path / "json"
    jdir.mkdir()
    (jdir / "ticks-GBP-JPY-2012-12-3-10.json").write_bytes(_json_body(feed, MON + 10))
    with Mirror(root=feed, json_dir=jdir) as m:
        m.inject(H10, "404")
        m.inject("GBPJPY/2012/11/03/14h_ticks.bi5", "empty")  # no JSON fixture for 14h: stays suspect
        md = make_source(tmp_path / "a", m, failover="json_api").load()
        assert "/v1/ticks/GBP-JPY/2012/12/3/10" in m.requests() and "/v1/ticks/GBP-JPY/2012/12/3/14" in m.requests()
    assert md.quality["json_api_hours"] == 1 and md.quality["suspect_empty"] == ["2012-12-03T14:00Z/2012-12-03T15:00Z"]
    assert md.quality["download"]["hours"]["suspect_empty"] == 1
    marker = tmp_path / "a/raw/GBPJPY/2012/11/03/14h_ticks.suspect"
    assert marker.read_text() == "empty file (HTTP 200, 0 bytes); JSON API: 404"
    ref = decode(feed, range(MON, MON + 24), skip=(MON + 14,))
    assert md.frame.select("ts_event", "bid", "ask").equals(ref.select("ts_event", "bid", "ask"))
    np.testing.assert_allclose(md.frame["ask_volume"].to_numpy(), ref["ask_volume"].to_numpy(), rtol=1e-6)
    assert (tmp_path / "a/raw/GBPJPY/2012/11/03/10h_ticks.json").is_file()


def test_suspect_empty_rule():
    ticks = np.ones(24, bool)
    ticks[[3, 4]] = False  # a two-hour hole on a Monday: suspect
    assert np.flatnonzero(suspect_empty(MON, ticks)).tolist() == [3, 4]
    ticks = np.zeros(24, bool)  # a whole empty weekday: open across both day edges, suspect
    assert suspect_empty(MON, ticks).all()
    # Sunday 2012-12-02: closed until 22:00 UTC; an empty 22h borders the closed 21h: believed
    sunday = SAT + 24
    ticks = np.zeros(24, bool)
    ticks[23] = True
    assert not suspect_empty(sunday, ticks).any()
    ticks[22], ticks[23] = True, False  # an empty 23h: left ticks, right Monday 00h open -> suspect
    assert np.flatnonzero(suspect_empty(sunday, ticks)).tolist() == [23]
    # crypto trades on Saturday: an empty hour between ticks is suspect there too, not for FX
    ticks = np.ones(24, bool)
    ticks[12] = False
    assert np.flatnonzero(suspect_empty(SAT, ticks, trades_weekends=True)).tolist() == [12]
    assert not suspect_empty(SAT, ticks).any()


@pytest.mark.slow
def test_the_app_lists_suspect_hours_and_strict_fails(feed, tmp_path):
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def aio(m: Mirror, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "aio", "data=dukascopy", "data.symbol=GBPJPY", "data.start=2012-12-03",
             "data.end=2012-12-04", f"data.base_url={m.base_url}", f"data.cache_dir={tmp_path / 'raw'}",
             f"data.catalog_dir={tmp_path / 'catalog'}", "data.progress=false", *args],
            cwd=repo, capture_output=True, text=True, env=env, timeout=600)

    with Mirror(root=feed) as m:
        m.inject(H10, "404")
        # P&L in JPY: the mirror holds no USDJPY for a USD conversion
        run = aio(m, "backtest.account_currency=JPY", f"hydra.run.dir={tmp_path / 'run'}")
        assert run.returncode == 0, run.stdout + run.stderr
        quality = json.loads((tmp_path / "run" / "data_quality.json").read_text())["source"]
        assert quality["suspect_empty"] == ["2012-12-03T10:00Z/2012-12-03T11:00Z"]
        assert quality["download"]["hours"]["suspect_empty"] == 1
        m.inject(H10, "empty")
        strict = aio(m, "task=download", "data.strict=true", f"hydra.run.dir={tmp_path / 'strict'}")
    assert strict.returncode != 0
    err = strict.stdout + strict.stderr
    assert "2012-12-03T10:00Z/2012-12-03T11:00Z" in err and "data.strict=false" in err
