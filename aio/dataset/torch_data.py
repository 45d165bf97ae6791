"""PyTorch access to a stored chart dataset: images are read lazily, row by row.

``ChartDataset`` loads the light columns (features, labels, times) of its rows at
construction and fetches PNG bytes from the store only when an item (or a batch, via
``__getitems__``) is asked for. Splits and folds are the stored time blocks; a
``DataLoader`` may shuffle rows *within* the training block only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from aio.dataset.store import META, RowReader
from aio.render.png import decode_png

try:  # lightning is a dependency; keep this module importable without it for plain torch use
    import lightning as L

    _DataModuleBase = L.LightningDataModule
except ImportError:  # pragma: no cover
    _DataModuleBase = object  # type: ignore[assignment,misc]


def collate_rows(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items into a batch with numpy: torch.stack's intra-op threads stall on a busy
    machine (20x slower measured on 2 loaded cores), and this is a plain copy."""
    return {k: torch.from_numpy(np.stack([it[k].numpy() for it in items])) for k in items[0]}


def worker_context() -> str:
    import multiprocessing as mp

    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def load_meta(path: str | Path) -> dict[str, Any]:
    p = Path(path) / META
    if not p.is_file():
        raise FileNotFoundError(f"{path} holds no chart dataset ({META} missing); build one with task=dataset")
    return json.loads(p.read_text())


def split_rows(meta: dict[str, Any], split: str, fold: int | None = None) -> np.ndarray:
    """Row numbers of ``split`` (train/val/test/all), or of a walk-forward ``fold``'s train/val."""
    if split == "all":
        return np.arange(meta["rows"], dtype=np.int64)
    if fold is not None:
        folds = meta["folds"]
        if not 0 <= fold < len(folds):
            raise ValueError(f"fold={fold} does not exist: the dataset has {len(folds)} folds (dataset.split.folds)")
        if split == "test":
            lo, hi = meta["splits"]["test"]
        else:
            lo, hi = folds[fold][split]
    else:
        if split not in meta["splits"]:
            raise ValueError(f"split={split!r}: choose train, val, test or all")
        lo, hi = meta["splits"][split]
    return np.arange(lo, hi, dtype=np.int64)


class ChartDataset(Dataset):
    """Items: ``{"image", "features", "label", "ts_init", "row"}``.

    ``image`` is ``(3, H, W)`` uint8, or float32 in [0, 1] with ``float_images``;
    ``features`` are standardised with the train split's mean/std when ``normalize``.
    """

    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        fold: int | None = None,
        label: str | None = None,
        features: list[str] | None = None,
        normalize: bool = True,
        float_images: bool = True,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.path = Path(path)
        self.meta = load_meta(self.path)
        self.label = label or self.meta["default_label"]
        known = self.meta["columns"]["labels"]
        if self.label not in known:
            raise ValueError(f"label={self.label!r} is not in this dataset; labels: {', '.join(known)}")
        all_feats = self.meta["columns"]["features"]
        self.feature_names = list(features or all_feats)
        self.rows = split_rows(self.meta, split, fold)
        self.reader = RowReader(self.path, self.meta["format"])
        light = self.reader.columns(["ts_init", self.label, *self.feature_names])
        take = lambda c: light.column(c).to_numpy()[self.rows]  # noqa: E731
        x = np.stack([take(c) for c in self.feature_names], axis=1) if self.feature_names else np.zeros((len(self.rows), 0))
        if normalize and self.feature_names:
            stats = self.meta["feature_stats"]
            pos = [all_feats.index(c) for c in self.feature_names]
            mean = np.asarray(stats["mean"])[pos]
            std = np.asarray(stats["std"])[pos]
            x = (x - mean) / std
        self.features = torch.from_numpy(np.nan_to_num(x, nan=0.0).astype(np.float32))
        y = take(self.label)
        self.labels = torch.from_numpy(y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32))
        self.ts_init = torch.from_numpy(take("ts_init").astype(np.int64))
        self.float_images = float_images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, png: bytes) -> torch.Tensor:
        chw = decode_png(png).transpose(2, 0, 1)
        # numpy, not torch, for the cast: torch's small-tensor ops cost ~4 ms each on a busy box.
        arr = np.multiply(chw, np.float32(1.0 / 255.0), dtype=np.float32) if self.float_images else np.ascontiguousarray(chw)
        img = torch.from_numpy(arr)
        return self.transform(img) if self.transform else img

    def _item(self, k: int, png: bytes) -> dict[str, torch.Tensor]:
        return {"image": self._image(png), "features": self.features[k], "label": self.labels[k],
                "ts_init": self.ts_init[k], "row": torch.tensor(int(self.rows[k]))}

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        png = self.reader.take([int(self.rows[k])], ["image"]).column("image")[0].as_py()
        return self._item(k, png)

    def __getitems__(self, ks: list[int]) -> list[dict[str, torch.Tensor]]:
        # One store read per batch instead of one per item.
        table = self.reader.take([int(self.rows[k]) for k in ks], ["image"])
        pngs = table.column("image").to_pylist()
        return [self._item(k, p) for k, p in zip(ks, pngs)]


class ChartDataModule(_DataModuleBase):
    """Lightning data module over a stored chart dataset (time splits or one walk-forward fold)."""

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 64,
        num_workers: int = 0,
        label: str | None = None,
        fold: int | None = None,
        features: list[str] | None = None,
        shuffle_train: bool = True,
        float_images: bool = True,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.label = label
        self.fold = fold
        self.feature_names = features
        self.shuffle_train = shuffle_train
        self.float_images = float_images
        self.datasets: dict[str, ChartDataset] = {}

    def _make(self, split: str) -> ChartDataset:
        return ChartDataset(self.path, split, self.fold, self.label, self.feature_names, float_images=self.float_images)

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                self.datasets[split] = self._make(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        extra: dict[str, Any] = {}
        if self.num_workers > 0:
            # Lance: workers from a clean forkserver, since forking a parent that runs lancedb's
            # threads can deadlock (lancedb warns). They start slower (they import torch), so persist.
            extra = {"persistent_workers": True}
            if self.datasets[split].meta["format"] == "lance":
                extra["multiprocessing_context"] = worker_context()
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=collate_rows, **extra)

    def train_dataloader(self) -> DataLoader:
        # Shuffling permutes rows inside the (embargoed) training block only.
        return self._loader("train", self.shuffle_train)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
