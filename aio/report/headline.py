"""The figures a report leads with, read defensively from a run's metrics.

``metrics["headline"]`` when the evaluator wrote one; else the same shape built from
the stitched out-of-sample block of a search (``metrics["optimize"]["oos"]``); else
the full-period backtest. The leaderboard ranks by the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

OOS = "out_of_sample"
FULL = "full_period"


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """{"sample", "metrics", "warnings", "params", "ruin"} (empty metrics when nothing ran)."""
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
    return headline(metrics)["metrics"].get(key)
