"""Chart renderers (plugin kind ``renderer``, config group ``renderer``).

- ``candles``: OHLC candles (+ volume pane, overlays, oscillator pane) drawn straight
  into uint8 numpy arrays / palette PNGs; deterministic and vectorised over a batch.
- ``plotly``: interactive HTML candlestick charts for reports.

A new renderer is a :class:`Renderer` subclass registered with a typed config::

    registry.add("renderer", "mine", MyRenderer, config=MyConfig)
"""

from __future__ import annotations

from aio.render.base import ChartBatch, IndicatorSpec, Renderer, SeriesSet, compute_indicator_outputs
from aio.render.candles import CandleRenderer, CandlesConfig
from aio.render.parallel import iter_render_pngs, render_pngs
from aio.render.plotly_chart import PlotlyConfig, PlotlyRenderer
from aio.render.png import decode_png, encode_palette_pngs

__all__ = [
    "CandleRenderer", "CandlesConfig", "ChartBatch", "IndicatorSpec", "PlotlyConfig", "PlotlyRenderer",
    "Renderer", "SeriesSet", "compute_indicator_outputs", "decode_png", "encode_palette_pngs",
    "iter_render_pngs", "make_renderer", "register", "render_pngs",
]


def make_renderer(name: str = "candles", config=None) -> Renderer:
    """The renderer plugin ``name`` built from ``config`` (mapping or dataclass; validated)."""
    from aio.config import build
    from aio.registry import registry

    plugin = registry.get_plugin("renderer", name)
    cfg = build(plugin.config, config, "renderer") if plugin.config is not None else config
    return plugin.obj(cfg)


def register(registry) -> None:
    registry.add("renderer", "candles", CandleRenderer, config=CandlesConfig,
                 description="OHLC candles (+volume, overlays, oscillator) as numpy images/PNG")
    registry.add("renderer", "plotly", PlotlyRenderer, config=PlotlyConfig,
                 description="interactive HTML candlestick charts for reports")
