"""What price did next after a set of neighbour patterns (pure functions)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutcomeStats:
    """Outcome statistics of k neighbours; NaN where there is no neighbour.

    ``weighted_mean_fwd_return`` weights each neighbour by 1 / (distance + eps), so
    the closest analogues count most.
    """

    count: int
    mean_fwd_return: float
    median_fwd_return: float
    std_fwd_return: float
    weighted_mean_fwd_return: float
    p_up: float
    p_flat: float
    p_down: float
    mean_mfe: float
    mean_mae: float
    mean_distance: float


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def outcome_stats(
    fwd_return: np.ndarray,
    label: np.ndarray,
    distance: np.ndarray | None = None,
    mfe: np.ndarray | None = None,
    mae: np.ndarray | None = None,
    eps: float = 1e-6,
) -> OutcomeStats:
    r = np.asarray(fwd_return, dtype=np.float64)
    lab = np.asarray(label)
    n = int(r.size)
    if n == 0:
        nan = math.nan
        return OutcomeStats(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    d = np.zeros(n) if distance is None else np.asarray(distance, dtype=np.float64)
    w = 1.0 / (np.maximum(d, 0.0) + eps)
    return OutcomeStats(
        count=n,
        mean_fwd_return=float(r.mean()),
        median_fwd_return=float(np.median(r)),
        std_fwd_return=float(r.std(ddof=1)) if n > 1 else 0.0,
        weighted_mean_fwd_return=float((w * r).sum() / w.sum()),
        p_up=float((lab == 1).mean()),
        p_flat=float((lab == 0).mean()),
        p_down=float((lab == -1).mean()),
        mean_mfe=_nanmean(np.asarray(mfe, dtype=np.float64)) if mfe is not None else math.nan,
        mean_mae=_nanmean(np.asarray(mae, dtype=np.float64)) if mae is not None else math.nan,
        mean_distance=float(d.mean()) if distance is not None else math.nan,
    )
