"""The run's human-facing page: ``report.html`` in the run folder.

In the order a quant reads it: the headline figures (out of sample when a search
ran) with their warnings; equity against buy-and-hold with drawdown; candlesticks
with the trades; period returns; the trade list with MAE/MFE; the search's parameter
importances and heatmap; the walk-forward folds; the model next to its baselines with
a reliability plot; the discovery funnel; the in-sample full-period backtest, labelled;
links to the run's files. Synthetic data is bannered at the top.

plotly.js is written once into the run folder and loaded from there (never a CDN);
``report/*.png`` holds one static image per figure (:mod:`aio.report.images`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl
import structlog

from aio.report import figures as F
from aio.report import fmt
from aio.report import page as P
from aio.report import series as S
from aio.report.excursions import trade_excursions
from aio.report.headline import FULL, OOS, oos_equity_path
from aio.report.headline import read as headline

log = structlog.get_logger(__name__)

HEADLINE_KEYS = ("net_profit", "return_pct", "sharpe", "sharpe_ci_low", "sharpe_ci_high", "psr", "sortino", "calmar",
                 "max_drawdown_pct", "max_drawdown_duration_days", "max_drawdown_duration_seconds", "profit_factor",
                 "win_rate_pct", "win_rate", "expectancy", "trade_count", "exposure_pct")
TRADE_COLS = ("id", "side", "entry_time", "exit_time", "duration_seconds", "entry_price", "exit_price", "qty", "pnl",
              "return_pct", "mae_pct", "mfe_pct", "mae_money", "mfe_money", "commission", "entry_signal", "exit_signal")
FOLD_COLS = ("fold", "is_start", "is_end", "oos_start", "oos_end", "trials", "params", "is_objective", "oos_objective",
             "is_trades", "oos_trades", "oos_net_profit", "degradation_pct", "dsr")


def _sample_badge(sample: str) -> str:
    if sample == OOS:
        return "<span class='sample oos'>out of sample</span>"
    if sample == "in_sample":
        return "<span class='sample is'>in sample</span>"
    return "<span class='sample is'>full period (no search: in sample)</span>"


def _warnings(h: Mapping[str, Any]) -> str:
    out = []
    ruin = h.get("ruin")
    if ruin:
        where = ruin.get("time") or ruin.get("bar") if isinstance(ruin, Mapping) else ruin
        bar = ruin.get("bar") if isinstance(ruin, Mapping) else None
        out.append(f"<div class='ruin' id='ruin'>RUIN at {html.escape(str(where))}"
                   f"{f' (bar {bar})' if bar is not None else ''}: equity reached zero. Trading stopped there; "
                   "no ratio uses returns after it.</div>")
    for w in h.get("warnings") or []:
        out.append(f"<div class='warn'>{html.escape(str(w))}</div>")
    und = (h.get("metrics") or {}).get("undefined") or {}
    if isinstance(und, Mapping):
        for k, why in und.items():
            out.append(f"<div class='warn'>{html.escape(fmt.label(k))} is undefined: {html.escape(str(why))}</div>")
    return "".join(out)


def _flat_metrics(m: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars of a metrics block; a confidence interval [lo, hi] becomes two fields."""
    out = {}
    for k, v in m.items():
        if k in ("warnings", "undefined", "ruin"):
            continue
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) or x is None for x in v):
            out[f"{k}_low"], out[f"{k}_high"] = v
        elif not isinstance(v, (dict, list, tuple)):
            out[k] = v
    if "sharpe_ci_low" not in out and isinstance(m.get("sharpe_ci"), Mapping):
        out["sharpe_ci_low"] = m["sharpe_ci"].get("low")
        out["sharpe_ci_high"] = m["sharpe_ci"].get("high")
    return out


def _initial_capital(run: Any, default: float) -> float:
    try:
        from aio.appconfig import section

        bt = section(run.cfg, "backtest")
        return float(bt.get("initial_capital", default)) if bt else default
    except Exception:
        return default


class _Report:
    def __init__(self, run: Any, path: Path) -> None:
        self.run = run
        self.path = path
        self.run_dir = Path(run.run_dir)
        self.metrics: Mapping[str, Any] = run.metrics or {}
        self.figs: dict[str, Any] = {}
        self.parts: list[str] = []
        frame = run.bars.frame if run.bars is not None else None
        self.frame = frame
        self.ts = frame.get_column("ts_event").to_physical().to_numpy() if frame is not None else np.array([], np.int64)
        self.step = S.bar_interval_ns(self.ts)
        self.breaks = S.rangebreaks(S.gaps(self.ts, self.step))
        self.symbol = str(getattr(run.bars, "symbol", "")) if run.bars is not None else ""

    def add_fig(self, name: str, fig: Any, script: str | None = None) -> None:
        self.figs[name] = fig
        self.parts.append(P.figure(fig, f"fig-{name}", post_script=script))

    def close_on(self, ts: np.ndarray) -> np.ndarray | None:
        """Bar closes at the given bar times (buy-and-hold over the same window)."""
        if self.frame is None or not len(ts):
            return None
        idx = np.clip(np.searchsorted(self.ts, ts), 0, len(self.ts) - 1)
        return self.frame.get_column("close").to_numpy()[idx]

    # -- sections ----------------------------------------------------------------------------

    def header(self) -> None:
        run = self.run
        spec = run.strategy
        bars = run.bars
        name = (getattr(spec, "title", None) or getattr(spec, "name", "strategy")) if spec is not None else "run"
        self.title = f"{name} on {bars.symbol} {bars.timeframe} ({bars.side})" if bars is not None else name
        self.parts.append(f"<h1>{html.escape(self.title)}</h1>")
        if len(self.ts):
            first, last = (str(np.datetime64(int(x), "ns"))[:16].replace("T", " ") for x in (self.ts[0], self.ts[-1]))
            self.parts.append(f"<p class='note'>{len(self.ts):,d} bars from {first} to {last} UTC; "
                              f"parameters: {html.escape(', '.join(f'{k}={v}' for k, v in (run.params or {}).items()))}"
                              "</p>")
        self.parts.append(self.links())

    def links(self) -> str:
        items = []
        pine = self.metrics.get("pine_export") or {}
        for fname in ("strategy.pine", "config.yaml", "manifest.json", "metrics.json", "trades.csv"):
            if (self.run_dir / fname).is_file() or fname in ("manifest.json", "metrics.json"):
                items.append(f"<a href='{fname}'>{fname}</a>")
        if not pine.get("exported", True):
            items.append(f"<span class='note'>Pine export refused: {html.escape(str(pine.get('reason', '')))}</span>")
        items.append(f"<a href='./'>run folder</a> <span class='note'>{html.escape(str(self.run_dir))}</span>")
        return "<p class='links'>" + "".join(items) + "</p>"

    def headline(self) -> None:
        h = headline(self.metrics)
        self.h = h
        m = _flat_metrics(h.get("metrics") or {})
        sample = h.get("sample", FULL)
        what = h.get("label") or (
            "stitched walk-forward out-of-sample windows, each fold's best parameters on bars its search never saw"
            if sample == OOS else "all bars with the configured parameters (no search ran)")
        self.parts.append(f"<h2 id='headline'>Headline {_sample_badge(sample)}</h2>"
                          f"<p class='note'>{html.escape(what)}{'' if 'costs' in what else '; costs included'}.</p>")
        self.parts.append(_warnings(h))
        self.parts.append(P.cards(m, HEADLINE_KEYS))
        rest = [k for k in m if k not in HEADLINE_KEYS]
        if rest:
            self.parts.append("<details><summary>all headline metrics</summary>" + P.kv_table(m, rest) + "</details>")

    def headline_equity(self) -> None:
        """Equity of the headline sample against buy-and-hold, with drawdown."""
        h = self.h
        bt = self.run.backtest
        cap = _initial_capital(self.run, 100_000.0)
        ts = eq = None
        windows: list[tuple[int, int]] = []
        if h.get("sample") == OOS:
            p = oos_equity_path(self.run.artifacts or {}, self.run_dir)
            if p is not None:
                f = pl.read_parquet(p)
                ts = f.get_column("ts_event").to_physical().to_numpy()
                eq = f.get_column("equity").to_numpy()
                windows = self._oos_windows()
                title = "out-of-sample equity (stitched walk-forward windows) vs buy-and-hold"
        if ts is None and bt is not None:
            ts, eq = self.ts[: len(bt.equity_values)], bt.equity_values
            title = "equity vs buy-and-hold (full period)"
        if ts is None or not len(ts):
            return
        base = cap if cap > 0 else float(eq[0])
        self.hl_ts, self.hl_eq, self.hl_base = ts, eq, base
        self.parts.append("<h2>Equity against buy-and-hold</h2>")
        self.add_fig("equity", F.equity_figure(ts, eq, base, self.close_on(ts), self.breaks, title))

    def _oos_windows(self) -> list[tuple[int, int]]:
        out = []
        for f in ((self.metrics.get("optimize") or {}).get("folds") or []):
            try:
                a = np.datetime64(str(f["oos_start"]).rstrip("Z"), "ns").astype(np.int64)
                b = np.datetime64(str(f["oos_end"]).rstrip("Z"), "ns").astype(np.int64)
                out.append((int(a), int(b)))
            except Exception:
                continue
        return out

    def price(self) -> None:
        bt = self.run.backtest
        if self.frame is None:
            return
        fr = self.frame
        trades = bt.trades if bt is not None else None
        searched = self.h.get("sample") == OOS
        self.parts.append("<h2>Price and trades</h2>")
        if searched:
            self.parts.append("<p class='note'>Trades of the full-period run with the final parameters "
                              "(in sample for most bars; see the in-sample section below).</p>")
        fig, script = F.price_figure(self.ts, fr.get_column("open").to_numpy(), fr.get_column("high").to_numpy(),
                                     fr.get_column("low").to_numpy(), fr.get_column("close").to_numpy(), trades,
                                     self.breaks, "price with trades (entry, exit, segment green if won)", self.symbol)
        self.add_fig("price", fig, script)

    def returns(self) -> None:
        if getattr(self, "hl_ts", None) is None or len(self.hl_ts) < 2:
            return
        sample = "out-of-sample" if self.h.get("sample") == OOS else "full-period"
        self.parts.append("<h2>Period returns</h2>")
        self.add_fig("returns", F.returns_heatmap(self.hl_ts, self.hl_eq, self.hl_base, f"{sample} equity"))

    def trade_list(self) -> None:
        bt = self.run.backtest
        if bt is None or self.frame is None:
            return
        t = bt.trades
        self.parts.append(f"<h2>Trades ({t.height:,d})</h2>")
        if not t.height:
            self.parts.append("<p>No trades.</p>")
            return
        t = trade_excursions(t, self.frame)
        self.trades_x = t
        notional = (t.get_column("entry_price") * t.get_column("qty").abs()).to_numpy()
        t = t.with_columns(
            ((pl.col("exit_time").dt.epoch("ns") - pl.col("entry_time").dt.epoch("ns")) / 1e9).alias("duration_seconds"),
            pl.col("entry_time").dt.strftime("%Y-%m-%d %H:%M"),
            pl.col("exit_time").dt.strftime("%Y-%m-%d %H:%M"),
            pl.Series("return_pct", 100 * t.get_column("pnl").to_numpy() / np.where(notional > 0, notional, np.nan)),
        )
        cols = [c for c in TRADE_COLS if c in t.columns]
        heads = {"mae_pct": "MAE (% of entry)", "mfe_pct": "MFE (% of entry)", "mae_money": "MAE (quote ccy)",
                 "mfe_money": "MFE (quote ccy)", "return_pct": "return (% of notional)", "duration_seconds": "duration",
                 "entry_time": "entry (UTC)", "exit_time": "exit (UTC)", "id": "#"}
        sample = "full-period run with the final parameters" if self.h.get("sample") == OOS else "the run"
        self.parts.append(f"<p class='note'>From the {sample}. Click a header to sort. MAE/MFE: the worst and best "
                          "price the open trade saw (entry bar to the bar before the exit, plus the fills).</p>")
        self.parts.append("<div class='scroll'>" + P.table(t.select(cols).to_dicts(), cols, headers=heads,
                                                          left=("side", "entry_signal", "exit_signal"),
                                                          table_id="trades") + "</div>")

    def params(self) -> None:
        opt = self.metrics.get("optimize")
        if not isinstance(opt, Mapping):
            return
        imp = opt.get("importances") or {}
        self.parts.append("<h2>Parameter search</h2>")
        if imp and any(imp.values()):
            self.add_fig("importances", F.importance_figure(imp))
        trials = self._trials()
        if trials is None or not trials.height:
            return
        pcols = [c for c in trials.columns if c.startswith("param.")]
        vcol = next((c for c in trials.columns if c.startswith("value.")), None)
        if len(pcols) < 2 or vcol is None:
            return
        last = trials.get_column("fold").max()
        tf = trials.filter((pl.col("fold") == last) & (pl.col("state") == "COMPLETE") & pl.col(vcol).is_not_null())
        order = list((imp.get(f"fold{last}") or {}).keys())
        top = [f"param.{k}" for k in order if f"param.{k}" in pcols][:2]
        top += [c for c in pcols if c not in top][: 2 - len(top)]
        if tf.height < 2:
            return
        obj = vcol.split(".", 1)[1]
        fig = F.param_heatmap(tf.get_column(top[0]).cast(pl.Float64).to_numpy(),
                              tf.get_column(top[1]).cast(pl.Float64).to_numpy(),
                              tf.get_column(vcol).cast(pl.Float64).to_numpy(), top[0][6:], top[1][6:], obj,
                              opt.get("direction", "maximize") == "maximize",
                              f"best in-sample {obj} over the two most important parameters (fold {last}, "
                              f"{tf.height} complete trials)")
        self.add_fig("param_heatmap", fig)

    def _trials(self) -> pl.DataFrame | None:
        p = (self.run.artifacts or {}).get("optimize/trials") or self.run_dir / "optimize" / "trials.csv"
        try:
            return pl.read_csv(p, infer_schema_length=None) if Path(p).is_file() else None
        except Exception as exc:
            log.info("trials not read for the report", reason=str(exc)[:200])
            return None

    def folds(self) -> None:
        opt = self.metrics.get("optimize")
        folds = opt.get("folds") if isinstance(opt, Mapping) else None
        if not folds:
            return
        obj = opt.get("objective", "objective")
        rows = []
        for f in folds:
            r = dict(f)
            r["params"] = ", ".join(f"{k[6:]}={v}" for k, v in f.items() if k.startswith("param."))
            r["is_objective"] = f.get(f"is_{obj}")
            r["oos_objective"] = f.get(f"oos_{obj}")
            for k in ("is_start", "is_end", "oos_start", "oos_end"):
                if isinstance(r.get(k), str):
                    r[k] = r[k][:16].replace("T", " ")
            rows.append(r)
        cols = [c for c in FOLD_COLS if any(c in r for r in rows)]
        heads = {"is_objective": f"IS {obj}", "oos_objective": f"OOS {obj}", "is_start": "IS from", "is_end": "IS to",
                 "oos_start": "OOS from", "oos_end": "OOS to", "oos_net_profit": "OOS net profit",
                 "is_trades": "IS trades", "oos_trades": "OOS trades", "dsr": "deflated Sharpe (prob.)"}
        self.parts.append("<h2>Walk-forward folds</h2>" + P.table(rows, cols, headers=heads, fit=True,
                                                                 left=("params",), table_id="folds"))

    def model(self) -> None:
        m = self.metrics.get("model")
        if not isinstance(m, Mapping):
            return
        self.parts.append("<h2>The model, out of sample, next to its baselines</h2>")
        oos = m.get("oos")
        if isinstance(oos, Mapping):
            rows = [{"model": k, **{kk: vv for kk, vv in v.items() if not isinstance(vv, (dict, list))}}
                    for k, v in oos.items() if isinstance(v, Mapping)]
            if rows:
                cols = list(dict.fromkeys(c for r in rows for c in r))
                self.parts.append(P.table(rows, cols, left=("model",), table_id="model"))
        rel = self._reliability()
        if rel is not None:
            self.add_fig("reliability", F.reliability_figure(*rel, "reliability of the model's top-class probability "
                                                                   "(out of sample)"))

    def _reliability(self) -> tuple | None:
        p = (self.run.artifacts or {}).get("predictions")
        if not p or not Path(p).is_file():
            return None
        try:
            f = pl.read_parquet(p, columns=["p_down", "p_flat", "p_up", "label"]).drop_nulls().drop_nans()
        except Exception as exc:
            log.info("predictions not read for the report", reason=str(exc)[:200])
            return None
        if not f.height:
            return None
        proba = f.select("p_down", "p_flat", "p_up").to_numpy()
        return S.reliability(proba, f.get_column("label").to_numpy().astype(np.int64))

    def discovery(self) -> None:
        d = self.metrics.get("discover")
        if not d:
            return
        self.parts.append("<h2>Discovery</h2>")
        if not isinstance(d, Mapping):
            self.parts.append(f"<p>{html.escape(str(d))}</p>")
            return
        funnel = d.get("funnel")
        stages: list[str] = []
        counts: list[float] = []
        if isinstance(funnel, Mapping):
            stages, counts = [str(k) for k in funnel], [v if isinstance(v, (int, float)) else 0 for v in funnel.values()]
        elif isinstance(funnel, list):
            for s in funnel:
                if isinstance(s, Mapping):
                    stages.append(str(s.get("stage") or s.get("name") or len(stages)))
                    counts.append(next((s[k] for k in ("count", "n", "candidates", "survivors", "kept") if k in s), 0))
        if stages:
            self.add_fig("discovery_funnel", F.funnel_figure(stages, counts))
        best = next((d[k] for k in ("best", "candidates", "top", "survivors") if isinstance(d.get(k), list)), None)
        if best and isinstance(best[0], Mapping):
            rows = [{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in best[:50]]
            cols = list(dict.fromkeys(c for r in rows for c in r))
            self.parts.append("<h3>best candidates</h3><div class='scroll'>"
                              + P.table(rows, cols, left=tuple(c for c in cols if isinstance(rows[0].get(c), str)),
                                        table_id="discovery") + "</div>")
        scalars = {k: v for k, v in d.items() if not isinstance(v, (dict, list))}
        if scalars:
            self.parts.append(P.kv_table(scalars))

    def in_sample(self) -> None:
        bt_m = self.metrics.get("backtest")
        if not isinstance(bt_m, Mapping):
            return
        searched = self.h.get("sample") == OOS
        badge = _sample_badge("in_sample") if searched else _sample_badge(FULL)
        self.parts.append(f"<h2 id='in-sample'>Full-period backtest {badge}</h2>")
        if not searched:
            self.parts.append("<p class='note'>No search ran: the headline above is this full-period backtest "
                              "(all its metrics are under 'all headline metrics').</p>")
            return
        if searched:
            self.parts.append("<p class='note'>The final parameters over all bars. They were tuned on most of these "
                              "bars, so these figures flatter the strategy: judge it by the headline above.</p>")
            self.parts.append(_warnings({"warnings": bt_m.get("warnings"), "ruin": bt_m.get("ruin"),
                                         "metrics": bt_m}))
        self.parts.append(P.kv_table(_flat_metrics(bt_m)))
        bt = self.run.backtest
        if searched and bt is not None and len(bt.equity_values):
            ts = self.ts[: len(bt.equity_values)]
            self.add_fig("equity_full_period",
                         F.equity_figure(ts, bt.equity_values, _initial_capital(self.run, float(bt.equity_values[0])),
                                         self.close_on(ts), self.breaks,
                                         "IN SAMPLE: full-period equity with the final parameters vs buy-and-hold",
                                         windows=self._oos_windows()))

    def build(self) -> str:
        self.header()
        self.headline()
        for section in (self.headline_equity, self.price, self.returns, self.trade_list, self.params, self.folds,
                        self.model, self.discovery, self.in_sample):
            try:
                section()
            except Exception as exc:  # one broken section must not cost the whole page
                log.warning("report section failed", section=section.__name__, reason=str(exc)[:300])
                self.parts.append(f"<div class='warn'>section {section.__name__} could not be drawn: "
                                  f"{html.escape(str(exc)[:300])}</div>")
        self.parts.append("<h2>Files</h2>" + self.links())
        synthetic = False
        if getattr(self.run, "synthetic", False):
            meta = getattr(getattr(self.run, "market", None), "meta", {}) or {}
            synthetic = meta.get("synthetic") if isinstance(meta.get("synthetic"), str) else True
        return P.document(self.title, self.parts, plotly_src=P.PLOTLY_JS, synthetic=synthetic)


def write_run_report(run: Any, path: Path, pngs: bool = True) -> Path:
    """report.html (and plotly.min.js next to it, report/*.png) for a finished run."""
    path = Path(path)
    rep = _Report(run, path)
    text = rep.build()
    P.write_plotly_js(path.parent)
    path.write_text(text, encoding="utf-8")
    if pngs:
        from aio.report.images import write_pngs

        written = write_pngs(rep.figs, path.parent / "report")
        if written:
            run.artifacts["report_png"] = str(path.parent / "report")
    log.info("report written", path=str(path), megabytes=round(path.stat().st_size / 2**20, 2), figures=len(rep.figs))
    return path
