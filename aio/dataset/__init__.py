"""The multimodal chart dataset: chart images + features + labels + times, stored for PyTorch.

    info = build_dataset(bars, indicators, dataset_config(section), renderer, run_dir, cache_dir)
    dm = ChartDataModule(info.path, batch_size=64)

See docs/dataset.md for the row contract (no lookahead), the features, labels, splits
and the store layout.
"""

from __future__ import annotations

from aio.dataset.build import DatasetInfo, build_dataset, compute_rows, decision_bars
from aio.dataset.config import (
    DatasetConfig,
    FeatureConfig,
    RegimeConfig,
    SplitConfig,
    StoreConfig,
    TripleBarrierConfig,
    dataset_config,
)
from aio.dataset.features import REGIMES, SESSIONS, compute_features
from aio.dataset.labels import compute_labels

__all__ = [
    "ChartDataModule", "ChartDataset", "DatasetConfig", "DatasetInfo", "FeatureConfig", "REGIMES", "RegimeConfig",
    "SESSIONS", "SplitConfig", "StoreConfig", "TripleBarrierConfig", "build_dataset",
    "compute_features", "compute_rows",
    "compute_labels", "dataset_config", "decision_bars", "register",
]


def __getattr__(name: str):
    # torch/lightning load only when the PyTorch side is used.
    if name in ("ChartDataset", "ChartDataModule"):
        from aio.dataset import torch_data

        return getattr(torch_data, name)
    raise AttributeError(f"module 'aio.dataset' has no attribute {name!r}")


def register(registry) -> None:
    """No plugin kind of its own: the ``dataset`` config group is plain YAML validated by DatasetConfig."""
    return None
