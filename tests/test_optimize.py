"""The optimiser end to end on small synthetic bars: walk-forward studies, exact totals
when resuming and with two worker processes, grid = brute force, reports."""

from __future__ import annotations

import json
import socket

import numpy as np
import polars as pl
import pytest
from optuna.trial import TrialState

from aio.config import build
from aio.optimize.config import OptimizeConfig
from aio.optimize.evaluate import Context
from aio.optimize.objectives import OBJECTIVES
from aio.optimize.run import optimize_bars, resolve_objectives
from aio.optimize.space import search_space
from aio.optimize.storage import WORKER_ATTR, parse_storage
from aio.optimize.study import run_study
from aio.optimize.walkforward import Window
from aio.strategy import load_builtin, load_spec

OBJ = {o.name: o for o in OBJECTIVES}


def synthetic_bars(n: int = 3000, seed: int = 1) -> pl.DataFrame:
    """A seeded random walk of M1 bars (BAR_SCHEMA) with some trend regimes."""
    rng = np.random.default_rng(seed)
    drift = np.repeat(rng.normal(0, 1.5e-5, n // 200 + 1), 200)[:n]
    close = 1.10 * np.exp(np.cumsum(drift + rng.normal(0, 1.5e-4, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0, 8e-5, n))
    ts = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 60_000_000_000
    return pl.DataFrame({
        "ts_event": ts, "ts_init": ts + 60_000_000_000, "open": open_, "high": np.maximum(open_, close) + wick,
        "low": np.minimum(open_, close) - wick, "close": close, "volume": np.full(n, 100.0),
        "ticks": np.full(n, 60, dtype=np.int64), "spread_mean": np.full(n, 1e-5),
    })


def make_ctx(frame: pl.DataFrame, strategy: str = "sma_cross", sizer=None, **opt) -> Context:
    from aio.backtest import BacktestConfig

    section = {"name": "tpe", "objective": "net_profit", "n_trials": 10, "min_trades": 2, "pruner": "none",
               "n_startup_trials": 4, "walk_forward": {"folds": 0, "cv_blocks": 1}, **opt}
    cfg = build(OptimizeConfig, section, "optimize")
    spec = load_builtin(strategy)
    space = search_space(spec, cfg.params, cfg.space)
    bt = BacktestConfig(initial_capital=100_000.0, qty=10_000.0, commission=0.002, slippage_ticks=1)
    from aio.backtest.evaluator import Evaluator

    return Context(ev=Evaluator(frame, bt, sizer=sizer), spec=spec, objectives=resolve_objectives(cfg),
                   cfg=cfg, space=space, fixed={k: v for k, v in spec.params.items() if k not in space})


SMALL = {"fast": {"low": 3, "high": 12}, "slow": {"low": 15, "high": 60}}


def test_walk_forward_study_oos_matches_an_independent_backtest(tmp_path):
    from aio.backtest import run_backtest
    from aio.backtest.metrics import compute_metrics
    from aio.optimize.report import write_reports
    from aio.records import Bars
    from aio.strategy import signals

    frame = synthetic_bars(3000)
    ctx = make_ctx(frame, n_trials=12, objective="sharpe", space=SMALL, pruner="median",
                   walk_forward={"folds": 2, "scheme": "rolling", "oos_fraction": 0.4, "cv_blocks": 2})
    res = optimize_bars(ctx, parse_storage(None), "wf", seed=3)
    assert len(res.folds) == 2
    arrays = {c: frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    for fr in res.folds:
        assert fr.fold.is_.end <= fr.fold.oos.start
        p = fr.best_params
        assert 3 <= p["fast"] <= 12 and 15 <= p["slow"] <= 60
        assert len([t for t in fr.study.trials if t.state != TrialState.WAITING]) == 12
        # OOS objective recomputed here: rules on all bars, cut to the OOS window, simulated.
        sig = signals(ctx.spec, arrays, p)
        w = fr.fold.oos
        from aio.backtest.signals import slice_signals

        sub = frame.slice(w.start, len(w))
        bars = Bars(frame=sub, symbol="", timeframe="1m")
        m = compute_metrics(run_backtest(bars, slice_signals(sig, w.start, w.end), ctx.bt), bars)
        assert fr.row["oos_sharpe"] == pytest.approx(m["sharpe"], nan_ok=True)
        assert fr.row["oos_trades"] == m["trade_count"]
        assert 0.0 <= fr.dsr["dsr"] <= 1.0
    s = res.summary
    assert s["best_params"] == res.folds[-1].best_params
    assert s["oos"]["trade_count"] >= 1 and res.oos_equity.height == 3000 - res.folds[0].fold.oos.start
    files = write_reports(res, ctx, tmp_path / "optimize", plots=True)
    trials = pl.read_csv(files["trials"])
    assert trials.height == 24 and set(trials["fold"].to_list()) == {1, 2}
    assert {"param.fast", "param.slow", "value.sharpe", "state"} <= set(trials.columns)
    assert pl.read_csv(files["folds"]).height == 2
    assert json.loads(files["best_params"].read_text()) == s["best_params"]
    assert (tmp_path / "optimize" / "history.html").is_file()


def test_grid_finds_the_brute_force_optimum():
    from aio.backtest import run_backtest
    from aio.backtest.metrics import compute_metrics
    from aio.records import Bars
    from aio.strategy import signals

    frame = synthetic_bars(2000, seed=4)
    space = {"fast": {"low": 4, "high": 12, "step": 4}, "slow": {"low": 10, "high": 40, "step": 10}}
    ctx = make_ctx(frame, name="grid", n_trials=1000, space=space, constraints=["fast < slow"])
    res = optimize_bars(ctx, parse_storage(None), "grid", seed=0)
    study = res.folds[0].study
    assert len(study.trials) == 11  # 3 x 4 less (12, 10), infeasible
    arrays = {c: frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    bars = Bars(frame=frame, symbol="", timeframe="1m")
    brute = {}
    for f in (4, 8, 12):
        for s in (10, 20, 30, 40):
            if f >= s:
                continue
            m = compute_metrics(run_backtest(bars, signals(ctx.spec, arrays, {"fast": f, "slow": s}), ctx.bt), bars)
            brute[(f, s)] = m["net_profit"]
    best = max(brute, key=brute.get)
    assert (res.best_params["fast"], res.best_params["slow"]) == best
    assert study.best_value == pytest.approx(brute[best])


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_resume_tops_up_to_exactly_n_trials(tmp_path, kind):
    frame = synthetic_bars(1500)
    url = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else f"{tmp_path}/s.journal"
    spec = parse_storage(url)
    w = Window(0, frame.height)
    run_study(make_ctx(frame, space=SMALL, n_trials=4), w, "eu14", spec, 4, seed=1)
    # A worker killed mid-trial leaves a RUNNING trial behind: a dead process on this machine.
    st = run_study(make_ctx(frame, space=SMALL, n_trials=4), w, "eu14", spec, 4, seed=1)  # already complete
    assert len(st.trials) == 4
    t = st.ask()
    st._storage.set_trial_system_attr(t._trial_id, WORKER_ATTR, f"{socket.gethostname()}:999999999:1.0")
    st = run_study(make_ctx(frame, space=SMALL, n_trials=9), w, "eu14", spec, 9, seed=1)
    states = [t.state for t in st.trials]
    assert len(states) == 9 and states.count(TrialState.RUNNING) == 0
    assert states.count(TrialState.FAIL) == 1  # the interrupted one, counted
    assert sorted(t.number for t in st.trials) == list(range(9))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_worker_processes_share_one_study(tmp_path, kind):
    frame = synthetic_bars(1500)
    url = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else f"{tmp_path}/s.journal"
    spec = parse_storage(url)
    # grid: every point must be evaluated exactly once across both workers
    space = {"fast": {"low": 3, "high": 12, "step": 1}, "slow": {"low": 20, "high": 30, "step": 5}}
    ctx = make_ctx(frame, name="grid", n_trials=1000, space=space, n_workers=2)
    st = run_study(ctx, Window(0, frame.height), "two", spec, 1000, seed=1, n_workers=2)
    done = [t for t in st.trials if t.state != TrialState.WAITING]
    assert len(done) == 30 and all(t.state == TrialState.COMPLETE for t in done)
    assert len({(t.params["fast"], t.params["slow"]) for t in done}) == 30
    workers = {t.system_attrs[WORKER_ATTR] for t in done}
    assert len(workers) == 2  # both processes ran trials
    # tpe: no overshoot of the total with two workers
    ctx = make_ctx(frame, n_trials=14, space=SMALL, n_workers=2)
    st = run_study(ctx, Window(0, frame.height), "tpe2", spec, 14, seed=1, n_workers=2)
    assert len(st.trials) == 14 and sorted(t.number for t in st.trials) == list(range(14))


def test_nsga2_and_min_trades_rule():
    frame = synthetic_bars(1500)
    ctx = make_ctx(frame, name="nsga2", n_trials=8, space=SMALL, objectives=["net_profit", "max_drawdown"],
                   sampler_options={"population_size": 4})
    res = optimize_bars(ctx, parse_storage(None), "mo", seed=2)
    front = res.folds[0].study.best_trials
    assert res.folds[0].best_values in [t.values for t in front]
    assert [d.name for d in res.folds[0].study.directions] == ["MAXIMIZE", "MINIMIZE"]
    # nobody trades 10,000 times in 1500 bars: every trial is discarded, with the reason
    ctx = make_ctx(frame, name="random", n_trials=3, space=SMALL, min_trades=10_000)
    with pytest.raises(Exception, match="no trial completed"):
        optimize_bars(ctx, parse_storage(None), "few", seed=2)


def test_sized_trials_use_the_sizer():
    frame = synthetic_bars(1500)
    sizer = {"name": "vol_target", "risk_pct": 0.5, "limits": {"lot_step": 1000.0, "max_leverage": 20.0}}
    ctx = make_ctx(frame, name="cmaes", n_trials=5, space=SMALL, sizer=sizer)
    res = optimize_bars(ctx, parse_storage(None), "sized", seed=2)
    sig = ctx.signals(res.best_params)
    result, m, _ = ctx.backtest(sig, Window(0, frame.height))
    qty = result.trades["qty"].to_numpy()
    assert len(qty) and np.all(qty % 1000.0 == 0) and len(set(qty)) > 1
    assert res.folds[0].study.best_value == pytest.approx(m["net_profit"])


def test_shared_indicator_cache_never_serves_a_stale_series():
    """tv_macd's EMA of MACD reads fastLength/slowlength through MACD: trials that share
    MACDLength must still get their own series (cached values = uncached values)."""
    from aio.strategy import SeriesCache, series_env

    frame = synthetic_bars(800)
    spec = load_builtin("tv_macd")
    arrays = {c: frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    cache = SeriesCache()
    for fast, slow in [(5, 20), (10, 40), (5, 30)]:
        p = {"fastLength": fast, "slowlength": slow, "MACDLength": 9}
        cached = series_env(spec, arrays, p, cache=cache)["delta"]
        fresh = series_env(spec, arrays, p)["delta"]
        np.testing.assert_array_equal(cached, fresh)


def test_trial_metrics_equal_the_full_metrics():
    from aio.backtest import run_backtest
    from aio.backtest.metrics import compute_metrics
    from aio.backtest.metrics import METRICS

    frame = synthetic_bars(1500)
    ctx = make_ctx(frame, space=SMALL)
    sig = ctx.signals({"fast": 5, "slow": 30})
    res = run_backtest(frame, sig, ctx.bt)
    full = compute_metrics(res)
    fast = compute_metrics(res, keys=list(METRICS))
    assert full["trade_count"] > 5
    for k in METRICS:
        assert fast[k] == pytest.approx(full[k], nan_ok=True), k
    # the trial path (cached bar arrays, sliced window) gives the same numbers as a plain run
    w = Window(200, 1200)
    r2, m2 = ctx.trial_backtest(sig, w)
    _, m3, _ = ctx.backtest(sig, w)
    for k in m2:
        assert m2[k] == pytest.approx(m3[k], nan_ok=True), k


def test_the_strategys_own_constraints_bound_every_search():
    """sma_cross declares fast < slow: no trial may test a fast average longer than the slow one."""
    frame = synthetic_bars(1500, seed=2)
    space = {"fast": {"low": 2, "high": 40}, "slow": {"low": 5, "high": 40}}
    ctx = make_ctx(frame, n_trials=25, space=space)
    assert ctx.constraints == ["fast < slow"] and ctx.cfg.constraints == []
    res = optimize_bars(ctx, parse_storage(None), "own-constraints", seed=3)
    trials = [t for t in res.folds[0].study.trials if t.state.name == "COMPLETE"]
    assert trials and all(t.params["fast"] < t.params["slow"] for t in trials)
    from aio.errors import ConfigError

    with pytest.raises(ConfigError, match="requires fast < slow but the parameters are fast=30, slow=20"):
        load_builtin("sma_cross", fast=30, slow=20)
    with pytest.raises(ConfigError, match="not parameters of sma_cross"):
        load_spec({**_plain("sma_cross"), "constraints": ["fast < lenght"]})


def _plain(name: str) -> dict:
    import yaml

    from aio.strategy import CONF_DIR

    return yaml.safe_load((CONF_DIR / f"{name}.yaml").read_text())
