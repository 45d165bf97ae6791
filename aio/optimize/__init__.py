"""Parameter search: Optuna studies over a strategy's declared space, validated
walk-forward (IS studies, OOS runs), resumable and shareable across processes.

Plugins: objectives (kind ``objective``) and samplers (kind ``sampler``).
"""

from __future__ import annotations

from aio.optimize.config import OptimizeConfig, WalkForwardConfig
from aio.optimize.dsr import deflated_sharpe, expected_max_sharpe, probabilistic_sharpe
from aio.optimize.objectives import OBJECTIVES, Objective
from aio.optimize.walkforward import Fold, Window, make_folds

__all__ = [
    "OBJECTIVES", "Fold", "Objective", "OptimizeConfig", "WalkForwardConfig", "Window", "deflated_sharpe",
    "expected_max_sharpe", "make_folds", "optimize_run", "probabilistic_sharpe", "register",
]


def optimize_run(run):
    """Run the configured search for ``run``; returns the best parameters."""
    from aio.optimize.run import optimize_run as _run

    return _run(run)


def register(registry) -> None:
    from aio.optimize import objectives, samplers

    objectives.register(registry)
    samplers.register(registry)
