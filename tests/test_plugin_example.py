"""The example plugin in plugins/: found by folder discovery, computes Pine's ALMA."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aio.indicators import compute_indicator_set, register
from aio.registry import Registry

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


@pytest.fixture()
def reg(monkeypatch) -> Registry:
    r = Registry(discovered=True)
    register(r)
    loaded = r.load_folder(PLUGINS)
    assert str(PLUGINS / "example_indicators.py") in loaded
    monkeypatch.setattr("aio.registry.registry", r)  # get_indicator & sets resolve through it
    return r


def pine_alma(series: list[float], windowsize: int, offset: float, sigma: float, floor: bool = False) -> list[float]:
    """TradingView's reference definition of ta.alma, bar by bar (series[k] = k bars ago)."""
    out = []
    for t in range(len(series)):
        if t < windowsize - 1:
            out.append(math.nan)
            continue
        m = math.floor(offset * (windowsize - 1)) if floor else offset * (windowsize - 1)
        s = windowsize / sigma
        norm = total = 0.0
        for i in range(windowsize):
            weight = math.exp(-1 * math.pow(i - m, 2) / (2 * math.pow(s, 2)))
            norm += weight
            total += series[t - (windowsize - i - 1)] * weight
        out.append(total / norm)
    return out


def test_plugin_is_discovered_from_the_folder(reg):
    plugin = reg.get_plugin("indicator", "ALMA")
    assert plugin.source == str(PLUGINS / "example_indicators.py")
    assert plugin.obj.pine is not None and plugin.obj.inputs == ("close",)


def test_a_second_registry_sees_the_already_imported_plugin(reg):
    again = Registry(discovered=True)
    again.load_folder(PLUGINS)
    assert again.get("indicator", "ALMA") is reg.get("indicator", "ALMA")


@pytest.mark.parametrize("length, offset, sigma, floor", [(9, 0.85, 6.0, False), (20, 0.5, 4.0, True), (1, 0.85, 6.0, False)])
def test_alma_matches_pines_definition(reg, tv_dir, length, offset, sigma, floor):
    close = pd.read_csv(tv_dir / "ohlcv.csv")["close"].to_numpy(np.float64)[:1500]
    idef = reg.get("indicator", "ALMA")
    params = idef.resolve_params({"length": length, "offset": offset, "sigma": sigma, "floor": floor})
    ours = idef.compute({"close": close}, params)["real"]
    ref = np.array(pine_alma(list(close), length, offset, sigma, floor))
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_allclose(ours, ref, rtol=1e-13)
    assert int(np.argmax(~np.isnan(ours))) == idef.lookback(params)


def test_alma_window_with_nan_is_nan(reg):
    x = np.r_[np.full(5, np.nan), np.linspace(1.0, 2.0, 40)]
    out = reg.get("indicator", "ALMA").compute({"close": x}, {"length": 9})["real"]
    assert np.isnan(out[: 5 + 8]).all() and not np.isnan(out[5 + 8:]).any()


def test_alma_exports_to_ta_alma(reg):
    idef = reg.get("indicator", "ALMA")
    call = idef.pine({"close": "hlc3"}, {"length": "almaLen", "offset": "0.85", "sigma": "6.0", "floor": "false"})
    assert call.expr == "ta.alma(hlc3, almaLen, 0.85, 6.0, false)"


def test_plugin_indicator_works_in_a_set(reg):
    x = np.linspace(1.0, 2.0, 100) + np.sin(np.arange(100))
    out = compute_indicator_set({"close": x}, {"name": "p", "entries": [{"alias": "alma", "fn": "alma", "params": {"length": 5}}]})
    np.testing.assert_allclose(out["alma"], pine_alma(list(x), 5, 0.85, 6.0), rtol=1e-13)
