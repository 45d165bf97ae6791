"""Walk-forward studies shared through a real PostgreSQL server (the multi-machine recipe of
docs/optimize.md): worker processes run the same optimiser on the same study names, one is
killed mid-trial, and every fold study still ends at exactly n_trials.

The server is started by tests/_postgres_server.py (initdb in a temporary folder, 127.0.0.1,
a free port). Markers are files and database state, never guessed sleeps.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import polars as pl
import psycopg
import pytest
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).parent))
from _postgres_server import postgres_server  # noqa: E402,F401  (the session fixture)

from aio.config import build  # noqa: E402
from aio.optimize.config import OptimizeConfig  # noqa: E402
from aio.optimize.evaluate import Context  # noqa: E402
from aio.optimize.run import optimize_bars, resolve_objectives  # noqa: E402
from aio.optimize.space import search_space  # noqa: E402
from aio.optimize.storage import (  # noqa: E402
    HEARTBEAT_ATTR, PG_LOCKS_TAKEN, STALE_ATTR, SURPLUS_ATTR, WORKER_ATTR, advisory_key, claim_lock, parse_storage,
)
from aio.optimize.study import run_study  # noqa: E402
from aio.optimize.walkforward import Window  # noqa: E402
from aio.strategy import load_builtin  # noqa: E402

N_TRIALS, FOLDS = 10, 2
SPACE = {"fast": {"low": 3, "high": 12}, "slow": {"low": 15, "high": 60}}
DEADLINE_S = 240


def synthetic_bars(n: int = 1500, seed: int = 1) -> pl.DataFrame:
    """The optimiser tests' seeded random walk of M1 bars (synthetic), shorter."""
    from test_optimize import synthetic_bars as bars

    return bars(n, seed)


def make_ctx(url: str, **opt) -> Context:
    from aio.backtest import BacktestConfig

    section = {"name": "tpe", "objective": "net_profit", "n_trials": N_TRIALS, "min_trades": 2, "pruner": "none",
               "n_startup_trials": 4, "storage": url, "heartbeat_s": 1, "space": SPACE,
               "walk_forward": {"folds": FOLDS, "cv_blocks": 1}, **opt}
    cfg = build(OptimizeConfig, section, "optimize")
    spec = load_builtin("sma_cross")
    space = search_space(spec, cfg.params, cfg.space)
    bt = BacktestConfig(initial_capital=100_000.0, qty=10_000.0, commission=0.002, slippage_ticks=1)
    from aio.backtest.evaluator import Evaluator

    return Context(ev=Evaluator(synthetic_bars(), bt), spec=spec, objectives=resolve_objectives(cfg), cfg=cfg,
                   space=space, fixed={k: v for k, v in spec.params.items() if k not in space})


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)  # readers see the whole file or none


def _worker(url: str, base: str, role: str, seed: int, out: str) -> None:
    """One machine of the recipe: the optimiser's walk-forward over every fold study."""
    out_dir = Path(out)
    if role == "victim":
        import threading

        import aio.optimize.study as study_mod

        def hang(ctx, params, window, trial=None):
            # Fault injection: say which trial runs, then never finish it (SIGKILL ends it).
            _write_json(out_dir / "victim.running", {"study": trial.study.study_name, "number": trial.number,
                                                     "pid": os.getpid()})
            threading.Event().wait()

        study_mod.evaluate_window = hang
    ctx = make_ctx(url)
    res = optimize_bars(ctx, parse_storage(url), base, seed)
    _write_json(out_dir / f"{role}.json", {
        "best_params": res.best_params,
        "folds": [{k: v for k, v in r.row.items()} for r in res.folds],
        "locks_taken": dict(PG_LOCKS_TAKEN),
        "pid": os.getpid(),
    })


def _wait_for(what: str, check, procs=(), timeout: float = DEADLINE_S):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = check()
        if value:
            return value
        dead = [p.name for p in procs if p.exitcode is not None]
        assert not dead, f"waiting for {what}: worker(s) {dead} exited early"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _waiting_on_lock(dsn: str, key: int) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %s "
            "AND NOT granted", (key,)).fetchone()[0]


def test_postgres_url_uses_psycopg3():
    assert parse_storage("postgresql://u@h:5/db").url == "postgresql+psycopg://u@h:5/db"
    assert parse_storage("postgres://u@h/db").url == "postgresql+psycopg://u@h/db"
    assert parse_storage("postgresql+psycopg://u:secret@h/db").label == "postgresql+psycopg://u:***@h/db"


@pytest.mark.slow
def test_two_worker_processes_on_postgres_reach_exactly_n_trials(postgres_server):
    url = postgres_server.url("aio_two")
    spec = parse_storage(url)
    ctx = make_ctx(url, n_trials=12, n_workers=2, walk_forward={"folds": 0})
    frame = ctx.frame
    st = run_study(ctx, Window(0, frame.height), "two", spec, 12, seed=1, n_workers=2)
    assert sorted(t.number for t in st.trials) == list(range(12))
    assert all(t.state == TrialState.COMPLETE for t in st.trials)
    assert len({t.system_attrs[WORKER_ATTR] for t in st.trials}) == 2  # both processes ran trials
    assert PG_LOCKS_TAKEN["two"] >= 7  # this process claimed its trials under the advisory lock
    # resumed with a higher total: tops up to exactly that
    st = run_study(make_ctx(url, n_trials=15), Window(0, frame.height), "two", spec, 15, seed=2)
    assert sorted(t.number for t in st.trials) == list(range(15))


@pytest.mark.slow
def test_three_workers_share_a_walk_forward_study_and_one_is_killed_mid_trial(postgres_server, tmp_path):
    url = postgres_server.url("aio_wf")
    spec = parse_storage(url)
    base = "sma_cross.pg"
    names = [f"{base}.wf{k + 1}of{FOLDS}" for k in range(FOLDS)]
    ctx = mp.get_context("spawn")
    started: list = []

    def start(role: str, seed: int):
        p = ctx.Process(target=_worker, args=(url, base, role, seed, str(tmp_path)), name=role)
        p.start()
        started.append(p)
        return p

    try:
        _kill_one_of_three(url, spec, base, names, start, postgres_server, tmp_path)
    finally:
        for p in started:  # a failed check must not leave workers behind
            if p.is_alive():
                p.kill()
                p.join(10)


def _kill_one_of_three(url, spec, base, names, start, postgres_server, tmp_path) -> None:
    victim = start("victim", 11)
    running = _wait_for("the victim's trial to run", lambda: (tmp_path / "victim.running").exists() and
                        json.loads((tmp_path / "victim.running").read_text()), [victim])
    assert running["study"] == names[0] and running["number"] == 0

    # The advisory lock: while this process holds fold 1's lock, the two new workers queue on it
    # in pg_locks and no trial can be claimed.
    with claim_lock(spec, names[0]):
        survivors = [start("a", 21), start("b", 31)]
        _wait_for("two workers waiting on the advisory lock",
                  lambda: _waiting_on_lock(postgres_server.dsn("aio_wf"), advisory_key(names[0])) == 2, survivors)
        study = optuna.load_study(study_name=names[0], storage=url)
        assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.RUNNING]

    def completed() -> bool:
        return len(optuna.load_study(study_name=names[0], storage=url).get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,))) >= 2

    _wait_for("the other workers to complete trials next to the running one", completed, survivors)
    os.kill(victim.pid, signal.SIGKILL)  # mid-trial: its trial is still RUNNING
    victim.join(30)
    assert victim.exitcode == -signal.SIGKILL

    for p in survivors:
        p.join(DEADLINE_S)
    assert [p.exitcode for p in survivors] == [0, 0], "a surviving worker failed; see its log above"

    for name in names:
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        states = [t.state for t in trials]
        assert sorted(t.number for t in trials) == list(range(N_TRIALS)), name
        assert all(s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for s in states), name
        assert not any(t.system_attrs.get(SURPLUS_ATTR) for t in trials)  # the lock made overshoot impossible
        assert len({t.system_attrs[WORKER_ATTR] for t in trials}) >= 2, f"{name}: one worker did all trials"
    study = optuna.load_study(study_name=names[0], storage=url)
    killed = study.trials[0]
    assert killed.state == TrialState.FAIL and not killed.system_attrs.get(STALE_ATTR)
    assert f":{running['pid']}:" in killed.system_attrs[WORKER_ATTR]
    # failed by Optuna's heartbeat check (its callback), not by this machine's process check
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert attrs[f"{HEARTBEAT_ATTR}.0"] == killed.system_attrs[WORKER_ATTR]
    fails = [t.number for n in names for t in optuna.load_study(study_name=n, storage=url).trials
             if t.state == TrialState.FAIL]
    assert fails == [0]  # only the killed trial failed; it counts toward n_trials as the code counts fails

    a, b = (json.loads((tmp_path / f"{r}.json").read_text()) for r in ("a", "b"))
    # Every machine reads the same finished studies, so every machine reports the same result.
    assert a["folds"] == b["folds"] and a["best_params"] == b["best_params"]
    assert [f["trials"] for f in a["folds"]] == [N_TRIALS] * FOLDS
    assert [f["failed"] for f in a["folds"]] == [1, 0]
    for r in (a, b):
        assert all(r["locks_taken"].get(n, 0) >= 2 for n in names), r["locks_taken"]


def _pausing_worker(url: str, out: str) -> None:
    """Runs one study; its first trial says so, then waits for the test's go-ahead file."""
    import aio.optimize.study as study_mod

    out_dir, real = Path(out), study_mod.evaluate_window

    def first_waits(ctx, params, window, trial=None):
        if trial is not None and trial.number == 0:
            _write_json(out_dir / "paused.running", {"pid": os.getpid()})
            while not (out_dir / "go").exists():
                time.sleep(0.02)
        return real(ctx, params, window, trial)

    study_mod.evaluate_window = first_waits
    ctx = make_ctx(url, n_trials=4, walk_forward={"folds": 0})
    run_study(ctx, Window(0, ctx.frame.height), "paused", parse_storage(url), 4, seed=1)


@pytest.mark.slow
def test_a_worker_paused_past_its_heartbeat_drops_its_trial_and_goes_on(postgres_server, tmp_path):
    """SIGSTOP mid-trial (a swapped-out or suspended machine): its heartbeat stops, another
    worker fails the trial; resumed, the worker drops that result and the total stays exact."""
    from aio.optimize.storage import fail_stale, open_storage

    url = postgres_server.url("aio_pause")
    spec = parse_storage(url)
    p = mp.get_context("spawn").Process(target=_pausing_worker, args=(url, str(tmp_path)))
    p.start()
    try:
        info = _wait_for("the first trial to run", lambda: (tmp_path / "paused.running").exists() and
                         json.loads((tmp_path / "paused.running").read_text()), [p])
        os.kill(info["pid"], signal.SIGSTOP)
        study = optuna.load_study(study_name="paused", storage=open_storage(spec, 1))

        def failed() -> bool:
            with claim_lock(spec, "paused"):  # what any other worker does before it claims a trial
                fail_stale(study)
            return study._storage.get_trial(study.trials[0]._trial_id).state == TrialState.FAIL

        _wait_for("the paused trial to be failed by heartbeat", failed, timeout=60)
        (tmp_path / "go").touch()
        os.kill(info["pid"], signal.SIGCONT)
        p.join(DEADLINE_S)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            os.kill(p.pid, signal.SIGCONT)
            p.kill()
    trials = optuna.load_study(study_name="paused", storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert "trades" not in trials[0].user_attrs  # the late result was dropped, not written into a failed trial
