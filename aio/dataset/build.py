"""Build (or reuse) the chart dataset: windows -> images + features + labels -> store.

Row ``t`` (a decision bar, every ``stride`` bars) holds the chart of the last ``N``
bars ending at ``t``, the features at ``t`` and the labels over ``t+1 .. t+h``. Image,
features and metadata use bars with ``ts_init <= ts_init[t]`` only; rows whose label
horizon runs past the data end are dropped.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import structlog

from aio.dataset.config import DatasetConfig
from aio.dataset.features import REGIMES, compute_features, missing_inputs
from aio.dataset.labels import compute_labels
from aio.dataset.splits import Block, purge, split_labels, time_splits, walk_forward
from aio.dataset.store import FORMAT_VERSION, RowWriter, finalize, input_hash, read_meta
from aio.errors import ConfigError, DataError
from aio.records import Bars
from aio.render.base import IndicatorSpec, Renderer, SeriesSet, compute_indicator_outputs
from aio.render.parallel import iter_render_pngs

log = structlog.get_logger(__name__)

META_COLUMNS = ["row", "bar_index", "ts_event", "ts_init", "window_start_ts", "split", "regime"]
# Config keys that change how a dataset is built or where it lives, not what it holds.
_NOT_HASHED_DATASET = ("store.path", "store.reuse", "store.rows_per_write", "progress")
_NOT_HASHED_RENDERER = ("workers", "batch")


@dataclass
class DatasetInfo:
    path: Path
    rows: int
    splits: dict[str, Any]
    hash: str
    columns: dict[str, list[str]]
    reused: bool = False
    seconds: float = 0.0
    format: str = "lance"
    meta: dict[str, Any] = field(default_factory=dict, repr=False)


def _drop(d: dict[str, Any], dotted: tuple[str, ...]) -> dict[str, Any]:
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for key in dotted:
        parts = key.split(".")
        node = d
        for p in parts[:-1]:
            node = node.get(p, {})
        node.pop(parts[-1], None)
    return d


def hashed_config(cfg: DatasetConfig, renderer: Renderer) -> dict[str, Any]:
    rcfg = dataclasses.asdict(renderer.config) if dataclasses.is_dataclass(renderer.config) else dict(renderer.config or {})
    return {
        "dataset": _drop(dataclasses.asdict(cfg), _NOT_HASHED_DATASET),
        "renderer": {"class": f"{type(renderer).__module__}.{type(renderer).__qualname__}",
                     "config": _drop(rcfg, _NOT_HASHED_RENDERER)},
    }


def _bars_arrays(bars: Bars) -> dict[str, np.ndarray]:
    f = bars.frame
    out = {k: f.get_column(k).to_numpy().astype(np.float64) for k in ("open", "high", "low", "close", "volume", "spread_mean")}
    out["ts_event"] = f.get_column("ts_event").to_numpy().astype(np.int64)
    out["ts_init"] = f.get_column("ts_init").to_numpy().astype(np.int64)
    if len(out["ts_init"]) > 1 and np.any(np.diff(out["ts_init"]) <= 0):
        raise DataError("bars are not in strictly increasing ts_init order; sort and de-duplicate them first")
    return out


def _warmups(series: dict[str, np.ndarray]) -> dict[str, int | None]:
    """First finite bar of each series; None for a series that is never finite."""
    out: dict[str, int | None] = {}
    for name, a in series.items():
        fin = np.isfinite(a)
        out[name] = int(fin.argmax()) if fin.any() else None
    return out


def decision_bars(n: int, warmup: int, horizon: int, stride: int) -> np.ndarray:
    """Every ``stride``-th bar from ``warmup`` whose label horizon ends inside the data."""
    last = n - 1 - horizon
    if last < warmup:
        return np.zeros(0, dtype=np.int64)
    return np.arange(warmup, last + 1, stride, dtype=np.int64)


@dataclass
class Rows:
    """Everything of the dataset's rows except the images (see :func:`compute_rows`)."""

    ends: np.ndarray  # decision bar index of each row
    meta: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    blocks: dict[str, Block]
    folds: list[dict[str, Block]]
    embargo: int
    n_bars: int
    arrays: dict[str, np.ndarray] = field(repr=False)
    series: SeriesSet = field(repr=False)
    notes: list[str] = field(default_factory=list)  # what was left out and why (no spread, no volume)

    def images(self, renderer: Renderer, rows: np.ndarray | None = None) -> list[bytes]:
        """PNG bytes of ``rows`` (all by default), rendered in this process."""
        ends = self.ends if rows is None else self.ends[np.asarray(rows)]
        return renderer.render_png(self.series.windows(ends, renderer.bars))


def compute_rows(bars: Bars, indicators: dict[str, np.ndarray], cfg: DatasetConfig, renderer: Renderer) -> Rows:
    """Decision bars, metadata, features, labels and splits: the dataset short of its images."""
    indicators = {k: np.asarray(v) for k, v in (indicators or {}).items()}
    arrays = _bars_arrays(bars)
    n = len(arrays["close"])
    pip = float(bars.pip)
    atr_spec = IndicatorSpec("ATR", {"timeperiod": cfg.atr_period})
    atr = next(iter(compute_indicator_outputs(atr_spec, arrays).values()))
    features, regime = compute_features(arrays, arrays["ts_init"], indicators, cfg, pip)
    series = renderer.series(arrays)
    firsts = _warmups({**features, "atr": atr})
    empty = [k for k, v in firsts.items() if v is None]
    if empty and n:
        raise DataError(
            f"no dataset rows: {', '.join(empty)} {'is' if len(empty) == 1 else 'are'} NaN on every one of the {n} bars, "
            "so no bar ever leaves the warm-up. "
            + ("An ind_* column is an indicator of the indicator set: drop it from `indicators` or give the bars the "
               "input it needs (volume, say); " if any(k.startswith("ind_") for k in empty) else "")
            + "check the bars' columns (data_quality.json) and the data source's mapping (data.columns)"
        )
    longest = max(firsts, key=lambda k: firsts[k] or 0) if firsts else "window"
    warmup = max(renderer.warmup(), max((v or 0) for v in firsts.values()) if firsts else 0)
    ends = decision_bars(n, warmup, cfg.label_horizon, cfg.stride)
    if len(ends) == 0:
        raise DataError(
            f"no dataset rows: {n} bars, warm-up {warmup} bars (longest: "
            f"{'the chart window' if renderer.warmup() >= warmup else longest}) and label horizon "
            f"{cfg.label_horizon} leave nothing; use more data, shorter horizons or a smaller window"
        )
    labels = compute_labels(arrays, atr, ends, cfg, pip)
    embargo = cfg.embargo
    blocks = time_splits(ends, cfg.split, embargo)
    test = blocks["test"]
    pre_test = purge(Block(0, test.start), test, ends, embargo).stop if len(test) else len(ends)
    folds = walk_forward(ends, pre_test, cfg.split.folds, cfg.split.fold_scheme, embargo)
    meta = {
        "row": np.arange(len(ends), dtype=np.int64),
        "bar_index": ends,
        "ts_event": arrays["ts_event"][ends],
        "ts_init": arrays["ts_init"][ends],
        "window_start_ts": arrays["ts_event"][ends - (renderer.bars - 1)],
        "split": split_labels(len(ends), blocks),
        "regime": regime[ends],
    }
    feats = {k: v[ends] for k, v in features.items()}
    notes = list(missing_inputs(arrays).values())
    if "spread_mean" in missing_inputs(arrays) and cfg.subtract_spread:
        notes.append("labels pay no spread: the bars have none (dataset.subtract_spread has nothing to subtract)")
    for note in notes:
        log.warning("dataset: " + note)
    return Rows(ends, meta, feats, labels, blocks, folds, embargo, n, arrays, series, notes)


def build_dataset(
    bars: Bars,
    indicators: dict[str, np.ndarray],
    cfg: DatasetConfig,
    renderer: Renderer,
    out_dir: Path,
    cache_dir: Path | None = None,
) -> DatasetInfo:
    """Build the dataset under ``<root>/<hash>/`` or reuse the one already there.

    ``root`` is ``cfg.store.path``, else ``cache_dir``, else ``out_dir/"dataset"``.
    """
    t0 = time.perf_counter()
    if not getattr(renderer, "produces_arrays", False):
        raise ConfigError(
            f"renderer={getattr(renderer, 'name', type(renderer).__name__)} draws charts for people, not image arrays; "
            "the dataset needs an image renderer: use renderer=candles"
        )
    indicators = {k: np.asarray(v) for k, v in (indicators or {}).items()}
    bars_meta = {"symbol": bars.symbol, "timeframe": bars.timeframe, "side": bars.side,
                 "synthetic": bool(bars.synthetic), "pip": bars.pip, "point": bars.point}
    hcfg = hashed_config(cfg, renderer)
    digest = input_hash(bars.frame, bars_meta, indicators if cfg.features.indicators else {}, hcfg)
    root = Path(cfg.store.path) if cfg.store.path else (Path(cache_dir) if cache_dir else Path(out_dir) / "dataset")
    final = root / digest[:16]
    meta = read_meta(final)
    if cfg.store.reuse and meta and meta.get("hash") == digest and meta.get("complete"):
        log.info("dataset reused", path=str(final), rows=meta["rows"], hash=digest[:16])
        return _info(final, meta, reused=True, seconds=time.perf_counter() - t0)

    rows = compute_rows(bars, indicators, cfg, renderer)
    ends, meta_cols, feat_rows, labels = rows.ends, rows.meta, rows.features, rows.labels
    blocks, folds, split, embargo = rows.blocks, rows.folds, rows.meta["split"], rows.embargo
    feature_names, label_names = list(feat_rows), list(labels)
    n, pip, arrays, series = rows.n_bars, float(bars.pip), rows.arrays, rows.series

    tmp = root / f".{digest[:16]}.tmp-{time.time_ns()}"
    tmp.mkdir(parents=True, exist_ok=True)
    writer = RowWriter(tmp, cfg.store.format)
    step = cfg.store.rows_per_write
    rcfg = renderer.config
    log.info("building dataset", rows=len(ends), bars=n, stride=cfg.stride, window=renderer.bars,
             horizon=cfg.label_horizon, store=cfg.store.format, path=str(final))
    try:
        images: list[bytes] = []
        done = 0
        for pngs in iter_render_pngs(renderer, series, ends, workers=getattr(rcfg, "workers", 0),
                                     chunk=getattr(rcfg, "batch", 256), progress=cfg.progress):
            images.extend(pngs)
            while len(images) >= step or (images and done + len(images) == len(ends)):
                take = min(step, len(images))
                writer.write(_table(done, done + take, images[:take], meta_cols, feat_rows, labels))
                images = images[take:]
                done += take
        writer.close()
        counts = {name: int((split == name).sum()) for name in ("train", "val", "test", "gap")}
        fold_meta = [{k: b.as_list() for k, b in f.items()} for f in folds]
        train_rows = blocks["train"].rows()
        fmat = np.stack([feat_rows[k][train_rows] for k in feature_names], axis=1) if len(train_rows) else None
        with np.errstate(all="ignore"):
            mean = np.nanmean(fmat, axis=0) if fmat is not None else np.zeros(len(feature_names))
            std = np.nanstd(fmat, axis=0) if fmat is not None else np.ones(len(feature_names))
        meta = {
            "complete": True,
            "hash": digest,
            "format_version": FORMAT_VERSION,
            "format": cfg.store.format,
            "rows": int(len(ends)),
            "bars": n,
            "symbol": bars.symbol,
            "timeframe": bars.timeframe,
            "synthetic": bool(bars.synthetic),
            "pip": pip,
            "window": renderer.bars,
            "image": {"renderer": renderer.name, "height": getattr(rcfg, "height", None), "width": getattr(rcfg, "width", None),
                      "channels": 3, "encoding": "png"},
            "columns": {"meta": META_COLUMNS, "image": ["image"], "features": feature_names, "labels": label_names},
            "default_label": f"dir_{int(cfg.horizons[0])}",
            "regimes": list(REGIMES),
            "label_horizon": cfg.label_horizon,
            "embargo_bars": embargo,
            "splits": {k: b.as_list() for k, b in blocks.items()},
            "split_counts": counts,
            "folds": fold_meta,
            "feature_stats": {"source": "train split", "mean": _finite_list(mean), "std": _finite_list(std, 1.0)},
            "config": hcfg,
            "ts_range": [int(arrays["ts_init"][ends[0]]), int(arrays["ts_init"][ends[-1]])],
            "notes": rows.notes,
        }
        finalize(tmp, final, meta)
    except BaseException:
        writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    log.info("dataset built", path=str(final), rows=meta["rows"], seconds=round(seconds, 2), **counts)
    return _info(final, meta, reused=False, seconds=seconds)


def _finite_list(a: np.ndarray, fill: float = 0.0) -> list[float]:
    a = np.where(np.isfinite(a), a, fill)
    if fill == 1.0:
        a = np.where(a > 0, a, 1.0)
    return [float(x) for x in a]


def _table(lo: int, hi: int, images: list[bytes], meta_cols: dict[str, np.ndarray], feats: dict[str, np.ndarray],
           labels: dict[str, np.ndarray]) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for k, v in meta_cols.items():
        part = v[lo:hi]
        cols[k] = pa.array(part.tolist(), pa.string()) if part.dtype == object else pa.array(part)
    cols["image"] = pa.array(images, pa.binary())
    for k, v in feats.items():
        cols[k] = pa.array(v[lo:hi], pa.float64())
    for k, v in labels.items():
        cols[k] = pa.array(v[lo:hi])
    return pa.table(cols)


def _info(path: Path, meta: dict[str, Any], reused: bool, seconds: float) -> DatasetInfo:
    splits = dict(meta["split_counts"])
    splits["ranges"] = meta["splits"]
    splits["folds"] = meta["folds"]
    return DatasetInfo(path=Path(path), rows=int(meta["rows"]), splits=splits, hash=meta["hash"],
                       columns=meta["columns"], reused=reused, seconds=round(seconds, 3), format=meta["format"], meta=meta)
