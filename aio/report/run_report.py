"""The run's human-facing page: ``report.html`` in the run folder.

Price with the trades, equity and drawdown (plotly, self-contained so it opens
offline), the backtest metrics, the model's out-of-sample scores next to its
baselines, the walk-forward folds, and whether the Pine export went through.
Synthetic data is announced at the top.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

MAX_POINTS = 20_000  # price/equity points drawn; longer runs are thinned evenly


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "n/a"
        return f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.2f}"
    return html.escape(str(v))


def _table(rows: Mapping[str, Any] | list[Mapping[str, Any]], title: str) -> str:
    if isinstance(rows, Mapping):
        body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>"
                       for k, v in rows.items() if not isinstance(v, (dict, list)))
        return f"<h2>{html.escape(title)}</h2><table>{body}</table>"
    if not rows:
        return ""
    cols = [c for c in rows[0] if not isinstance(rows[0][c], (dict, list))]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _thin(n: int) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).astype(np.int64))


def chart(bars_frame, result, title: str) -> str:
    """Price + trades, equity, drawdown as one plotly figure (HTML div, plotly.js embedded)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ts = bars_frame.get_column("ts_event").cast(int).to_numpy().astype("datetime64[ns]")
    close = bars_frame.get_column("close").to_numpy()
    eq = result.equity
    idx = _thin(len(ts))
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.55, 0.25, 0.2], vertical_spacing=0.03,
                        subplot_titles=("price and trades", "equity", "drawdown %"))
    fig.add_trace(go.Scattergl(x=ts[idx], y=close[idx], name="close", line={"width": 1, "color": "#555"}), 1, 1)
    trades = result.trades
    if trades.height:
        for side, color, sym in (("long", "#1a9850", "triangle-up"), ("short", "#d73027", "triangle-down")):
            t = trades.filter(trades["side"] == side)
            if t.height:
                fig.add_trace(go.Scattergl(x=t["entry_time"].to_numpy(), y=t["entry_price"].to_numpy(), mode="markers",
                                           name=f"{side} entry", marker={"symbol": sym, "color": color, "size": 8}),
                              1, 1)
        fig.add_trace(go.Scattergl(x=trades["exit_time"].to_numpy(), y=trades["exit_price"].to_numpy(), mode="markers",
                                   name="exit", marker={"symbol": "x", "color": "#333", "size": 6}), 1, 1)
    fig.add_trace(go.Scattergl(x=ts[idx], y=eq["equity"].to_numpy()[idx], name="equity",
                               line={"color": "#4575b4"}), 2, 1)
    fig.add_trace(go.Scattergl(x=ts[idx], y=-100 * eq["drawdown_pct"].to_numpy()[idx], name="drawdown %",
                               fill="tozeroy", line={"color": "#d73027"}), 3, 1)
    fig.update_layout(height=850, title=title, template="plotly_white", legend={"orientation": "h"})
    return fig.to_html(full_html=False, include_plotlyjs=True)


def write_run_report(run: Any, path: Path) -> Path:
    m = run.metrics
    spec = run.strategy
    bars = run.bars
    title = f"{spec.title or spec.name} on {bars.symbol} {bars.timeframe} ({bars.side})"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
        ".synthetic{background:#fee;border:2px solid #c00;padding:.6em;font-weight:bold}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if run.synthetic:
        parts.append("<p class='synthetic'>SYNTHETIC DATA: every number below comes from simulated ticks "
                     f"({html.escape(str(run.market.meta.get('synthetic', '')))}), not from a market.</p>")
    parts.append(f"<p>run folder: {html.escape(str(run.run_dir))}; parameters: "
                 f"{html.escape(', '.join(f'{k}={v}' for k, v in run.params.items()))}</p>")
    pine = m.get("pine_export", {})
    parts.append("<p>Pine v6 export: " + ("strategy.pine" if pine.get("exported") else
                                          html.escape(f"refused: {pine.get('reason', 'not run')}")) + "</p>")
    if run.backtest is not None:
        parts.append(chart(bars.frame, run.backtest, title))
    parts.append(_table(m.get("backtest", {}), "backtest (costs included)"))
    oos = (m.get("model") or {}).get("oos")
    if isinstance(oos, Mapping):
        parts.append(_table([{"model": k, **v} for k, v in oos.items() if isinstance(v, Mapping)],
                            "model, out of sample, next to its baselines"))
    folds = (m.get("optimize") or {}).get("folds")
    if isinstance(folds, list) and folds and isinstance(folds[0], Mapping):
        parts.append(_table(folds, "walk-forward folds (in-sample study, out-of-sample check)"))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
