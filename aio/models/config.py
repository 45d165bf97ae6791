"""Typed configs of the model plugins (Hydra group ``model``: chartnet, knn_analogs, none)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from aio.config import param
from aio.errors import ConfigError


@dataclass
class ModelCommon:
    """Targets and the walk-forward evaluation every model shares."""

    label: Optional[str] = param(None, help="direction label column (dir_<h>); null: the dataset's first horizon")
    return_label: Optional[str] = param(None, help="realised-return column for the IC; null: fwd_ret_pips_<h>")
    folds: int = param(4, ge=1, le=100, help="walk-forward folds: the rows are cut in folds+1 blocks, block j+1 "
                                              "is predicted by a model fitted before it")
    scheme: str = param("expanding", choices=["expanding", "rolling"], help="fit on all earlier blocks or the last one")
    val_fraction: float = param(0.2, ge=0.0, lt=0.9, help="last part of each fold's fitting rows held out "
                                                          "(early stopping, temperature scaling)")
    ece_bins: int = param(15, ge=2, le=100)
    price_features: str = param("relative", choices=["relative", "keep", "drop"],
                                help="features that are price levels (SMA, EMA, Bollinger bands...): as basis points "
                                     "from the close (relative), unchanged (keep) or left out (drop)")


@dataclass
class ChartNetConfig(ModelCommon):
    """Small CNN over the chart image + MLP over the numeric features, fused; heads for the
    direction class (temperature-calibrated) and the forward return; the fused vector is
    the pattern embedding."""

    name: str = "chartnet"
    features: Optional[list[str]] = param(None, help="numeric feature columns; null: all of the dataset's")
    image_size: int = param(64, ge=16, le=512, help="images are downsampled (area average) to this square size")
    channels: list[int] = param(default_factory=lambda: [16, 32, 64], help="conv widths; each block halves the size")
    mlp_hidden: int = param(64, ge=4, le=4096)
    embedding_dim: int = param(64, ge=4, le=4096, help="width of the fused embedding stored in the pattern library")
    dropout: float = param(0.1, ge=0.0, lt=1.0)
    return_weight: float = param(0.5, ge=0.0, help="weight of the return head's Huber loss (standardised target)")
    lr: float = param(2e-3, gt=0.0, le=1.0)
    weight_decay: float = param(1e-4, ge=0.0)
    calibrate: bool = param(True, help="fit a temperature on each fold's validation rows")
    cache_images: bool = param(True, help="decode and downsample every image once into memory (else per batch)")

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 for c in self.channels):
            raise ConfigError(f"config key model.channels={self.channels!r} must be a non-empty list of widths >= 1")
        if self.image_size // (2 ** len(self.channels)) < 1:
            raise ConfigError(f"config key model.channels: {len(self.channels)} stride-2 blocks shrink a "
                              f"{self.image_size}px image below 1px; use fewer blocks or a larger model.image_size")


@dataclass
class KnnAnalogsConfig(ModelCommon):
    """Outcomes of the k most similar past patterns (no training): only patterns whose
    label horizon closed before the query bar count."""

    name: str = "knn_analogs"
    k: int = param(20, ge=1, le=10000)
    embedding: str = param("price_path", choices=["price_path", "image"],
                           help="price_path: z-scored log closes of the window resampled to `dim` points; "
                                "image: the chart image as a dim x dim grey thumbnail")
    dim: int = param(32, ge=4, le=256)
    window: Optional[int] = param(None, ge=4, help="bars in the price path; null: the renderer's window")
    backend: str = param("library", choices=["library", "memory"],
                         help="library: search the LanceDB pattern library (also patterns of earlier runs); "
                              "memory: exact search over this run's rows in numpy")
    min_neighbors: int = param(5, ge=1, help="fewer eligible past patterns: no prediction (NaN)")
    smoothing: float = param(1.0, ge=0.0, help="Laplace count added to each class before normalising")
    val_fraction: float = param(0.0, ge=0.0, lt=0.9, help="unused by knn (nothing is fitted)")


@dataclass
class NoModelConfig:
    """No model: the model stages are skipped and rules cannot read model.*."""

    name: str = "none"
