"""chartnet: a small CNN over the chart image and an MLP over the numeric features, fused.

    image (3 x S x S) -> [conv3x3 stride 2 -> BN -> ReLU] x len(channels) -> global avg pool
    features (f)      -> Linear -> ReLU -> Dropout -> Linear -> ReLU
    concat -> Linear -> ReLU = embedding (embedding_dim)      # stored in the pattern library
    embedding -> Dropout -> Linear(3)  direction logits (down, flat, up), temperature-scaled
    embedding -> Dropout -> Linear(1)  forward return (standardised per fold)

With 64 x 64 inputs and widths 16/32/64 that is about 30k weights and ~3 MFLOP per
chart, which trains on two CPU cores in seconds per epoch.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from aio.models.config import ChartNetConfig


class GlobalAvgPool(nn.Module):
    # A plain mean: adaptive_avg_pool2d has no deterministic CUDA backward.
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ChartNet(nn.Module):
    def __init__(self, n_features: int, cfg: ChartNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.cnn = nn.Sequential(*layers, GlobalAvgPool())
        self.n_features = n_features
        if n_features:
            self.mlp = nn.Sequential(nn.Linear(n_features, cfg.mlp_hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                     nn.Linear(cfg.mlp_hidden, cfg.mlp_hidden), nn.ReLU(inplace=True))
            fused = c_in + cfg.mlp_hidden
        else:
            self.mlp = None
            fused = c_in
        self.fuse = nn.Sequential(nn.Linear(fused, cfg.embedding_dim), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(cfg.dropout)
        self.dir_head = nn.Linear(cfg.embedding_dim, 3)
        self.ret_head = nn.Linear(cfg.embedding_dim, 1)
        # The calibration temperature travels with the weights (1 until fitted).
        self.register_buffer("temperature", torch.ones(()))

    def embed(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        h = self.cnn(image)
        if self.mlp is not None:
            h = torch.cat([h, self.mlp(features)], dim=1)
        return self.fuse(h)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.embed(image, features)
        d = self.drop(emb)
        return {"logits": self.dir_head(d), "ret": self.ret_head(d).squeeze(-1), "embedding": emb}


class ChartNetModule(L.LightningModule):
    """Cross-entropy on the direction class + ``return_weight`` x Huber on the standardised return."""

    def __init__(self, n_features: int, cfg: ChartNetConfig, max_epochs: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_epochs = max_epochs
        self.net = ChartNet(n_features, cfg)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(image, features)

    def _losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        out = self.net(batch["image"], batch["features"])
        ce = F.cross_entropy(out["logits"].float(), batch["y"])
        hub = F.smooth_l1_loss(out["ret"].float(), batch["ret"])
        return ce + self.cfg.return_weight * hub, ce, hub, out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, ce, hub, _ = self._losses(batch)
        bs = len(batch["y"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("train_ce", ce, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, ce, hub, out = self._losses(batch)
        bs = len(batch["y"])
        acc = (out["logits"].argmax(1) == batch["y"]).float().mean()
        self.log("val_loss", loss, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("val_nll", ce, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("val_acc", acc, on_epoch=True, batch_size=bs, sync_dist=True)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


@torch.no_grad()
def infer(net: ChartNet, loader: Any, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Logits, standardised return forecasts, embeddings and row numbers over ``loader`` (eval mode)."""
    net.eval().to(device)
    logits, rets, embs, rows = [], [], [], []
    for b in loader:
        out = net(b["image"].to(device), b["features"].to(device))
        logits.append(out["logits"].float().cpu())
        rets.append(out["ret"].float().cpu())
        embs.append(out["embedding"].float().cpu())
        rows.append(b["row"])
    cat = lambda xs, shape: torch.cat(xs).numpy() if xs else torch.zeros(shape).numpy()  # noqa: E731
    return {"logits": cat(logits, (0, 3)).astype("float64"), "ret": cat(rets, (0,)).astype("float64"),
            "embedding": cat(embs, (0, net.fuse[0].out_features)).astype("float32"),
            "row": cat(rows, (0,)).astype("int64")}
