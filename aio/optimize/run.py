"""The optimize stage: walk-forward studies, OOS evaluation, reports."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import structlog
from optuna.trial import TrialState

from aio.config import build
from aio.errors import AioError, ConfigError
from aio.optimize.config import OptimizeConfig
from aio.optimize.dsr import deflated_sharpe, return_moments
from aio.optimize.evaluate import Context, bar_returns, equity_of
from aio.optimize.objectives import OBJECTIVES, Objective
from aio.optimize.space import search_space
from aio.optimize.storage import StorageSpec, parse_storage
from aio.optimize.study import run_study
from aio.optimize.walkforward import Fold, Window, make_folds

log = structlog.get_logger(__name__)


def resolve_objectives(cfg: OptimizeConfig) -> list[Objective]:
    from aio.registry import registry

    names = list(cfg.objectives)
    if cfg.name == "nsga2" and not names:
        names = [cfg.objective, "max_drawdown"]
    if not names:
        names = [cfg.objective]
    if len(names) > 1 and cfg.name not in ("nsga2", "random", "tpe"):
        raise ConfigError(f"config key optimize.objectives has {len(names)} objectives; optimize={cfg.name} "
                          f"handles one: use optimize=nsga2 (or tpe/random)")
    out = []
    for n in names:
        try:
            out.append(registry.get("objective", n))
        except KeyError:
            known = {o.name: o for o in OBJECTIVES}
            if n not in known:
                raise
            out.append(known[n])
    return out


def default_study_name(run_cfg: Any, strategy: str, cfg: OptimizeConfig) -> str:
    """Stable across re-runs of the same experiment, different when data, strategy,
    costs, sizer or the search change (so a shared storage never mixes them)."""
    from aio.appconfig import section

    keep = {k: section(run_cfg, k) for k in ("data", "bars", "backtest", "sizer")} if run_cfg is not None else {}
    strat = section(run_cfg, "strategy") if run_cfg is not None else {}
    strat = {k: v for k, v in (strat or {}).items() if k != "params"}
    opt = {k: v for k, v in asdict(cfg).items() if k not in ("n_trials", "n_workers", "storage", "study", "timeout_s",
                                                             "write_plots", "heartbeat_s")}
    blob = json.dumps({"cfg": keep, "strategy": strat, "optimize": opt}, sort_keys=True, default=str)
    return f"aio-{strategy}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


@dataclass
class FoldResult:
    fold: Fold
    study: optuna.Study
    best_params: dict[str, Any]
    best_values: list[float]
    is_metrics: dict[str, Any]
    oos_metrics: dict[str, Any] | None
    dsr: dict[str, Any]
    row: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizeResult:
    best_params: dict[str, Any]
    folds: list[FoldResult]
    oos_metrics: dict[str, Any] | None
    oos_equity: Any  # polars frame ts_event, equity (stitched OOS) or None
    summary: dict[str, Any]
    oos: Any = None  # the stitched out-of-sample Evaluation (None without OOS folds)
    warnings: list[str] = field(default_factory=list)


def edge_warnings(space: dict[str, Any], params_by_fold: list[dict[str, Any]], tol: float = 0.05) -> list[str]:
    """Best values within ``tol`` of their range's end: the search wanted to go further,
    so the optimum may lie outside the range and the figures are a boundary artefact."""
    out = []
    for name, sp in space.items():
        if sp.type not in ("int", "float") or sp.low is None or sp.high is None or sp.high <= sp.low:
            continue
        span = float(sp.high) - float(sp.low)
        hits = []
        for i, p in enumerate(params_by_fold):
            v = p.get(name)
            if v is None:
                continue
            v = float(v)
            if v <= sp.low + tol * span or v >= sp.high - tol * span:
                hits.append(f"fold {i + 1}: {v:g}")
        if hits:
            out.append(f"best {name} at the edge of its search range [{sp.low:g}, {sp.high:g}] ({'; '.join(hits)}): "
                       f"widen optimize.space.{name} or treat the optimum as unknown")
    return out


def pick_best(study: optuna.Study, objectives: list[Objective]) -> optuna.trial.FrozenTrial | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    if len(objectives) == 1:
        return study.best_trial
    # Pareto front, then the best on the first objective (documented tie-break).
    front = study.best_trials
    sign = 1.0 if objectives[0].direction == "maximize" else -1.0
    return max(front, key=lambda t: sign * t.values[0])


def _ts(frame: Any, i: int) -> int | None:
    if i < 0 or i >= frame.height:
        return None
    return int(frame.get_column("ts_event")[i])


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _degradation(is_v: float | None, oos_v: float | None) -> float | None:
    if is_v is None or oos_v is None or not np.isfinite(is_v) or not np.isfinite(oos_v) or is_v <= 0:
        return None
    return float(100.0 * (1.0 - oos_v / is_v))


def optimize_bars(ctx: Context, spec: StorageSpec, base_name: str, seed: int | None) -> OptimizeResult:
    """Walk-forward over ``ctx.frame``: a study per fold on IS, its best params on OOS."""
    cfg = ctx.cfg
    wf = cfg.walk_forward
    n = ctx.frame.height
    folds = make_folds(n, wf.folds, wf.scheme, wf.oos_fraction, wf.is_bars, wf.gap_bars, wf.min_is_bars)
    obj0 = ctx.objectives[0]
    results: list[FoldResult] = []
    t0 = time.perf_counter()
    for f in folds:
        name = base_name if len(folds) == 1 and f.oos is None else f"{base_name}.wf{f.index + 1}of{len(folds)}"
        label = f"fold {f.index + 1}/{len(folds)}" if f.oos is not None else "study"
        study = run_study(ctx, f.is_, name, spec, cfg.n_trials, seed, cfg.n_workers, label=label)
        best = pick_best(study, ctx.objectives)
        if best is None:
            reasons = {t.user_attrs.get("infeasible") or t.user_attrs.get("error") for t in study.trials}
            raise AioError(
                f"study {name}: no trial completed ({len(study.trials)} trials; e.g. {sorted(map(str, reasons))[:2]}). "
                f"Lower optimize.min_trades, widen the search space or use more bars"
            )
        params = {**ctx.fixed, **best.params}
        sig = ctx.signals(params)
        res_is, m_is, _ = ctx.backtest(sig, f.is_)
        m_oos = None
        if f.oos is not None:
            res_oos, m_oos, _ = ctx.backtest(sig, f.oos)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        srs = np.array([t.user_attrs.get("sr_bar", np.nan) for t in complete], dtype=np.float64)
        srs = srs[np.isfinite(srs)]
        mom = return_moments(bar_returns(res_is))
        d = deflated_sharpe(float(best.user_attrs.get("sr_bar", mom["sr"])), mom["n_obs"], mom["skew"],
                            mom["kurtosis"], len(complete), float(np.var(srs, ddof=1)) if len(srs) > 1 else 0.0)
        states = [t.state for t in study.trials]
        is_v = obj0.value(m_is, res_is)
        oos_v = obj0.value(m_oos, res_oos) if m_oos is not None else None
        row = {
            "fold": f.index + 1,
            "is_start": _iso(_ts(ctx.frame, f.is_.start)), "is_end": _iso(_ts(ctx.frame, f.is_.end - 1)),
            "is_bars": len(f.is_),
            "oos_start": _iso(_ts(ctx.frame, f.oos.start)) if f.oos else None,
            "oos_end": _iso(_ts(ctx.frame, f.oos.end - 1)) if f.oos else None,
            "oos_bars": len(f.oos) if f.oos else 0,
            "study": name,
            "trials": sum(s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for s in states),
            "complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
            "best_trial": best.number,
            "best_value": best.values[0],
            f"is_{obj0.name}": is_v, f"oos_{obj0.name}": oos_v,
            "is_trades": m_is.get("trade_count"), "oos_trades": (m_oos or {}).get("trade_count"),
            "is_net_profit": m_is.get("net_profit"), "oos_net_profit": (m_oos or {}).get("net_profit"),
            "degradation_pct": _degradation(is_v, oos_v),
            "dsr": d["dsr"],
            **{f"param.{k}": v for k, v in params.items()},
        }
        results.append(FoldResult(f, study, params, list(best.values), m_is, m_oos, d, row))
        log.info("fold optimised", fold=f.index + 1, folds=len(folds), best=params, is_value=is_v, oos_value=oos_v,
                 dsr=d["dsr"])
    oos_metrics, oos_equity, oos_eval = None, None, None
    oos_folds = [r for r in results if r.fold.oos is not None]
    if oos_folds:
        parts = [(ctx.signals(r.best_params), r.fold.oos.start, r.fold.oos.end) for r in oos_folds]
        oos_eval = ctx.ev.run_stitched(parts)
        oos_metrics = oos_eval.metrics
        import polars as pl

        w = Window(oos_folds[0].fold.oos.start, oos_folds[-1].fold.oos.end)
        fw = ctx.frame.slice(w.start, len(w))
        eq = equity_of(oos_eval.result)
        ts = fw.get_column("ts_event").to_numpy()
        oos_equity = pl.DataFrame({"ts_event": ts[: len(eq)], "equity": eq[: len(ts)]})
    warns = edge_warnings(ctx.space, [r.best_params for r in results])
    is_vals = [r.row[f"is_{obj0.name}"] for r in results]
    oos_v = obj0.value(oos_metrics, oos_eval.result) if oos_metrics is not None else None
    summary = {
        "sampler": cfg.name,
        "objective": obj0.name,
        "objectives": [o.name for o in ctx.objectives],
        "direction": obj0.direction,
        "n_trials": cfg.n_trials,
        "n_workers": cfg.n_workers,
        "storage": spec.label,
        "study": base_name,
        "walk_forward": asdict(wf),
        "best_params": results[-1].best_params,
        "is_objective": float(np.mean(is_vals)) if is_vals else None,
        "oos_objective": oos_v,
        "degradation_pct": _degradation(float(np.mean(is_vals)) if is_vals else None, oos_v),
        "dsr": results[-1].dsr["dsr"],
        "deflated_sharpe": results[-1].dsr,
        "oos": oos_metrics,
        "folds": [r.row for r in results],
        "warnings": warns,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return OptimizeResult(results[-1].best_params, results, oos_metrics, oos_equity, summary, oos_eval, warns)


def build_context(run: Any, cfg: OptimizeConfig, spec: Any = None) -> Context:
    from aio.backtest.evaluator import evaluator_for_run

    spec = spec if spec is not None else run.strategy
    if spec is None:
        raise ConfigError("optimize needs a strategy (the strategy stage runs first)")
    return context_for(evaluator_for_run(run), spec, cfg)


def context_for(ev: Any, spec: Any, cfg: OptimizeConfig) -> Context:
    """A search over ``spec``'s parameters on the evaluator's bars (the pipeline's and
    the discovery funnel's way in)."""
    space = search_space(spec, cfg.params, cfg.space)
    if not space:
        raise ConfigError(f"strategy {spec.name!r} has no parameters to search (strategy.space is empty)")
    fixed = {k: v for k, v in spec.params.items() if k not in space}
    return Context(ev=ev, spec=spec, objectives=resolve_objectives(cfg), cfg=cfg, space=space, fixed=fixed)


def optimize_run(run: Any) -> dict[str, Any]:
    """Pipeline entry: run the configured search, write reports, return the best params."""
    from aio.appconfig import section
    from aio.optimize.report import write_reports

    cfg = build(OptimizeConfig, section(run.cfg, "optimize"), "optimize")
    ctx = build_context(run, cfg)
    spec = parse_storage(cfg.storage)
    if spec.kind == "memory" and cfg.n_workers > 1:
        spec = StorageSpec("journal", path=str(Path(run.run_dir) / "study.journal"))
        log.info("n_workers > 1 with in-memory storage: the workers share a journal file", path=spec.path)
    base = cfg.study or default_study_name(run.cfg, run.strategy.name, cfg)
    seed = cfg.seed if cfg.seed is not None else run.seed
    result = optimize_bars(ctx, spec, base, seed)
    out_dir = Path(run.run_dir) / "optimize"
    files = write_reports(result, ctx, out_dir, plots=cfg.write_plots, synthetic=run.synthetic)
    if result.oos is not None:  # the headline's own trades, each fold's parameters on its OOS bars
        from aio.backtest import write_trades_csv

        files["oos_trades"] = write_trades_csv(result.oos.result, out_dir / "oos_trades.csv", synthetic=run.synthetic)
    for name, path in files.items():
        run.artifacts[f"optimize/{name}"] = str(path)
    run.metrics["optimize"] = result.summary
    run.metrics["best_params"] = result.best_params
    run.optimize = result
    run.objective = result.summary.get("oos_objective")
    return result.best_params
