"""The walk-forward schedule models are trained and judged on.

Rows (decision bars in time order) are cut into ``folds + 1`` consecutive blocks.
Fold ``j`` predicts block ``j + 1`` with a model fitted on the blocks before it
(all of them, ``expanding``, or only block ``j``, ``rolling``). The fitting rows end
at least ``embargo`` bars before the first predicted bar, and the last
``val_fraction`` of them (again embargoed) is held out for early stopping and
temperature scaling. With ``embargo >=`` the label horizon no label a model saw
reaches a bar it predicts, so every prediction is out of sample.

Block 0 is never predicted: no model has seen enough of the past there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aio.dataset.splits import Block, purge, walk_forward
from aio.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    index: int
    fit: Block  # rows the weights are fitted on
    val: Block  # rows for early stopping and temperature scaling (before ``predict``)
    predict: Block  # out-of-sample rows this fold's model predicts

    def as_dict(self) -> dict[str, list[int]]:
        return {"fit": self.fit.as_list(), "val": self.val.as_list(), "predict": self.predict.as_list()}


def plan_folds(
    bar_index: np.ndarray,
    folds: int,
    scheme: str,
    embargo: int,
    val_fraction: float,
    min_rows: int = 8,
) -> list[Fold]:
    """The folds over rows ``0 .. len(bar_index)``; ``bar_index`` must increase."""
    bar_index = np.asarray(bar_index, dtype=np.int64)
    n = len(bar_index)
    if folds < 1:
        raise ConfigError("config key model.folds must be >= 1: predictions need at least one walk-forward fold")
    out = []
    for j, f in enumerate(walk_forward(bar_index, n, folds, scheme, embargo)):
        train, pred = f["train"], f["val"]
        cut = train.start + int(round(len(train) * (1.0 - val_fraction)))
        val = Block(cut, train.stop) if val_fraction > 0 else Block(train.stop, train.stop)
        fit = purge(Block(train.start, cut), val, bar_index, embargo) if len(val) else Block(train.start, cut)
        if len(fit) < min_rows or (val_fraction > 0 and len(val) < min_rows) or len(pred) == 0:
            raise ConfigError(
                f"walk-forward fold {j} has {len(fit)} fitting, {len(val)} validation and {len(pred)} predicted rows "
                f"({n} dataset rows, {folds} folds, embargo {embargo} bars): use more data, fewer model.folds, "
                f"a smaller dataset.stride or a smaller model.val_fraction"
            )
        out.append(Fold(j, fit, val, pred))
    return out


def check_no_overlap(folds: list[Fold], bar_index: np.ndarray, horizon: int) -> None:
    """Raise if a fitted or validation label reaches a bar its fold predicts (a bug guard)."""
    for f in folds:
        first_pred = int(bar_index[f.predict.start])
        for name, b in (("fit", f.fit), ("val", f.val)):
            if len(b) and int(bar_index[b.stop - 1]) + horizon >= first_pred:
                raise AssertionError(f"fold {f.index}: {name} labels reach predicted bar {first_pred}")
