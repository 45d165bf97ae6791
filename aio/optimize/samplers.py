"""Sampler plugins (kind ``sampler``): optimize.name -> an Optuna sampler.

``grid`` is run as a fixed list of feasible combinations queued in the study (so
constraints such as ``fast < slow`` remove points instead of wasting trials, and
several workers never evaluate one point twice); its sampler only serves the
queue.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from aio.registry import View


def tpe(cfg: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """Tree-structured Parzen Estimator (multivariate, grouped for conditional spaces)."""
    opts = {"n_startup_trials": cfg.n_startup_trials, "multivariate": True, "group": True,
            "constant_liar": cfg.n_workers > 1, **cfg.sampler_options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # group=True
        return optuna.samplers.TPESampler(seed=seed, **opts)


def cmaes(cfg: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """CMA-ES over numeric parameters (categoricals fall back to random sampling)."""
    opts = {"n_startup_trials": cfg.n_startup_trials, "warn_independent_sampling": False, **cfg.sampler_options}
    return optuna.samplers.CmaEsSampler(seed=seed, **opts)


def random(cfg: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """Uniform random search (a baseline for the others)."""
    return optuna.samplers.RandomSampler(seed=seed, **cfg.sampler_options)


def grid(cfg: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """Every feasible grid point once (float parameters need a step)."""
    return optuna.samplers.RandomSampler(seed=seed)  # only serves the queued grid points


def nsga2(cfg: Any, seed: int | None) -> optuna.samplers.BaseSampler:
    """NSGA-II for several objectives at once (e.g. net profit vs drawdown)."""
    opts = {"population_size": 50, **cfg.sampler_options}
    return optuna.samplers.NSGAIISampler(seed=seed, **opts)


BUILTIN_SAMPLERS = {"tpe": tpe, "cmaes": cmaes, "random": random, "grid": grid, "nsga2": nsga2}

# ``SAMPLERS[name](cfg, seed)``: every lookup goes through the registry, so a plugin
# sampler (kind ``sampler``: a callable (optimize config, seed) -> optuna sampler)
# is chosen with ``optimize.name=NAME`` like a built-in.
SAMPLERS = View("sampler")


def register(registry) -> None:
    for name, fn in BUILTIN_SAMPLERS.items():
        registry.add("sampler", name, fn)
