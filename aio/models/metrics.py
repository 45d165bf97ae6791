"""Out-of-sample scores of direction probabilities and return forecasts (pure numpy).

Classes are the dataset's direction labels: 0 down, 1 flat, 2 up.
"""

from __future__ import annotations

import math

import numpy as np

EPS = float(np.finfo(np.float64).eps)  # probabilities are clipped as sklearn.metrics.log_loss does


def accuracy(proba: np.ndarray, y: np.ndarray) -> float:
    if len(y) == 0:
        return math.nan
    return float((np.argmax(proba, axis=1) == y).mean())


def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (rows renormalised after clipping)."""
    if len(y) == 0:
        return math.nan
    p = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1 - EPS)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def ece(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top class: sum_b |B|/n * |acc(B) - conf(B)|.

    Bins split [0, 1] into ``bins`` equal intervals, closed on the right (a confidence
    of exactly 1 lands in the last bin).
    """
    if len(y) == 0:
        return math.nan
    conf = np.max(proba, axis=1)
    hit = (np.argmax(proba, axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(hit[m].mean() - conf[m].mean())
    return float(total / len(y))


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as scipy.stats.rankdata."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=np.float64)
    sa = a[order]
    # start of each run of equal values
    starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
    ends = np.r_[starts[1:], len(a)]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation over pairs where both are finite (NaN if undefined)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return math.nan
    rx, ry = _rank(x), _rank(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return math.nan  # a constant forecast has no rank information
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def scores(proba: np.ndarray, y: np.ndarray, pred_ret: np.ndarray | None, real_ret: np.ndarray, bins: int = 15) -> dict[str, float]:
    """accuracy, log_loss, ece, ic (Spearman of forecast vs realised return), ic_score
    (Spearman of p_up - p_down vs realised return), n."""
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    out = {
        "n": int(len(y)),
        "accuracy": accuracy(proba, y),
        "log_loss": log_loss(proba, y),
        "ece": ece(proba, y, bins),
        "ic": spearman(pred_ret, real_ret) if pred_ret is not None else math.nan,
        "ic_score": spearman(proba[:, 2] - proba[:, 0], real_ret) if len(y) else math.nan,
    }
    return out
