"""Runs of the real pipeline, in process, for the report tests (and the report benchmark)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_pipeline(run_dir: Path, overrides: list[str]):
    """``python -m aio <overrides>`` in this process; returns the aio.pipeline.Run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from aio.appconfig import register_experiments
    from aio.pipeline import run

    register_experiments()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return run(cfg, run_dir=run_dir)


# A 14-day M1 synthetic run with a short walk-forward search: every report section
# except the model and discovery (those have their own cases).
SEARCH = ["+experiment=eurusd_14d", "data=synthetic", "model=none", "optimize.n_trials=16",
          "optimize.n_startup_trials=6"]

# The same 14 days without a search: SMA 10/30 trades about a thousand times.
MANY_TRADES = ["+experiment=eurusd_14d", "data=synthetic", "model=none", "optimize=none", "discover=none"]
