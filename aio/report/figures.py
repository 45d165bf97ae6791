"""The report's plotly figures, one builder each. Every axis is titled with its unit.

Time axes drop closed-market stretches (``rangebreaks``), so a weekend is not drawn
as a long straight move. Series are thinned for display (see :mod:`aio.report.series`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from aio.report import series as S

MAX_CANDLES = 3000
MAX_LINE_POINTS = 4000
MANY_TRADES = 500  # above this, entry/exit markers show only once zoomed in to <= this many trades
WIN, LOSS = "#1a9850", "#d73027"
TEMPLATE = "plotly_white"


def _dt(ns: np.ndarray) -> np.ndarray:
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[ms]")


def _time_axes(fig: Any, breaks: list[dict], rows: int = 1) -> None:
    fig.update_xaxes(rangebreaks=breaks, showspikes=True, spikemode="across", spikethickness=1)
    fig.update_xaxes(title_text="time (UTC)", row=rows, col=1)


def thin_line(ts: np.ndarray, values: np.ndarray, max_points: int = MAX_LINE_POINTS,
              how: str = "last") -> tuple[np.ndarray, np.ndarray]:
    """At most ~max_points: per time bucket the last value (``how="last"``) or the lowest
    (``"min"``: a drawdown's trough must survive thinning)."""
    n = len(ts)
    if n <= max_points:
        return np.asarray(ts), np.asarray(values)
    step = max(1, S.bar_interval_ns(ts))
    bucket = step * int(np.ceil(n / max_points))
    starts, ends = S.bucket_index(ts, bucket)
    if how == "min":
        v = np.minimum.reduceat(values, starts)
        return np.asarray(ts)[starts], v
    return np.asarray(ts)[ends - 1], np.asarray(values)[ends - 1]


def equity_figure(ts: np.ndarray, equity: np.ndarray, base: float, close: np.ndarray | None,
                  breaks: list[dict], title: str, windows: Sequence[tuple[int, int]] = ()) -> Any:
    """Strategy return vs buy-and-hold (both % of the starting equity), drawdown below."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    eq = np.asarray(equity, dtype=np.float64)
    ret = 100.0 * (eq / base - 1.0)
    x, y = thin_line(ts, ret)
    fig.add_trace(go.Scatter(x=_dt(x), y=y, name="strategy (costs included)", line={"color": "#2c6fbb", "width": 1.6},
                             hovertemplate="%{x}<br>%{y:.2f} %<extra>strategy</extra>"), 1, 1)
    if close is not None and len(close):
        c = np.asarray(close, dtype=np.float64)
        bh = 100.0 * (c / c[0] - 1.0)
        x2, y2 = thin_line(ts, bh)
        fig.add_trace(go.Scatter(x=_dt(x2), y=y2, name="buy and hold (1x, no costs)",
                                 line={"color": "#888", "width": 1, "dash": "dot"},
                                 hovertemplate="%{x}<br>%{y:.2f} %<extra>buy and hold</extra>"), 1, 1)
    dd = S.drawdown_pct(eq)
    x3, y3 = thin_line(ts, dd, how="min")
    fig.add_trace(go.Scatter(x=_dt(x3), y=y3, name="drawdown", fill="tozeroy", line={"color": LOSS, "width": 1},
                             hovertemplate="%{x}<br>%{y:.2f} %<extra>drawdown</extra>"), 2, 1)
    for a, b in windows:  # out-of-sample windows of a walk-forward search
        fig.add_vrect(x0=str(_dt(np.array([a]))[0]), x1=str(_dt(np.array([b]))[0]), fillcolor="#2ca02c",
                      opacity=0.06, line_width=0, row="all", col=1)
    fig.update_yaxes(title_text="return (% of start)", ticksuffix=" %", row=1, col=1)
    fig.update_yaxes(title_text="drawdown (%)", ticksuffix=" %", row=2, col=1)
    _time_axes(fig, breaks, rows=2)
    fig.update_layout(template=TEMPLATE, height=520, title=title, hovermode="x unified",
                      legend={"orientation": "h", "y": 1.08, "x": 0}, margin={"l": 70, "r": 20, "t": 70, "b": 50})
    return fig


def _segments(t0: np.ndarray, p0: np.ndarray, t1: np.ndarray, p1: np.ndarray) -> tuple[list, list]:
    xs: list = []
    ys: list = []
    for a, b, c, d in zip(_dt(t0).astype(str), p0, _dt(t1).astype(str), p1):
        xs += [a, c, None]
        ys += [float(b), float(d), None]
    return xs, ys


def price_figure(ts: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, trades: Any,
                 breaks: list[dict], title: str, symbol: str) -> tuple[Any, str | None]:
    """Candlesticks (aggregated for display when there are many bars) with the trades:
    an entry marker, an exit marker, a segment between them coloured by win or loss.

    Returns the figure and, with more than ``MANY_TRADES`` trades, the JavaScript that
    shows the markers only when the visible range holds at most that many trades."""
    import plotly.graph_objects as go

    step = S.bar_interval_ns(ts)
    bmin = S.bucket_minutes(len(ts), step, MAX_CANDLES)
    if bmin * S.MINUTE_NS > step:
        cts, co, ch, cl, cc = S.aggregate_ohlc(ts, o, h, lo, c, bmin * S.MINUTE_NS)
        size = f"{bmin // 1440} d" if bmin % 1440 == 0 else f"{bmin // 60} h" if bmin % 60 == 0 else f"{bmin} min"
        label = f"{symbol} ({size} candles for display)"
    else:
        cts, co, ch, cl, cc = ts, o, h, lo, c
        label = symbol
    fig = go.Figure(go.Candlestick(x=_dt(cts), open=co, high=ch, low=cl, close=cc, name=label,
                                   increasing={"line": {"color": "#5b8f6b", "width": 1}, "fillcolor": "#a8d5b5"},
                                   decreasing={"line": {"color": "#a65b5b", "width": 1}, "fillcolor": "#e5a9a9"}))
    script = None
    n = trades.height if trades is not None else 0
    if n:
        et = trades.get_column("entry_time").to_physical().to_numpy()
        xt = trades.get_column("exit_time").to_physical().to_numpy()
        ep = trades.get_column("entry_price").to_numpy()
        xp = trades.get_column("exit_price").to_numpy()
        pnl = trades.get_column("pnl").to_numpy()
        long_ = trades.get_column("side").to_numpy() == "long"
        width = 2 if n <= MANY_TRADES else 1.2  # many trades: thinner, so the candles stay visible
        for mask, name, color in ((pnl > 0, "winning trade", WIN), (pnl <= 0, "losing trade", LOSS)):
            if mask.any():
                xs, ys = _segments(et[mask], ep[mask], xt[mask], xp[mask])
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, opacity=0.8,
                                         line={"color": color, "width": width}, hoverinfo="skip"))
        hidden = n > MANY_TRADES
        ids = trades.get_column("id").to_numpy()
        for mask, name, sym, color in ((long_, "long entry", "triangle-up", "#1f5fa8"),
                                       (~long_, "short entry", "triangle-down", "#8e44ad")):
            if mask.any():
                fig.add_trace(go.Scatter(
                    x=_dt(et[mask]), y=ep[mask], mode="markers", name=name, visible=not hidden,
                    marker={"symbol": sym, "size": 9, "color": color, "line": {"width": 0.5, "color": "white"}},
                    customdata=np.c_[ids[mask], pnl[mask]],
                    hovertemplate="trade %{customdata[0]}<br>entry %{y:.5f}<br>P&L %{customdata[1]:,.2f}<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=_dt(xt), y=xp, mode="markers", name="exit", visible=not hidden,
            marker={"symbol": "x-thin", "size": 8, "line": {"width": 2, "color": np.where(pnl > 0, WIN, LOSS)}},
            customdata=np.c_[ids, pnl],
            hovertemplate="trade %{customdata[0]}<br>exit %{y:.5f}<br>P&L %{customdata[1]:,.2f}<extra></extra>"))
        if hidden:
            script = _zoom_script(len(fig.data) - 1 - int(long_.any()) - int((~long_).any()), len(fig.data))
    fig.update_xaxes(rangeslider_visible=False, rangebreaks=breaks, title_text="time (UTC)")
    fig.update_yaxes(title_text=f"price ({symbol[-3:] if len(symbol) >= 6 else 'quote ccy'})", fixedrange=False)
    note = f" (markers appear when {MANY_TRADES} or fewer trades are in view)" if n > MANY_TRADES else ""
    fig.update_layout(template=TEMPLATE, height=560, title=title + note, dragmode="zoom",
                      legend={"orientation": "h", "y": 1.06, "x": 0}, margin={"l": 70, "r": 20, "t": 70, "b": 50})
    return fig, script


def _zoom_script(first: int, end: int) -> str:
    """Markers (traces first..end-1) visible only when the x-range holds <= MANY_TRADES entries."""
    return f"""
(function(){{
  var gd = document.getElementById('{{plot_id}}'); var idx = []; for (var i = {first}; i < {end}; i++) idx.push(i);
  var t = []; idx.forEach(function(i){{ if (gd.data[i].name !== 'exit') (gd.data[i].x || []).forEach(function(s){{
    t.push(Date.parse(String(s).replace(' ', 'T') + 'Z')); }}); }});
  function upd(ev){{
    var r = gd.layout.xaxis.range; if (!r) return;
    var a = Date.parse(String(r[0]).replace(' ', 'T') + 'Z'), b = Date.parse(String(r[1]).replace(' ', 'T') + 'Z');
    var n = 0; t.forEach(function(x){{ if (x >= a && x <= b) n++; }});
    var show = n <= {MANY_TRADES};
    if (gd.data[idx[0]].visible !== show) Plotly.restyle(gd, {{visible: show}}, idx);
  }}
  gd.on('plotly_relayout', upd);
}})();
"""


def returns_heatmap(ts: np.ndarray, equity: np.ndarray, base: float, title: str) -> Any:
    """Daily returns by week and weekday for runs shorter than two months, else monthly by year."""
    import plotly.graph_objects as go

    ts = np.asarray(ts, dtype=np.int64)
    span_days = (ts[-1] - ts[0]) / 86_400e9 if len(ts) else 0
    daily = span_days < 61
    keys, ret = S.period_returns(ts, equity, base, "D" if daily else "M")
    if daily:
        days = keys.astype("datetime64[D]")
        wd = ((days.astype(np.int64) + 3) % 7)  # 1970-01-01 was a Thursday: Monday = 0
        week = days - wd.astype("timedelta64[D]")
        rows = np.unique(week)
        cols = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        z = np.full((len(rows), 7), np.nan)
        z[np.searchsorted(rows, week), wd] = ret
        ylab = [f"week of {d}" for d in rows.astype(str)]
        keep = ~np.all(np.isnan(z), axis=0)  # weekdays with no trading (Saturday) are dropped
        z, cols = z[:, keep], [c for c, k in zip(cols, keep) if k]
        xt, yt = "weekday (UTC)", "week"
    else:
        months = keys.astype("datetime64[M]").astype(np.int64)
        years, mon = months // 12 + 1970, months % 12
        rows = np.unique(years)
        cols = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        z = np.full((len(rows), 12), np.nan)
        z[np.searchsorted(rows, years), mon] = ret
        ylab = [str(y) for y in rows]
        xt, yt = "month", "year"
    lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:+.2f} %")(np.nan_to_num(z)))
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=ylab, colorscale="RdYlGn", zmid=0, zmin=-lim, zmax=lim,
                               text=text, texttemplate="%{text}", hovertemplate="%{y} %{x}: %{z:.2f} %<extra></extra>",
                               colorbar={"title": {"text": "return (%)"}, "ticksuffix": " %"}))
    fig.update_xaxes(title_text=xt, side="bottom")
    fig.update_yaxes(title_text=yt, autorange="reversed")
    fig.update_layout(template=TEMPLATE, height=max(220, 60 * len(rows) + 140),
                      title=f"{title}: {'daily' if daily else 'monthly'} returns (%)",
                      margin={"l": 140, "r": 20, "t": 60, "b": 50})
    return fig


def importance_figure(imp: Mapping[str, Mapping[str, float]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for fold, d in imp.items():
        if d:
            fig.add_trace(go.Bar(x=[100 * v for v in d.values()], y=list(d.keys()), orientation="h", name=fold,
                                 hovertemplate="%{y}: %{x:.1f} %<extra>" + fold + "</extra>"))
    fig.update_xaxes(title_text="importance (% of the objective's variance explained)", ticksuffix=" %")
    fig.update_yaxes(title_text="parameter", autorange="reversed")
    fig.update_layout(template=TEMPLATE, barmode="group", height=300, title="parameter importances per fold (in-sample)",
                      margin={"l": 110, "r": 20, "t": 60, "b": 50})
    return fig


def _bins(v: np.ndarray, n: int = 20) -> tuple[np.ndarray, list[str]]:
    u = np.unique(v[np.isfinite(v)])
    if len(u) <= n:
        return np.searchsorted(u, v), [f"{x:g}" for x in u]
    edges = np.linspace(u[0], u[-1], n + 1)
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, n - 1)
    return idx, [f"{(edges[i] + edges[i + 1]) / 2:.3g}" for i in range(n)]


def param_heatmap(px: np.ndarray, py: np.ndarray, value: np.ndarray, xname: str, yname: str, objective: str,
                  maximize: bool, title: str) -> Any:
    """The search's best objective per cell of the two most important parameters
    (as backtesting.py's ``plot_heatmaps``: the best over the other parameters)."""
    import plotly.graph_objects as go

    ix, xl = _bins(np.asarray(px, dtype=np.float64))
    iy, yl = _bins(np.asarray(py, dtype=np.float64))
    z = np.full((len(yl), len(xl)), np.nan)
    for a, b, v in zip(ix, iy, value):
        if np.isfinite(v):
            cur = z[b, a]
            z[b, a] = v if np.isnan(cur) else (max(cur, v) if maximize else min(cur, v))
    fig = go.Figure(go.Heatmap(z=z, x=xl, y=yl, colorscale="Viridis" if maximize else "Viridis_r",
                               colorbar={"title": {"text": objective}},
                               hovertemplate=f"{xname}=%{{x}}<br>{yname}=%{{y}}<br>{objective}=%{{z:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text=f"{xname} (parameter value)", type="category")
    fig.update_yaxes(title_text=f"{yname} (parameter value)", type="category")
    fig.update_layout(template=TEMPLATE, height=460, title=title, margin={"l": 90, "r": 20, "t": 60, "b": 60})
    return fig


def reliability_figure(conf: np.ndarray, hit: np.ndarray, n: np.ndarray, title: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 100], y=[0, 100], mode="lines", name="perfectly calibrated",
                             line={"dash": "dash", "color": "#999"}))
    size = 8 + 22 * np.sqrt(n / max(1, n.max()))
    fig.add_trace(go.Scatter(x=100 * conf, y=100 * hit, mode="lines+markers", name="model (out of sample)",
                             marker={"size": size, "color": "#2c6fbb"}, customdata=n,
                             hovertemplate="confidence %{x:.1f} %<br>hit rate %{y:.1f} %<br>%{customdata} rows"
                                           "<extra></extra>"))
    fig.update_xaxes(title_text="predicted probability of the top class (%)", range=[0, 100], ticksuffix=" %")
    fig.update_yaxes(title_text="observed hit rate (%)", range=[0, 100], ticksuffix=" %")
    fig.update_layout(template=TEMPLATE, height=420, width=560, title=title, margin={"l": 70, "r": 20, "t": 60, "b": 60})
    return fig


def funnel_figure(stages: Sequence[str], counts: Sequence[float]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Funnel(y=list(stages), x=list(counts), textinfo="value+percent initial"))
    fig.update_xaxes(title_text="candidates (count)")
    fig.update_yaxes(title_text="stage")
    fig.update_layout(template=TEMPLATE, height=max(260, 50 * len(stages) + 120), title="discovery funnel",
                      margin={"l": 140, "r": 20, "t": 60, "b": 50})
    return fig
