"""The ``chartnet`` plugin: walk-forward training, calibration and out-of-sample prediction."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from aio import progress
from aio.errors import ConfigError
from aio.hardware import UtilizationMonitor
from aio.models.base import ModelContext, ModelResult, write_tables
from aio.models.calibration import fit_temperature, softmax
from aio.models.config import ChartNetConfig
from aio.models.data import FoldDataModule, ImageStore, load_table
from aio.models.evaluation import evaluate
from aio.models.walkforward import check_no_overlap, plan_folds
from aio.train.config import TrainerConfig

log = structlog.get_logger(__name__)


class ChartNetModel:
    """Fits one chartnet per walk-forward fold; fold j's model predicts block j+1 only."""

    name = "chartnet"

    def __init__(self, config: ChartNetConfig) -> None:
        self.cfg = config

    def fit(self, ctx: ModelContext) -> ModelResult:
        import lightning as L

        from aio.models.chartnet import ChartNetModule, infer
        from aio.store.ids import model_id_from_weights
        from aio.train.loop import build_trainer, resolve_hardware

        cfg = self.cfg
        tcfg: TrainerConfig = ctx.trainer or TrainerConfig()
        if cfg.val_fraction <= 0:
            raise ConfigError("config key model.val_fraction must be > 0 for chartnet: early stopping and "
                              "temperature scaling need held-out rows")
        t0 = time.perf_counter()
        close = ctx.bars.frame.get_column("close").to_numpy() if ctx.bars is not None else None
        table = load_table(ctx.dataset_path, cfg.label, cfg.return_label, cfg.features, close, cfg.price_features)
        meta = table.meta
        embargo = int(meta["embargo_bars"])
        folds = plan_folds(table.bar_index, cfg.folds, cfg.scheme, embargo, cfg.val_fraction)
        check_no_overlap(folds, table.bar_index, table.horizon)
        info, choice = resolve_hardware(tcfg, rows=len(folds[0].fit))
        torch.set_num_threads(choice.torch_threads)
        device = torch.device("cuda" if choice.accelerator in ("gpu", "cuda") else "cpu")
        log.info("training chartnet", rows=len(table), folds=len(folds), embargo_bars=embargo, label=table.label,
                 features=len(table.feature_names), accelerator=choice.accelerator, precision=choice.precision,
                 batch_size=choice.batch_size, num_workers=choice.num_workers)
        out_dir = Path(ctx.out_dir)
        (out_dir / "weights").mkdir(parents=True, exist_ok=True)
        images = ImageStore(table.path, meta, cfg.image_size, cfg.cache_images)
        if cfg.cache_images:
            t_img = time.perf_counter()
            images.load_all()
            log.info("images cached", rows=len(table), size=cfg.image_size, seconds=round(time.perf_counter() - t_img, 2))

        n = len(table)
        proba = np.full((n, 3), np.nan)
        exp_ret = np.full(n, np.nan)
        fold_of = np.full(n, -1, dtype=np.int64)
        seen_until = np.full(n, -1, dtype=np.int64)
        extras: list[dict[str, Any]] = []
        util_fits: list[dict[str, Any]] = []
        monitor = UtilizationMonitor(tcfg.utilization_interval_s or 1.0, gpu=device.type == "cuda")
        monitor.start()
        net = dm = None
        try:
            for f in progress.track(folds, "training folds", unit="fold"):
                tf = time.perf_counter()
                L.seed_everything(ctx.seed + f.index, workers=True, verbose=False)
                dm = FoldDataModule(table, images, f.fit.rows(), f.val.rows(), f.predict.rows(), choice.batch_size,
                                    choice.num_workers, seed=ctx.seed + f.index)
                module = ChartNetModule(len(table.feature_names), cfg, tcfg.max_epochs)
                steps = -(-len(f.fit) // choice.batch_size)
                trainer, roles = build_trainer(tcfg, choice, out_dir, f"fold_{f.index}", steps_per_epoch=steps)
                trainer.fit(module, datamodule=dm)
                best = roles.get("checkpoint")
                best_path = getattr(best, "best_model_path", "") if best is not None else ""
                if best is not None and not best_path and (out_dir / "checkpoints" / f"fold_{f.index}" / "best.ckpt").is_file():
                    # ddp_spawn hands back the weights but not always the callback state
                    best_path = str(out_dir / "checkpoints" / f"fold_{f.index}" / "best.ckpt")
                best_epoch, best_score = int(trainer.current_epoch), _f(getattr(best, "best_model_score", None))
                if best_path:
                    ckpt = torch.load(best_path, map_location="cpu", weights_only=False)
                    module.load_state_dict(ckpt["state_dict"])
                    best_epoch = int(ckpt.get("epoch", best_epoch))
                    for key, st in (ckpt.get("callbacks") or {}).items():
                        if str(key).startswith("ModelCheckpoint") and st.get("best_model_score") is not None:
                            best_score = _f(st["best_model_score"])
                net = module.net.cpu()
                val = infer(net, dm.loader(dm.val_rows), device)
                temp = fit_temperature(val["logits"], table.y[val["row"]]) if cfg.calibrate else 1.0
                net.temperature.fill_(temp)
                pr = infer(net, dm.predict_dataloader(), device)
                rows = pr["row"]
                proba[rows] = softmax(pr["logits"], temp)
                exp_ret[rows] = pr["ret"] * dm.stats.ret_std + dm.stats.ret_mean
                fold_of[rows] = f.index
                seen_until[rows] = int(table.bar_index[max(f.fit.stop, f.val.stop) - 1]) + table.horizon
                net = net.cpu()
                torch.save({"state_dict": net.state_dict(), "config": dataclasses.asdict(cfg),
                            "n_features": len(table.feature_names), "feature_names": table.feature_names,
                            "feat_mean": dm.stats.feat_mean, "feat_std": dm.stats.feat_std,
                            "ret_mean": dm.stats.ret_mean, "ret_std": dm.stats.ret_std, "temperature": temp,
                            "fold": f.as_dict(), "label": table.label, "return_label": table.return_label},
                           out_dir / "weights" / f"fold_{f.index}.pt")
                uc = roles.get("utilization")
                util = getattr(uc, "fit_summary", {}) if uc is not None else {}
                util_fits.append(util)
                es = roles.get("early_stopping")
                extras.append({
                    "epochs": int(trainer.current_epoch),
                    "best_epoch": best_epoch,
                    "stopped_early": bool(es is not None and es.stopped_epoch > 0),
                    "best_val_loss": best_score,
                    "temperature": round(temp, 5),
                    "seconds": round(time.perf_counter() - tf, 2),
                    "cpu_pct_mean": util.get("cpu_pct_mean"),
                    "rss_gb_max": util.get("rss_gb_max"),
                })
                log.info("fold trained", fold=f.index, **extras[-1])
        finally:
            monitor.stop()
        # The last fold's model embeds every row for the pattern library.
        assert net is not None and dm is not None
        emb = infer(net, dm.loader(np.arange(n)), device)
        embeddings = np.empty((n, emb["embedding"].shape[1]), dtype=np.float32)
        embeddings[emb["row"]] = emb["embedding"]
        model_id = model_id_from_weights(net.state_dict())
        metrics, fold_rows = evaluate(table, folds, proba, exp_ret, cfg.ece_bins, ctx.seed, extras)
        train_s = round(time.perf_counter() - t0, 2)
        metrics.update({
            "model": "chartnet",
            "model_id": model_id,
            "folds": len(folds),
            "embargo_bars": embargo,
            "fold_plan": [f.as_dict() for f in folds],
            "train_seconds": train_s,
            "hardware": {"detected": info.as_dict(), "chosen": choice.as_dict()},
            "utilization": monitor.summary(),
            "config": dataclasses.asdict(cfg),
            "trainer": dataclasses.asdict(tcfg),
        })
        _write_utilization(monitor, out_dir / "utilization.csv")
        metrics["price_level_features"] = list(table.extra.get("price_level_features", []))
        result = ModelResult("chartnet", table, proba, exp_ret, fold_of, metrics, fold_rows, embeddings, model_id,
                             seen_until_bar=seen_until, images=images)
        write_tables(result, out_dir)
        log.info("chartnet done", seconds=train_s, oos_accuracy=metrics["oos"]["model"]["accuracy"],
                 oos_log_loss=metrics["oos"]["model"]["log_loss"], majority_log_loss=metrics["oos"]["majority"]["log_loss"],
                 logreg_log_loss=metrics["oos"]["logreg"]["log_loss"], ic=metrics["oos"]["model"]["ic"])
        return result


def _f(v: Any) -> float | None:
    try:
        return round(float(v), 6)
    except (TypeError, ValueError):
        return None


def _write_utilization(monitor: UtilizationMonitor, path: Path) -> None:
    import polars as pl

    rows = [dataclasses.asdict(s) for s in monitor.since(0)]
    if rows:
        pl.DataFrame(rows, infer_schema_length=None).write_csv(path)
