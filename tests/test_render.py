"""Renderer tests: geometry against the documented scaling rule, determinism, PNG validity
(decoded by Pillow), overlays against TA-Lib, the plugin/config surface."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from aio.config import build
from aio.errors import AioError, ConfigError
from aio.registry import Registry
from aio.render import (
    CandleRenderer,
    CandlesConfig,
    IndicatorSpec,
    PlotlyConfig,
    PlotlyRenderer,
    decode_png,
    render_pngs,
)
from aio.render import register as register_renderers
from aio.render.candles import BG, DOWN, LINE0, UP, VOL_DOWN, VOL_UP, make_layout


def walk(n: int = 600, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = 1.1 + np.cumsum(rng.normal(0, 1e-4, n))
    o = np.r_[c[0], c[:-1]] + rng.normal(0, 2e-5, n)
    h = np.maximum(o, c) + np.abs(rng.normal(0, 5e-5, n))
    l = np.minimum(o, c) - np.abs(rng.normal(0, 5e-5, n))
    v = rng.integers(1, 500, n).astype(np.float64)
    return {"open": o, "high": h, "low": l, "close": c, "volume": v}


def plain(**kw) -> CandleRenderer:
    return CandleRenderer(CandlesConfig(**{"volume": False, "overlays": [], **kw}))


def test_candle_geometry_follows_the_scaling_rule():
    a = walk()
    r = plain(width=128, height=96, bars=32)
    lay = r.layout
    idx = r.render_indices(r.series(a).windows(np.array([100, 250]), 32))
    for k, end in enumerate((100, 250)):
        sl = slice(end - 31, end + 1)
        o, h, l, c = a["open"][sl], a["high"][sl], a["low"][sl], a["close"][sl]
        lo, hi = l.min(), h.max()
        m = round(0.04 * (lay.price.bottom - lay.price.top + 1))
        top, bot = lay.price.top + m, lay.price.bottom - m

        def row(p):  # the documented rule, written out independently
            return int(np.floor(bot - (p - lo) / (hi - lo) * (bot - top) + 0.5))

        img = idx[k]
        for i in range(32):
            col = img[:, lay.wick_x[i]]
            painted = np.flatnonzero(col != BG)
            assert painted.min() == row(h[i]) and painted.max() == row(l[i]), f"wick of candle {i}"
            body_cols = img[:, lay.body_x[i]]
            colour = UP if c[i] >= o[i] else DOWN
            y0, y1 = row(max(o[i], c[i])), row(min(o[i], c[i]))
            assert (body_cols[y0 : y1 + 1] == colour).all(), f"body of candle {i}"
            # Body columns beside the wick show nothing outside the body.
            side = [x for x in lay.body_x[i] if x != lay.wick_x[i]]
            if side:
                outside = np.r_[0:y0, y1 + 1 : lay.height]
                assert (img[np.ix_(outside, side)] == BG).all()
        # The window's extremes touch the margins exactly.
        assert np.flatnonzero(img != BG).reshape(-1).size > 0
        assert (img[top] != BG).any() and (img[bot] != BG).any()
        assert (img[: top] == BG).all() and (img[bot + 1 :] == BG).all()


def test_volume_pane_scales_to_the_window_maximum():
    a = walk()
    r = CandleRenderer(CandlesConfig(width=128, height=128, bars=32, overlays=[], volume=True))
    lay = r.layout
    img = r.render_indices(r.series(a).windows(np.array([300]), 32))[0]
    sl = slice(300 - 31, 301)
    v, up = a["volume"][sl], a["close"][sl] >= a["open"][sl]
    vp = lay.volume
    for i in range(32):
        x = lay.body_x[i][0]
        col = img[vp.top : vp.bottom + 1, x]
        height = int((col != BG).sum())
        expected = int(np.floor(v[i] / v.max() * (vp.bottom - vp.top) + 0.5)) + 1
        assert height == expected
        assert set(col[col != BG].tolist()) == {VOL_UP if up[i] else VOL_DOWN}
    assert (img[lay.rules[0]] != BG).all()  # the pane rule


def test_ema_overlay_sits_on_talib_values():
    a = walk()
    r = CandleRenderer(CandlesConfig(width=224, height=224, bars=64, volume=False,
                                     overlays=[IndicatorSpec("EMA", {"timeperiod": 10})], scale="all"))
    lay = r.layout
    ema = talib.EMA(a["close"], timeperiod=10)  # outside reference
    end = 400
    img = r.render_indices(r.series(a).windows(np.array([end]), 64))[0]
    sl = slice(end - 63, end + 1)
    lo = min(a["low"][sl].min(), ema[sl].min())
    hi = max(a["high"][sl].max(), ema[sl].max())
    m = round(0.04 * (lay.price.bottom - lay.price.top + 1))
    top, bot = lay.price.top + m, lay.price.bottom - m
    for i in range(64):
        y = int(np.floor(bot - (ema[sl][i] - lo) / (hi - lo) * (bot - top) + 0.5))
        assert img[y, lay.wick_x[i]] == LINE0, f"EMA at candle {i}"


def test_same_input_same_bytes_and_png_decodes_to_the_array():
    a = walk()
    cfg = CandlesConfig(oscillators=[IndicatorSpec("RSI", {"timeperiod": 14})], osc_range=[0, 100])
    ends = np.arange(63, 600, 7)
    r1, r2 = CandleRenderer(cfg), CandleRenderer(build(CandlesConfig, {"oscillators": [{"fn": "RSI", "params": {"timeperiod": 14}}],
                                                                      "osc_range": [0, 100]}, "renderer"))
    p1 = r1.render_png(r1.series(a).windows(ends, 64))
    p2 = r2.render_png(r2.series({k: v.copy() for k, v in a.items()}).windows(ends, 64))
    assert p1 == p2
    rgb = r1.render(r1.series(a).windows(ends, 64))
    assert rgb.shape == (len(ends), 224, 224, 3) and rgb.dtype == np.uint8
    for k in (0, len(ends) // 2, len(ends) - 1):
        assert np.array_equal(decode_png(p1[k]), rgb[k])  # Pillow reads our PNGs


def test_process_pool_gives_the_same_bytes_in_order():
    a = walk(900)
    r = CandleRenderer(CandlesConfig(width=64, height=64, bars=16, overlays=[]))
    s = r.series(a)
    ends = np.arange(15, 900, 3)
    serial = render_pngs(r, s, ends, workers=1, progress=False)
    pooled = render_pngs(r, s, ends, workers=2, chunk=50, progress=False, pool_threshold=0)
    assert pooled == serial and len(serial) == len(ends)


def test_window_uses_nothing_after_its_end():
    a = walk()
    r = CandleRenderer(CandlesConfig(oscillators=[IndicatorSpec("RSI", {"timeperiod": 14})]))
    rng = np.random.default_rng(9)
    for end in (63, 200, 598):
        b = {k: v.copy() for k, v in a.items()}
        for k in b:
            b[k][end + 1 :] *= rng.uniform(0.5, 1.5, len(b[k]) - end - 1)
        pa_ = r.render_png(r.series(a).windows(np.array([end]), 64))
        pb_ = r.render_png(r.series(b).windows(np.array([end]), 64))
        assert pa_ == pb_


def test_flat_window_draws_on_the_middle_row():
    n = 40
    a = {k: np.full(n, 1.2) for k in ("open", "high", "low", "close")}
    a["volume"] = np.zeros(n)
    r = plain(width=64, height=64, bars=16)
    img = r.render_indices(r.series(a).windows(np.array([39]), 16))[0]
    m = round(0.04 * (r.layout.price.bottom - r.layout.price.top + 1))
    mid = int(np.floor((r.layout.price.top + m + r.layout.price.bottom - m) / 2 + 0.5))
    painted_rows = np.flatnonzero((img[:, r.layout.wick_x] != BG).any(axis=1))
    assert painted_rows.tolist() == [mid]
    assert set(img[mid, r.layout.wick_x].tolist()) == {UP}


def test_overlay_warm_up_is_left_blank():
    a = walk(100)
    r = CandleRenderer(CandlesConfig(width=64, height=64, bars=16, volume=False,
                                     overlays=[IndicatorSpec("EMA", {"timeperiod": 20})]))
    img = r.render_indices(r.series(a).windows(np.array([15, 30]), 16))
    assert not (img[0] == LINE0).any()  # EMA(20) is NaN for the whole first window
    first_valid = 19 - (30 - 15)  # EMA(20) starts at bar 19 = candle 4 of the window ending at 30
    cols = np.flatnonzero((img[1] == LINE0).any(axis=0))
    assert cols.min() == r.layout.wick_x[first_valid]


def test_config_is_validated():
    with pytest.raises(ConfigError, match="renderer.width"):
        build(CandlesConfig, {"width": 3}, "renderer")
    with pytest.raises(ConfigError, match="smaller than renderer.bars"):
        build(CandlesConfig, {"width": 32, "bars": 64}, "renderer")
    with pytest.raises(ConfigError, match="Did you mean renderer.width"):
        build(CandlesConfig, {"widht": 100}, "renderer")
    with pytest.raises(ConfigError, match="theme"):
        build(CandlesConfig, {"theme": "neon"}, "renderer")
    with pytest.raises(AioError, match="NOPE"):
        CandleRenderer(CandlesConfig(overlays=[IndicatorSpec("NOPE")])).series(walk(100))


def test_plugins_are_registered_with_typed_configs():
    reg = Registry()
    reg.discovered = True
    register_renderers(reg)
    assert {"candles", "plotly"} <= set(reg.plugins["renderer"])
    p = reg.plugins["renderer"]["candles"]
    assert p.obj is CandleRenderer and p.config is CandlesConfig
    assert reg.plugins["renderer"]["plotly"].config is PlotlyConfig


def test_plotly_renderer_builds_a_candlestick_figure():
    a = walk(300)
    r = PlotlyRenderer(PlotlyConfig(bars=50, oscillators=[IndicatorSpec("RSI", {"timeperiod": 14})]))
    batch = r.series(a).windows(np.array([120]), 50)
    fig = r.figure(batch, 0)
    kinds = [t.type for t in fig.data]
    assert kinds.count("candlestick") == 1 and "bar" in kinds
    candle = fig.data[kinds.index("candlestick")]
    assert np.allclose(candle.high, a["high"][71:121])
    html = r.render_html(batch, 0)
    assert html == r.render_html(batch, 0) and "candlestick" in html
    assert not PlotlyRenderer.produces_arrays


def test_layout_fits_the_configured_size():
    for w, h, n in ((224, 224, 64), (96, 64, 96), (300, 200, 17)):
        lay = make_layout(CandlesConfig(width=w, height=h, bars=n))
        assert lay.template.shape == (h, w)
        assert lay.body_x.min() >= 0 and lay.body_x.max() < w
        assert np.all(np.diff(lay.wick_x) > 0)  # candles stay in time order, never overlap
