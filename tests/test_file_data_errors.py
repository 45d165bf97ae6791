"""File data that cannot be used as is: each error names the problem and the fix.

Mixed naive/offset times, naive times without a zone, header-only and all-bad files,
too many bad rows, a wrong separator, and bars without a spread (which must still
build a dataset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aio.bars import bars_from_market
from aio.config import build
from aio.data.file import FileDataConfig, FileSource, sniff_separator
from aio.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parent.parent
HOUR = 3600 * 10**9


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _load(path: Path, **over):
    return FileSource(build(FileDataConfig, {"path": str(path)} | over, "data")).load()


def _bars_text(n: int, *, sep: str = ",", start: datetime = datetime(2024, 1, 2), fmt: str = "%Y-%m-%d %H:%M",
               header: str = "time,open,high,low,close,volume") -> str:
    lines = [header.replace(",", sep)]
    for i in range(n):
        t = (start + timedelta(hours=i)).strftime(fmt)
        lines.append(sep.join([t, "1.1000", "1.1010", "1.0990", "1.1005", str(10 + i)]))
    return "\n".join(lines) + "\n"


# -- time zones ------------------------------------------------------------------------


def test_mixed_naive_and_offset_times_are_an_error_naming_rows(tmp_path):
    lines = ["time,open,high,low,close"]
    for i in range(12):
        t = datetime(2024, 1, 2, tzinfo=timezone.utc) + timedelta(hours=i)
        # rows 4..7 lost their offset (a hand-edited export)
        s = t.strftime("%Y-%m-%d %H:%M:%S") if 4 <= i < 8 else t.isoformat()
        lines.append(f"{s},1.1,1.2,1.0,1.15")
    p = _write(tmp_path, "mixed.csv", "\n".join(lines))
    with pytest.raises(DataError) as err:
        _load(p, timezone="UTC")  # a zone does not make the mix acceptable
    msg = str(err.value)
    assert "mixed.csv mixes times with a UTC offset (8 rows" in msg
    assert "times without one (4 rows" in msg
    assert "line 2: '2024-01-02T00:00:00+00:00'" in msg  # first offset row (header is line 1)
    assert "line 6: '2024-01-02 04:00:00'" in msg  # first naive row
    assert "every time carries its offset" in msg and "data.timezone" in msg


def test_naive_times_need_data_timezone_and_the_error_lists_choices(tmp_path):
    p = _write(tmp_path, "naive.csv", _bars_text(5))
    with pytest.raises(ConfigError) as err:
        _load(p)
    msg = str(err.value)
    assert "times without a UTC offset (e.g. line 2: '2024-01-02 00:00'" in msg
    for choice in ("data.timezone=UTC", "data.timezone=EET", "data.timezone=US/Eastern"):
        assert choice in msg
    # with the zone named, 00:00 EET in January is 22:00 UTC the day before
    md = _load(p, timezone="EET")
    assert md.frame["ts_event"][0] == int(datetime(2024, 1, 1, 22, tzinfo=timezone.utc).timestamp()) * 10**9
    assert md.quality["time_parsing"] == "naive in EET"


def test_naive_parquet_datetimes_need_a_zone_but_unix_and_offset_times_do_not(tmp_path):
    t = [datetime(2024, 7, 1, 9) + timedelta(hours=i) for i in range(3)]
    p = tmp_path / "naive.parquet"
    pl.DataFrame({"time": t, "open": [1.1] * 3, "high": [1.2] * 3, "low": [1.0] * 3, "close": [1.1] * 3}).write_parquet(p)
    with pytest.raises(ConfigError, match=r"row 0: '2024-07-01 09:00:00'.*data.timezone=UTC"):
        _load(p)
    unix = _write(tmp_path, "unix.csv", "time,open,high,low,close\n1700000000,1,1,1,1\n1700003600,1,1,1,1\n")
    assert _load(unix).frame.height == 2
    aware = _write(tmp_path, "aware.csv", "time,open,high,low,close\n2024-01-02T00:00-05:00,1,1,1,1\n"
                                          "2024-01-02T01:00-05:00,1,1,1,1\n")
    assert _load(aware).frame["ts_event"][0] == int(datetime(2024, 1, 2, 5, tzinfo=timezone.utc).timestamp()) * 10**9


# -- no valid rows, too many bad rows ----------------------------------------------------


def test_header_only_and_empty_files_say_no_valid_rows(tmp_path):
    p = _write(tmp_path, "header.csv", "time,open,high,low,close,volume\n")
    with pytest.raises(DataError) as err:
        _load(p, timezone="UTC")
    msg = str(err.value)
    assert "header.csv: no valid rows" in msg and "no data rows" in msg and "timeframe" not in msg
    assert "reason" in msg  # the (empty) reasons table
    with pytest.raises(DataError, match="no valid rows: the file is empty"):
        _load(_write(tmp_path, "empty.csv", ""), timezone="UTC")


def test_all_bad_rows_say_no_valid_rows_with_the_reasons_table(tmp_path):
    text = "time,open,high,low,close\n" + "\n".join(
        ["yesterday,1.1,1.2,1.0,1.15", "2024-01-02T01:00Z,x,1.2,1.0,1.15", "2024-01-02T02:00Z,1.1,1.0,1.2,1.15",
         "soon,1.1,1.2,1.0,1.15"])
    with pytest.raises(DataError) as err:
        _load(_write(tmp_path, "bad.csv", text))
    msg = str(err.value)
    assert "bad.csv: no valid rows: all 4 rows are bad" in msg and "timeframe" not in msg
    lines = msg.splitlines()
    row = next(ln for ln in lines if "unparseable time" in ln)
    assert row.split()[2] == "2" and "line 2:" in row and "time='yesterday'" in row  # 2 rows, the first on line 2
    assert any("missing or non-numeric open" in ln and "line 3" in ln for ln in lines)
    assert any("high below low" in ln and "line 4" in ln for ln in lines)
    assert "data.time_format" in msg and "data.columns" in msg  # the fixes


def test_more_bad_rows_than_the_limit_fails_showing_the_reasons(tmp_path):
    # 9 rows, 6 bad: the case (it used to run on 3 bars and write a Pine file)
    good = [f"2024-01-02T0{i}:00Z,1.1,1.2,1.0,1.15" for i in range(3)]
    bad = ["nope,1.1,1.2,1.0,1.15"] * 4 + ["2024-01-02T05:00Z,-1,1.2,1.0,1.15", "2024-01-02T06:00Z,1.1,1.2,1.0,"]
    p = _write(tmp_path, "six.csv", "time,open,high,low,close\n" + "\n".join(good + bad))
    with pytest.raises(DataError) as err:
        _load(p)
    msg = str(err.value)
    assert "6 of 9 rows (66.7%) are bad, more than data.max_bad_rows_pct=1" in msg
    assert "set data.max_bad_rows_pct=67 to run on the 3 good rows" in msg
    table = msg.splitlines()
    assert any("unparseable time" in ln and " 4 " in ln and "line 5" in ln for ln in table)
    assert any("non-positive open" in ln and "line 9" in ln for ln in table)
    assert any("missing or non-numeric close" in ln and "line 10" in ln for ln in table)
    md = _load(p, max_bad_rows_pct=67)  # the fix the message names works
    assert md.frame.height == 3 and md.quality["bad_rows"]["count"] == 6


def test_bad_rows_within_the_limit_pass_with_the_report(tmp_path):
    text = _bars_text(200, fmt="%Y-%m-%dT%H:%M:%SZ").splitlines()
    text[50] = "garbage," + text[50].split(",", 1)[1]  # 1 of 200 = 0.5 %
    md = _load(_write(tmp_path, "ok.csv", "\n".join(text)))
    assert md.frame.height == 199 and md.quality["bad_rows"]["by_reason"] == {"unparseable time": 1}
    text[60] = "garbage," + text[60].split(",", 1)[1]
    text[70] = "garbage," + text[70].split(",", 1)[1]  # 3 of 200 = 1.5 % > 1 %
    with pytest.raises(DataError, match=r"3 of 200 rows \(1.5%\) are bad"):
        _load(_write(tmp_path, "ko.csv", "\n".join(text)))


# -- separators -------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [";", "\t", "|", ","])
def test_separator_is_sniffed(tmp_path, sep):
    p = _write(tmp_path, "s.csv", _bars_text(30, sep=sep))
    assert sniff_separator(p) == sep
    md = _load(p, timezone="UTC")
    assert md.frame.height == 30 and md.frame["volume"][29] == 39.0


def test_a_wrong_separator_is_named_in_the_error(tmp_path):
    p = _write(tmp_path, "semi.csv", _bars_text(5, sep=";"))
    with pytest.raises(DataError) as err:
        _load(p, separator=",", timezone="UTC")
    msg = str(err.value)
    assert "read as one column (separator ',')" in msg and "set data.separator=';'" in msg
    assert _load(p, separator=";", timezone="UTC").frame.height == 5
    with pytest.raises(ConfigError, match="data.separator"):
        build(FileDataConfig, {"path": str(p), "separator": ";;"}, "data")


# -- no spread ---------------------------------------------------------------------------


def test_bars_without_spread_state_the_assumption_or_leave_it_out(tmp_path):
    p = _write(tmp_path, "nospread.csv", _bars_text(30))
    md = _load(p, timezone="UTC")
    assert np.isnan(md.frame["spread_mean"].to_numpy()).all()
    assert md.quality["spread"]["source"] == "unknown" and "data.spread_pips" in md.quality["spread"]["note"]
    md = _load(p, timezone="UTC", spread_pips=0.8)
    np.testing.assert_allclose(md.frame["spread_mean"].to_numpy(), 0.8e-4)
    assert md.quality["spread"] == {"source": "assumed", "pips": 0.8, "note": md.meta["spread"]["note"]}
    assert "0.8 pips" in md.meta["spread"]["note"] and md.meta["spread_known"] is False
    jpy = _load(p, timezone="UTC", spread_pips=1.5, symbol="USDJPY")
    np.testing.assert_allclose(jpy.frame["spread_mean"].to_numpy(), 0.015)  # JPY pip 0.01
    # a spread column wins over the assumption
    with_col = _write(tmp_path, "spread.csv", "time,open,high,low,close,spread\n2024-01-02T00:00Z,1,1,1,1,0.00012\n"
                                              "2024-01-02T01:00Z,1,1,1,1,0.00014\n")
    md = _load(with_col, spread_pips=0.8)
    np.testing.assert_allclose(md.frame["spread_mean"].to_numpy(), [1.2e-4, 1.4e-4])
    assert md.quality["spread"] == {"source": "file"}


def test_price_only_ticks_with_an_assumed_spread_straddle_the_price(tmp_path):
    t0 = datetime(2024, 3, 6, 12, tzinfo=timezone.utc)
    rows = "\n".join(f"{(t0 + timedelta(seconds=i)).isoformat()},1.10000" for i in range(90))
    md = _load(_write(tmp_path, "t.csv", "time,price\n" + rows), spread_pips=1.0)
    np.testing.assert_allclose((md.frame["ask"] - md.frame["bid"]).to_numpy(), 1e-4)
    bars = bars_from_market(md, "1m", "mid")
    np.testing.assert_allclose(bars.frame["spread_mean"].to_numpy(), 1e-4)
    np.testing.assert_allclose(bars.frame["close"].to_numpy(), 1.1)


def _tv_bars(tv_dir, **over):
    cfg = build(FileDataConfig, {"path": str(tv_dir / "ohlcv.csv"), "end": "2023-05-15"} | over, "data")
    return bars_from_market(FileSource(cfg).load())


def test_dataset_rows_from_tradingview_bars_without_a_spread(tv_dir):
    from aio.dataset.build import compute_rows
    from aio.dataset.config import DatasetConfig
    from aio.render import make_renderer

    build_cfg = build
    renderer = make_renderer("candles", {"name": "candles"})
    cfg = build_cfg(DatasetConfig, {}, "dataset")
    bars = _tv_bars(tv_dir)
    assert len(bars) > 8000
    rows = compute_rows(bars, {}, cfg, renderer)
    assert len(rows.ends) > 1500 and "spread_pips" not in rows.features
    assert any("spread_pips left out" in n for n in rows.notes)
    assert any("labels pay no spread" in n for n in rows.notes)
    assert all(np.isfinite(v).all() for v in rows.features.values())
    # the stated assumption: the same bars with spread_pips build the same rows plus the feature and its cost
    assumed = compute_rows(_tv_bars(tv_dir, spread_pips=0.8), {}, cfg, renderer)
    assert np.array_equal(assumed.ends, rows.ends) and not assumed.notes
    np.testing.assert_allclose(assumed.features["spread_pips"], 0.8)
    h = int(cfg.horizons[0])
    r = rows.labels[f"fwd_ret_pips_{h}"]
    net = np.sign(r) * np.maximum(np.abs(r) - 0.8, 0.0)  # hand computation: the label pays 0.8 pips
    np.testing.assert_allclose(assumed.labels[f"fwd_net_pips_{h}"], net, atol=1e-6)


def test_warmup_error_names_the_empty_column_not_more_data(tv_dir):
    from aio.dataset.build import compute_rows
    from aio.dataset.config import DatasetConfig
    from aio.render import make_renderer

    build_cfg = build
    renderer = make_renderer("candles", {"name": "candles"})
    bars = _tv_bars(tv_dir)
    empty = {"MFI": np.full(len(bars), np.nan)}  # an indicator over a column the bars lack
    with pytest.raises(DataError) as err:
        compute_rows(bars, empty, build_cfg(DatasetConfig, {}, "dataset"), renderer)
    msg = str(err.value)
    assert "ind_MFI is NaN on every one of the" in msg and "indicators" in msg and "more data" not in msg


@pytest.mark.slow
def test_task_dataset_on_the_tradingview_file_builds_rows(tmp_path, tv_dir):
    run_dir = tmp_path / "ds"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "aio", "task=dataset", "data=file", f"data.path={tv_dir / 'ohlcv.csv'}",
         "data.end=2023-05-15", "dataset.store.location=run", "dataset.progress=false", f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"]["rows"] > 1500
    quality = json.loads((run_dir / "data_quality.json").read_text())
    assert quality["source"]["spread"]["source"] == "unknown"


@pytest.mark.slow
def test_a_model_trains_on_tradingview_bars_without_a_spread(tmp_path, tv_dir):
    run_dir = tmp_path / "train"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "aio", "task=train", "model=knn_analogs", "data=file",
         f"data.path={tv_dir / 'ohlcv.csv'}", "data.end=2023-05-15", "data.spread_pips=0.8",
         "dataset.store.location=run", "dataset.progress=false", f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"]["model"] == "knn_analogs" and metrics["model"]["oos_rows"] > 1000
    quality = json.loads((run_dir / "data_quality.json").read_text())
    assert quality["source"]["spread"] == {"source": "assumed", "pips": 0.8, "note": quality["source"]["spread"]["note"]}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["meta"]["spread"]["source"] == "assumed"
