"""The funnel's statistical gates, as pure functions of per-period return arrays.

- :func:`pbo_cscv`: probability of backtest overfitting by combinatorially symmetric
  cross-validation (Bailey, Borwein, López de Prado, Zhu 2015, "The Probability of
  Backtest Overfitting", J. Computational Finance).
- :func:`spa_test`: Hansen's SPA and White's Reality Check (``arch.bootstrap.SPA``) of a
  family of candidates against benchmarks (flat, buy-and-hold, shipped strategies).
- :func:`effective_trials`: the number of effectively independent trials behind a
  selection, from the correlation of the trials' returns (clusters, or eigenvalues).
- :func:`deflated_sharpe_ratio` / :func:`probabilistic_sharpe_ratio`: the DSR/PSR of
  :mod:`aio.optimize.dsr` applied to a return series and a ledger of trials.

Every Sharpe ratio here is per observation (not annualised), as in :mod:`aio.optimize.dsr`.
Inputs are plain numpy arrays; rows are periods (bars, or bars summed into coarser
periods with :func:`aggregate`), columns are candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable, Literal, Mapping

import numpy as np

from aio.errors import AioError
from aio.optimize.dsr import deflated_sharpe, probabilistic_sharpe, return_moments


class GateInputError(AioError, ValueError):
    """Return arrays a gate cannot judge (shape, NaN, too few periods)."""


def _matrix(returns: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2:
        raise GateInputError(f"{what} must be a T x N matrix of per-period returns, got shape {m.shape}")
    if not np.isfinite(m).all():
        bad = int((~np.isfinite(m)).sum())
        raise GateInputError(f"{what} holds {bad} non-finite values: fill periods without a position with 0.0")
    return m


def aggregate(returns: np.ndarray, period: int) -> np.ndarray:
    """Sum consecutive blocks of ``period`` rows (bar returns -> e.g. hourly returns).

    The tail that does not fill a block is dropped. Summing simple returns is the
    usual first-order aggregate; it keeps every gate's ranking and sign.
    """
    m = np.asarray(returns, dtype=np.float64)
    if period <= 1:
        return m
    n = (m.shape[0] // period) * period
    return m[:n].reshape(n // period, period, *m.shape[1:]).sum(axis=1)


def sharpe(m: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per-period Sharpe ratio of each column; 0 where the column does not move."""
    mu = m.mean(axis=axis)
    sd = m.std(axis=axis, ddof=1) if m.shape[axis] > 1 else np.zeros_like(mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, mu / np.where(sd > 0, sd, 1.0), 0.0)


METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sharpe": sharpe,
    "mean": lambda m: m.mean(axis=0),
    "total": lambda m: m.sum(axis=0),
}


# -- PBO by CSCV ----------------------------------------------------------------------


@dataclass
class PBOResult:
    """The CSCV distribution of the in-sample winner's out-of-sample rank."""

    pbo: float  # P(logit <= 0): the IS-best ranks at or below the OOS median
    logits: np.ndarray  # one per combination: log(w / (1 - w)), w = OOS relative rank of the IS-best
    is_perf: np.ndarray  # the IS-best's performance in sample, per combination
    oos_perf: np.ndarray  # the same configuration's performance out of sample
    best: np.ndarray  # index of the IS-best configuration, per combination
    slope: float  # performance degradation: OOS ~ intercept + slope * IS (least squares)
    intercept: float
    prob_oos_loss: float  # P(OOS performance of the IS-best < 0)
    n_splits: int
    n_combinations: int
    metric: str

    def summary(self) -> dict:
        return {"pbo": self.pbo, "slope": self.slope, "intercept": self.intercept,
                "prob_oos_loss": self.prob_oos_loss, "logit_mean": float(self.logits.mean()),
                "n_splits": self.n_splits, "n_combinations": self.n_combinations, "metric": self.metric}


def pbo_cscv(returns: np.ndarray, n_splits: int = 16, metric: str | Callable[[np.ndarray], np.ndarray] = "sharpe") -> PBOResult:
    """PBO of choosing the best of N configurations, from their T x N per-period returns.

    The rows are cut into ``n_splits`` (S, even) contiguous blocks of equal size (the
    remainder rows at the start are dropped, keeping the most recent). For each of the
    C(S, S/2) ways to pick half the blocks as the training set (IS) and the rest as the
    test set (OOS): the configuration best on IS by ``metric`` is found, its OOS rank
    among all N is ``r`` (1 = worst, N = best, ties averaged), ``w = r / (N + 1)`` and the
    logit ``log(w / (1 - w))``. PBO is the share of combinations with logit <= 0.
    """
    m = _matrix(returns, "returns")
    t, n = m.shape
    if n < 2:
        raise GateInputError(f"PBO compares configurations: need at least 2 columns, got {n}")
    if n_splits < 2 or n_splits % 2:
        raise GateInputError(f"n_splits={n_splits} must be an even number >= 2 (CSCV splits the blocks in halves)")
    if t < 2 * n_splits:
        raise GateInputError(f"{t} periods are too few for {n_splits} splits: need at least 2 per split "
                             f"(lower n_splits or aggregate less)")
    size = t // n_splits
    m = m[t - size * n_splits:]
    blocks = m.reshape(n_splits, size, n)
    combos = list(combinations(range(n_splits), n_splits // 2))
    train = np.zeros((len(combos), n_splits))
    for i, c in enumerate(combos):
        train[i, list(c)] = 1.0
    if isinstance(metric, str) and metric in METRICS:
        # every split's statistic from per-block sums: one matrix product per side
        r_is = _block_metric(blocks, train, metric)
        r_oos = _block_metric(blocks, 1.0 - train, metric)
    elif callable(metric):
        r_is = np.stack([metric(blocks[train[i] > 0].reshape(-1, n)) for i in range(len(combos))])
        r_oos = np.stack([metric(blocks[train[i] == 0].reshape(-1, n)) for i in range(len(combos))])
    else:
        raise GateInputError(f"metric={metric!r}: choose one of {', '.join(METRICS)} or pass a function")
    rows = np.arange(len(combos))
    best = np.argmax(r_is, axis=1)
    chosen = r_oos[rows, best][:, None]
    # OOS rank of the IS-best among all N (1 = worst, ties averaged as scipy's rankdata)
    rank = (r_oos < chosen).sum(axis=1) + ((r_oos == chosen).sum(axis=1) + 1) / 2.0
    w = rank / (n + 1)
    logits = np.log(w / (1 - w))
    is_perf, oos_perf = r_is[rows, best], r_oos[rows, best]
    if np.ptp(is_perf) > 0:
        slope, intercept = np.polyfit(is_perf, oos_perf, 1)
    else:
        slope, intercept = 0.0, float(oos_perf.mean())
    return PBOResult(pbo=float(np.mean(logits <= 0)), logits=logits, is_perf=is_perf, oos_perf=oos_perf,
                     best=best.astype(np.int64),
                     slope=float(slope), intercept=float(intercept), prob_oos_loss=float(np.mean(oos_perf < 0)),
                     n_splits=n_splits, n_combinations=len(combos), metric=metric if isinstance(metric, str) else "custom")


def _block_metric(blocks: np.ndarray, weights: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` of every column over the blocks selected by each row of ``weights`` (0/1)."""
    n_rows = weights.sum(axis=1)[:, None] * blocks.shape[1]
    total = weights @ blocks.sum(axis=1)
    if metric == "total":
        return total
    mean = total / n_rows
    if metric == "mean":
        return mean
    sq = weights @ np.einsum("btn,btn->bn", blocks, blocks)
    var = np.maximum(sq - total * mean, 0.0) / np.maximum(n_rows - 1, 1)
    sd = np.sqrt(var)
    tiny = 1e-12 * np.maximum(np.sqrt(sq / n_rows), 1e-300)  # rounding, not movement
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > tiny, mean / np.where(sd > tiny, sd, 1.0), 0.0)


# -- SPA / Reality Check ------------------------------------------------------------


@dataclass
class SPAResult:
    """p-values of H0 "no candidate beats the benchmark", per benchmark and overall.

    ``consistent`` is Hansen's SPA p-value, ``upper`` White's Reality Check (no
    re-centering), ``lower`` the most liberal. Overall = the largest p over the
    benchmarks: the best candidate must beat every benchmark.
    """

    pvalues: dict[str, float]  # consistent / lower / upper, max over benchmarks
    per_benchmark: dict[str, dict[str, float]]
    superior: list[int]  # candidates better than every benchmark (arch's better_models at `size`)
    binding: str  # the benchmark with the largest consistent p-value
    n_candidates: int
    n_periods: int
    block_size: int
    reps: int
    size: float = 0.05
    details: dict = field(default_factory=dict)

    @property
    def spa_p(self) -> float:
        return self.pvalues["consistent"]

    @property
    def reality_check_p(self) -> float:
        return self.pvalues["upper"]


def spa_test(
    candidates: np.ndarray,
    benchmarks: Mapping[str, np.ndarray],
    *,
    block_size: int | None = None,
    reps: int = 1000,
    bootstrap: Literal["stationary", "circular", "moving block"] = "stationary",
    size: float = 0.05,
    seed: int = 0,
) -> SPAResult:
    """Hansen's SPA / White's RC of T x K candidate returns against each benchmark's T returns.

    Losses are negative returns. ``block_size`` defaults to ``sqrt(T)`` rounded (arch's
    default); with bar returns, aggregate to coarser periods first (fewer rows, faster,
    less dependence). The bootstrap is seeded: same inputs, same p-values.
    """
    from arch.bootstrap import SPA

    m = _matrix(candidates, "candidates")
    t, k = m.shape
    if not benchmarks:
        raise GateInputError("spa_test needs at least one benchmark (e.g. {'flat': zeros})")
    if t < 10:
        raise GateInputError(f"{t} periods are too few for a bootstrap test (need >= 10)")
    bs = int(block_size or max(1, round(math.sqrt(t))))
    per: dict[str, dict[str, float]] = {}
    better: set[int] = set(range(k))
    for name, b in benchmarks.items():
        bench = np.asarray(b, dtype=np.float64).reshape(-1)
        if bench.shape[0] != t:
            raise GateInputError(f"benchmark {name!r} has {bench.shape[0]} periods, the candidates {t}: align them")
        if not np.isfinite(bench).all():
            raise GateInputError(f"benchmark {name!r} holds non-finite values")
        spa = SPA(-bench, -m, block_size=bs, reps=reps, bootstrap=bootstrap, seed=seed)
        spa.compute()
        pv = spa.pvalues
        per[name] = {key: float(pv[key]) for key in ("consistent", "lower", "upper")}
        better &= {int(i) for i in np.atleast_1d(spa.better_models(size, "consistent"))}
    overall = {key: max(p[key] for p in per.values()) for key in ("consistent", "lower", "upper")}
    binding = max(per, key=lambda n: per[n]["consistent"])
    return SPAResult(pvalues=overall, per_benchmark=per, superior=sorted(better), binding=binding,
                     n_candidates=k, n_periods=t, block_size=bs, reps=reps, size=size)


# -- effective number of trials, DSR, PSR -------------------------------------------


@dataclass
class EffectiveTrials:
    n_eff: int  # what the DSR uses: max(estimate, floor), at most n_trials
    estimate: float  # the method's own figure
    n_trials: int
    floor: int  # never below this (the number of distinct rules)
    method: str
    threshold: float | None = None
    labels: np.ndarray | None = None  # cluster of each trial (method="cluster")

    def summary(self) -> dict:
        return {"n_eff": self.n_eff, "estimate": self.estimate, "n_trials": self.n_trials, "floor": self.floor,
                "method": self.method, "threshold": self.threshold}


def effective_trials(
    returns: np.ndarray,
    *,
    method: Literal["cluster", "eigen"] = "cluster",
    threshold: float = 0.5,
    floor: int = 1,
) -> EffectiveTrials:
    """Effectively independent trials among the columns of T x N trial returns.

    ``cluster``: average-linkage hierarchical clustering on the correlation distance
    ``1 - rho``; trials whose average correlation is at least ``threshold`` merge, and the
    number of clusters is the estimate (López de Prado's "number of independent trials"
    by clustering; a parameter sweep of one rule collapses into a few clusters).
    ``eigen``: the participation ratio of the correlation matrix's eigenvalues,
    ``(sum l)^2 / sum l^2`` (N for independent trials, 1 for identical ones).

    Trials that never move (flat, no trades) form one cluster of their own. The result is
    never below ``floor`` (pass the number of distinct rules) nor above N.
    """
    m = _matrix(returns, "trial returns")
    t, n = m.shape
    floor = int(max(1, floor))
    if n == 0:
        return EffectiveTrials(n_eff=floor, estimate=0.0, n_trials=0, floor=floor, method=method)
    sd = m.std(axis=0)
    moving = sd > 0
    n_flat = int((~moving).sum())
    k = int(moving.sum())
    labels = np.full(n, -1, dtype=np.int64)
    if k <= 1 or t < 3:
        est = float(k + (1 if n_flat else 0))
        labels[moving] = 0
    else:
        corr = np.corrcoef(m[:, moving], rowvar=False)
        corr = np.clip(np.nan_to_num(corr, nan=0.0), -1.0, 1.0)
        if method == "cluster":
            from scipy.cluster.hierarchy import fcluster, linkage
            from scipy.spatial.distance import squareform

            dist = 1.0 - corr
            np.fill_diagonal(dist, 0.0)
            z = linkage(squareform(np.maximum(dist, 0.0), checks=False), method="average")
            lab = fcluster(z, t=1.0 - threshold, criterion="distance")
            labels[moving] = lab - 1
            est = float(lab.max() + (1 if n_flat else 0))
        elif method == "eigen":
            ev = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
            est = float(ev.sum() ** 2 / np.sum(ev**2)) + (1 if n_flat else 0)
        else:
            raise GateInputError(f"effective_trials method={method!r}: choose cluster or eigen")
    if n_flat:
        labels[~moving] = labels.max() + 1
    n_eff = max(floor, min(n, math.ceil(est - 1e-9)))
    return EffectiveTrials(n_eff=n_eff, estimate=est, n_trials=n, floor=floor, method=method,
                           threshold=threshold if method == "cluster" else None, labels=labels)


def cluster_returns(returns: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """T x K returns of the K clusters: each an inverse-variance weighted mix of its trials
    (López de Prado 2019, "A data science solution to the multiple-testing crisis in
    financial research": one return series, hence one Sharpe ratio, per cluster)."""
    m = _matrix(returns, "trial returns")
    lab = np.asarray(labels)
    out = []
    for k in np.unique(lab):
        cols = m[:, lab == k]
        var = cols.var(axis=0)
        if (var > 0).any():
            w = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)
            out.append(cols @ (w / w.sum()))
        else:
            out.append(cols[:, 0])
    return np.column_stack(out) if out else np.zeros((m.shape[0], 0))


def deflated_sharpe_from_trials(
    selected: np.ndarray,
    trials: np.ndarray,
    *,
    floor: int = 1,
    method: Literal["cluster", "eigen"] = "cluster",
    threshold: float = 0.5,
) -> dict:
    """DSR of the ``selected`` returns after the T x N ``trials`` (same periods).

    N is replaced by the effective number of trials (:func:`effective_trials`, never
    below ``floor`` = the distinct rules). With clustering, the spread of the unskilled
    maximum comes from the clusters' Sharpe ratios (one per cluster), so a sweep of
    near-identical parameter sets does not inflate it; with ``eigen``, from all trials.
    """
    eff = effective_trials(trials, method=method, threshold=threshold, floor=floor)
    m = _matrix(trials, "trial returns")
    if method == "cluster" and eff.labels is not None and m.shape[1]:
        sharpes, source = sharpe(cluster_returns(m, eff.labels)), "clusters"
    else:
        sharpes, source = sharpe(m), "trials"
    out = deflated_sharpe_ratio(selected, sharpes, eff.n_eff)
    out["effective_trials"] = eff.summary()
    out["var_sharpe_from"] = source
    return out


def probabilistic_sharpe_ratio(returns: np.ndarray, sr_benchmark: float = 0.0) -> float:
    """PSR: P(true per-period Sharpe > ``sr_benchmark``) given the sample's length, skew, kurtosis."""
    mo = return_moments(np.asarray(returns, dtype=np.float64))
    return probabilistic_sharpe(mo["sr"], sr_benchmark, mo["n_obs"], mo["skew"], mo["kurtosis"])


def deflated_sharpe_ratio(returns: np.ndarray, trial_sharpes: np.ndarray, n_trials: int) -> dict:
    """DSR of the selected ``returns`` after ``n_trials`` effective trials.

    ``trial_sharpes``: the per-period Sharpe ratios of the trials (same period length as
    ``returns``); their variance sets the spread of the unskilled maximum. ``n_trials``:
    the effective number (:func:`effective_trials`, never below the distinct rules).
    """
    mo = return_moments(np.asarray(returns, dtype=np.float64))
    s = np.asarray(trial_sharpes, dtype=np.float64)
    s = s[np.isfinite(s)]
    var = float(s.var(ddof=1)) if len(s) > 1 else 0.0
    out = deflated_sharpe(mo["sr"], mo["n_obs"], mo["skew"], mo["kurtosis"], int(n_trials), var)
    out["psr"] = probabilistic_sharpe(mo["sr"], 0.0, mo["n_obs"], mo["skew"], mo["kurtosis"])
    return out
