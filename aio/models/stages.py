"""The model stages of a run (called from aio.pipeline): dataset, train, infer, store, similar.

Each reads what earlier stages left on the ``Run`` and adds its own artifacts. With
``model=none`` the dataset (in task=run/optimize), train, infer and store stages do
nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from aio.appconfig import plugin_config, section
from aio.errors import ConfigError

log = structlog.get_logger(__name__)
THUMB_SIDE = 64  # px of the thumbnails stored with each pattern


def model_name(cfg: Any) -> str:
    return str((section(cfg, "model") or {}).get("name") or "none")


def model_enabled(run: Any) -> bool:
    return model_name(run.cfg) != "none"


def store_config(cfg: Any) -> Any:
    from aio.config import build
    from aio.store.config import LanceDBStoreConfig

    sec = section(cfg, "store")
    if sec.get("name") not in (None, "lancedb"):
        _, store_cfg = plugin_config("store", cfg)
        return store_cfg
    return build(LanceDBStoreConfig, sec, "store")


def stage_dataset(run: Any) -> None:
    if run.task in ("run", "optimize", "discover") and not model_enabled(run):
        return
    from aio.dataset import build_dataset, dataset_config
    from aio.render import make_renderer

    ds_cfg = dataset_config(section(run.cfg, "dataset"))
    rsec = section(run.cfg, "renderer") or {"name": "candles"}
    renderer = make_renderer(rsec.get("name", "candles"), rsec)
    cache_dir = None
    if ds_cfg.store.location == "cache":
        import platformdirs

        # content-addressed (<hash>/), so runs with the same inputs and config share one
        cache_dir = Path(platformdirs.user_cache_dir("aio")) / "datasets"
    info = build_dataset(run.bars, run.features, ds_cfg, renderer, run.run_dir, cache_dir)
    run.dataset = info
    run.artifacts["dataset"] = str(info.path)
    run.metrics["dataset"] = {"path": str(info.path), "rows": info.rows, "hash": info.hash[:16], "reused": info.reused,
                              "seconds": info.seconds,
                              "splits": {k: v for k, v in info.splits.items() if k in ("train", "val", "test", "gap")}}


def _need_dataset(run: Any) -> Any:
    if run.dataset is None:
        raise ConfigError("the model stages need the dataset stage first (task=run or task=train)")
    return run.dataset


def stage_train(run: Any) -> None:
    if not model_enabled(run):
        return
    from aio.models.base import ModelContext
    from aio.train.config import trainer_config

    info = _need_dataset(run)
    factory, mcfg = plugin_config("model", run.cfg)
    model = factory(mcfg)
    ctx = ModelContext(dataset_path=Path(info.path), out_dir=run.run_dir / "model", seed=run.seed,
                       trainer=trainer_config(section(run.cfg, "trainer")), bars=run.bars, store=store_config(run.cfg),
                       run_dir=run.run_dir, run_id=run.run_dir.name, synthetic=run.synthetic)
    result = model.fit(ctx)
    run.model = result
    m = result.metrics
    run.artifacts["model_metrics"] = str(ctx.out_dir / "model_metrics.json")
    if (ctx.out_dir / "model_folds.csv").is_file():
        run.artifacts["model_folds"] = str(ctx.out_dir / "model_folds.csv")
    keep = ("model", "model_id", "label", "return_label", "oos", "oos_rows", "coverage", "class_balance_oos",
            "beats_majority_log_loss", "beats_logreg_log_loss", "folds", "embargo_bars", "train_seconds", "seconds",
            "hardware", "utilization", "backend", "k", "predicted_rows_all")
    run.metrics["model"] = {k: m[k] for k in keep if k in m}
    run.metrics["model"]["per_fold"] = result.fold_rows


def stage_infer(run: Any) -> None:
    if not model_enabled(run) or run.model is None:
        return
    import polars as pl

    result = run.model
    run.predictions.update(result.bar_series(len(run.bars)))
    rs = result.row_series()
    t = result.table
    pl.DataFrame({
        "row": np.arange(len(t)), "bar_index": t.bar_index, "ts_init": t.ts_init,
        **{k: rs[k] for k in ("p_down", "p_flat", "p_up", "confidence", "direction", "exp_return")},
        "fold": result.fold, "label": t.y, "realised_return": t.ret,
    }).write_parquet(run.artifact("predictions.parquet"))
    if result.embeddings is not None:
        emb = result.embeddings
        pl.DataFrame({
            "row": np.arange(len(t)), "bar_index": t.bar_index, "ts_init": t.ts_init,
            "symbol": [str(run.bars.symbol)] * len(t), "timeframe": [str(run.bars.timeframe)] * len(t),
            "model_id": [result.model_id] * len(t),
            "embedding": pl.Series(emb.astype(np.float32)).cast(pl.List(pl.Float32)),
        }).write_parquet(run.artifact("embeddings.parquet"))
    n = int(result.predicted.sum())
    run.metrics.setdefault("model", {})["predicted_bars"] = n
    log.info("predictions ready", decision_bars=len(t), predicted=n, series=[f"model.{k}" for k in result.row_series()])


def stage_store(run: Any) -> None:
    if not model_enabled(run) or run.model is None:
        return
    result = run.model
    if result.embeddings is None or result.patterns_stored:
        if result.patterns_stored:
            run.metrics.setdefault("model", {})["patterns"] = {"stored_by": "model", "model_id": result.model_id}
        return
    from aio.models.data import ImageStore
    from aio.models.data import resize_images
    from aio.models.patterns import outcomes, pattern_table, thumbnails
    from aio.store import PatternLibrary

    cfg = store_config(run.cfg)
    lib = PatternLibrary.from_config(cfg, run.run_dir)
    t = result.table
    images = result.images if getattr(result.images, "cache", False) else ImageStore(t.path, t.meta, THUMB_SIDE)
    t0 = time.perf_counter()
    thumbs = thumbnails(resize_images(images.load_all(), min(THUMB_SIDE, images.size)).permute(0, 2, 3, 1).numpy())
    t1 = time.perf_counter()
    table = pattern_table(t, outcomes(t, run.bars), result.embeddings, result.model_id, str(run.bars.symbol),
                          str(run.bars.timeframe), run.run_dir.name, thumbnails=thumbs)
    w = lib.add_patterns(table)
    t2 = time.perf_counter()
    idx = lib.ensure_index()
    log.info("patterns stored", thumbnails_s=round(t1 - t0, 2), write_s=round(t2 - t1, 2),
             index_s=round(time.perf_counter() - t2, 2), index=idx.action)
    run.metrics.setdefault("model", {})["patterns"] = {"path": str(lib.path), "model_id": result.model_id,
                                                        "written": w.rows_in, "inserted": w.inserted, "updated": w.updated,
                                                        "index": idx.action}


def stage_similar(run: Any) -> None:
    import json

    from aio.config import build
    from aio.models.similar import QueryConfig, run_similar
    from aio.store import PatternLibrary

    q = build(QueryConfig, section(run.cfg, "query"), "query")
    lib = PatternLibrary.from_config(store_config(run.cfg), run.run_dir)
    out = run_similar(q, lib)
    nb = out["neighbors"]
    nb.drop([c for c in nb.columns if nb[c].dtype == __import__("polars").Binary]).write_csv(run.artifact("similar.csv"))
    run.metrics["similar"] = {"query": out["query"], "stats": out["stats"], "k": q.k, "found": nb.height,
                              "library": str(lib.path)}
    _print_neighbors(out)
    log.info("similar patterns", found=nb.height, **{k: v for k, v in out["stats"].items() if k in ("p_up", "p_down", "mean_fwd_return")})
    (run.run_dir / "similar.json").write_text(json.dumps({"query": out["query"], "stats": out["stats"]}, indent=2, default=str))


def _print_neighbors(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    q = out["query"]
    tab = Table(title=f"patterns like {q['symbol']} {q['timeframe']} at {q['time']} (outcome known before it)")
    for c in ("time", "distance", "label", "fwd_return", "regime", "run"):
        tab.add_column(c)
    for r in out["neighbors"].iter_rows(named=True):
        tab.add_row(str(r["time"]), f"{r['_distance']:.4f}", str(r["label"]), f"{r['fwd_return']:+.5f}",
                    str(r.get("regime")), str(r.get("run_id")))
    Console(stderr=True).print(tab)
