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
    dsr_period: int = param(60, ge=1, help="bars summed into one period for DSR/SPA (bar returns are mostly zero)")


@dataclass(frozen=True)
class Windows:
    n: int
    proposal_end: int
    discovery_end: int
    holdout_start: int
    split: Any = None  # aio.discover.holdout.HoldoutSplit

    def as_dict(self) -> dict[str, int]:
        return {"bars": self.n, "proposal_end": self.proposal_end, "discovery_end": self.discovery_end,
                "holdout_start": self.holdout_start}


def make_windows(n: int, holdout_pct: float, embargo: int, tune: TuneConfig) -> Windows:
    from aio.discover.holdout import split_holdout
    from aio.optimize.walkforward import make_folds

    sp = split_holdout(n, holdout_pct, embargo, min_discovery_bars=200, min_holdout_bars=50)
    folds = make_folds(sp.discovery_stop, tune.folds, "anchored", tune.oos_fraction, None, 0, 50)
    return Windows(n, folds[0].oos.start, sp.discovery_stop, sp.holdout_start, sp)


# -- the one evaluation path ------------------------------------------------------------


def evaluator(frame: Any, bt: Any, symbol: str | None = None, timeframe: str = "1m", rates: Any = None) -> Any:
    """The project's one Evaluator over ``frame`` (fixed sizing: candidates are compared
    at the backtest's own order size)."""
    from aio.backtest.evaluator import Evaluator

    return Evaluator(frame, bt, symbol=symbol or None, timeframe=timeframe, rates=rates)


def tune(ev: Any, spec: Any, cfg: TuneConfig, seed: int, name: str) -> Any:
    """Walk-forward parameter search with the project's optimiser on ``ev``'s bars:
    a study per fold on its in-sample bars, stitched out-of-sample result, costs in."""
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
    ctx = Context(ev=ev, spec=spec, objectives=resolve_objectives(ocfg), cfg=ocfg, space=space, fixed=fixed)
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
    symbol: str | None = None,
    timeframe: str = "1m",
    rates: Any = None,
    ev: Any = None,
    progress: bool = True,
) -> FunnelResult:
    """Every candidate through parse -> screen -> tune -> gates -> holdout (see the module doc).

    ``ev``: an Evaluator over exactly the discovery bars (``frame[:windows.discovery_end]``),
    reused when the proposers already warmed its indicator cache.
    """
    t0 = time.perf_counter()
    counts = {"proposed": len(cands)}
    parse_candidates(cands, grammar_cfg)
    live = [c for c in cands if c.status == "parsed"]
    counts["parsed"] = sum(c.status != "invalid" for c in cands)
    counts["unique"] = len(live)
    # Everything up to the holdout sees only these bars.
    if ev is None:
        cut = None if rates is None else (rates[0][: windows.discovery_end], rates[1][: windows.discovery_end])
        ev = evaluator(frame.slice(0, windows.discovery_end), bt, symbol, timeframe, cut)
    if ev.n != windows.discovery_end:
        raise AioError(f"the funnel's evaluator holds {ev.n} bars; the discovery window is {windows.discovery_end}")
    win = {"proposal": [0, windows.proposal_end], "oos": [windows.proposal_end, windows.discovery_end],
           "bars": windows.n}
    _screen(live, ev, windows, ledger, win, progress)
    counts["screened"] = sum(c.status == "screened" for c in live)
    chosen = _choose(live, cfg)
    bench = _benchmarks(ev, windows, cfg)
    _tune_all(chosen, ev, cfg, windows, ledger, win, seed, progress)
    tested = [c for c in chosen if c.status == "tuned"]
    counts["tested"] = len(tested)
    eff = ledger.effective_trials("is", period=cfg.dsr_period) if tested else None
    for c in tested:
        _gates(c, ev, bench, cfg, eff.n_eff)
    for g in GATES:
        counts[f"passed_{g}"] = sum(bool(c.passed.get(g)) for c in tested)
    for c in tested:
        if all(c.passed.get(g) for g in GATES):
            c.status = "accepted"
        else:
            c.status = "rejected"
            c.reason = "failed " + ", ".join(g for g in GATES if not c.passed.get(g))
    accepted = [c for c in tested if c.accepted]
    if accepted:
        from aio.discover.holdout import HoldoutGuard

        full = evaluator(frame, bt, symbol, timeframe, rates)
        guard = HoldoutGuard(ledger, windows.split)
        for c in accepted:  # exactly once each (the guard refuses a second look), on bars nothing above saw
            e = guard.evaluate(c.id, lambda sl, c=c: full.run(c.parsed, c.params, start=sl.start, end=sl.stop))
            c.holdout = {k: e.metrics.get(k) for k in HOLDOUT_KEYS}
            c.holdout["warnings"] = list(e.metrics.get("warnings") or [])
            c.holdout["entries"] = _entry_bars(e.result, windows.holdout_start)
    counts["accepted"] = len(accepted)
    counts["holdout_positive"] = sum(_num((c.holdout or {}).get("net_profit")) > 0 for c in accepted)
    led = {"trials": ledger.n_trials, "distinct_rules": ledger.n_distinct_rules,
           "effective_trials": None if eff is None else eff.summary(),
           "path": str(getattr(ledger, "path", ""))}
    return FunnelResult(cands, counts, windows, led, {k: v["label"] for k, v in bench.items()},
                        round(time.perf_counter() - t0, 3))


GATES = ("trades", "dsr", "pbo", "spa")
HOLDOUT_KEYS = ("net_profit", "return_pct", "sharpe", "max_drawdown", "trade_count", "win_rate_pct", "profit_factor")
OOS_KEYS = HOLDOUT_KEYS


def _entry_bars(result: Any, offset: int) -> list[int]:
    """Bar index (of the whole frame) of each trade's entry decision (the bar before its fill)."""
    tr = result.trades
    if "entry_bar" not in tr.columns:
        return []
    return [int(b) - 1 + offset for b in tr.get_column("entry_bar").to_list()]


def _bar(total: int, what: str, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not enabled,
                    transient=True)


def _screen(live: list[Candidate], ev: Any, w: Windows, ledger: Any, win: dict, progress: bool) -> None:
    from aio.discover.ledger import TrialRecord

    keys = ["net_profit", "sharpe", "trade_count"]
    recs = []
    with _bar(len(live), "discover: screen", progress) as p:
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
            recs.append(TrialRecord(c.id, c.structure, dict(c.parsed.params), c.proposer, win, "candidate",
                                    is_returns=e.returns, metrics=c.screen))
            p.advance(task)
    ledger.record_many(recs)


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


def _tune_all(chosen: list[Candidate], ev: Any, cfg: FunnelConfig, w: Windows, ledger: Any, win: dict, seed: int,
              progress: bool) -> None:
    import optuna

    from aio.discover.ledger import TrialRecord

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _bar(len(chosen), "discover: tune", progress) as p:
        task = p.add_task("tune", total=len(chosen))
        for c in chosen:
            try:
                res = tune(ev, c.parsed, cfg.tune, seed, f"discover-{c.id}")
            except (AioError, ValueError) as exc:
                c.status, c.reason = "rejected", f"tuning: {str(exc).splitlines()[0][:200]}"
                p.advance(task)
                continue
            trials, recs = [], []
            for fr in res.folds:
                for t in fr.study.trials:
                    if t.state.name != "COMPLETE":
                        continue
                    prm = {**c.parsed.params, **fr.best_params, **t.params}
                    trials.append((prm, t.values[0]))
                    # every trial on the same bars (the proposal window), so the ledger can
                    # correlate them: the effective number of trials comes from that
                    r = ev.run(c.parsed, prm, start=0, end=w.proposal_end, metrics=["net_profit"]).returns
                    recs.append(TrialRecord(c.id, c.structure, prm, c.proposer, {**win, "fold": fr.fold.index},
                                            "trial", is_returns=r,
                                            metrics={"value": t.values[0], "sr_bar": t.user_attrs.get("sr_bar"),
                                                     "trades": t.user_attrs.get("trades")}))
            ledger.record_many(recs)
            c.trials = len(trials)
            c.params = dict(res.best_params)
            oos = res.oos
            if oos is None:
                c.status, c.reason = "rejected", "tuning gave no out-of-sample run"
                p.advance(task)
                continue
            c.oos = {k: oos.metrics.get(k) for k in OOS_KEYS}
            c.oos["warnings"] = list(oos.metrics.get("warnings") or [])
            c.oos_returns = np.asarray(oos.returns, dtype=np.float64)
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
    from aio.strategy import CONF_DIR, load_builtin, load_spec

    out: dict[str, dict[str, Any]] = {}
    n = w.discovery_end - w.proposal_end
    if "flat" in cfg.benchmarks:
        out["flat"] = {"label": "flat (no position)", "returns": np.zeros(n)}
    if "buy_and_hold" in cfg.benchmarks:
        bh = load_spec({"name": "buy_and_hold", "rules": [{"id": "Long", "when": "true", "action": "entry",
                                                            "direction": "long"}]})
        out["buy_and_hold"] = {"label": "buy and hold",
                               "returns": ev.run(bh, None, start=w.proposal_end, metrics=["net_profit"]).returns}
    if "shipped" in cfg.benchmarks:
        for path in sorted(CONF_DIR.glob("*.yaml")):
            spec = load_builtin(path.stem)
            if spec.uses_model():
                continue
            out[f"shipped:{path.stem}"] = {"label": f"shipped {path.stem} (its shipped parameters)",
                                           "returns": ev.run(spec, None, start=w.proposal_end,
                                                             metrics=["net_profit"]).returns}
    for v in out.values():
        v["returns"] = _fit(np.asarray(v["returns"], dtype=np.float64), n)
    return out


def _unit(r: np.ndarray) -> np.ndarray:
    sd = float(np.std(r))
    return r / sd if sd > 0 else r


def _fit(r: np.ndarray, n: int) -> np.ndarray:
    """``n`` values: a series stopped early (ruin) is flat afterwards."""
    r = np.nan_to_num(r[:n], nan=0.0)
    return np.concatenate([r, np.zeros(n - len(r))]) if len(r) < n else r


def _gates(c: Candidate, ev: Any, bench: dict, cfg: FunnelConfig, n_eff: int) -> None:
    from aio.discover import gates
    from aio.optimize.dsr import deflated_sharpe, return_moments

    acc = cfg.accept
    n = len(next(iter(bench.values()))["returns"]) if bench else len(c.oos_returns)
    r = _fit(np.asarray(c.oos_returns, dtype=np.float64), n)
    trades = int(c.oos.get("trade_count") or 0)
    # DSR of the stitched OOS returns (summed over dsr_period bars) after n_eff trials: the
    # ledger's effective number of independent trials, never below the distinct rules. The
    # spread of skill-less Sharpe ratios is their null sampling variance 1/T: the trials'
    # own spread would count the real skill among them (several rules catching one edge)
    # as luck and deflate a true edge to nothing.
    mo = return_moments(gates.aggregate(r, cfg.dsr_period))
    d = deflated_sharpe(mo["sr"], mo["n_obs"], mo["skew"], mo["kurtosis"], max(int(n_eff), 1),
                        1.0 / max(mo["n_obs"], 1))
    c.gates["dsr"] = d["dsr"]
    c.gates["sr0"] = d["sr0"]
    c.gates["effective_trials"] = int(n_eff)
    # PBO: the candidate's parameter trials, each over the whole discovery window
    cols = [ev.run(c.parsed, prm, start=0, metrics=["net_profit"]).returns for prm in c.meta.pop("pbo_params", [])]
    if len(cols) >= 2:
        m = np.column_stack([_fit(np.asarray(x, dtype=np.float64), ev.n) for x in cols])
        c.gates["pbo"] = float(gates.pbo_cscv(m, n_splits=cfg.pbo_splits).pbo)
    else:
        c.gates["pbo"] = None
        c.reason = "too few distinct parameter trials for PBO"
    # SPA at equal risk: a rule in the market a tenth of the time is not asked to out-earn
    # one always in it at the same lot, so each series is scaled to unit OOS volatility
    # (the test then compares per-bar Sharpe ratios); periods of dsr_period bars.
    b = {k: gates.aggregate(_unit(v["returns"]), cfg.dsr_period) for k, v in bench.items()}
    spa = gates.spa_test(gates.aggregate(_unit(r), cfg.dsr_period)[:, None], b, reps=cfg.spa_reps, seed=0)
    c.gates["spa_p"] = float(spa.spa_p)
    c.gates["spa_binding"] = spa.binding
    c.gates["spa_by_benchmark"] = {k: v["consistent"] for k, v in spa.per_benchmark.items()}
    c.passed = {
        "trades": trades >= acc.min_trades,
        "dsr": _num(c.gates["dsr"]) >= acc.dsr,
        "pbo": c.gates["pbo"] is not None and c.gates["pbo"] <= acc.pbo,
        "spa": c.gates["spa_p"] <= acc.spa_p,
    }


def open_ledger(path: Any) -> Any:
    from aio.discover.ledger import Ledger

    return Ledger(path)
