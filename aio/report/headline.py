"""The headline: the figures a reader sees first.

With a search, the stitched out-of-sample result (each fold's best parameters on the
bars after its in-sample window); without one, the full-period backtest. The
full-period backtest with the final parameters stays in ``metrics["backtest"]`` and
is labelled in-sample wherever a search ran (the parameters were tuned on most of its
bars).
"""

from __future__ import annotations

from typing import Any


def headline(run: Any) -> dict[str, Any]:
    opt = getattr(run, "optimize", None)
    synthetic = bool(getattr(run, "synthetic", False))
    if opt is not None and getattr(opt, "oos", None) is not None:
        m = dict(opt.oos.metrics)
        warns = list(m.get("warnings") or []) + list(opt.warnings or [])
        folds = [r.fold for r in opt.folds if r.fold.oos is not None]
        return {
            "sample": "out_of_sample",
            "label": "out of sample (walk-forward: each fold's best parameters on the bars after its in-sample "
                     "window), costs included",
            "metrics": m,
            "warnings": warns,
            "params": [r.best_params for r in opt.folds if r.fold.oos is not None],
            "bars": int(sum(len(f.oos) for f in folds)),
            "equity": "optimize/oos_equity.parquet",
            "synthetic": synthetic,
        }
    bt = dict((run.metrics or {}).get("backtest") or {})
    return {
        "sample": "full_period",
        "label": "full period, fixed parameters (no search), costs included",
        "metrics": bt,
        "warnings": list(bt.get("warnings") or []),
        "params": dict(getattr(run, "params", {}) or {}),
        "bars": len(run.bars) if getattr(run, "bars", None) is not None else None,
        "equity": "equity.parquet",
        "synthetic": synthetic,
    }
