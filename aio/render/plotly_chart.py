"""The ``plotly`` renderer: interactive candlestick charts (HTML) for people and reports.

It draws the same windows, overlays and oscillator as ``candles`` but as a Plotly
figure with axes, hover and zoom. It does not produce image arrays (that would need
a browser engine); a dataset needs an image renderer such as ``candles``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aio.config import param
from aio.render.base import ChartBatch, IndicatorSpec, Renderer
from aio.render.candles import _default_overlays


@dataclass
class PlotlyConfig:
    """Interactive HTML candlestick charts for reports (``renderer=plotly``)."""

    name: str = "plotly"
    width: int = param(1000, ge=200, le=8000, help="figure width in pixels")
    height: int = param(650, ge=200, le=8000, help="figure height in pixels")
    bars: int = param(200, ge=2, le=100000, help="bars per chart")
    volume: bool = param(True, help="draw a volume pane")
    overlays: list[IndicatorSpec] = param(default_factory=_default_overlays, help="indicators on the price pane")
    oscillators: list[IndicatorSpec] = param(default_factory=list, help="indicators in their own pane")
    template: str = param("plotly_white", help="plotly template name")
    include_plotlyjs: str = param("inline", choices=["cdn", "inline"], help="inline embeds plotly.js (offline, ~4 MB); cdn needs a network")


class PlotlyRenderer(Renderer):
    """Interactive Plotly candlestick figures (HTML)."""

    name = "plotly"
    produces_arrays = False

    def __init__(self, config: PlotlyConfig | None = None) -> None:
        super().__init__(config or PlotlyConfig())

    def figure(self, batch: ChartBatch, i: int = 0, times: np.ndarray | None = None, title: str = "") -> Any:
        """Chart ``i`` of ``batch`` as a ``plotly.graph_objects.Figure``.

        ``times`` (``(N,)`` int64 ns UTC bar open times) label the x axis; bar numbers otherwise.
        """
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        cfg = self.config
        panes = ["price"] + (["volume"] if cfg.volume else []) + (["osc"] if batch.oscillators else [])
        heights = {"price": 0.6, "volume": 0.2, "osc": 0.2}
        weights = [heights[p] for p in panes]
        fig = make_subplots(rows=len(panes), cols=1, shared_xaxes=True, vertical_spacing=0.02,
                            row_heights=[w / sum(weights) for w in weights])
        x = (np.asarray(times).astype("datetime64[ns]") if times is not None else np.arange(batch.bars))
        o, h, l, c = batch.open[i], batch.high[i], batch.low[i], batch.close[i]
        fig.add_trace(go.Candlestick(x=x, open=o, high=h, low=l, close=c, name="price"), row=1, col=1)
        for key, series in batch.overlays.items():
            fig.add_trace(go.Scatter(x=x, y=series[i], mode="lines", name=key, line={"width": 1}), row=1, col=1)
        if cfg.volume:
            colours = np.where(c >= o, "#26a69a", "#ef5350")
            fig.add_trace(go.Bar(x=x, y=batch.volume[i], marker_color=list(colours), name="volume"),
                          row=panes.index("volume") + 1, col=1)
        for key, series in batch.oscillators.items():
            fig.add_trace(go.Scatter(x=x, y=series[i], mode="lines", name=key, line={"width": 1}),
                          row=panes.index("osc") + 1, col=1)
        fig.update_layout(template=cfg.template, width=cfg.width, height=cfg.height, title=title or None,
                          xaxis_rangeslider_visible=False, showlegend=True, margin={"l": 40, "r": 20, "t": 40, "b": 30})
        return fig

    def render_html(self, batch: ChartBatch, i: int = 0, times: np.ndarray | None = None, title: str = "") -> str:
        """Chart ``i`` as a standalone HTML document."""
        include = "cdn" if self.config.include_plotlyjs == "cdn" else True
        # A fixed div id keeps the HTML the same for the same input.
        return self.figure(batch, i, times, title).to_html(include_plotlyjs=include, full_html=True, div_id=f"aio-chart-{i}")
