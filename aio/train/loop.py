"""The Lightning trainer a fold is fitted with: checkpointing, early stopping, LR monitor,
CSV logger, and a callback logging CPU/RAM/GPU utilisation per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import structlog
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from aio import progress
from aio.hardware import HardwareChoice, HardwareInfo, UtilizationMonitor, choose, detect, summarize
from aio.train.config import TrainerConfig

log = structlog.get_logger(__name__)


def _mode(monitor: str) -> str:
    return "max" if monitor.endswith("acc") else "min"


def resolve_hardware(cfg: TrainerConfig, rows: int | None = None, info: HardwareInfo | None = None) -> tuple[HardwareInfo, HardwareChoice]:
    info = info or detect()
    choice = choose(info, cfg.accelerator, cfg.devices, cfg.precision, cfg.batch_size, cfg.num_workers,
                    cfg.torch_threads, rows)
    return info, choice


class UtilizationCallback(Callback):
    """Samples CPU/RAM (GPU when present) while fitting; logs mean/max per epoch to the
    trainer's logger (``util/*`` columns of metrics.csv) and to the run log."""

    def __init__(self, interval_s: float = 1.0, tag: str = "") -> None:
        self.interval_s = interval_s
        self.tag = tag
        self.monitor: UtilizationMonitor | None = None
        self._epoch_start = 0
        self.fit_summary: dict[str, Any] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.monitor = UtilizationMonitor(self.interval_s, gpu=pl_module.device.type == "cuda")
        self.monitor.start()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None:
            self._epoch_start = len(self.monitor.samples)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is None:
            return
        rows = self.monitor.since(self._epoch_start) or [self.monitor.sample()]
        s = summarize(rows)
        metrics = {f"util/{k}": float(v) for k, v in s.items() if k != "samples"}
        if trainer.is_global_zero:
            for lg in trainer.loggers:
                lg.log_metrics(metrics, step=trainer.global_step)
            cm = trainer.callback_metrics
            log.debug("epoch done", fold=self.tag, epoch=trainer.current_epoch,
                     train_loss=_f(cm.get("train_loss")), val_loss=_f(cm.get("val_loss")), val_acc=_f(cm.get("val_acc")),
                     cpu_pct=s.get("cpu_pct_mean"), rss_gb=s.get("rss_gb_max"), gpu_util_pct=s.get("gpu_util_pct_mean"))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.fit_summary = self.monitor.summary()


def _f(v: Any) -> float | None:
    try:
        return round(float(v), 5)
    except (TypeError, ValueError):
        return None


def _quiet_lightning() -> None:
    # "GPU available: False", tips and the like, once per fold: keep warnings only.
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # lightning internals
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_trainer(cfg: TrainerConfig, choice: HardwareChoice, out_dir: Path, tag: str, monitor_utilization: bool = True,
                  steps_per_epoch: int | None = None) -> tuple[L.Trainer, dict[str, Any]]:
    """A trainer writing checkpoints to ``out_dir/checkpoints/<tag>`` and CSV logs to
    ``out_dir/lightning_logs/<tag>``; also returns its callbacks by role."""
    out_dir = Path(out_dir)
    callbacks: list[Callback] = []
    roles: dict[str, Any] = {}
    if cfg.checkpoint.enabled:
        ck = ModelCheckpoint(dirpath=out_dir / "checkpoints" / tag, filename="best", monitor=cfg.checkpoint.monitor,
                             mode=_mode(cfg.checkpoint.monitor), save_top_k=1, save_last=cfg.checkpoint.save_last,
                             enable_version_counter=False)
        callbacks.append(ck)
        roles["checkpoint"] = ck
    if cfg.early_stopping.enabled:
        es = EarlyStopping(monitor=cfg.early_stopping.monitor, mode=_mode(cfg.early_stopping.monitor),
                           patience=cfg.early_stopping.patience, min_delta=cfg.early_stopping.min_delta)
        callbacks.append(es)
        roles["early_stopping"] = es
    if cfg.lr_monitor:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if monitor_utilization and cfg.utilization_interval_s > 0:
        uc = UtilizationCallback(cfg.utilization_interval_s, tag)
        callbacks.append(uc)
        roles["utilization"] = uc
    if cfg.progress_bar:  # an aio bar, not Lightning's tqdm (which would cut through log lines)
        callbacks.append(progress.lightning_bar())
    logger = CSVLogger(save_dir=str(out_dir), name="lightning_logs", version=tag)
    _quiet_lightning()
    trainer = L.Trainer(
        accelerator=choice.accelerator,
        devices=choice.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=choice.precision,
        max_epochs=cfg.max_epochs,
        min_epochs=cfg.min_epochs,
        deterministic=cfg.deterministic,
        gradient_clip_val=cfg.gradient_clip_val or None,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        log_every_n_steps=max(1, min(cfg.log_every_n_steps, steps_per_epoch or cfg.log_every_n_steps)),
        max_time=cfg.max_time,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=str(out_dir),
    )
    return trainer, roles
