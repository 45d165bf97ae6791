"""Catalog self-check and per-file locks: damaged day files are rebuilt, racing runs fetch once.

Real EURUSD hours of 2019-02-04/05 (dukascopy-node's mocks) through the loopback mirror.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from structlog.testing import capture_logs

from aio.config import build
from aio.data.dukascopy import DukascopyConfig, DukascopySource, bi5
from aio.data.dukascopy.instruments import lookup
from aio.data.dukascopy.mirror import Mirror
from aio.errors import DataError

REPO = Path(__file__).resolve().parent.parent
DAY = "symbol=EURUSD/date=2019-02-04"
FIRST = 1549238400 // 3600
FAST = {"progress": False, "timeout_s": 2.0, "backoff_s": 0.01, "backoff_max_s": 0.1, "retries": 2}


def make_source(tmp: Path, m: Mirror | None, **over) -> DukascopySource:
    cfg = {"symbol": "EURUSD", "start": "2019-02-04", "end": "2019-02-05",
           "base_url": m.base_url if m else "http://127.0.0.1:9/datafeed",
           "cache_dir": str(tmp / "raw"), "catalog_dir": str(tmp / "catalog"), **FAST, **over}
    return DukascopySource(build(DukascopyConfig, cfg, "data"))


@pytest.fixture(scope="module")
def node(dukascopy_dir: Path) -> Path:
    return dukascopy_dir / "dukascopy-node"


@pytest.fixture(scope="module")
def reference(node) -> pl.DataFrame:
    f = lookup("EURUSD").decimal_factor
    cols = [bi5.tick_columns(bi5.decode_ticks((node / bi5.tick_path("EURUSD", h)).read_bytes()), h, f)
            for h in range(FIRST, FIRST + 24)]
    return pl.DataFrame({k: np.concatenate([c[k] for c in cols]) for k in cols[0]})


@pytest.fixture()
def mirror(node):
    with Mirror(root=node) as m:
        yield m


def _damage_and_reload(tmp: Path, mirror: Mirror, damage, **over):
    make_source(tmp, mirror).download()
    part = tmp / "catalog" / DAY / "part-0.parquet"
    damage(part)
    mirror.clear()
    with capture_logs() as logs:
        md = make_source(tmp, mirror, **over).load()
    warns = [e for e in logs if e["log_level"] == "warning" and "self-check" in e["event"]]
    return md, part, warns


def test_a_day_file_has_a_record_of_rows_size_and_checksum(tmp_path, mirror, reference):
    make_source(tmp_path, mirror).download()
    rec = json.loads((tmp_path / "catalog" / DAY / "part-0.json").read_text())
    part = tmp_path / "catalog" / DAY / "part-0.parquet"
    assert rec["rows"] == reference.height and rec["bytes"] == part.stat().st_size and len(rec["blake2b"]) == 32


def test_a_truncated_day_file_is_rebuilt_from_the_raw_cache(tmp_path, mirror, reference):
    def truncate(p: Path) -> None:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    md, part, warns = _damage_and_reload(tmp_path, mirror, truncate)
    assert mirror.requests() == []  # the raw cache was enough
    assert md.frame.equals(reference)  # no ComputeError: the day was rebuilt before it was read
    assert warns and warns[0]["path"] == str(part) and "truncated" in warns[0]["reason"]
    assert str(part) in md.quality["download"]["days_rebuilt"]
    assert make_source(tmp_path, mirror).catalog.verify(date(2019, 2, 4)) is None


def test_a_corrupted_day_file_of_the_same_size_is_caught_by_its_checksum(tmp_path, mirror, reference):
    def flip(p: Path) -> None:
        b = bytearray(p.read_bytes())
        mid = len(b) // 2
        b[mid : mid + 8] = bytes(x ^ 0xFF for x in b[mid : mid + 8])
        p.write_bytes(bytes(b))

    md, part, warns = _damage_and_reload(tmp_path, mirror, flip)
    assert warns and "checksum" in warns[0]["reason"] and mirror.requests() == []
    assert md.frame.equals(reference)


def test_a_day_file_from_before_records_is_adopted_if_whole_else_rebuilt(tmp_path, mirror, reference):
    def legacy(p: Path) -> None:
        p.with_name("part-0.json").unlink()

    md, part, warns = _damage_and_reload(tmp_path, mirror, legacy)
    assert not warns and mirror.requests() == []
    rec = json.loads(part.with_name("part-0.json").read_text())  # recorded as it is, nothing fetched or rebuilt
    assert rec["rows"] == reference.height and md.frame.equals(reference)
    assert md.quality["download"]["days_rebuilt"] == {}

    def legacy_truncated(p: Path) -> None:
        p.with_name("part-0.json").unlink()
        p.write_bytes(p.read_bytes()[:1000])

    md, part, warns = _damage_and_reload(tmp_path / "t", mirror, legacy_truncated)
    assert warns and "no record and cannot be read" in warns[0]["reason"] and mirror.requests() == []
    assert md.frame.equals(reference)


def test_a_damaged_day_without_raw_files_is_fetched_again(tmp_path, mirror, reference):
    def damage(p: Path) -> None:
        p.write_bytes(b"PAR1 not really")
        for f in (tmp_path / "raw").rglob("*.bi5"):
            f.unlink()

    md, part, warns = _damage_and_reload(tmp_path, mirror, damage)
    assert warns and len(mirror.requests()) == 24
    assert md.frame.equals(reference)


def test_offline_rebuilds_from_the_raw_cache_and_names_what_is_missing(tmp_path, mirror, reference):
    def damage(p: Path) -> None:
        p.write_bytes(b"")
        (tmp_path / "raw/EURUSD/2019/01/04/07h_ticks.bi5").unlink()

    make_source(tmp_path, mirror).download()
    damage(tmp_path / "catalog" / DAY / "part-0.parquet")
    with pytest.raises(DataError, match=r"offline.*1 hours of EURUSD are not cached: 2019-02-04T07:00Z"):
        make_source(tmp_path, None, offline=True).load()
    make_source(tmp_path, mirror).download()  # fetches 07h, rebuilds the day
    assert make_source(tmp_path, None, offline=True).load().frame.equals(reference)


# -- two processes on one range ------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys
    from aio.config import build
    from aio.data.dukascopy import DukascopyConfig, DukascopySource
    base, tmp = sys.argv[1], sys.argv[2]
    cfg = build(DukascopyConfig, {"symbol": "EURUSD", "start": "2019-02-04", "end": "2019-02-06",
                "base_url": base, "cache_dir": tmp + "/raw", "catalog_dir": tmp + "/catalog",
                "progress": False, "concurrency": 3, "timeout_s": 5, "backoff_s": 0.01}, "data")
    s = DukascopySource(cfg).download()
    print(s["hours"])
    """
)


def test_two_processes_on_one_range_fetch_each_file_once(node, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # each answer takes 250 ms (about 4 s for the range at 3 in flight), so the two runs overlap
    with Mirror(root=node, delay_s=0.25) as m:
        procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, m.base_url, str(tmp_path)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=180) for p in procs]
        requests = m.requests()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    counts = Counter(requests)
    assert len(counts) == 48 and set(counts.values()) == {1}, counts.most_common(3)
    # both did work (the hours were shared out, not one run waiting for the other to finish)
    fetched = [eval(out.strip().splitlines()[-1]).get("bi5", 0) for out, _ in outs]  # noqa: S307 (our own print)
    assert sum(fetched) == 48 and min(fetched) > 0
    for day in ("2019-02-04", "2019-02-05"):
        src = make_source(tmp_path, None, start=day, end=day[:-1] + str(int(day[-1]) + 1))
        assert src.catalog.verify(date.fromisoformat(day)) is None
