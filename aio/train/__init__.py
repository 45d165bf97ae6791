"""Training loop settings (config group ``trainer``) and the Lightning trainer built from them.

    cfg = trainer_config(section)         # conf/trainer/{cpu,gpu,ddp}.yaml
    choice = resolve_hardware(cfg, rows)  # aio.hardware.choose with the config's explicit values
    trainer = build_trainer(cfg, choice, out_dir, monitor)
"""

from __future__ import annotations

from aio.train.config import CheckpointConfig, EarlyStoppingConfig, TrainerConfig, trainer_config

__all__ = ["CheckpointConfig", "EarlyStoppingConfig", "TrainerConfig", "build_trainer", "resolve_hardware",
           "trainer_config"]


def __getattr__(name: str):
    # lightning loads only when a trainer is built.
    if name in ("build_trainer", "resolve_hardware", "UtilizationCallback"):
        from aio.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'aio.train' has no attribute {name!r}")
