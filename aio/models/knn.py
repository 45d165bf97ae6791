"""The ``knn_analogs`` plugin: what happened after the k most similar past charts.

Nothing is fitted. Every decision bar gets a training-free embedding (the shape of its
price path, or its chart as a small grey image); the bar's prediction is the outcome
mix of its k nearest patterns among those whose label horizon closed *before* the bar
(``label_end_ts < ts_init``), found in the LanceDB pattern library (which also holds
earlier runs' patterns of the same embedding) or, exactly, in memory.

    p_class = (count_class + s) / (k + 3 s)          s = smoothing
    exp_return = sum w_i r_i / sum w_i,  w_i = 1 / (distance_i + 1e-6)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import structlog

from aio.errors import ConfigError
from aio.models.base import ModelContext, ModelResult, write_tables
from aio.models.config import KnnAnalogsConfig
from aio.models.data import ImageStore, Table, load_table
from aio.models.evaluation import evaluate
from aio.models.patterns import Outcomes, outcomes, pattern_table
from aio.models.walkforward import plan_folds

log = structlog.get_logger(__name__)
EPS = 1e-6


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norm > 0, x / np.where(norm > 0, norm, 1.0), 0.0)


def price_path_embedding(close: np.ndarray, ends: np.ndarray, window: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors (n, dim), valid mask): z-scored log closes of the ``window`` bars ending
    at each end (inclusive), linearly resampled to ``dim`` points. Uses bars <= end only."""
    ends = np.asarray(ends, dtype=np.int64)
    valid = ends >= window - 1
    idx = np.clip(ends[:, None] + np.arange(1 - window, 1)[None, :], 0, None)
    w = np.log(np.asarray(close, dtype=np.float64)[idx])
    w = w - w.mean(axis=1, keepdims=True)
    sd = w.std(axis=1, keepdims=True)
    w = np.where(sd > 0, w / np.where(sd > 0, sd, 1.0), 0.0)
    grid = np.linspace(0, window - 1, dim)
    lo = np.floor(grid).astype(int)
    hi = np.minimum(lo + 1, window - 1)
    frac = grid - lo
    res = w[:, lo] * (1 - frac) + w[:, hi] * frac
    return _unit(res).astype(np.float32), valid


def image_embedding(images: ImageStore) -> np.ndarray:
    """Grey ``dim x dim`` thumbnails, mean-centred, as unit vectors."""
    imgs = images.load_all().float().mean(dim=1).flatten(1).numpy().astype(np.float64)
    imgs = imgs - imgs.mean(axis=1, keepdims=True)
    return _unit(imgs).astype(np.float32)


def memory_neighbors(emb: np.ndarray, label_end_ts: np.ndarray, ts_init: np.ndarray, k: int,
                     valid: np.ndarray | None = None, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k-NN: for query i only rows j with ``label_end_ts[j] < ts_init[i]``.

    Returns (indices (n, k), distances (n, k)); -1 / inf where fewer than k qualify.
    """
    n = len(emb)
    valid = np.ones(n, dtype=bool) if valid is None else valid
    e = emb.astype(np.float64)
    order = np.argsort(label_end_ts, kind="stable")
    sorted_end = label_end_ts[order]
    idx_out = np.full((n, k), -1, dtype=np.int64)
    dist_out = np.full((n, k), np.inf)
    for s in range(0, n, chunk):
        q = np.arange(s, min(s + chunk, n))
        # how many patterns (in label-end order) closed strictly before each query bar
        m = np.searchsorted(sorted_end, ts_init[q], side="left")
        mmax = int(m.max()) if len(m) else 0
        if mmax == 0:
            continue
        cand = order[:mmax]
        dist = 1.0 - e[q] @ e[cand].T
        dist[:, ~valid[cand]] = np.inf
        dist[np.arange(mmax)[None, :] >= m[:, None]] = np.inf
        kk = min(k, mmax)
        part = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        pd = np.take_along_axis(dist, part, axis=1)
        srt = np.argsort(pd, axis=1, kind="stable")
        part, pd = np.take_along_axis(part, srt, axis=1), np.take_along_axis(pd, srt, axis=1)
        ok = np.isfinite(pd)
        idx_out[q, :kk] = np.where(ok, cand[part], -1)
        dist_out[q, :kk] = pd
    return idx_out, dist_out


def predict_from_neighbors(labels: np.ndarray, returns: np.ndarray, dist: np.ndarray, min_neighbors: int,
                           smoothing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(proba (n, 3), exp_return (n,), count (n,)) from neighbour labels (-1/0/1), returns,
    distances; rows with fewer than ``min_neighbors`` finite neighbours get NaN."""
    ok = np.isfinite(dist)
    count = ok.sum(axis=1)
    proba = np.stack([((labels == c) & ok).sum(axis=1) for c in (-1, 0, 1)], axis=1).astype(np.float64)
    proba = (proba + smoothing) / (count[:, None] + 3 * smoothing)
    w = np.where(ok, 1.0 / (np.where(ok, dist, 0.0).clip(min=0) + EPS), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        exp_ret = (w * np.where(ok, returns, 0.0)).sum(axis=1) / w.sum(axis=1)
    enough = count >= min_neighbors
    proba[~enough] = np.nan
    exp_ret[~enough] = np.nan
    return proba, exp_ret, count


class KnnAnalogsModel:
    name = "knn_analogs"

    def __init__(self, config: KnnAnalogsConfig) -> None:
        self.cfg = config

    def model_id(self, window: int, synthetic: bool) -> str:
        """Same embedding recipe (and data flavour) -> same id, so later runs reuse earlier patterns."""
        from aio.store.ids import short_hash

        recipe = {"embedding": self.cfg.embedding, "dim": self.cfg.dim, "window": window, "v": 1}
        return f"knn-{self.cfg.embedding}-{short_hash(recipe, n=10)}{'-synthetic' if synthetic else ''}"

    def embed(self, table: Table, bars: Any, window: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        if cfg.embedding == "price_path":
            close = bars.frame.get_column("close").to_numpy()
            return price_path_embedding(close, table.bar_index, window, cfg.dim)
        images = ImageStore(table.path, table.meta, cfg.dim, cache=True)
        return image_embedding(images), np.ones(len(table), dtype=bool)

    def fit(self, ctx: ModelContext) -> ModelResult:
        cfg = self.cfg
        if ctx.bars is None:
            raise ConfigError("knn_analogs needs the bars the dataset was built from (run it inside the pipeline)")
        t0 = time.perf_counter()
        table = load_table(ctx.dataset_path, cfg.label, cfg.return_label, None,
                           ctx.bars.frame.get_column("close").to_numpy(), cfg.price_features)
        out = outcomes(table, ctx.bars)
        window = int(cfg.window or table.meta.get("window") or 64)
        emb, valid = self.embed(table, ctx.bars, window)
        model_id = self.model_id(window, ctx.synthetic)
        symbol, timeframe = str(ctx.bars.symbol), str(ctx.bars.timeframe)
        if cfg.backend == "memory":
            idx, dist = memory_neighbors(emb, out.label_end_ts, table.ts_init, cfg.k, valid)
            nb_label = np.where(idx >= 0, out.label[np.maximum(idx, 0)], 0)
            nb_ret = np.where(idx >= 0, out.fwd_return[np.maximum(idx, 0)], np.nan)
            stored = False
        else:
            nb_label, nb_ret, dist = self._library_neighbors(ctx, table, out, emb, valid, model_id, symbol, timeframe)
            stored = True
        proba, exp_simple, count = predict_from_neighbors(nb_label, nb_ret, dist, cfg.min_neighbors, cfg.smoothing)
        proba[~valid] = np.nan
        exp_ret = self._to_label_units(exp_simple, table, out)
        exp_ret[~valid] = np.nan
        folds = plan_folds(table.bar_index, cfg.folds, cfg.scheme, int(table.meta["embargo_bars"]), 0.0)
        metrics, fold_rows = evaluate(table, folds, proba, exp_ret, cfg.ece_bins, ctx.seed)
        fold_of = np.full(len(table), -1, dtype=np.int64)
        fold_of[np.isfinite(proba).all(axis=1)] = 0  # one "model": the past patterns themselves
        pred_ok = np.isfinite(proba).all(axis=1)
        metrics.update({
            "model": "knn_analogs", "model_id": model_id, "backend": cfg.backend, "k": cfg.k,
            "predicted_rows_all": int(pred_ok.sum()), "rows": len(table),
            "mean_neighbors": float(count[pred_ok].mean()) if pred_ok.any() else None,
            "fold_plan": [f.as_dict() for f in folds], "seconds": round(time.perf_counter() - t0, 2),
            "config": dataclasses.asdict(cfg),
        })
        # A knn prediction at bar t sees outcomes up to its latest neighbour's label end only.
        result = ModelResult("knn_analogs", table, proba, exp_ret, fold_of, metrics, fold_rows, emb, model_id,
                             patterns_stored=stored)
        write_tables(result, ctx.out_dir)
        log.info("knn_analogs done", seconds=metrics["seconds"], backend=cfg.backend,
                 oos_accuracy=metrics["oos"]["model"]["accuracy"], oos_log_loss=metrics["oos"]["model"]["log_loss"],
                 majority_log_loss=metrics["oos"]["majority"]["log_loss"])
        return result

    def _to_label_units(self, exp_simple: np.ndarray, table: Table, out: Outcomes) -> np.ndarray:
        # Neighbours' simple returns applied to this bar's close, in the label's unit.
        if table.return_label.startswith("fwd_ret_pips") or table.return_label.startswith("fwd_net_pips"):
            pip = float(table.meta.get("pip") or 1e-4)
            return exp_simple * out.close / pip
        return exp_simple

    def _library_neighbors(self, ctx: ModelContext, table: Table, out: Outcomes, emb: np.ndarray, valid: np.ndarray,
                           model_id: str, symbol: str, timeframe: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from aio.store import PatternLibrary
        from aio.store.config import LanceDBStoreConfig

        cfg = self.cfg
        lib = PatternLibrary.from_config(ctx.store or LanceDBStoreConfig(), ctx.run_dir or ctx.out_dir)
        rows = np.flatnonzero(valid)
        lib.add_patterns(pattern_table(table, out, emb, model_id, symbol, timeframe, ctx.run_id or None, rows))
        lib.ensure_index()
        flt = {"symbol": symbol, "timeframe": timeframe, "model_id": model_id}
        n = len(table)
        labels = np.zeros((n, cfg.k), dtype=np.int64)
        rets = np.full((n, cfg.k), np.nan)
        dist = np.full((n, cfg.k), np.inf)
        from tqdm import tqdm

        block = 512  # queries per call: the library answers a block with one matrix product when it can
        starts = range(0, len(rows), block)
        for s in tqdm(starts, desc="knn queries", unit="block", disable=len(rows) < 2000, mininterval=2.0):
            idx = rows[s:s + block]
            results = lib.search_many(emb[idx], cfg.k, flt, ts_before=table.ts_init[idx],
                                      columns=["label", "fwd_return", "label_end_ts"])
            for i, res in zip(idx, results):
                nb = res.neighbors
                m = nb.height
                if m:
                    labels[i, :m] = nb["label"].to_numpy()
                    rets[i, :m] = nb["fwd_return"].to_numpy()
                    dist[i, :m] = nb["_distance"].to_numpy()
        log.info("knn library searched", path=str(lib.path), queries=len(rows), patterns=lib.count_patterns(flt))
        return labels, rets, dist
