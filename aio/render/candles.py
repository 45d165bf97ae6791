"""The ``candles`` renderer: OHLC candles drawn straight into uint8 arrays with numpy.

Layout (top to bottom): price pane (candles + overlays such as EMA/Bollinger),
optional volume pane, optional oscillator pane, separated by one-pixel rules.

Price scaling rule, per window: the window's lowest low maps to the bottom and its
highest high to the top of the price pane, inside a fixed margin (``margin`` of the
pane height on each side). With ``scale: all`` the overlay values in the window widen
that range too. Overlays outside the range are clipped to the pane. Volume bars are
scaled to the window's largest volume; the oscillator pane to ``osc_range`` or, when
that is null, to the window's oscillator min/max.

Everything is a vertical run of pixels in one column (a wick, one column of a body,
one column of a volume bar, one column of a polyline), so a whole batch of charts is
painted by expanding those runs into flat pixel indices at once: no per-candle or
per-chart Python loop. Same input, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

import numpy as np

from aio.config import param
from aio.errors import ConfigError
from aio.render.base import ChartBatch, IndicatorSpec, Renderer
from aio.render.png import encode_palette_pngs

# Palette slots (index into the theme's colours).
BG, RULE, UP, DOWN, VOL_UP, VOL_DOWN = range(6)
LINE0 = 6
N_LINE_COLOURS = 6

THEMES: dict[str, list[tuple[int, int, int]]] = {
    "light": [
        (255, 255, 255), (208, 208, 208), (38, 166, 154), (239, 83, 80), (150, 212, 206), (246, 170, 168),
        (41, 98, 255), (255, 152, 0), (156, 39, 176), (0, 131, 143), (121, 85, 72), (96, 125, 139),
    ],
    "dark": [
        (0, 0, 0), (64, 64, 64), (38, 166, 154), (239, 83, 80), (22, 92, 86), (128, 44, 43),
        (66, 135, 245), (255, 167, 38), (206, 147, 216), (77, 208, 225), (188, 170, 164), (176, 190, 197),
    ],
}


def _default_overlays() -> list[IndicatorSpec]:
    return [IndicatorSpec("EMA", {"timeperiod": 20}), IndicatorSpec("BBANDS", {"timeperiod": 20, "nbdevup": 2, "nbdevdn": 2})]


@dataclass
class CandlesConfig:
    """Candlestick charts as images for models (``renderer=candles``)."""

    name: str = "candles"
    width: int = param(224, ge=16, le=4096, help="image width in pixels")
    height: int = param(224, ge=16, le=4096, help="image height in pixels")
    bars: int = param(64, ge=2, le=4096, help="bars per window (N)")
    volume: bool = param(True, help="draw a volume pane")
    volume_frac: float = param(0.2, gt=0.0, lt=0.8, help="volume pane share of the height")
    overlays: list[IndicatorSpec] = param(default_factory=_default_overlays, help="indicators on the price pane")
    oscillators: list[IndicatorSpec] = param(default_factory=list, help="indicators in their own pane, e.g. [{fn: RSI, params: {timeperiod: 14}}]")
    osc_frac: float = param(0.22, gt=0.0, lt=0.8, help="oscillator pane share of the height")
    osc_range: Optional[list[float]] = param(None, help="fixed oscillator scale [lo, hi] (RSI: [0, 100]); null: window min/max")
    scale: str = param("candles", choices=["candles", "all"], help="price range from candles only or candles+overlays")
    margin: float = param(0.04, ge=0.0, lt=0.4, help="blank share of the price pane above and below the range")
    theme: str = param("light", choices=sorted(THEMES), help="colour theme")
    png_level: int = param(1, ge=0, le=9, help="zlib level of the stored PNGs")
    workers: int = param(0, ge=0, le=512, help="processes for large batches (0: all cores)")
    batch: int = param(256, ge=1, le=65536, help="charts per rendering task")

    def __post_init__(self) -> None:
        if self.osc_range is not None and (len(self.osc_range) != 2 or not self.osc_range[0] < self.osc_range[1]):
            raise ConfigError(f"config key renderer.osc_range={self.osc_range!r} must be [lo, hi] with lo < hi, or null")
        if self.width < self.bars:
            raise ConfigError(
                f"config key renderer.width={self.width} is smaller than renderer.bars={self.bars}: "
                "each bar needs at least one pixel column; raise the width or lower the bars"
            )


@dataclass(frozen=True)
class Pane:
    top: int  # first row
    bottom: int  # last row (inclusive)


@dataclass
class Layout:
    """Pixel geometry that is the same for every chart of one config."""

    height: int
    width: int
    price: Pane
    volume: Pane | None
    osc: Pane | None
    rules: list[int]
    wick_x: np.ndarray  # (N,) column of each candle's wick
    body_x: np.ndarray  # (N, bw) columns of each candle's body
    line_x: np.ndarray  # (M,) pixel columns a polyline covers
    line_i: np.ndarray  # (M,) left candle of each such column
    line_f: np.ndarray  # (M,) interpolation weight of the right candle
    template: np.ndarray = field(repr=False)  # (H, W) background with pane rules


def make_layout(cfg: CandlesConfig) -> Layout:
    h, w, n = cfg.height, cfg.width, cfg.bars
    rows = h
    vol_h = int(round(h * cfg.volume_frac)) if cfg.volume else 0
    osc_h = int(round(h * cfg.osc_frac)) if cfg.oscillators else 0
    seps = (1 if vol_h else 0) + (1 if osc_h else 0)
    price_h = rows - vol_h - osc_h - seps
    if price_h < 8:
        raise ConfigError(
            f"renderer.height={h} leaves {price_h} rows for prices after the volume/oscillator panes; "
            "raise the height or lower renderer.volume_frac/renderer.osc_frac"
        )
    price = Pane(0, price_h - 1)
    y, rules = price_h, []
    volume = osc = None
    if vol_h:
        rules.append(y)
        volume = Pane(y + 1, y + vol_h)
        y += vol_h + 1
    if osc_h:
        rules.append(y)
        osc = Pane(y + 1, y + osc_h)
    slot = w / n
    bw = max(1, 2 * int(slot * 0.7 / 2) + 1)  # odd, so the wick sits in the middle
    if bw > int(slot):
        bw = max(1, int(slot) - (1 - int(slot) % 2))
    left = np.floor(np.arange(n) * slot + (slot - bw) / 2 + 0.5).astype(np.int64)
    left = np.clip(left, 0, w - bw)
    body_x = left[:, None] + np.arange(bw)[None, :]
    wick_x = left + bw // 2
    line_x = np.arange(wick_x[0], wick_x[-1] + 1, dtype=np.int64)
    line_i = np.clip(np.searchsorted(wick_x, line_x, side="right") - 1, 0, n - 2)
    span = (wick_x[line_i + 1] - wick_x[line_i]).astype(np.float64)
    line_f = (line_x - wick_x[line_i]) / np.where(span > 0, span, 1.0)
    template = np.full((h, w), BG, dtype=np.uint8)
    for r in rules:
        template[r, :] = RULE
    return Layout(h, w, price, volume, osc, rules, wick_x, body_x, line_x, line_i, line_f, template)


def _round(y: np.ndarray) -> np.ndarray:
    # floor(y + 0.5), not np.round: no banker's rounding, identical on every platform.
    return np.floor(y + 0.5)


def _to_rows(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, pane: Pane, margin_rows: int) -> np.ndarray:
    """Float row positions of ``values`` (B, ...) for per-chart ranges ``lo``/``hi`` (B,)."""
    top = pane.top + margin_rows
    bot = pane.bottom - margin_rows
    rng = hi - lo
    ok = rng > 0
    scale = np.where(ok, (bot - top) / np.where(ok, rng, 1.0), 0.0)
    shape = (-1,) + (1,) * (values.ndim - 1)
    y = bot - (values - lo.reshape(shape)) * scale.reshape(shape)
    mid = (top + bot) / 2.0
    return np.where(ok.reshape(shape), y, mid)


def _colour(series: dict[str, np.ndarray], key: str) -> int:
    """One colour per indicator (``label.output`` keys): Bollinger's three bands share one."""
    labels = list(dict.fromkeys(k.split(".")[0] for k in series))
    return LINE0 + labels.index(key.split(".")[0]) % N_LINE_COLOURS


class _Painter:
    """Collects vertical pixel runs and paints them into a flat (B*H*W) canvas."""

    def __init__(self, canvas: np.ndarray) -> None:
        self.canvas = canvas
        self.flat = canvas.reshape(-1)
        _, self.h, self.w = canvas.shape

    def runs(self, b: np.ndarray, x: np.ndarray, y0: np.ndarray, y1: np.ndarray, colour) -> None:
        """Paint rows ``y0..y1`` (inclusive, y0 <= y1) of column ``x`` in chart ``b``; all 1-D int64."""
        if b.size == 0:
            return
        length = y1 - y0 + 1
        total = int(length.sum())
        start = (b * self.h + y0) * self.w + x
        first = np.cumsum(length) - length
        step = np.arange(total, dtype=np.int64) - np.repeat(first, length)
        idx = np.repeat(start, length) + step * self.w
        if np.ndim(colour):
            self.flat[idx] = np.repeat(np.asarray(colour, dtype=np.uint8), length)
        else:
            self.flat[idx] = colour


class CandleRenderer(Renderer):
    """OHLC candles (+ volume pane, overlays, oscillator pane) as numpy images."""

    name = "candles"
    produces_arrays = True

    def __init__(self, config: CandlesConfig | None = None) -> None:
        super().__init__(config or CandlesConfig())
        self.palette = np.asarray(THEMES[self.config.theme], dtype=np.uint8)

    @cached_property
    def layout(self) -> Layout:
        return make_layout(self.config)

    def warmup(self) -> int:
        return self.config.bars - 1

    # -- drawing ------------------------------------------------------------------
    def render_indices(self, batch: ChartBatch) -> np.ndarray:
        """``(B, H, W)`` palette indices for a batch of windows."""
        cfg, lay = self.config, self.layout
        if batch.bars != cfg.bars:
            raise ValueError(f"renderer draws {cfg.bars}-bar windows, got {batch.bars}")
        nb, n = len(batch), cfg.bars
        canvas = np.empty((nb, lay.height, lay.width), dtype=np.uint8)
        canvas[...] = lay.template
        if nb == 0:
            return canvas
        paint = _Painter(canvas)
        o, h, l, c = batch.open, batch.high, batch.low, batch.close
        up = c >= o
        chart = np.arange(nb, dtype=np.int64)

        # Price range: candles only, or candles and every finite overlay value.
        lo, hi = np.nanmin(l, axis=1), np.nanmax(h, axis=1)
        if cfg.scale == "all" and batch.overlays:
            ov = np.stack(list(batch.overlays.values()), axis=1)  # (B, k, N)
            with np.errstate(all="ignore"):
                lo = np.fmin(lo, np.nanmin(ov, axis=(1, 2)))
                hi = np.fmax(hi, np.nanmax(ov, axis=(1, 2)))
        pane = lay.price
        m = int(round(cfg.margin * (pane.bottom - pane.top + 1)))

        def rows(v: np.ndarray) -> np.ndarray:
            return np.clip(_round(_to_rows(v, lo, hi, pane, m)), pane.top, pane.bottom).astype(np.int64)

        # Volume pane first: it never overlaps the price pane.
        if lay.volume is not None:
            vp = lay.volume
            v = np.nan_to_num(batch.volume, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
            vmax = v.max(axis=1, keepdims=True)
            frac = np.where(vmax > 0, v / np.where(vmax > 0, vmax, 1.0), 0.0)
            vtop = (vp.bottom - _round(frac * (vp.bottom - vp.top))).astype(np.int64)  # (B, N)
            bw = lay.body_x.shape[1]
            bb = np.broadcast_to(chart[:, None, None], (nb, n, bw))
            xx = np.broadcast_to(lay.body_x[None], (nb, n, bw))
            yt = np.broadcast_to(vtop[:, :, None], (nb, n, bw))
            col = np.where(up, VOL_UP, VOL_DOWN).astype(np.uint8)
            cc = np.broadcast_to(col[:, :, None], (nb, n, bw))
            keep = (frac > 0)[:, :, None].repeat(bw, axis=2)
            paint.runs(bb[keep], xx[keep], yt[keep], np.full(int(keep.sum()), vp.bottom, np.int64), cc[keep])

        # Wicks, then bodies over them.
        y_hi, y_lo = rows(h), rows(l)
        col = np.where(up, UP, DOWN).astype(np.uint8)
        bb = np.broadcast_to(chart[:, None], (nb, n))
        paint.runs(bb.ravel(), np.broadcast_to(lay.wick_x, (nb, n)).ravel(), y_hi.ravel(), y_lo.ravel(), col.ravel())
        y_top, y_bot = rows(np.maximum(o, c)), rows(np.minimum(o, c))
        bw = lay.body_x.shape[1]
        shape = (nb, n, bw)
        paint.runs(
            np.broadcast_to(chart[:, None, None], shape).ravel(),
            np.broadcast_to(lay.body_x[None], shape).ravel(),
            np.broadcast_to(y_top[:, :, None], shape).ravel(),
            np.broadcast_to(y_bot[:, :, None], shape).ravel(),
            np.broadcast_to(col[:, :, None], shape).ravel(),
        )

        # Overlays as polylines on the price scale.
        for key, series in batch.overlays.items():
            self._polyline(paint, series, lambda y: _to_rows(y, lo, hi, pane, m), pane, _colour(batch.overlays, key))

        # Oscillator pane.
        if lay.osc is not None and batch.oscillators:
            op = lay.osc
            if cfg.osc_range is not None:
                olo = np.full(nb, float(cfg.osc_range[0]))
                ohi = np.full(nb, float(cfg.osc_range[1]))
            else:
                allo = np.stack(list(batch.oscillators.values()), axis=1)
                with np.errstate(all="ignore"):
                    olo, ohi = np.nanmin(allo, axis=(1, 2)), np.nanmax(allo, axis=(1, 2))
                bad = ~np.isfinite(olo) | ~np.isfinite(ohi)
                olo, ohi = np.where(bad, 0.0, olo), np.where(bad, 1.0, ohi)
            om = 1 if op.bottom - op.top > 4 else 0
            for key, series in batch.oscillators.items():
                self._polyline(paint, series, lambda y: _to_rows(y, olo, ohi, op, om), op, _colour(batch.oscillators, key))
        return canvas

    def _polyline(self, paint: _Painter, series: np.ndarray, to_rows, pane: Pane, colour: int) -> None:
        lay = self.layout
        li, lf = lay.line_i, lay.line_f
        with np.errstate(invalid="ignore"):
            v = series[:, li] * (1.0 - lf) + series[:, li + 1] * lf  # (B, M), NaN where warm-up
            y = to_rows(v)
            left = np.concatenate([y[:, :1], (y[:, :-1] + y[:, 1:]) / 2.0], axis=1)
            right = np.concatenate([(y[:, :-1] + y[:, 1:]) / 2.0, y[:, -1:]], axis=1)
            # Next to a gap (warm-up NaN) the line ends at its own point.
            left = np.where(np.isfinite(left), left, y)
            right = np.where(np.isfinite(right), right, y)
            a, b_, c = _round(left), _round(y), _round(right)
            lo_row = np.fmin(np.fmin(a, b_), c)
            hi_row = np.fmax(np.fmax(a, b_), c)
            ok = np.isfinite(y) & np.isfinite(left) & np.isfinite(right)
            ok &= (hi_row >= pane.top) & (lo_row <= pane.bottom)
        nb = series.shape[0]
        bidx = np.broadcast_to(np.arange(nb, dtype=np.int64)[:, None], y.shape)[ok]
        xs = np.broadcast_to(lay.line_x[None], y.shape)[ok]
        y0 = np.clip(lo_row[ok], pane.top, pane.bottom).astype(np.int64)
        y1 = np.clip(hi_row[ok], pane.top, pane.bottom).astype(np.int64)
        paint.runs(bidx, xs, y0, y1, colour)

    def _chunks(self, batch: ChartBatch):
        # Cache-sized pieces: a few hundred charts of indices stay in L2/L3.
        step = max(1, int(self.config.batch))
        for i in range(0, len(batch), step):
            yield i, batch if len(batch) <= step else batch.slice(i, i + step)

    def render(self, batch: ChartBatch) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 RGB images."""
        lay = self.layout
        out = np.empty((len(batch), lay.height, lay.width, 3), dtype=np.uint8)
        for i, part in self._chunks(batch):
            idx = self.render_indices(part)
            # Palette lookup a few charts at a time, so source and target stay in cache;
            # np.take with out= is several times faster than palette[idx] here.
            for j in range(0, len(part), 4):
                k = min(j + 4, len(part))
                np.take(self.palette, idx[j:k], axis=0, out=out[i + j : i + k])
        return out

    def render_png(self, batch: ChartBatch) -> list[bytes]:
        """One deterministic 8-bit palette PNG per chart."""
        out: list[bytes] = []
        for _, part in self._chunks(batch):
            out.extend(encode_palette_pngs(self.render_indices(part), self.palette, self.config.png_level))
        return out
