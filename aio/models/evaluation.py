"""Walk-forward evaluation: the model's out-of-sample scores next to baselines fitted on
the very same fold rows in the same run."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aio.models import baselines
from aio.models.data import Table
from aio.models.metrics import scores
from aio.models.walkforward import Fold

METRICS = ("accuracy", "log_loss", "ece", "ic", "ic_score")


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def evaluate(table: Table, folds: list[Fold], proba: np.ndarray, exp_return: np.ndarray, bins: int = 15,
             seed: int = 0, extra: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, per-fold rows). Scores are over each fold's predicted block, among rows the
    model predicted (coverage says how many); baselines see the same rows. ``overall``
    pools every fold's predicted rows."""
    rows_out: list[dict[str, Any]] = []
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in ("y", "ret", "p", "r", "maj", "lr_p", "lr_r")}
    for f in folds:
        pred = f.predict.rows()
        ok = np.isfinite(proba[pred]).all(axis=1)
        rows = pred[ok]
        train = np.concatenate([f.fit.rows(), f.val.rows()])
        y, ret = table.y[rows], table.ret[rows]
        maj = baselines.majority(table.y[train], len(rows))
        lr_p, lr_r = baselines.logreg(table.features[train], table.y[train], table.ret[train], table.features[rows], seed)
        row = {
            "fold": f.index,
            "fit_rows": len(f.fit), "val_rows": len(f.val), "predict_rows": len(pred), "predicted": int(ok.sum()),
            "coverage": float(ok.mean()) if len(pred) else math.nan,
            "predict_start_ts": int(table.ts_init[f.predict.start]),
            "predict_end_ts": int(table.ts_init[f.predict.stop - 1]),
            "fit_end_ts": int(table.ts_init[f.fit.stop - 1]),
        }
        for prefix, (p, r) in {"model": (proba[rows], exp_return[rows]), "majority": (maj, None), "logreg": (lr_p, lr_r)}.items():
            sc = scores(p, y, r, ret, bins)
            if prefix == "majority":
                sc["ic_score"] = math.nan  # a constant forecast ranks nothing
            for k, v in sc.items():
                if k != "n":
                    row[f"{prefix}_{k}"] = v
        if extra and f.index < len(extra):
            row.update(extra[f.index])
        rows_out.append(row)
        for k, v in (("y", y), ("ret", ret), ("p", proba[rows]), ("r", exp_return[rows]), ("maj", maj), ("lr_p", lr_p), ("lr_r", lr_r)):
            pooled[k].append(v)
    cat = {k: (np.concatenate(v) if v else np.zeros((0, 3) if k in ("p", "maj", "lr_p") else 0)) for k, v in pooled.items()}
    overall = {
        "model": _nan_to_none(scores(cat["p"], cat["y"], cat["r"], cat["ret"], bins)),
        "majority": _nan_to_none({**scores(cat["maj"], cat["y"], None, cat["ret"], bins), "ic_score": math.nan}),
        "logreg": _nan_to_none(scores(cat["lr_p"], cat["y"], cat["lr_r"], cat["ret"], bins)),
    }
    pred_all = np.concatenate([f.predict.rows() for f in folds]) if folds else np.zeros(0, dtype=np.int64)
    metrics = {
        "oos": overall,
        "oos_rows": int(len(cat["y"])),
        "coverage": float(np.isfinite(proba[pred_all]).all(axis=1).mean()) if len(pred_all) else None,
        "label": table.label,
        "return_label": table.return_label,
        "class_balance_oos": {n: float((cat["y"] == i).mean()) if len(cat["y"]) else None
                              for i, n in enumerate(("down", "flat", "up"))},
        "beats_majority_log_loss": _lt(overall["model"]["log_loss"], overall["majority"]["log_loss"]),
        "beats_logreg_log_loss": _lt(overall["model"]["log_loss"], overall["logreg"]["log_loss"]),
    }
    return metrics, [_nan_to_none(r) for r in rows_out]


def _lt(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return bool(a < b)
