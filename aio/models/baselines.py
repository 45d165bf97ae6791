"""Baselines fitted in the same run, on the same fold rows, as the model they are shown beside.

- ``majority``: the training rows' class frequencies as probabilities (predicts the
  most frequent class); no return forecast.
- ``logreg``: multinomial logistic regression on the numeric features only (no image),
  and a ridge regression of the return on the same features for the IC.
"""

from __future__ import annotations

import warnings

import numpy as np

N_CLASSES = 3


CLIP = 5.0  # standardised values beyond +-5 (a volatility burst out of sample) are clipped


def standardize(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale by the training rows' mean/std, clip to +-CLIP (NaN -> 0 afterwards)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x_train, axis=0) if len(x_train) else np.zeros(x_train.shape[1])
        std = np.nanstd(x_train, axis=0) if len(x_train) else np.ones(x_train.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return [np.clip(np.nan_to_num((a - mean) / std, nan=0.0, posinf=0.0, neginf=0.0), -CLIP, CLIP) for a in (x_train, *others)]


def majority(y_train: np.ndarray, n_test: int) -> np.ndarray:
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=N_CLASSES).astype(np.float64)
    prior = counts / max(counts.sum(), 1.0)
    return np.tile(prior, (n_test, 1))


def logreg(x_train: np.ndarray, y_train: np.ndarray, r_train: np.ndarray, x_test: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities (n_test, 3), return forecast (n_test,))."""
    from sklearn.linear_model import LogisticRegression, Ridge

    xs, xt = standardize(x_train, x_test)
    y_train = np.asarray(y_train, dtype=np.int64)
    proba = np.zeros((len(xt), N_CLASSES))
    present = np.unique(y_train)
    if len(present) < 2:
        proba[:, present[0] if len(present) else 1] = 1.0
    else:
        clf = LogisticRegression(max_iter=1000, random_state=seed)
        clf.fit(xs, y_train)
        proba[:, clf.classes_] = clf.predict_proba(xt)
    ok = np.isfinite(r_train)
    reg = Ridge(alpha=1.0).fit(xs[ok], r_train[ok]) if ok.sum() > 1 else None
    ret = reg.predict(xt) if reg is not None else np.full(len(xt), np.nan)
    return proba, ret
