"""Files an optimisation leaves in the run folder (``optimize/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import structlog
from optuna.trial import TrialState

from aio.jsonio import plain  # the one numpy-to-JSON cleaner

log = structlog.get_logger(__name__)


def trials_frame(result: Any) -> pl.DataFrame:
    rows = []
    for fr in result.folds:
        for t in fr.study.get_trials(deepcopy=False):
            row = {
                "fold": fr.fold.index + 1,
                "study": fr.study.study_name,
                "number": t.number,
                "state": t.state.name,
                "duration_s": t.duration.total_seconds() if t.duration else None,
                "trades": t.user_attrs.get("trades"),
                "sr_bar": t.user_attrs.get("sr_bar"),
                "note": t.user_attrs.get("infeasible") or t.user_attrs.get("error"),
            }
            vals = t.values or []
            for i, name in enumerate(result.summary["objectives"]):
                row[f"value.{name}"] = vals[i] if i < len(vals) else None
            for k, v in t.params.items():
                row[f"param.{k}"] = v
            rows.append(plain(row))
    if not rows:
        return pl.DataFrame()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return pl.DataFrame([{k: r.get(k) for k in keys} for r in rows], infer_schema_length=None, strict=False)


def history_frame(result: Any) -> pl.DataFrame:
    rows = []
    sign = 1.0 if result.summary["direction"] == "maximize" else -1.0
    for fr in result.folds:
        best = None
        for t in sorted(fr.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
            v = t.values[0]
            best = v if best is None or sign * v > sign * best else best
            rows.append({"fold": fr.fold.index + 1, "number": t.number, "value": v, "best": best})
    return pl.DataFrame(rows) if rows else pl.DataFrame(schema={"fold": pl.Int64, "number": pl.Int64,
                                                                  "value": pl.Float64, "best": pl.Float64})


def importances(result: Any) -> dict[str, dict[str, float]]:
    import optuna

    out = {}
    for fr in result.folds:
        key = f"fold{fr.fold.index + 1}"
        try:
            # Mean decrease in impurity: fast, deterministic with a seed, needs scikit-learn only.
            ev = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
            target = None if len(result.summary["objectives"]) == 1 else (lambda t: t.values[0])
            out[key] = {k: float(v) for k, v in optuna.importance.get_param_importances(
                fr.study, evaluator=ev, target=target).items()}
        except Exception as exc:  # too few complete trials, a single parameter...
            out[key] = {}
            log.info("parameter importances skipped", fold=key, reason=str(exc)[:200])
    return out


def write_reports(result: Any, ctx: Any, out_dir: Path, plots: bool = True, synthetic: Any = False) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str) -> Path:
        stem, ext = name.split(".", 1)
        files[stem if ext in ("csv", "json", "parquet") else f"{stem}_{ext}"] = out_dir / name
        return out_dir / name

    put("best_params.json").write_text(json.dumps(plain(result.best_params), indent=2))
    trials = trials_frame(result)
    if trials.height:
        trials.write_csv(put("trials.csv"))
    folds = pl.DataFrame([plain(r.row) for r in result.folds], infer_schema_length=None, strict=False)
    folds.write_csv(put("folds.csv"))
    hist = history_frame(result)
    hist.write_csv(put("history.csv"))
    imp = importances(result)
    put("importances.json").write_text(json.dumps(imp, indent=2))
    result.summary["importances"] = imp
    if result.oos_equity is not None:
        result.oos_equity.write_parquet(put("oos_equity.parquet"))
    put("summary.json").write_text(json.dumps(plain(result.summary), indent=2, default=str))
    if plots:
        try:
            _plots(result, hist, imp, put, synthetic)
        except Exception as exc:  # plots are a convenience; never lose the run over them
            log.warning("optimisation plots skipped", reason=str(exc)[:200])
    return files


def _plots(result: Any, hist: pl.DataFrame, imp: dict, put, synthetic: Any = False) -> None:
    """history.html and oos_equity.html: offline pages (plotly.js from the run folder)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from aio.report import page as P

    s = result.summary
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38],
                        subplot_titles=("optimisation history (in-sample objective per trial)",
                                        "parameter importance (last fold)"))
    for fold in sorted(set(hist.get_column("fold").to_list())) if hist.height else []:
        h = hist.filter(pl.col("fold") == fold)
        fig.add_trace(go.Scatter(x=h["number"].to_list(), y=h["value"].to_list(), mode="markers",
                                 name=f"fold {fold} trials", opacity=0.5), row=1, col=1)
        fig.add_trace(go.Scatter(x=h["number"].to_list(), y=h["best"].to_list(), mode="lines",
                                 name=f"fold {fold} best so far"), row=1, col=1)
    last = imp.get(f"fold{len(result.folds)}") or {}
    if last:
        fig.add_trace(go.Bar(x=[100 * v for v in last.values()], y=list(last.keys()), orientation="h",
                             name="importance (last fold)"), row=1, col=2)
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    fig.update_yaxes(title_text=f"{s['objective']} (in sample)", row=1, col=1)
    fig.update_xaxes(title_text="importance (% of variance explained)", ticksuffix=" %", row=1, col=2)
    fig.update_yaxes(title_text="parameter", row=1, col=2)
    fig.update_layout(title=f"{s['study']}: {s['objective']} ({s['sampler']})", height=480, template="plotly_white")
    P.write_plotly_js(put("history.html").parent.parent)
    src = "../" + P.PLOTLY_JS
    put("history.html").write_text(P.document(f"optimisation history: {s['study']}",
                                              ["<h1>Optimisation history</h1>", P.figure(fig, "fig-history")],
                                              plotly_src=src, synthetic=synthetic), encoding="utf-8")
    if result.oos_equity is not None:
        eq = result.oos_equity
        ts = eq.get_column("ts_event").to_numpy().astype("datetime64[ns]").astype("datetime64[ms]")
        f2 = go.Figure(go.Scatter(x=ts, y=eq["equity"].to_numpy(), mode="lines", name="stitched OOS equity"))
        from aio.report import series as S

        breaks = S.rangebreaks(S.gaps(eq.get_column("ts_event").to_numpy(),
                                      S.bar_interval_ns(eq.get_column("ts_event").to_numpy())))
        f2.update_xaxes(title_text="time (UTC)", rangebreaks=breaks)
        f2.update_yaxes(title_text="equity (account currency)")
        f2.update_layout(title="walk-forward out-of-sample equity (each fold's best parameters on its OOS window)",
                         height=480, template="plotly_white")
        put("oos_equity.html").write_text(P.document("out-of-sample equity",
                                                     ["<h1>Out-of-sample equity</h1>", P.figure(f2, "fig-oos")],
                                                     plotly_src=src, synthetic=synthetic), encoding="utf-8")
