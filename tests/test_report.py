"""report.html: its pieces against hand computations, and a real run's page end to end."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aio.report import fmt
from aio.report import series as S
from aio.report.excursions import excursions, trade_excursions
from aio.report.headline import read as headline

sys.path.insert(0, str(Path(__file__).parent))

DAY = 86_400_000_000_000
MIN = 60_000_000_000


# -- MAE / MFE -------------------------------------------------------------------------------

def test_excursions_match_a_hand_computation():
    #            bar:   0     1     2     3     4     5
    high = np.array([1.10, 1.12, 1.15, 1.11, 1.30, 1.20])
    low = np.array([1.05, 1.08, 1.07, 1.02, 1.09, 1.00])
    # long 1 -> 4: path = entry 1.10, bars 1..3 (high 1.15, low 1.02), exit 1.25; bar 4's 1.30 is after the exit
    # short 2 -> 5: path = entry 1.14, bars 2..4 (high 1.30, low 1.02), exit 1.10
    # long 3 -> 3: opened and closed in one bar: only its two prices
    mae, mfe = excursions(high, low, entry_bar=[1, 2, 3], exit_bar=[4, 5, 3], entry_price=[1.10, 1.14, 1.05],
                          exit_price=[1.25, 1.10, 1.04], side=[1, -1, 1])
    np.testing.assert_allclose(mae, [1.02 - 1.10, 1.14 - 1.30, 1.04 - 1.05], atol=1e-12)
    np.testing.assert_allclose(mfe, [1.25 - 1.10, 1.14 - 1.02, 0.0], atol=1e-12)
    assert (mae <= 0).all() and (mfe >= 0).all()


def test_excursions_refuse_impossible_trades():
    with pytest.raises(ValueError, match="exit bar 1 before entry bar 2"):
        excursions(np.ones(3), np.ones(3), [2], [1], [1.0], [1.0], [1])
    with pytest.raises(ValueError, match="outside the 3 bars"):
        excursions(np.ones(3), np.ones(3), [0], [5], [1.0], [1.0], [1])


def test_trade_excursions_in_percent_and_money():
    bars = pl.DataFrame({"high": [1.0, 1.2, 1.1], "low": [1.0, 0.9, 1.0]})
    trades = pl.DataFrame({"side": ["long"], "entry_price": [1.0], "exit_price": [1.1], "entry_bar": [0],
                           "exit_bar": [2], "qty": [1000.0]})
    t = trade_excursions(trades, bars)
    assert t["mae_pct"][0] == pytest.approx(-10.0) and t["mfe_pct"][0] == pytest.approx(20.0)
    assert t["mae_money"][0] == pytest.approx(-100.0) and t["mfe_money"][0] == pytest.approx(200.0)


# -- display series --------------------------------------------------------------------------

def test_weekend_gap_becomes_one_rangebreak():
    fri = np.datetime64("2024-03-08T21:58", "ns").astype(np.int64)
    sun = np.datetime64("2024-03-10T21:00", "ns").astype(np.int64)
    ts = np.r_[fri, fri + MIN, sun, sun + MIN, sun + 3 * MIN]  # a 2-minute hole on Sunday is no break
    step = S.bar_interval_ns(ts)
    assert step == MIN
    g = S.gaps(ts, step)
    assert g == [(int(fri + 2 * MIN), int(sun))]
    (rb,) = S.rangebreaks(g)
    assert rb == {"values": ["2024-03-08 22:00:00.000"], "dvalue": (sun - fri - 2 * MIN) // 1_000_000}


def test_candles_aggregate_by_hand():
    ts = np.arange(6) * MIN
    o = np.array([1.0, 2, 3, 4, 5, 6])
    h = o + 0.5
    lo = o - 0.5
    c = o + 0.1
    t, oo, hh, ll, cc = S.aggregate_ohlc(ts, o, h, lo, c, 3 * MIN)
    np.testing.assert_array_equal(t, [0, 3 * MIN])
    np.testing.assert_array_equal(oo, [1, 4])
    np.testing.assert_array_equal(hh, [3.5, 6.5])
    np.testing.assert_array_equal(ll, [0.5, 3.5])
    np.testing.assert_array_equal(cc, [3.1, 6.1])
    assert S.bucket_minutes(14_459, MIN, 3000) == 5


def test_daily_returns_and_drawdown_by_hand():
    ts = np.array([0, 12, 24, 36, 48]) * 3_600_000_000_000  # hours 0, 12 (day 1), 24, 36 (day 2), 48 (day 3)
    eq = np.array([100.0, 110.0, 99.0, 121.0, 121.0])
    days, ret = S.period_returns(ts, eq, base=100.0, freq="D")
    np.testing.assert_allclose(ret, [10.0, 10.0, 0.0])  # 110/100, 121/110, 121/121
    assert days.astype(str).tolist() == ["1970-01-01", "1970-01-02", "1970-01-03"]
    np.testing.assert_allclose(S.drawdown_pct(eq), [0.0, 0.0, -10.0, 0.0, 0.0])


def test_reliability_bins_add_up_to_the_expected_calibration_error():
    from aio.models.metrics import ece

    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1], size=500)
    y = rng.integers(0, 3, size=500)
    conf, hit, n = S.reliability(p, y, bins=15)
    assert n.sum() == 500
    assert float(np.sum(n * np.abs(hit - conf)) / 500) == pytest.approx(ece(p, y, bins=15))


# -- formats -----------------------------------------------------------------------------------

def test_units_follow_the_key():
    assert fmt.value("max_drawdown_pct", 12.345) == "12.35 %"
    assert fmt.value("cagr", -0.25) == "\u221225.00 %"  # a fraction, shown as a percent
    assert fmt.value("win_rate", 50.0) == "50.00 %"
    assert fmt.value("net_profit", -10980.714) == "\u221210,980.71"
    assert fmt.value("max_drawdown_duration_seconds", 4 * 86400 + 20 * 3600) == "4 d 20 h"
    assert fmt.value("duration_seconds", 95 * 60) == "1 h 35 min"
    assert fmt.value("trade_count", 1178.0) == "1,178"
    assert fmt.value("mfe_money", -0.0) == "0.00"  # no minus on a zero
    assert fmt.value("pnl", -0.000312) == "\u22120.000312"  # a one-unit trade's P&L is not 0.00
    assert fmt.value("sharpe", None) == "n/a" and fmt.value("sharpe", float("nan")) == "n/a"
    assert fmt.label("max_drawdown_pct") == "max drawdown (%)"


# -- the headline, read defensively ---------------------------------------------------------------

def test_headline_prefers_the_evaluator_then_the_search_then_the_backtest():
    bt = {"net_profit": -5.0, "warnings": ["too few trades (3) to judge"]}
    oos = {"net_profit": 7.0, "sharpe": 1.0, "ruin": {"bar": 9, "time": "2024-03-05T00:09:00Z"}}
    own = {"sample": "out_of_sample", "metrics": {"net_profit": 8.0}, "warnings": ["best fast at the edge"],
           "params": {}}
    assert headline({"headline": own, "optimize": {"oos": oos}, "backtest": bt})["metrics"]["net_profit"] == 8.0
    h = headline({"optimize": {"oos": oos, "folds": [{}, {}]}, "backtest": bt})
    assert h["sample"] == "out_of_sample" and h["metrics"]["net_profit"] == 7.0 and h["ruin"]["bar"] == 9
    h = headline({"backtest": bt, "params": {"fast": 3}})
    assert h["sample"] == "full_period" and h["warnings"] == ["too few trades (3) to judge"]
    assert headline({})["metrics"] == {}


# -- a real run ------------------------------------------------------------------------------------

def _section_text(page: str, start: str, end: str) -> str:
    a = page.index(start)
    return page[a:page.index(end, a)]


@pytest.mark.slow
def test_report_of_a_search_leads_with_out_of_sample(tmp_path):
    from _report_runs import SEARCH, run_pipeline

    run = run_pipeline(tmp_path / "run", SEARCH)
    d = tmp_path / "run"
    page = (d / "report.html").read_text()
    metrics = json.loads((d / "metrics.json").read_text())
    oos = metrics["optimize"]["oos"]
    # the first metrics on the page are the stitched out-of-sample ones
    head = _section_text(page, "id='headline'", "Equity against buy-and-hold")
    assert "out of sample" in head
    first_card = re.search(r"<div class='k'>net profit \(acct ccy\)</div><div class='v'>([^<]+)<", page)
    assert first_card.group(1) == fmt.money(oos["net_profit"])
    assert page.index("id='headline'") < page.index("id='in-sample'")
    full = page[page.index("id='in-sample'"):]
    assert "in sample" in full[:200] and fmt.money(metrics["backtest"]["net_profit"]) in full
    assert "SYNTHETIC DATA" in page[:page.index("<h1>")]
    # offline: plotly.js from the run folder, no CDN, links to the run's files
    assert "cdn.plot.ly" not in page and "<script src='plotly.min.js'>" in page
    assert (d / "plotly.min.js").stat().st_size > 1_000_000
    for href in ("strategy.pine", "config.yaml", "manifest.json", "./"):
        assert f"href='{href}'" in page
    for name in ("history.html", "oos_equity.html"):
        opt_page = (d / "optimize" / name).read_text()
        assert "cdn.plot.ly" not in opt_page and "../plotly.min.js" in opt_page and "SYNTHETIC DATA" in opt_page
    # a trade row per trade, with MAE/MFE
    assert page.count("<tr>", page.index("id='trades'")) >= run.backtest.trades.height
    assert "MAE (% of entry)" in page
    # one PNG per figure
    pngs = sorted(p.stem for p in (d / "report").glob("*.png"))
    assert pngs == sorted(["equity", "price", "returns", "importances", "param_heatmap", "equity_full_period"])
    assert (d / "report.html").stat().st_size < 3 * 2**20


@pytest.mark.slow
def test_report_without_a_browser_warns_once_and_skips_pngs(tmp_path, monkeypatch, capsys):
    from _report_runs import MANY_TRADES, run_pipeline

    from aio.report import images

    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chromium-here"))  # as on a machine without one
    monkeypatch.setattr(images, "_warned", False)
    run = run_pipeline(tmp_path / "run", MANY_TRADES)
    assert (tmp_path / "run" / "report.html").is_file() and not (tmp_path / "run" / "report").exists()
    assert run.backtest.trades.height > 500
    from aio.report.run_report import write_run_report

    write_run_report(run, tmp_path / "run" / "again.html")
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert sum(r["event"] == "report PNGs skipped" for r in log) == 1


@pytest.mark.slow
def test_ruin_and_warnings_stand_next_to_the_headline(tmp_path, monkeypatch):
    from _report_runs import MANY_TRADES, run_pipeline

    monkeypatch.setenv("AIO_REPORT_PNG", "0")
    # 1,000 lots on a 100,000 account: costs alone ruin it within days
    run_pipeline(tmp_path / "run", MANY_TRADES + ["backtest.qty=100000000"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ruin = metrics["headline"]["metrics"]["ruin"]
    assert ruin is not None
    page = (tmp_path / "run" / "report.html").read_text()
    head = _section_text(page, "id='headline'", "Equity against buy-and-hold")
    assert f"RUIN at {ruin['time']} (bar {ruin['bar']})" in head
    for w in metrics["headline"]["warnings"]:
        assert html_escape(w) in head
    for key, why in metrics["headline"]["metrics"]["undefined"].items():
        assert f"{html_escape(fmt.label(key))} is undefined: {html_escape(why)}" in head


def html_escape(s: str) -> str:
    import html

    return html.escape(s)
