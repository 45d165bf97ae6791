"""Typed config of the ``optimize`` section (conf/optimize/*.yaml).

The defaults here are conf/optimize/tpe.yaml's values (a test fails when they drift);
the other sampler YAMLs inherit tpe.yaml and change only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aio.config import param
from aio.registry import choices


@dataclass
class WalkForwardConfig:
    folds: int = param(3, ge=0, help="walk-forward folds; 0: one study on all bars, no OOS")
    scheme: str = param("anchored", choices=["anchored", "rolling"])
    oos_fraction: float = param(0.3, gt=0, lt=1, help="share of the bars in all OOS windows together")
    is_bars: int | None = param(None, ge=10, help="rolling IS length (default: all bars before the first OOS)")
    gap_bars: int = param(0, ge=0, help="bars left out between IS and OOS (embargo)")
    cv_blocks: int = param(3, ge=1, le=50, help="IS cut into blocks; a trial reports after each (pruning)")
    min_is_bars: int = param(50, ge=2)


@dataclass
class OptimizeConfig:
    name: str = param("tpe", choices=choices("sampler"), help="the sampler (kind sampler: python -m aio.plugins)")
    objective: str = param("sharpe", choices=choices("objective"),
                           help="objective plugin (python -m aio.plugins lists them)")
    objectives: list[str] = field(default_factory=list)  # multi-objective (nsga2); default [objective, max_drawdown]
    n_trials: int = param(200, ge=1, help="TOTAL trials per study: a resumed study tops up to this")
    n_workers: int = param(1, ge=1, le=256, help="processes sharing one study")
    timeout_s: float | None = param(None, gt=0, help="stop starting trials after this long (per study)")
    storage: str | None = param(None, help="null (in memory), sqlite:///f.db, f.journal, journal:f, or a SQLAlchemy URL")
    study: str | None = param(None, help="study name (default: strategy + a hash of data/strategy/costs config)")
    seed: int | None = param(None, ge=0, help="sampler seed (default: the run seed)")
    min_trades: int = param(10, ge=0, help="fewer trades in an IS window: the trial is discarded (pruned)")
    pruner: str = param("median", choices=["none", "median", "hyperband"])
    n_startup_trials: int = param(10, ge=0, help="trials before TPE / the pruner start to learn")
    params: list[str] = field(default_factory=list)  # only these are searched (default: all of strategy.space)
    space: dict[str, dict[str, Any]] = field(default_factory=dict)  # overrides of strategy.space entries
    constraints: list[str] = field(default_factory=list)  # e.g. "fast < slow" (rule language)
    count_failed: bool = param(True, help="failed trials count toward n_trials (else they are retried)")
    heartbeat_s: int | None = param(60, ge=1, help="RDB storages: a RUNNING trial silent this long x2 is failed")
    sampler_options: dict[str, Any] = field(default_factory=dict)  # extra optuna sampler arguments
    walk_forward: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    write_plots: bool = param(True, help="optimisation history / importances as HTML")
