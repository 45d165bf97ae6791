"""Indicator values against TradingView's own exports (200 EURUSD 1h bars from 2023-01-02).

The reference CSVs hold what TradingView's ``ta.*`` functions returned, computed from
the first of those bars, so warm-up (which bars are na) is compared as well as values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aio.indicators import compute_indicator, get_indicator


def _load(tv_dir, name: str) -> pd.DataFrame:
    return pd.read_csv(tv_dir / name)


def _prices(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {k: df[c].to_numpy(np.float64) for k, c in
            (("open", "open"), ("high", "high"), ("low", "low"), ("close", "close"), ("volume", "Volume"))}


def assert_tv(ours: np.ndarray, tv: np.ndarray, rtol: float, what: str) -> None:
    """Same na bars as TradingView, same values elsewhere."""
    tv = np.asarray(tv, dtype=np.float64)
    assert np.array_equal(np.isnan(ours), np.isnan(tv)), (
        f"{what}: warm-up differs: ours first value at bar {int(np.argmax(~np.isnan(ours)))}, "
        f"TradingView at {int(np.argmax(~np.isnan(tv)))}"
    )
    ok = ~np.isnan(tv)
    assert ok.sum() > 100, what
    np.testing.assert_allclose(ours[ok], tv[ok], rtol=rtol, atol=0, err_msg=what)


@pytest.fixture(scope="module")
def macd_csv(tv_dir):
    return _load(tv_dir, "macd.csv")


@pytest.fixture(scope="module")
def bb_csv(tv_dir):
    return _load(tv_dir, "bb.csv")


@pytest.fixture(scope="module")
def osc_csv(tv_dir):
    return _load(tv_dir, "mfi+rsi+stoch.csv")


def test_macd_tv_matches_ta_macd(macd_csv):
    out = compute_indicator("MACD_TV", _prices(macd_csv), {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9})
    col = "ta.macd(close, 12, 26, 9)."
    assert_tv(out["macd"], macd_csv[col + "macd"], 1e-12, "macd")
    assert_tv(out["macdsignal"], macd_csv[col + "signal"], 1e-12, "signal")
    assert_tv(out["macdhist"], macd_csv[col + "hist"], 1e-9, "hist")


def test_talib_macd_differs_from_ta_macd_in_warmup_and_converges(macd_csv):
    """Why MACD_TV exists: TA-Lib's MACD seeds the fast EMA later, so early values differ."""
    out = compute_indicator("MACD", _prices(macd_csv), {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9})
    tv = macd_csv["ta.macd(close, 12, 26, 9).macd"].to_numpy()
    ok = ~np.isnan(out["macd"])
    err = np.abs(out["macd"][ok] - tv[ok])
    assert err[0] > 1e-6  # a visible difference at the start (typical |macd| ~ 1e-3)
    assert err[-1] < err[0] * 1e-3  # ... that decays geometrically
    assert get_indicator("MACD").pine_exact is False and get_indicator("MACD").tv_variant == "MACD_TV"


def test_bbands_match_ta_bb(bb_csv):
    out = compute_indicator("BBANDS", _prices(bb_csv), {"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 0})
    col = "ta.bb(close, 20, 2)."
    assert_tv(out["middleband"], bb_csv[col + "base"], 1e-12, "basis")
    assert_tv(out["upperband"], bb_csv[col + "upper"], 1e-11, "upper")
    assert_tv(out["lowerband"], bb_csv[col + "lower"], 1e-11, "lower")


def test_bbw_matches_ta_bbw(bb_csv):
    out = compute_indicator("BBW", _prices(bb_csv), {"timeperiod": 20, "nbdev": 2.1})
    # bbw is a small difference of two bands: both sides' rolling variances round at ~1e-12
    assert_tv(out["real"], bb_csv["ta.bbw(close, 20, 2.1)"], 1e-8, "bbw")


def test_rsi_matches_ta_rsi(osc_csv):
    out = compute_indicator("RSI", _prices(osc_csv), {"timeperiod": 14})
    assert_tv(out["real"], osc_csv["ta.rsi(close, 14)"], 1e-12, "rsi")


def test_stochf_fastk_matches_ta_stoch(osc_csv):
    out = compute_indicator("STOCHF", _prices(osc_csv), {"fastk_period": 20, "fastd_period": 1, "fastd_matype": 0})
    assert_tv(out["fastk"], osc_csv["ta.stoch(close, high, low, 20)"], 1e-12, "stoch")


def test_mfi_tv_matches_ta_mfi_of_close(osc_csv):
    p = _prices(osc_csv)
    out = compute_indicator("MFI_TV", {"close": p["close"], "volume": p["volume"]}, {"timeperiod": 14})
    assert_tv(out["real"], osc_csv["ta.mfi(close, 14)"], 1e-12, "mfi")


def test_talib_mfi_on_one_series_matches_from_its_first_value(osc_csv):
    """TA-Lib's MFI with high = low = close = close is ta.mfi(close) from bar 14 on; Pine has bar 13 too."""
    p = _prices(osc_csv)
    c = p["close"]
    out = compute_indicator("MFI", {"high": c, "low": c, "close": c, "volume": p["volume"]}, {"timeperiod": 14})["real"]
    tv = osc_csv["ta.mfi(close, 14)"].to_numpy()
    assert np.isnan(out[13]) and not np.isnan(tv[13])
    np.testing.assert_allclose(out[14:], tv[14:], rtol=1e-12)
