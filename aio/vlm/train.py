"""LoRA fine-tuning inside a LightningModule.

The module wraps a :class:`~aio.vlm.model.ChartVLM` whose adapters are enabled; the
loss is the cross-entropy of the answer tokens only (prompt, image and padding carry
label -100 and get no logits at all). Only adapter weights require grad, so the
optimizer sees nothing else.
"""

from __future__ import annotations

from typing import Any, Sequence

import structlog
import torch
from torch.utils.data import DataLoader, Dataset

from aio.vlm.config import TrainSettings

log = structlog.get_logger(__name__)

try:
    import lightning as L

    _ModuleBase = L.LightningModule
except ImportError:  # pragma: no cover
    _ModuleBase = torch.nn.Module  # type: ignore[misc,assignment]


class AnswerRows(Dataset):
    """(image, prompt fill, target answer) triples; images are PNG bytes or arrays."""

    def __init__(self, images: Sequence[Any], fills: Sequence[dict[str, Any]], answers: Sequence[str]) -> None:
        if not len(images) == len(fills) == len(answers):
            raise ValueError("images, fills and answers must have the same length")
        self.images, self.fills, self.answers = list(images), list(fills), list(answers)

    def __len__(self) -> int:
        return len(self.answers)

    def __getitem__(self, k: int) -> tuple[Any, dict[str, Any], str]:
        return self.images[k], self.fills[k], self.answers[k]


class Collate:
    def __init__(self, vlm: Any) -> None:
        self.vlm = vlm

    def __call__(self, items: list[tuple[Any, dict[str, Any], str]]) -> dict[str, Any]:
        imgs, fills, answers = zip(*items)
        return self.vlm.training_batch(list(imgs), list(fills), list(answers))


class LoraModule(_ModuleBase):
    """Lightning module over a ChartVLM with adapters enabled (``vlm.enable_lora()``)."""

    def __init__(self, vlm: Any, train: TrainSettings) -> None:
        super().__init__()
        if vlm.peft is None:
            raise ValueError("enable LoRA adapters on the model first (vlm.enable_lora())")
        self.vlm = vlm
        self.net = vlm.peft  # registered, so Lightning moves it and counts its parameters
        self.train_cfg = train
        self.losses: list[float] = []  # unscaled per-batch losses (Lightning divides by accumulation)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.vlm.answer_loss(batch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.net.train()
        loss = self.vlm.answer_loss(batch)
        self.losses.append(float(loss.detach()))
        self.log("train_loss", loss, on_step=True, prog_bar=True, batch_size=int(batch["input_ids"].shape[0]))
        return loss

    def configure_optimizers(self) -> Any:
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.train_cfg.lr, weight_decay=self.train_cfg.weight_decay)


def make_trainer(vlm: Any, max_steps: int, precision: str | None = None, out_dir: Any = None,
                 gradient_clip_val: float | None = 1.0, progress: bool = False) -> Any:
    """A Lightning trainer for adapter training on the plan's device."""
    import lightning as L

    plan = vlm.plan
    if precision in (None, "auto"):
        precision = ("bf16-mixed" if plan.dtype == "bfloat16" else "16-mixed" if plan.dtype == "float16" else "32-true") \
            if plan.device == "cuda" else "32-true"
    return L.Trainer(
        accelerator="gpu" if plan.device == "cuda" else "cpu", devices=1, precision=precision, max_steps=max_steps,
        accumulate_grad_batches=plan.grad_accum, gradient_clip_val=gradient_clip_val, logger=False,
        enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
        default_root_dir=str(out_dir) if out_dir else None, num_sanity_val_steps=0, limit_val_batches=0)


def fit_adapter(vlm: Any, images: Sequence[Any], fills: Sequence[dict[str, Any]], answers: Sequence[str],
                train: TrainSettings, precision: str | None = None, out_dir: Any = None, seed: int = 0,
                max_steps: int | None = None) -> dict[str, Any]:
    """Train the enabled adapters on the given rows; returns the loss of the first and last step."""
    import lightning as L

    L.seed_everything(seed, workers=True, verbose=False)
    ds = AnswerRows(images, fills, answers)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=vlm.plan.batch_size, shuffle=True, generator=gen, collate_fn=Collate(vlm),
                        num_workers=0)
    module = LoraModule(vlm, train)
    steps = int(max_steps or train.max_steps)
    trainer = make_trainer(vlm, steps, precision, out_dir)
    vlm.peft.train()  # adapters train with dropout; Lightning expects train mode from the start
    trainer.fit(module, train_dataloaders=loader)
    losses = module.losses
    vlm.net.eval()
    vlm.refresh_adapter_id()
    return {"steps": int(trainer.global_step), "first_loss": losses[0] if losses else float("nan"),
            "last_loss": losses[-1] if losses else float("nan"), "batches": len(losses)}
