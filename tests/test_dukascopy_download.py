"""Downloads through the real client from a real HTTP server on 127.0.0.1, clean and faulty."""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aio.config import build
from aio.data.dukascopy import DukascopyConfig, DukascopySource, bi5
from aio.data.dukascopy.instruments import lookup
from aio.data.dukascopy.mirror import Mirror
from aio.errors import DataError

REPO = Path(__file__).resolve().parent.parent
EURUSD_DAY = ("2019-02-04", "2019-02-05")  # 24 real hours in dukascopy-node's mocks
FAST = {"progress": False, "timeout_s": 0.5, "backoff_s": 0.01, "backoff_max_s": 0.2, "retries": 4}


def make_source(tmp: Path, mirror: Mirror | None, *, tag: str = "run", **over) -> DukascopySource:
    cfg = {
        "symbol": "EURUSD", "start": EURUSD_DAY[0], "end": EURUSD_DAY[1],
        "cache_dir": str(tmp / tag / "raw"), "catalog_dir": str(tmp / tag / "catalog"), **FAST,
    }
    if mirror is not None:
        cfg.update(base_url=mirror.base_url, json_api_url=mirror.json_api_url)
    else:  # nothing listens there: an accidental request fails loudly
        cfg.update(base_url="http://127.0.0.1:9/datafeed")
    cfg.update(over)
    return DukascopySource(build(DukascopyConfig, cfg, "data"))


def direct_decode(root: Path, symbol: str, hours: range) -> pl.DataFrame:
    """The reference answer: decode the served files directly, no HTTP, no cache."""
    f = lookup(symbol).decimal_factor
    cols = []
    for h in hours:
        p = root / bi5.tick_path(symbol, h)
        if p.is_file() and p.stat().st_size:
            cols.append(bi5.tick_columns(bi5.decode_ticks(p.read_bytes()), h, f))
    return pl.DataFrame({k: np.concatenate([c[k] for c in cols]) for k in cols[0]})


def files_under(root: Path) -> dict[str, Path]:
    """Cached content: every file except the per-day lock files (under .locks/)."""
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != ".locks"}


def assert_same_tree(a: Path, b: Path) -> None:
    fa, fb = files_under(a), files_under(b)
    assert sorted(fa) == sorted(fb)
    for rel in fa:
        assert filecmp.cmp(fa[rel], fb[rel], shallow=False), f"{rel} differs"


def assert_cache_is_clean(cache: Path, served: Path, *, killed: bool = False) -> None:
    """Every cached file is byte-identical to what the server holds (or 0 bytes for a 404).

    No temp files either, unless a writer was killed: its temp file never counts as cached.
    """
    for rel, p in files_under(cache).items():
        if p.name.endswith(".tmp"):
            assert killed, f"temp file left: {rel}"
            continue
        src = served / rel
        expected = src.read_bytes() if src.is_file() else b""
        assert p.read_bytes() == expected, f"cached {rel} is not the served file"


@pytest.fixture(scope="module")
def node(dukascopy_dir: Path) -> Path:
    return dukascopy_dir / "dukascopy-node"


@pytest.fixture()
def mirror(node):
    with Mirror(root=node, hold_s=1.0) as m:
        yield m


@pytest.fixture(scope="module")
def clean(node, tmp_path_factory):
    """One clean download of the day: the catalog every other run must reproduce byte for byte."""
    tmp = tmp_path_factory.mktemp("clean")
    with Mirror(root=node) as m:
        src = make_source(tmp, m)
        summary = src.download()
        assert len(m.requests()) == 24
    return tmp / "run", summary


def test_clean_download_equals_direct_decoding(node, clean, tmp_path, mirror):
    root, summary = clean
    assert summary["hours"]["bi5"] == 24 and summary["days_written"] == 1 and summary["retries"] == 0
    src = make_source(tmp_path, mirror)
    md = src.load()
    first = 1549238400 // 3600
    ref = direct_decode(node, "EURUSD", range(first, first + 24))
    assert md.frame.equals(ref)
    assert md.kind == "ticks" and md.source == "dukascopy" and md.point == pytest.approx(1e-5)
    assert md.frame.get_column("ts_event").is_sorted()
    assert md.quality["ticks"] == ref.height and md.quality["gap_hours"] == 0
    assert_same_tree(root / "catalog", tmp_path / "run" / "catalog")
    assert_cache_is_clean(tmp_path / "run" / "raw", node)
    # Hive layout that polars scans lazily
    lf = pl.scan_parquet(str(tmp_path / "run" / "catalog" / "**" / "*.parquet"), hive_partitioning=True)
    got = lf.select("symbol", "date", "ts_event").collect()
    assert set(got.get_column("symbol")) == {"EURUSD"} and got.height == ref.height
    assert str(got.get_column("date")[0]).startswith("2019-02-04")


def test_second_run_reads_the_catalog_only(clean, tmp_path, mirror):
    src = make_source(tmp_path, mirror)
    src.download()
    n = len(mirror.requests())
    cache = tmp_path / "run" / "raw"
    for p in cache.rglob("*.bi5"):  # the catalog must not need the raw files any more
        p.unlink()
    again = make_source(tmp_path, mirror).load()
    assert len(mirror.requests()) == n  # no request
    assert again.frame.height > 0 and again.quality["hours_with_ticks"] == 24


def test_faults_are_retried_and_the_catalog_is_identical(node, clean, tmp_path, mirror):
    day = "EURUSD/2019/01/04"
    plan = {
        "00": ["503", "503"],
        "01": ["429"],
        "02": ["timeout"],
        "03": ["truncate"],
        "04": ["short"],
        "05": ["garbage"],
        "06": ["reset"],
        "07": ["500", "garbage", "reset", "short"],
    }
    for hh, faults in plan.items():
        mirror.inject(f"{day}/{hh}h_ticks.bi5", *faults)
    mirror.retry_after = "1"
    src = make_source(tmp_path, mirror, backoff_max_s=2.0)
    summary = src.download()
    n_faults = sum(len(v) for v in plan.values())
    assert summary["retries"] == n_faults and summary["hours"]["bi5"] == 24
    outcomes = {o for _, o, _ in mirror.log}
    assert {"503", "429", "timeout", "truncate", "short", "garbage", "reset", "500"} <= outcomes
    # Retry-After: 1 was honoured (server-side clock, between the 429 and the next request)
    times = [t for p, _, t in mirror.log if p == f"{day}/01h_ticks.bi5"]
    assert len(times) == 2 and times[1] - times[0] >= 0.95
    assert_same_tree(clean[0] / "catalog", tmp_path / "run" / "catalog")
    assert_cache_is_clean(tmp_path / "run" / "raw", node)


def test_corrupt_file_in_the_cache_is_refetched(node, clean, tmp_path, mirror):
    make_source(tmp_path, mirror).download()
    cached = tmp_path / "run" / "raw" / "EURUSD/2019/01/04/09h_ticks.bi5"
    cached.write_bytes(cached.read_bytes()[:100])  # damaged on disk
    for p in (tmp_path / "run" / "catalog").rglob("*.parquet"):
        p.unlink()
    mirror.clear()
    make_source(tmp_path, mirror).download()
    assert mirror.requests() == ["EURUSD/2019/01/04/09h_ticks.bi5"]
    assert_same_tree(clean[0] / "catalog", tmp_path / "run" / "catalog")
    assert_cache_is_clean(tmp_path / "run" / "raw", node)


def test_temp_files_of_killed_runs_are_swept_but_live_ones_kept(tmp_path, mirror):
    folder = tmp_path / "run" / "raw" / "EURUSD/2019/01/04"
    folder.mkdir(parents=True)
    old, fresh = folder / ".00h_ticks.bi5.1.dead.tmp", folder / ".01h_ticks.bi5.2.live.tmp"
    for p in (old, fresh):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    make_source(tmp_path, mirror).download()
    assert not old.exists() and fresh.exists()


def test_circuit_breaker_stops_a_refusing_server(tmp_path, mirror):
    mirror.inject("*", *["503"] * 500)
    src = make_source(tmp_path, mirror, breaker_failures=6, concurrency=2, retries=10)
    with pytest.raises(DataError, match="consecutive failures") as err:
        src.download()
    assert "re-run the same command to resume" in str(err.value)
    assert len(mirror.requests()) <= 6 + 2  # threshold plus the requests already in flight
    assert not any(p.suffix == ".bi5" for p in (tmp_path / "run").rglob("*"))


def test_hours_that_keep_failing_are_named_and_good_hours_kept(node, tmp_path, mirror):
    mirror.inject("EURUSD/2019/01/04/05h_ticks.bi5", *["garbage"] * 50)
    src = make_source(tmp_path, mirror, retries=2)
    with pytest.raises(DataError, match=r"2019-02-04T05:00Z/2019-02-04T06:00Z"):
        src.download()
    cached = list((tmp_path / "run" / "raw").rglob("*.bi5"))
    assert len(cached) == 23  # the good hours are kept for the resume
    assert not list((tmp_path / "run" / "catalog").rglob("*.parquet"))  # an incomplete day is never catalogued
    assert_cache_is_clean(tmp_path / "run" / "raw", node)
    mirror.clear()
    make_source(tmp_path, mirror, retries=2).download()  # resume
    assert mirror.requests() == ["EURUSD/2019/01/04/05h_ticks.bi5"]


def test_failover_to_json_api(dukascopy_dir, node, tmp_path):
    with Mirror(root=node, json_dir=dukascopy_dir / "json-api") as m:
        m.inject("BTCUSD/2023/01/20/12h_ticks.bi5", *["503"] * 50)
        src = make_source(tmp_path, m, symbol="BTCUSD", start="2023-02-20T12:00", end="2023-02-20T13:00",
                          failover="json_api", retries=1)
        md = src.load()
        assert "/v1/ticks/BTC-USD/2023/2/20/12" in m.requests()
    hour = 1676894400 // 3600
    ref = direct_decode(node, "BTCUSD", range(hour, hour + 1))
    assert md.frame.select("ts_event", "bid", "ask").equals(ref.select("ts_event", "bid", "ask"))
    assert md.quality["json_api_hours"] == 1 and md.point == pytest.approx(0.1)
    cached = tmp_path / "run" / "raw" / "BTCUSD/2023/01/20/12h_ticks.json"
    assert cached.read_bytes() == (dukascopy_dir / "json-api/ticks-BTC-USD-2023-2-20-12.json").read_bytes()


def test_offline_names_what_is_missing_then_works_from_cache(node, tmp_path, mirror):
    missing = r"offline.*24 hours of EURUSD are not cached: 2019-02-04T00:00Z/2019-02-05T00:00Z"
    with pytest.raises(DataError, match=missing):
        make_source(tmp_path, None, offline=True).load()
    make_source(tmp_path, mirror).download()
    for p in (tmp_path / "run" / "catalog").rglob("*.parquet"):
        p.unlink()  # offline also builds the catalog from the raw cache
    md = make_source(tmp_path, None, offline=True).load()
    assert md.quality["hours_with_ticks"] == 24


def test_datetime_bounds_are_inclusive_exclusive(tmp_path, mirror):
    md = make_source(tmp_path, mirror, start="2019-02-04T10:30", end="2019-02-04T12:00:00Z").load()
    ts = md.frame.get_column("ts_event")
    lo, hi = (1549238400 + 10.5 * 3600) * 10**9, (1549238400 + 12 * 3600) * 10**9
    assert ts.min() >= lo and ts.max() < hi and md.frame.height > 1000
    assert md.quality["hours"] == 2


def test_recent_days_are_not_catalogued_and_their_404s_not_cached(node, tmp_path, mirror):
    # the mirror holds only 12h and 13h of BTCUSD 2023-02-20; pretend it is 14:30 that day
    src = make_source(tmp_path, mirror, symbol="BTCUSD", start="2023-02-20", end="2023-02-21")
    src.clock = lambda: 1676894400 + 2.5 * 3600
    md = src.load()
    assert len(mirror.requests()) == 14  # 00h..13h; 14h has not ended, later hours are in the future
    cached = files_under(tmp_path / "run" / "raw")
    assert sorted(cached) == ["BTCUSD/2023/01/20/12h_ticks.bi5", "BTCUSD/2023/01/20/13h_ticks.bi5"]
    assert not list((tmp_path / "run" / "catalog").rglob("*.parquet"))
    hour = 1676894400 // 3600
    assert md.frame.equals(direct_decode(node, "BTCUSD", range(hour, hour + 2)))
    q = md.quality
    assert q["not_yet_available_hours"] == 10 and q["market_closed_hours"] == 0  # crypto trades 24x7
    assert q["gaps"] == ["2023-02-20T00:00Z/2023-02-20T12:00Z"]


# -- killed runs and concurrent processes --------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys
    from aio.config import build
    from aio.data.dukascopy import DukascopyConfig, DukascopySource
    base, tmp = sys.argv[1], sys.argv[2]
    cfg = build(DukascopyConfig, {"symbol": "EURUSD", "start": "2019-02-04", "end": "2019-02-06",
                "base_url": base, "cache_dir": tmp + "/raw", "catalog_dir": tmp + "/catalog",
                "progress": False, "concurrency": 2, "timeout_s": 5, "backoff_s": 0.01}, "data")
    s = DukascopySource(cfg).download()
    print("hours", s["hours"])
    """
)


def _spawn(base_url: str, tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", SCRIPT, base_url, str(tmp)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_download_resumes_where_it_stopped(node, tmp_path):
    with Mirror(root=node, delay_s=0.05) as m:
        proc = _spawn(m.base_url, tmp_path)
        deadline = time.monotonic() + 60
        while len(list((tmp_path / "raw").rglob("*.bi5"))) < 8:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        cached = {str(p.relative_to(tmp_path / "raw")) for p in (tmp_path / "raw").rglob("*.bi5")}
        assert 8 <= len(cached) < 48
        for p in (tmp_path / "raw").rglob("*.bi5"):  # whatever survived the kill is whole
            bi5.decode_ticks(p.read_bytes())
        m.clear()
        m.delay_s = 0.0
        src = make_source(tmp_path, m, tag=".", start="2019-02-04", end="2019-02-06")
        src.cache.root = tmp_path / "raw"
        src.catalog.root = tmp_path / "catalog"
        summary = src.download()
        fetched = set(m.requests())
    assert not (fetched & cached) and len(fetched) == 48 - len(cached)
    assert summary["hours"]["cache"] == len(cached) and summary["days_written"] == 2
    assert_cache_is_clean(tmp_path / "raw", node, killed=True)


def test_two_processes_on_one_range_do_not_corrupt_the_cache(node, clean, tmp_path):
    with Mirror(root=node, delay_s=0.005) as m:
        procs = [_spawn(m.base_url, tmp_path) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert_cache_is_clean(tmp_path / "raw", node)
    day = "symbol=EURUSD/date=2019-02-04/part-0.parquet"
    assert filecmp.cmp(clean[0] / "catalog" / day, tmp_path / "catalog" / day, shallow=False)
    assert (tmp_path / "catalog" / "symbol=EURUSD/date=2019-02-05/part-0.parquet").is_file()
