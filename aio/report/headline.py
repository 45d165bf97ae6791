"""The headline: the figures a reader sees first.

With a search, the stitched out-of-sample result (each fold's best parameters on the
bars after its in-sample window); without one, the full-period backtest. The
full-period backtest with the final parameters stays in ``metrics["backtest"]`` and
is labelled in-sample wherever a search ran (the parameters were tuned on most of its
bars).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


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


# -- reading it back (reports, leaderboard) ------------------------------------------------

OOS = "out_of_sample"
FULL = "full_period"


def read(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The headline of a finished run's ``metrics.json``, read defensively (runs written
    before the headline existed have only the search's OOS block or the backtest):
    {"sample", "metrics", "warnings", "params", "ruin", ...}; empty metrics when nothing ran."""
    h = metrics.get("headline")
    if isinstance(h, Mapping) and isinstance(h.get("metrics"), Mapping):
        out = dict(h)
    else:
        opt = metrics.get("optimize") if isinstance(metrics.get("optimize"), Mapping) else {}
        oos = opt.get("oos") if isinstance(opt, Mapping) else None
        if isinstance(oos, Mapping) and oos:
            out = {"sample": OOS, "metrics": dict(oos), "params": {}, "folds": len(opt.get("folds") or [])}
        else:
            bt = metrics.get("backtest") if isinstance(metrics.get("backtest"), Mapping) else {}
            out = {"sample": FULL, "metrics": dict(bt), "params": dict(metrics.get("params") or {})}
    m = out["metrics"]
    warnings = list(out.get("warnings") or []) + [w for w in (m.get("warnings") or []) if w not in (out.get("warnings") or [])]
    out["warnings"] = warnings
    if "ruin" not in out:
        out["ruin"] = m.get("ruin")
    return out


def oos_equity_path(artifacts: Mapping[str, str], run_dir: Path | None = None) -> Path | None:
    for key in ("optimize/oos_equity", "oos_equity"):
        p = artifacts.get(key)
        if p and p.endswith(".parquet") and Path(p).is_file():
            return Path(p)
    if run_dir is not None and (run_dir / "optimize" / "oos_equity.parquet").is_file():
        return run_dir / "optimize" / "oos_equity.parquet"
    return None


def score(metrics: Mapping[str, Any], key: str) -> Any:
    """The headline value of ``key`` (the leaderboard's column)."""
    return read(metrics)["metrics"].get(key)
