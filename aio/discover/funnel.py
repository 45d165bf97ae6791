"""One funnel for every candidate, whoever proposed it.

Windows over the bars (indices)::

    0 ............ proposal_end ........ discovery_end | embargo | holdout_start ..... n
    |  proposers + screening  |  walk-forward OOS     |          |  final holdout     |
    |<------------- tuner (walk-forward folds) ------>|          |  (once, accepted)  |

* parse: the mapping must build into a valid StrategySpec inside the grammar; the
  canonical text removes duplicates across proposers;
* screen: every candidate once with its proposed parameters on the proposal window
  (the bars proposers saw), cheapest first-pass ranking; the best ``tune.top`` of each
  proposer go on;
* tune: parameters tuned walk-forward with the project's optimiser over the discovery
  window; its stitched out-of-sample run (net of costs) is what the gates judge;
* gates: PBO (CSCV over the candidate's parameter trials), SPA (its OOS returns against
  flat, buy-and-hold and the shipped strategies), deflated Sharpe with the ledger's
  effective number of trials, a minimum OOS trade count;
* holdout: candidates passing every gate run exactly once on the last
  ``holdout_pct`` of the bars, which nothing before saw. That result is the headline.

Every screen and every tuning trial goes into the trial ledger.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import structlog

from aio.config import param
from aio.discover.candidate import Candidate
from aio.errors import AioError, ConfigError

log = structlog.get_logger(__name__)


@dataclass
class AcceptConfig:
    """Thresholds a candidate must pass (all of them) to reach the holdout."""

    dsr: float = param(0.95, ge=0, le=1, help="deflated Sharpe probability of the OOS returns, at least")
    pbo: float = param(0.2, ge=0, le=1, help="probability of backtest overfitting (CSCV), at most")
    spa_p: float = param(0.05, gt=0, le=1, help="SPA p-value against the benchmarks, at most")
    min_trades: int = param(30, ge=0, help="trades in the stitched out-of-sample run, at least")


@dataclass
class TuneConfig:
    """Walk-forward tuning of the best screened candidates (the project's optimiser)."""

    top: int = param(6, ge=1, help="candidates per proposer that are tuned")
    sampler: str = param("tpe", choices=["tpe", "random", "cmaes"])
    objective: str = param("sharpe")
    n_trials: int = param(30, ge=1, help="trials per walk-forward fold")
    folds: int = param(3, ge=1)
    oos_fraction: float = param(0.5, gt=0, lt=1, help="share of the discovery window that is walk-forward OOS")
    min_trades: int = param(10, ge=0, help="a trial trading less in its IS window is discarded")


@dataclass
class FunnelConfig:
    accept: AcceptConfig = field(default_factory=AcceptConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    screen_min_trades: int = param(10, ge=0, help="trades on the proposal window to be considered for tuning")
    pbo_configs: int = param(16, ge=2, help="parameter trials per candidate in its CSCV matrix")
    pbo_splits: int = param(16, ge=2, help="CSCV blocks (even)")
    benchmarks: list[str] = field(default_factory=lambda: ["flat", "buy_and_hold", "shipped"])
    spa_reps: int = param(1000, ge=100, help="bootstrap replications of the SPA test")


@dataclass(frozen=True)
class Windows:
    n: int
    proposal_end: int
    discovery_end: int
    holdout_start: int

    def as_dict(self) -> dict[str, int]:
        return {"bars": self.n, "proposal_end": self.proposal_end, "discovery_end": self.discovery_end,
                "holdout_start": self.holdout_start}


def _core(name: str) -> Any:
    """aio.discover.{gates,ledger,holdout} (branch discover_core), or the interim stand-in."""
    import importlib

    try:
        return importlib.import_module(f"aio.discover.{name}")
    except ImportError:
        from aio.discover import _interim

        return _interim


def make_windows(n: int, holdout_pct: float, embargo: int, tune: TuneConfig) -> Windows:
    holdout = _core("holdout")

    disc_end, h_start = _split(holdout, n, holdout_pct, embargo)
    from aio.optimize.walkforward import make_folds

    folds = make_folds(disc_end, tune.folds, "anchored", tune.oos_fraction, None, 0, 50)
    return Windows(n, folds[0].oos.start, disc_end, h_start)


def _split(holdout: Any, n: int, pct: float, embargo: int) -> tuple[int, int]:
    """(end of the discovery bars, first holdout bar) from aio.discover.holdout."""
    s = holdout.split(n, pct, embargo)
    if isinstance(s, tuple):
        a, b = s
        if hasattr(a, "stop"):
            return int(a.stop), int(b.start)
        return int(a), int(b)
    return int(getattr(s, "discovery_end", getattr(s, "discovery", (0, 0))[1] if hasattr(s, "discovery") else 0)), \
        int(getattr(s, "holdout_start", getattr(s, "holdout", (0, 0))[0] if hasattr(s, "holdout") else 0))


# -- the one evaluation path ------------------------------------------------------------


def evaluator(frame: Any, bt: Any, symbol: str = "", timeframe: str = "1m") -> Any:
    """The lead's Evaluator (aio.backtest.evaluator) over ``frame``."""
    try:
        from aio.backtest.evaluator import Evaluator
    except ImportError:  # until the Evaluator lands on main
        return _InterimEvaluator(frame, bt)

    return Evaluator(frame, bt, sizer=None, predictions=None, symbol=symbol, timeframe=timeframe)


def tune(frame: Any, spec: Any, bt: Any, cfg: TuneConfig, seed: int, name: str, symbol: str, timeframe: str) -> Any:
    """Walk-forward parameter search with the project's optimiser: stitched OOS, costs in."""
    from aio.optimize.config import OptimizeConfig, WalkForwardConfig
    from aio.optimize.evaluate import Context
    from aio.optimize.run import optimize_bars, resolve_objectives
    from aio.optimize.space import search_space
    from aio.optimize.storage import StorageSpec

    ocfg = OptimizeConfig(name=cfg.sampler, objective=cfg.objective, n_trials=cfg.n_trials, min_trades=cfg.min_trades,
                          pruner="none", n_startup_trials=min(10, cfg.n_trials), write_plots=False,
                          walk_forward=WalkForwardConfig(folds=cfg.folds, oos_fraction=cfg.oos_fraction, cv_blocks=1))
    space = search_space(spec, [], {})
    fixed = {k: v for k, v in spec.params.items() if k not in space}
    ctx = Context(frame=frame, spec=spec, bt=bt, sizer=None, predictions={}, objectives=resolve_objectives(ocfg),
                  cfg=ocfg, space=space, fixed=fixed, timeframe=timeframe, symbol=symbol)
    return optimize_bars(ctx, StorageSpec("memory"), name, seed)


# -- the funnel ---------------------------------------------------------------------------


@dataclass
class FunnelResult:
    candidates: list[Candidate]
    counts: dict[str, int]
    windows: Windows
    ledger: dict[str, Any]
    benchmarks: dict[str, Any]
    seconds: float = 0.0

    @property
    def accepted(self) -> list[Candidate]:
        return [c for c in self.candidates if c.accepted]

    def best(self, proposers: set[str] | None = None) -> Candidate | None:
        """Best by what was known before the holdout (DSR, then OOS Sharpe): the holdout
        never chooses, it only reports."""
        pool = [c for c in self.candidates if c.oos and (proposers is None or c.proposer in proposers)]
        acc = [c for c in pool if c.accepted]
        pool = acc or pool
        if not pool:
            return None
        return max(pool, key=lambda c: (c.accepted, _num(c.gates.get("dsr")), _num(c.oos.get("sharpe"))))


def _num(v: Any) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return -math.inf
    return v if math.isfinite(v) else -math.inf


def parse_candidates(cands: list[Candidate], grammar_cfg: Any) -> None:
    """Build, check and dedup (canonical text) in place; first proposer wins a duplicate."""
    from aio.discover.grammar import candidate_id, canonical_text, check_limits, fast_spec, structure_text
    from aio.strategy import load_spec

    seen: dict[str, str] = {}
    for c in cands:
        try:
            spec = c.parsed if c.parsed is not None else (
                load_spec(c.spec, path=f"discover.{c.proposer}") if c.meta.get("shipped") else fast_spec(c.spec))
            if not c.meta.get("shipped"):
                check_limits(spec, grammar_cfg)
            elif spec.uses_model():
                raise ConfigError(f"rules {spec.uses_model()} read model.* series, which Pine cannot run")
        except (AioError, ValueError, KeyError) as exc:
            c.status, c.reason = "invalid", str(exc).splitlines()[0][:300]
            continue
        c.parsed = spec
        c.text = canonical_text(spec)
        c.structure = structure_text(spec)
        c.id = candidate_id(c.text)
        if c.id in seen:
            c.status, c.reason = "duplicate", f"same rule as {seen[c.id]}"
            continue
        seen[c.id] = c.id
        c.status = "parsed"


def run_funnel(
    cands: list[Candidate],
    *,
    frame: Any,
    bt: Any,
    cfg: FunnelConfig,
    grammar_cfg: Any,
    windows: Windows,
    ledger: Any,
    seed: int = 0,
    symbol: str = "",
    timeframe: str = "1m",
    progress: bool = True,
) -> FunnelResult:
    t0 = time.perf_counter()
    counts = {"proposed": len(cands)}
    parse_candidates(cands, grammar_cfg)
    live = [c for c in cands if c.status == "parsed"]
    counts["parsed"] = sum(c.status != "invalid" for c in cands)
    counts["unique"] = len(live)
    # Everything up to the holdout sees only these bars.
    disc = frame.slice(0, windows.discovery_end)
    ev = evaluator(disc, bt, symbol, timeframe)
    _screen(live, ev, windows, ledger, cfg, progress)
    counts["screened"] = sum(c.status == "screened" for c in live)
    chosen = _choose(live, cfg)
    bench = _benchmarks(ev, windows, cfg)
    _tune_all(chosen, disc, ev, bt, cfg, windows, ledger, seed, symbol, timeframe, progress)
    tested = [c for c in chosen if c.status == "tuned"]
    counts["tested"] = len(tested)
    eff = _effective(ledger, live)
    for c in tested:
        _gates(c, ev, bench, cfg, eff, ledger)
    for g in ("trades", "dsr", "pbo", "spa"):
        counts[f"passed_{g}"] = sum(bool(c.passed.get(g)) for c in tested)
    for c in tested:
        if all(c.passed.get(g) for g in ("trades", "dsr", "pbo", "spa")):
            c.status = "accepted"
        else:
            c.status = "rejected"
            c.reason = "failed " + ", ".join(g for g in ("trades", "dsr", "pbo", "spa") if not c.passed.get(g))
    accepted = [c for c in tested if c.accepted]
    if accepted:
        full = evaluator(frame, bt, symbol, timeframe)
        for c in accepted:  # exactly once each, on bars nothing above has seen
            e = full.run(c.parsed, c.params, start=windows.holdout_start, end=None, metrics="full")
            c.holdout = {k: e.metrics.get(k) for k in ("net_profit", "return_pct", "sharpe", "max_drawdown",
                                                       "trade_count", "win_rate", "profit_factor")}
            c.holdout["warnings"] = list(e.metrics.get("warnings") or [])
            c.holdout["entries"] = _entry_bars(e.result, windows.holdout_start)
    counts["accepted"] = len(accepted)
    counts["holdout_positive"] = sum(_num((c.holdout or {}).get("net_profit")) > 0 for c in accepted)
    return FunnelResult(cands, counts, windows, {"trials": _ledger_size(ledger), "effective_trials": eff,
                                                 "distinct_rules": len({c.structure for c in live})},
                        {k: v["label"] for k, v in bench.items()}, round(time.perf_counter() - t0, 3))


def _entry_bars(result: Any, offset: int) -> list[int]:
    """Bar index (of the whole frame) of each trade's entry decision."""
    tr = result.trades
    col = next((c for c in ("entry_bar", "entry_index") if c in tr.columns), None)
    if col is None:
        return []
    return [int(b) + offset for b in tr.get_column(col).to_list()]


def _bar(total: int, what: str, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not enabled,
                 transient=True)
    return p, total


def _screen(live: list[Candidate], ev: Any, w: Windows, ledger: Any, cfg: FunnelConfig, progress: bool) -> None:
    keys = ["net_profit", "sharpe", "trade_count"]
    p, _ = _bar(len(live), "screen", progress)
    with p:
        task = p.add_task("screen", total=len(live))
        for c in live:
            try:
                e = ev.run(c.parsed, None, start=0, end=w.proposal_end, metrics=keys)
            except (AioError, ValueError, FloatingPointError) as exc:
                c.status, c.reason = "invalid", f"screen: {str(exc).splitlines()[0][:200]}"
                p.advance(task)
                continue
            c.screen = {k: e.metrics.get(k) for k in keys}
            c.status = "screened"
            _record(ledger, c, "screen", dict(c.parsed.params), e.returns, c.screen)
            p.advance(task)


def _choose(live: list[Candidate], cfg: FunnelConfig) -> list[Candidate]:
    out = []
    for prop in dict.fromkeys(c.proposer for c in live):
        pool = [c for c in live if c.proposer == prop and c.status == "screened"
                and (c.screen.get("trade_count") or 0) >= cfg.screen_min_trades]
        pool.sort(key=lambda c: _num(c.screen.get("sharpe")), reverse=True)
        # one per rule structure: the tuner moves parameters, so a second copy of a
        # structure with other starting values would be tuned into the same strategy
        seen: set[str] = set()
        for c in pool:
            if len(seen) >= cfg.tune.top:
                break
            if c.structure not in seen:
                seen.add(c.structure)
                out.append(c)
        for c in [c for c in live if c.proposer == prop and c.status == "screened" and c not in out]:
            c.reason = "not among the best screened of its proposer"
    return out


def _tune_all(chosen, disc, ev, bt, cfg, w, ledger, seed, symbol, timeframe, progress) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p, _ = _bar(len(chosen), "tune", progress)
    with p:
        task = p.add_task("tune", total=len(chosen))
        for c in chosen:
            try:
                res = tune(disc, c.parsed, bt, cfg.tune, seed, f"discover-{c.id}", symbol, timeframe)
            except (AioError, ValueError) as exc:
                c.status, c.reason = "rejected", f"tuning: {str(exc).splitlines()[0][:200]}"
                p.advance(task)
                continue
            trials = []
            for fr in res.folds:
                for t in fr.study.trials:
                    if t.state.name == "COMPLETE":
                        trials.append(({**fr.best_params, **t.params}, t.values[0]))
                        _record(ledger, c, "trial", {**c.parsed.params, **t.params}, None,
                                {"sr_bar": t.user_attrs.get("sr_bar"), "value": t.values[0],
                                 "trades": t.user_attrs.get("trades"), "fold": fr.fold.index})
            c.trials = len(trials)
            c.params = dict(res.best_params)
            c.oos = {k: (res.oos_metrics or {}).get(k) for k in ("net_profit", "return_pct", "sharpe", "max_drawdown",
                                                                 "trade_count", "win_rate", "profit_factor")}
            eq = res.oos_equity.get_column("equity").to_numpy() if res.oos_equity is not None else np.zeros(0)
            cap = float(bt.initial_capital)
            c.oos_returns = np.diff(np.concatenate(([cap], eq))) / np.concatenate(([cap], eq[:-1]))
            c.meta["pbo_params"] = _distinct_params(trials, cfg.pbo_configs)
            c.status = "tuned"
            p.advance(task)


def _distinct_params(trials: list[tuple[dict, float]], k: int) -> list[dict]:
    seen, out = set(), []
    for prm, _ in sorted(trials, key=lambda t: -_num(t[1])):
        key = tuple(sorted(prm.items()))
        if key not in seen:
            seen.add(key)
            out.append(prm)
    return out[:k]


def _benchmarks(ev: Any, w: Windows, cfg: FunnelConfig) -> dict[str, dict[str, Any]]:
    """Returns of the benchmarks over the walk-forward OOS bars (where candidates are judged)."""
    from aio.strategy import load_builtin, load_spec
    from aio.strategy import CONF_DIR

    out: dict[str, dict[str, Any]] = {}
    n = w.discovery_end - w.proposal_end
    if "flat" in cfg.benchmarks:
        out["flat"] = {"label": "flat (no position)", "returns": np.zeros(n)}
    if "buy_and_hold" in cfg.benchmarks:
        bh = load_spec({"name": "buy_and_hold", "rules": [{"id": "Long", "when": "true", "action": "entry",
                                                            "direction": "long"}]})
        out["buy_and_hold"] = {"label": "buy and hold", "returns": ev.run(bh, None, start=w.proposal_end,
                                                                           metrics=["net_profit"]).returns}
    if "shipped" in cfg.benchmarks:
        for path in sorted(CONF_DIR.glob("*.yaml")):
            spec = load_builtin(path.stem)
            if spec.uses_model():
                continue
            out[f"shipped:{path.stem}"] = {"label": f"shipped {path.stem}",
                                           "returns": ev.run(spec, None, start=w.proposal_end,
                                                             metrics=["net_profit"]).returns}
    for v in out.values():
        v["returns"] = _fit(np.asarray(v["returns"], dtype=np.float64), n)
    return out


def _unit(r: np.ndarray) -> np.ndarray:
    sd = float(np.std(r))
    return r / sd if sd > 0 else r


def _fit(r: np.ndarray, n: int) -> np.ndarray:
    r = np.nan_to_num(r[:n], nan=0.0)
    return np.concatenate([r, np.zeros(n - len(r))]) if len(r) < n else r


def _gates(c: Candidate, ev: Any, bench: dict, cfg: FunnelConfig, eff: int, ledger: Any) -> None:
    gates = _core("gates")
    from aio.optimize.dsr import deflated_sharpe, return_moments

    acc = cfg.accept
    r = _fit(np.asarray(c.oos_returns, dtype=np.float64), len(next(iter(bench.values()))["returns"])) \
        if bench else np.asarray(c.oos_returns)
    trades = int(c.oos.get("trade_count") or 0)
    mom = return_moments(r)
    # The spread of Sharpe ratios among skill-less trials: the null sampling variance 1/T of
    # a Sharpe estimate over these bars. (The trials' own cross-sectional variance would count
    # real skill among them as luck and deflate a true edge to nothing.)
    var_sr = 1.0 / max(mom["n_obs"], 1)
    d = deflated_sharpe(mom["sr"], mom["n_obs"], mom["skew"], mom["kurtosis"], max(eff, 1), var_sr)
    c.gates["dsr"] = d["dsr"]
    c.gates["sr0"] = d["sr0"]
    c.gates["effective_trials"] = eff
    # PBO: the candidate's parameter trials, each over the whole discovery window
    cols = []
    for prm in c.meta.pop("pbo_params", []):
        cols.append(ev.run(c.parsed, prm, start=0, metrics=["net_profit"]).returns)
    if len(cols) >= 2:
        m = np.column_stack([_fit(np.asarray(x, dtype=np.float64), len(cols[0])) for x in cols])
        c.gates["pbo"] = float(gates.pbo_cscv(m, n_splits=cfg.pbo_splits)["pbo"])
    else:
        c.gates["pbo"] = None
        c.reason = "too few distinct parameter trials for PBO"
    if bench:
        # At equal risk: a rule in the market a tenth of the time is not asked to out-earn one
        # always in it at the same lot, so each series is scaled to unit OOS volatility (SPA
        # then compares per-bar Sharpe ratios).
        b = np.column_stack([_unit(v["returns"]) for v in bench.values()])
        spa = gates.spa_test(_unit(r), b, reps=cfg.spa_reps, seed=0)
        c.gates["spa_p"] = float(spa["p_consistent"])
        per = spa.get("per_benchmark")
        if per is not None and len(per) == len(bench):
            c.gates["spa_by_benchmark"] = {k: float(v) for k, v in zip(bench, per)}
    else:
        c.gates["spa_p"] = None
    c.passed = {
        "trades": trades >= acc.min_trades,
        "dsr": _num(c.gates["dsr"]) >= acc.dsr,
        "pbo": c.gates["pbo"] is not None and c.gates["pbo"] <= acc.pbo,
        "spa": c.gates["spa_p"] is not None and c.gates["spa_p"] <= acc.spa_p,
    }


# -- ledger adapters (aio.discover.ledger) ----------------------------------------------


def open_ledger(path: Any) -> Any:
    return _core("ledger").Ledger(path)


def _record(ledger: Any, c: Candidate, kind: str, params: Mapping[str, Any], returns: Any, figures: Mapping[str, Any]) -> None:
    ledger.record(candidate_id=c.id, proposer=c.proposer, kind=kind, rule=c.structure, params=dict(params),
                  returns=None if returns is None else np.asarray(returns, dtype=np.float64), **dict(figures))


def _effective(ledger: Any, live: list[Candidate]) -> int:
    distinct = len({c.structure for c in live if c.status in ("screened", "tuned")})
    return max(int(ledger.effective_trials()), distinct)


def _ledger_size(ledger: Any) -> int:
    return int(len(ledger))



class _Evaluation:
    def __init__(self, result: Any, metrics: dict[str, Any]) -> None:
        from aio.backtest.metrics import bar_returns

        self.result, self.metrics = result, metrics
        self.returns = bar_returns(result.equity_values, float(result.config.initial_capital))


class _InterimEvaluator:
    """INTERIM: the Evaluator's API over run_backtest + metrics until it lands on main."""

    def __init__(self, frame: Any, bt: Any) -> None:
        from aio.backtest import bar_arrays
        from aio.strategy import SeriesCache

        self.frame, self.bt = frame, bt
        self.arrays = {c: np.ascontiguousarray(frame.get_column(c).to_numpy(), dtype=np.float64)
                       for c in ("open", "high", "low", "close", "volume")}
        self.cache = SeriesCache()
        self._bars = bar_arrays(frame)

    def signals(self, spec: Any, params: Any = None) -> Any:
        from aio.strategy import signals

        return signals(spec, self.arrays, params, cache=self.cache)

    def run(self, spec: Any, params: Any = None, start: int = 0, end: int | None = None, metrics: Any = "full") -> Any:
        return self.run_signals(self.signals(spec, params), start, end, metrics)

    def run_signals(self, sig: Any, start: int = 0, end: int | None = None, metrics: Any = "full") -> Any:
        from aio.backtest import run_backtest
        from aio.backtest.metrics import compute_metrics
        from aio.optimize.fastmetrics import metrics_for
        from aio.optimize.signals_ops import slice_signals

        end = self.frame.height if end is None else end
        s = slice_signals(sig, start, end)
        res = run_backtest({k: v[start:end] for k, v in self._bars.items()}, s, self.bt)
        m = dict(compute_metrics(res)) if metrics == "full" else metrics_for(res, list(metrics))
        return _Evaluation(res, m)
