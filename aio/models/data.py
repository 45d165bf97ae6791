"""Model-side access to a stored chart dataset: light columns, images, fold data modules.

The dataset's own row reader and PNG decoder are used; images are downsampled
(area average) to the model's input size and, by default, kept in memory once for
all folds (uint8, 3 x S x S per row). Features are standardised per fold with the
statistics of that fold's fitting rows only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from aio.dataset.store import RowReader
from aio.dataset.torch_data import load_meta
from aio.errors import ConfigError
from aio.models.baselines import CLIP
from aio.render.png import decode_png

try:
    import lightning as L

    _DataModuleBase = L.LightningDataModule
except ImportError:  # pragma: no cover
    _DataModuleBase = object  # type: ignore[assignment,misc]

READ_CHUNK = 2048


@dataclass
class Table:
    """The light columns of every row, in row order."""

    path: Path
    meta: dict[str, Any]
    label: str
    return_label: str
    horizon: int
    feature_names: list[str]
    bar_index: np.ndarray
    ts_init: np.ndarray
    features: np.ndarray  # (n, f) raw float64
    y: np.ndarray  # (n,) int64 direction class: 0 down, 1 flat, 2 up
    ret: np.ndarray  # (n,) realised return (return_label)
    regime: np.ndarray  # (n,) object
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)


def resolve_labels(meta: dict[str, Any], label: str | None, return_label: str | None) -> tuple[str, str, int]:
    labels = meta["columns"]["labels"]
    label = label or meta["default_label"]
    if label not in labels or not label.startswith("dir_"):
        dirs = [c for c in labels if c.startswith("dir_")]
        raise ConfigError(f"config key model.label={label!r} is not a direction label of this dataset; choose one of: {', '.join(dirs)}")
    horizon = int(label.split("_")[-1])
    return_label = return_label or f"fwd_ret_pips_{horizon}"
    if return_label not in labels:
        raise ConfigError(f"config key model.return_label={return_label!r} is not in this dataset; labels: {', '.join(labels)}")
    return label, return_label, horizon


PRICE_LEVEL_TOL = 0.02  # a feature within 2% of the close (median) is a price level


def price_level_columns(x: np.ndarray, close: np.ndarray, names: list[str], decide_rows: int) -> list[int]:
    """Columns whose values sit at the price (moving averages, bands), judged on the first
    ``decide_rows`` rows only (so the choice uses no later data)."""
    head = slice(0, max(1, decide_rows))
    out = []
    with np.errstate(all="ignore"):
        for j in range(len(names)):
            r = np.abs(x[head, j] / close[head] - 1.0)
            r = r[np.isfinite(r)]
            if len(r) and np.median(r) < PRICE_LEVEL_TOL:
                out.append(j)
    return out


def load_table(path: str | Path, label: str | None = None, return_label: str | None = None,
               features: list[str] | None = None, close: np.ndarray | None = None,
               price_features: str = "relative") -> Table:
    """The light columns; with the bars' ``close``, price-level features become basis points
    from the close (``relative``) or are dropped, as ``price_features`` says."""
    path = Path(path)
    meta = load_meta(path)
    label, return_label, horizon = resolve_labels(meta, label, return_label)
    known = meta["columns"]["features"]
    names = list(features) if features else list(known)
    missing = [c for c in names if c not in known]
    if missing:
        raise ConfigError(f"config key model.features: {missing} are not dataset features; known: {', '.join(known)}")
    reader = RowReader(path, meta["format"])
    t = reader.columns(["bar_index", "ts_init", "regime", label, return_label, *names])
    col = lambda c: t.column(c).to_numpy(zero_copy_only=False)  # noqa: E731
    x = np.stack([col(c).astype(np.float64) for c in names], axis=1) if names else np.zeros((t.num_rows, 0))
    bar_index = col("bar_index").astype(np.int64)
    levels: list[str] = []
    if close is not None and price_features != "keep" and names:
        c = np.asarray(close, dtype=np.float64)[bar_index]
        cols = price_level_columns(x, c, names, max(1, len(bar_index) // 5))
        levels = [names[j] for j in cols]
        if price_features == "relative":
            for j in cols:
                x[:, j] = (x[:, j] / c - 1.0) * 1e4
            names = [f"{n}_bps" if n in levels else n for n in names]
        else:
            keep = [j for j in range(len(names)) if j not in cols]
            x, names = x[:, keep], [names[j] for j in keep]
    return Table(path=path, meta=meta, label=label, return_label=return_label, horizon=horizon, feature_names=names,
                 bar_index=bar_index, ts_init=col("ts_init").astype(np.int64), features=x,
                 y=col(label).astype(np.int64), ret=col(return_label).astype(np.float64), regime=col("regime"),
                 extra={"price_level_features": np.asarray(levels, dtype=object)})


def resize_images(imgs: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> (B, 3, size, size) uint8 by area averaging (no aliasing)."""
    if imgs.shape[-1] == size and imgs.shape[-2] == size:
        return imgs
    out = F.interpolate(imgs.float(), size=(size, size), mode="area")
    return out.round_().clamp_(0, 255).to(torch.uint8)


class ImageStore:
    """Images of rows at ``size`` px: all decoded once (``cache``) or read per request."""

    def __init__(self, path: str | Path, meta: dict[str, Any], size: int, cache: bool = True) -> None:
        self.path, self.size, self.cache = Path(path), int(size), cache
        self.reader = RowReader(self.path, meta["format"])
        self.n = int(meta["rows"])
        self._all: torch.Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        pngs = self.reader.take(rows.tolist(), ["image"]).column("image").to_pylist()
        arr = np.stack([decode_png(p) for p in pngs])[..., :3]
        return resize_images(torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))), self.size)

    def load_all(self) -> torch.Tensor:
        if self._all is None:
            parts = [self._decode(np.arange(s, min(s + READ_CHUNK, self.n))) for s in range(0, self.n, READ_CHUNK)]
            self._all = torch.cat(parts) if parts else torch.zeros((0, 3, self.size, self.size), dtype=torch.uint8)
        return self._all

    def get(self, rows: np.ndarray) -> torch.Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        if self.cache:
            return self.load_all()[torch.from_numpy(rows)]
        return self._decode(rows)


def _batch_identity(batch: Any) -> Any:
    return batch


class RowsDataset(Dataset):
    """Batches of ``{"image", "features", "y", "ret", "row"}`` for the given rows."""

    def __init__(self, images: ImageStore, rows: np.ndarray, features: np.ndarray, y: np.ndarray, ret: np.ndarray) -> None:
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.features = torch.from_numpy(features[self.rows].astype(np.float32))
        self.y = torch.from_numpy(y[self.rows].astype(np.int64))
        self.ret = torch.from_numpy(np.nan_to_num(ret[self.rows], nan=0.0).astype(np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, ks: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(ks, dtype=torch.long)
        return {
            "image": self.images.get(self.rows[ks]).float().div_(255.0),
            "features": self.features[idx],
            "y": self.y[idx],
            "ret": self.ret[idx],
            "row": torch.from_numpy(self.rows[ks]),
        }

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return {key: v[0] for key, v in self.__getitems__([k]).items()}


@dataclass
class FoldStats:
    """Standardisation of one fold, from its fitting rows only."""

    feat_mean: np.ndarray
    feat_std: np.ndarray
    ret_mean: float
    ret_std: float

    @classmethod
    def fit(cls, x: np.ndarray, ret: np.ndarray) -> "FoldStats":
        with np.errstate(all="ignore"):
            mean = np.nanmean(x, axis=0) if x.shape[1] else np.zeros(0)
            std = np.nanstd(x, axis=0) if x.shape[1] else np.zeros(0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        r = ret[np.isfinite(ret)]
        rm = float(r.mean()) if len(r) else 0.0
        rs = float(r.std()) if len(r) > 1 and r.std() > 0 else 1.0
        return cls(mean, std, rm, rs)

    def features(self, x: np.ndarray) -> np.ndarray:
        z = np.nan_to_num((x - self.feat_mean) / self.feat_std, nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(z, -CLIP, CLIP)  # as the logreg baseline: the same inputs

    def ret(self, r: np.ndarray) -> np.ndarray:
        return (r - self.ret_mean) / self.ret_std


class FoldDataModule(_DataModuleBase):
    """Lightning data module of one walk-forward fold: fit / val / predict rows.

    Training batches are shuffled within the fitting rows only (seeded generator);
    validation and prediction keep time order.
    """

    def __init__(self, table: Table, images: ImageStore, fit_rows: np.ndarray, val_rows: np.ndarray,
                 predict_rows: np.ndarray, batch_size: int, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.table, self.images = table, images
        self.fit_rows, self.val_rows, self.predict_rows = (np.asarray(r, dtype=np.int64) for r in (fit_rows, val_rows, predict_rows))
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.stats = FoldStats.fit(table.features[self.fit_rows], table.ret[self.fit_rows])
        self._x = self.stats.features(table.features).astype(np.float32)
        self._r = self.stats.ret(table.ret)

    def dataset(self, rows: np.ndarray) -> RowsDataset:
        return RowsDataset(self.images, rows, self._x, self.table.y, self._r)

    def loader(self, rows: np.ndarray, shuffle: bool = False) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.dataset(rows), batch_size=self.batch_size, shuffle=shuffle, generator=gen,
                          num_workers=self.num_workers, collate_fn=_batch_identity,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.fit_rows, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_rows)

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.predict_rows)
