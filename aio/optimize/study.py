"""Running one Optuna study to an exact total of trials, with one or more worker
processes sharing its storage."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
import warnings
from typing import Any, Callable

import optuna
import structlog
from optuna.trial import TrialState

from aio.errors import AioError, ConfigError
from aio.optimize.evaluate import Context, Infeasible, evaluate_window
from aio.optimize.samplers import SAMPLERS
from aio.optimize.space import feasible, grid, suggest
from aio.optimize.storage import (
    SURPLUS_ATTR, WORKER_ATTR, StorageSpec, claim_lock, counted, fail_stale, heartbeat_enabled, is_surplus,
    open_storage, running_trials, worker_id,
)
from aio.optimize.walkforward import Window

log = structlog.get_logger(__name__)

GRID_ATTR = "aio_grid_size"
MAX_CONSECUTIVE_FAILS = 5


def directions(ctx: Context) -> list[str]:
    return [o.direction for o in ctx.objectives]


def make_pruner(ctx: Context) -> optuna.pruners.BasePruner:
    cfg = ctx.cfg
    n_blocks = cfg.walk_forward.cv_blocks
    if cfg.pruner == "none" or len(ctx.objectives) > 1 or n_blocks < 2:
        return optuna.pruners.NopPruner()
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(cfg.n_startup_trials, 1), n_warmup_steps=0)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=n_blocks, reduction_factor=3)


def objective_fn(ctx: Context, window: Window) -> Callable[[optuna.Trial], Any]:
    def fn(trial: optuna.Trial) -> Any:
        params = suggest(trial, ctx.space)
        if not feasible({**ctx.fixed, **params}, ctx.constraints):
            raise Infeasible(f"constraints {ctx.constraints} do not hold")
        out = evaluate_window(ctx, params, window, trial)
        trial.set_user_attr("trades", out.trades)
        trial.set_user_attr("sr_bar", out.sr)
        if len(out.block_values[0]) > 1:
            trial.set_user_attr("blocks", out.block_values[0])
        return out.values[0] if len(out.values) == 1 else out.values

    return fn


@contextlib.contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial):
    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:  # pragma: no cover
        yield
        return
    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield


def _tell(study: optuna.Study, trial: optuna.Trial, values: Any = None, state: TrialState | None = None) -> None:
    # A trial failed by heartbeat while its worker still ran (a long pause) is finished already:
    # its result is dropped, and the worker goes on with the next trial.
    if study._storage.get_trial(trial._trial_id).state.is_finished():
        log.warning("trial was failed while it ran (heartbeat missed); its result is dropped",
                    study=study.study_name, trial=trial.number)
        return
    study.tell(trial, values, state=state, skip_if_finished=True)


def _run_one(study: optuna.Study, trial: optuna.Trial, fn: Callable) -> TrialState:
    with _heartbeat(study, trial):
        try:
            values = fn(trial)
        except optuna.TrialPruned:
            _tell(study, trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
        except Infeasible as exc:
            trial.set_user_attr("infeasible", str(exc))
            _tell(study, trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial was failed while it ran (heartbeat missed); its result is dropped",
                        study=study.study_name, trial=trial.number)
            return TrialState.FAIL
        except (AioError, KeyboardInterrupt):
            _tell(study, trial, state=TrialState.FAIL)
            raise
        except Exception as exc:
            log.warning("trial failed", trial=trial.number, params=trial.params, error=repr(exc))
            trial.set_user_attr("error", repr(exc)[:500])
            _tell(study, trial, state=TrialState.FAIL)
            return TrialState.FAIL
    _tell(study, trial, values)
    return TrialState.COMPLETE


def _setup_grid(ctx: Context, study: optuna.Study, spec: StorageSpec) -> int:
    """Queue every feasible grid point once (whichever worker gets here first)."""
    with claim_lock(spec, study.study_name):
        attrs = study._storage.get_study_system_attrs(study._study_id)
        if GRID_ATTR in attrs:
            return int(attrs[GRID_ATTR])
        points = grid(ctx.space, ctx.constraints, ctx.fixed)
        if not points:
            raise ConfigError("optimize=grid: no grid point satisfies the constraints (strategy.constraints and optimize.constraints)")
        done = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)}
        for p in points:
            if tuple(sorted(p.items())) not in done:
                study.enqueue_trial(p)
        study._storage.set_study_system_attr(study._study_id, GRID_ATTR, len(points))
        return len(points)


def worker_loop(ctx: Context, window: Window, study_name: str, spec: StorageSpec, target: int,
                seed: int | None, index: int, deadline: float | None,
                progress: Callable[[int], None] | None = None, storage: Any = None,
                ready: Callable[[], None] | None = None) -> int:
    """Claim and run trials until the study holds ``target`` counted trials (``ready`` is
    called once the worker can run its first trial)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = ctx.cfg
    storage = storage if storage is not None else open_storage(spec, cfg.heartbeat_s)
    sampler = SAMPLERS[cfg.name](cfg, None if seed is None else seed + index)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=make_pruner(ctx))
    me = worker_id()
    fn = objective_fn(ctx, window)
    if ready is not None:
        ready()
    # With a heartbeat, a worker that reached the target waits until no trial runs, so every
    # worker (and machine) reads the same finished study. Live workers finish their trials;
    # a dead one stops beating and fail_stale fails its trial one grace period later.
    wait = spec.shareable and heartbeat_enabled(study._storage)
    poll = min(1.0, float(study._storage.get_heartbeat_interval() or 1)) if wait else 0.0
    done = fails = waited = 0
    while deadline is None or time.time() < deadline:
        trial = None
        with claim_lock(spec, study_name) as exclusive:
            if spec.shareable:
                fail_stale(study)  # a dead worker's trial must not count as running forever
            n = counted(study, cfg.count_failed, exclusive)
            if progress is not None:
                progress(n)
            if n < target:
                with warnings.catch_warnings():
                    # we run the heartbeat thread ourselves around each trial (_heartbeat)
                    warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
                    trial = study.ask()
                study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, me)
        if trial is None:
            running = running_trials(study) if wait else 0
            if not running:
                break
            if waited % 60 == 0:
                log.info("waiting for trials of other workers", study=study_name, running=running)
            waited += 1
            time.sleep(poll)
            continue
        if not exclusive and is_surplus(study, trial.number, target, cfg.count_failed):
            study._storage.set_trial_system_attr(trial._trial_id, SURPLUS_ATTR, True)
            study.tell(trial, state=TrialState.FAIL)
            break
        state = _run_one(study, trial, fn)
        done += 1
        fails = fails + 1 if state == TrialState.FAIL else 0
        if fails >= MAX_CONSECUTIVE_FAILS:
            last = study._storage.get_trial(trial._trial_id).user_attrs.get("error")
            raise AioError(f"study {study_name}: {fails} trials in a row failed (last error: {last}); "
                           f"see the log for the parameters that failed")
    if progress is not None:
        progress(counted(study, cfg.count_failed))
    return done


def _worker_main(ctx: Context, window: Window, study_name: str, spec: StorageSpec, target: int,
                 seed: int | None, index: int, deadline: float | None, ready: Any = None) -> None:
    worker_loop(ctx, window, study_name, spec, target, seed, index, deadline,
                ready=None if ready is None else ready.set)


def _wait_until_ready(procs: list, events: list, timeout_s: float = 600.0) -> None:
    """Start together: a spawned worker spends seconds importing and unpickling while the
    parent could already run a short study alone (n_workers would then buy nothing). A
    worker that dies first is reported at the join."""
    t0 = time.monotonic()
    for p, ev in zip(procs, events):
        while not ev.wait(0.1):
            if p.exitcode is not None or time.monotonic() - t0 > timeout_s:
                return


def run_study(ctx: Context, window: Window, study_name: str, spec: StorageSpec, target: int,
              seed: int | None, n_workers: int = 1, label: str = "") -> optuna.Study:
    """Create or resume ``study_name`` and run it until it holds ``target`` counted trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = ctx.cfg
    storage = open_storage(spec, cfg.heartbeat_s)
    dirs = directions(ctx)
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                directions=dirs, sampler=SAMPLERS[cfg.name](cfg, seed))
    if [d.name.lower() for d in study.directions] != dirs:
        raise ConfigError(
            f"study {study_name!r} in {spec.label} was created with directions "
            f"{[d.name.lower() for d in study.directions]}, this run needs {dirs} (another objective?): "
            f"choose another optimize.study"
        )
    if cfg.name == "grid":
        target = min(target, _setup_grid(ctx, study, spec))
    if spec.shareable:
        with claim_lock(spec, study_name):
            fail_stale(study)
    before = counted(study, cfg.count_failed)
    # Complete, and no other worker's trial still running (those are waited for in worker_loop).
    if before >= target and not (spec.shareable and heartbeat_enabled(study._storage) and running_trials(study)):
        log.info("study already complete", study=study_name, trials=before, target=target)
        return study
    log.debug("study started" if before == 0 else "study resumed", study=study_name, storage=spec.label,
             have=before, target=target, workers=n_workers, sampler=cfg.name)
    deadline = time.time() + cfg.timeout_s if cfg.timeout_s else None
    procs: list = []
    events: list = []
    if n_workers > 1:
        if not spec.shareable:
            raise ConfigError("optimize.n_workers > 1 needs a storage the workers share (sqlite, journal or a database)")
        mpc = mp.get_context("spawn")  # never fork: polars/numba threads do not survive it
        events = [mpc.Event() for _ in range(1, n_workers)]
        for i in range(1, n_workers):
            p = mpc.Process(target=_worker_main,
                            args=(ctx, window, study_name, spec, target, seed, i, deadline, events[i - 1]),
                            daemon=False, name=f"aio-optimize-{i}")
            p.start()
            procs.append(p)
    from aio.progress import bar as tqdm  # rich bars that keep clear of log lines

    bar = tqdm(total=target, initial=before, desc=label or study_name, unit="trial", leave=False,
               disable=None, mininterval=0.5)

    def progress(n: int) -> None:
        log.debug("trials counted", study=study_name, trials=n, target=target)  # log.jsonl only
        bar.n = min(n, target)
        bar.refresh()

    try:
        _wait_until_ready(procs, events)
        worker_loop(ctx, window, study_name, spec, target, seed, 0, deadline, progress,
                    storage=storage if not spec.shareable else None)
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    finally:
        bar.close()
    for p in procs:
        p.join()
    bad = [p.name for p in procs if p.exitcode not in (0, None)]
    if bad:
        raise AioError(f"optimizer worker(s) {', '.join(bad)} failed; see the run log")
    if spec.shareable:
        study = optuna.load_study(study_name=study_name, storage=open_storage(spec, None))
    return study
