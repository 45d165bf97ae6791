"""INTERIM stand-ins for aio.discover.gates / ledger / holdout (branch discover_core).

Used only while those modules are missing on this branch; delete this file once
discover_core is merged. Same call signatures as the intended API.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np


def split(n_bars: int, pct: float, embargo: int) -> tuple[int, int]:
    h = int(round(n_bars * (1 - pct / 100.0)))
    return max(h - embargo, 0), h


def pbo_cscv(returns: np.ndarray, n_splits: int = 16) -> dict[str, Any]:
    """Bailey et al.: share of IS/OOS splits where the IS-best config ranks below median OOS."""
    r = np.asarray(returns, dtype=np.float64)
    t, n = r.shape
    s = n_splits - n_splits % 2
    blocks = np.array_split(np.arange(t), s)
    combos = list(itertools.combinations(range(s), s // 2))
    if len(combos) > 400:
        rng = np.random.default_rng(0)
        combos = [combos[i] for i in rng.choice(len(combos), 400, replace=False)]

    def sharpe(x: np.ndarray) -> np.ndarray:
        sd = x.std(axis=0, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sd > 0, x.mean(axis=0) / sd, 0.0)

    logits = []
    for c in combos:
        is_idx = np.concatenate([blocks[i] for i in c])
        oos_idx = np.concatenate([blocks[i] for i in range(s) if i not in c])
        best = int(np.argmax(sharpe(r[is_idx])))
        oos = sharpe(r[oos_idx])
        rank = (oos < oos[best]).sum() + 0.5 * ((oos == oos[best]).sum() - 1) + 1
        w = rank / (n + 1)
        logits.append(math.log(w / (1 - w)))
    return {"pbo": float(np.mean(np.array(logits) <= 0)), "n_combinations": len(combos)}


def spa_test(candidate: np.ndarray, benchmarks: np.ndarray, reps: int = 1000, seed: int = 0, **_: Any) -> dict:
    from arch.bootstrap import SPA

    r = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(benchmarks, dtype=np.float64).reshape(len(r), -1)
    ps = []
    for j in range(b.shape[1]):
        spa = SPA(-b[:, j], -r[:, None], reps=reps, seed=seed)
        spa.compute()
        ps.append(float(spa.pvalues["consistent"]))
    return {"p_consistent": max(ps) if ps else float("nan"), "per_benchmark": ps}


class Ledger:
    def __init__(self, path: Any = None) -> None:
        self.rows: list[dict[str, Any]] = []

    def record(self, **row: Any) -> None:
        row.pop("returns", None)
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def effective_trials(self) -> int:
        return len({r.get("rule") for r in self.rows})

    def sharpe_variance(self) -> float:
        s = np.array([r.get("sr_bar") for r in self.rows if r.get("sr_bar") is not None], dtype=np.float64)
        s = s[np.isfinite(s)]
        return float(np.var(s, ddof=1)) if len(s) > 1 else 0.0
