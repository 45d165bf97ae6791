"""What a model plugin gets and gives back.

A model plugin is a class ``Model(config)`` with ``fit(ctx) -> ModelResult``: it fits
its walk-forward folds and predicts each fold's out-of-sample block (the *train*
stage); the result turns into per-bar ``model.*`` series (the *infer* stage) and
pattern rows for the library (the *store* stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aio.models.data import Table

# The series strategy rules and sizers read (``model.<name>``).
SERIES = ("p_up", "p_down", "p_flat", "confidence", "direction", "exp_return", "fold")


@dataclass
class ModelContext:
    dataset_path: Path
    out_dir: Path  # where the model writes checkpoints, logs and tables
    seed: int = 42
    trainer: Any = None  # aio.train.TrainerConfig
    bars: Any = None  # aio.records.Bars the dataset was built from
    store: Any = None  # aio.store.LanceDBStoreConfig
    run_dir: Path | None = None
    run_id: str = ""
    synthetic: bool = False


@dataclass
class ModelResult:
    """Per dataset row: calibrated class probabilities (down, flat, up), the return
    forecast and which fold predicted it (NaN / -1 where no model had seen enough)."""

    model: str
    table: Table
    proba: np.ndarray  # (n, 3)
    exp_return: np.ndarray  # (n,) in units of table.return_label
    fold: np.ndarray  # (n,) int, -1: not predicted
    metrics: dict[str, Any] = field(default_factory=dict)
    fold_rows: list[dict[str, Any]] = field(default_factory=list)
    embeddings: np.ndarray | None = None  # (n, d) for the pattern library
    model_id: str | None = None
    patterns_stored: bool = False
    # (n,) the last bar any label the predicting model learnt from (fit or validation) reached; -1: none
    seen_until_bar: np.ndarray | None = None
    images: Any = None  # aio.models.data.ImageStore the model read (reused for library thumbnails)

    @property
    def predicted(self) -> np.ndarray:
        return np.isfinite(self.proba).all(axis=1)

    def row_series(self) -> dict[str, np.ndarray]:
        p = self.proba
        p_down, p_flat, p_up = p[:, 0], p[:, 1], p[:, 2]
        ok = self.predicted
        direction = np.where(ok, np.where(p_up >= p_down, 1.0, -1.0), np.nan)
        direction = np.where(ok & (p_flat > np.maximum(p_up, p_down)), 0.0, direction)
        return {
            "p_up": p_up, "p_down": p_down, "p_flat": p_flat,
            # the probability of the likelier trade direction: what a confidence sizer scales by
            "confidence": np.maximum(p_up, p_down),
            "direction": direction,
            "exp_return": self.exp_return,
            "fold": np.where(self.fold >= 0, self.fold.astype(np.float64), np.nan),
        }

    def bar_series(self, n_bars: int) -> dict[str, np.ndarray]:
        """``model.*`` arrays over all bars: values at decision bars, NaN elsewhere."""
        out = {}
        for name, v in self.row_series().items():
            a = np.full(n_bars, np.nan)
            a[self.table.bar_index] = v
            out[f"model.{name}"] = a
        return out


def write_tables(result: ModelResult, out_dir: Path) -> dict[str, Path]:
    """metrics (JSON) and the per-fold table (CSV) of a model's evaluation."""
    import polars as pl

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"model_metrics": out_dir / "model_metrics.json", "model_folds": out_dir / "model_folds.csv"}
    from aio.jsonio import dumps  # the one numpy-to-JSON cleaner

    paths["model_metrics"].write_text(dumps(result.metrics))
    if result.fold_rows:
        pl.DataFrame(result.fold_rows, infer_schema_length=None).write_csv(paths["model_folds"])
    return paths


