"""Deflated Sharpe ratio (Bailey & López de Prado, 2014, "The Deflated Sharpe Ratio:
Correcting for Selection Bias, Backtest Overfitting and Non-Normality").

All Sharpe ratios here are per observation (not annualised). The DSR is the
probability that the true Sharpe ratio exceeds the one expected from the best of
``n_trials`` unskilled trials, given the return sample's length, skew and kurtosis.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """SR0: the expected maximum Sharpe of ``n_trials`` independent trials whose Sharpe
    ratios have variance ``var_sharpe`` and mean zero (False Strategy Theorem)."""
    if n_trials < 2 or var_sharpe <= 0:
        return 0.0
    z1 = _N.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _N.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(var_sharpe) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe(sr: float, sr_benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """PSR: P(true SR > sr_benchmark). ``kurtosis`` is the plain (not excess) kurtosis."""
    if n_obs < 2 or not np.isfinite(sr):
        return float("nan")
    denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if denom <= 0:
        return float("nan")
    z = (sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom)
    return _N.cdf(z)


def deflated_sharpe(sr: float, n_obs: int, skew: float, kurtosis: float, n_trials: int, var_sharpe: float) -> dict:
    sr0 = expected_max_sharpe(n_trials, var_sharpe)
    return {
        "dsr": probabilistic_sharpe(sr, sr0, n_obs, skew, kurtosis),
        "sr": sr,
        "sr0": sr0,
        "n_trials": n_trials,
        "var_sharpe": var_sharpe,
        "n_obs": n_obs,
        "skew": skew,
        "kurtosis": kurtosis,
    }


def return_moments(returns: np.ndarray) -> dict:
    """Per-observation Sharpe, skew and plain kurtosis of a return series."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 2:
        return {"sr": float("nan"), "skew": 0.0, "kurtosis": 3.0, "n_obs": n}
    mu, sd = r.mean(), r.std(ddof=1)
    if sd == 0:
        return {"sr": 0.0, "skew": 0.0, "kurtosis": 3.0, "n_obs": n}
    z = (r - mu) / r.std(ddof=0)
    return {"sr": float(mu / sd), "skew": float(np.mean(z**3)), "kurtosis": float(np.mean(z**4)), "n_obs": n}
