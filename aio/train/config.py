"""Typed config of the training loop (Hydra group ``trainer``: cpu, gpu, ddp)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from aio.config import param


@dataclass
class EarlyStoppingConfig:
    enabled: bool = param(True, help="stop when the monitored validation metric stops improving")
    monitor: str = param("val_loss", choices=["val_loss", "val_nll", "val_acc"])
    patience: int = param(3, ge=1, le=1000, help="epochs without improvement before stopping")
    min_delta: float = param(0.0, ge=0.0)


@dataclass
class CheckpointConfig:
    enabled: bool = param(True, help="keep the best epoch's weights (by monitor) and restore them")
    monitor: str = param("val_loss", choices=["val_loss", "val_nll", "val_acc"])
    save_last: bool = param(False, help="also keep the last epoch's checkpoint")


@dataclass
class TrainerConfig:
    """Lightning trainer settings; ``null``/``auto`` values are chosen from the hardware.

    The defaults are conf/trainer/cpu.yaml's values (a test fails when they drift).
    """

    name: str = "cpu"
    accelerator: str = param("cpu", choices=["auto", "cpu", "gpu", "cuda"], help="auto: the GPU when there is one")
    devices: Any = param(1, help="number of devices, a list of ids, or auto")
    strategy: str = param("auto", choices=["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"],
                          help="ddp_spawn trains on several devices and returns to the run (the pipeline continues)")
    num_nodes: int = param(1, ge=1)
    precision: str = param("auto", choices=["auto", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true"],
                           help="auto: bf16-mixed on bf16 GPUs, 16-mixed on older GPUs, 32-true on the CPU")
    max_epochs: int = param(8, ge=1, le=10000)
    min_epochs: int = param(1, ge=1, le=10000)
    batch_size: Optional[int] = param(None, ge=1, help="null: from the hardware")
    num_workers: Optional[int] = param(None, ge=0, le=256, help="data loader workers; null: from the hardware")
    torch_threads: Optional[int] = param(None, ge=1, le=1024, help="intra-op CPU threads; null: physical cores")
    deterministic: bool = param(True, help="deterministic algorithms: same seed, same weights (CPU)")
    gradient_clip_val: Optional[float] = param(1.0, ge=0.0)
    accumulate_grad_batches: int = param(1, ge=1)
    log_every_n_steps: int = param(10, ge=1)
    max_time: Optional[str] = param(None, help="stop a fold's training after DD:HH:MM:SS")
    lr_monitor: bool = param(True, help="log the learning rate each epoch")
    utilization_interval_s: float = param(1.0, ge=0.0, help="CPU/RAM/GPU sampling period; 0: off")
    progress_bar: bool = param(False)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        if self.min_epochs > self.max_epochs:
            from aio.errors import ConfigError

            raise ConfigError(f"config key trainer.min_epochs={self.min_epochs} exceeds trainer.max_epochs={self.max_epochs}")


def trainer_config(section: Any) -> TrainerConfig:
    from aio.config import build

    return build(TrainerConfig, section or {}, "trainer")
