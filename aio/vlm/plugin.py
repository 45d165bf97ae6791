"""The ``minicpm_v`` and ``hf_vlm`` model plugins: walk-forward like every model.

Fold j: (optionally) fresh LoRA adapters are trained on the fold's fitting rows, a
softmax temperature is fitted on its validation rows, and the block it predicts gets
calibrated direction probabilities. Everything downstream (``model.p_up``,
``model.confidence``, sizers, the pattern library) is the same as for chartnet.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from aio.vlm.config import VLMConfig

log = structlog.get_logger(__name__)


def dataset_horizons(meta: dict[str, Any]) -> list[int]:
    return sorted(int(c.split("_")[1]) for c in meta["columns"]["labels"] if c.startswith("dir_"))


class RowImages:
    """PNG bytes of dataset rows, read on demand."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        from aio.dataset.store import RowReader

        self.reader = RowReader(Path(path), meta["format"])

    def get(self, rows: np.ndarray) -> list[bytes]:
        rows = [int(r) for r in np.asarray(rows)]
        if not rows:
            return []
        return self.reader.take(rows, ["image"]).column("image").to_pylist()


class VLMModel:
    """A vision-language model plugin (``fit(ctx) -> ModelResult``)."""

    name = "hf_vlm"
    family = "hf_vlm"

    def __init__(self, config: VLMConfig) -> None:
        self.cfg = config

    def preflight(self) -> None:
        """Fail before any work when the weights are not here (and may not be downloaded)."""
        if not self.cfg.download:
            from aio.vlm.loading import resolve_checkpoint

            resolve_checkpoint(self.cfg.name_or_path, self.cfg.revision, download=False)

    def load(self, spec: Any, training: bool = False) -> Any:
        from aio.vlm.model import ChartVLM

        return ChartVLM(self.cfg, self.family, spec, training=training)

    def fit(self, ctx: Any) -> Any:
        from aio.models.base import ModelResult, write_tables
        from aio.models.calibration import fit_temperature, softmax
        from aio.models.data import load_table
        from aio.models.evaluation import evaluate
        from aio.models.walkforward import check_no_overlap, plan_folds
        from aio.vlm.schema import AnswerSpec
        from aio.vlm.targets import target_answers
        from aio.vlm.train import fit_adapter

        cfg = self.cfg
        t0 = time.perf_counter()
        table = load_table(ctx.dataset_path, cfg.label, cfg.return_label)
        meta = table.meta
        embargo = int(meta["embargo_bars"])
        folds = plan_folds(table.bar_index, cfg.folds, cfg.scheme, embargo, cfg.val_fraction)
        check_no_overlap(folds, table.bar_index, table.horizon)
        spec = AnswerSpec.from_config(cfg.answer, dataset_horizons(meta))
        training = cfg.finetune != "none" and cfg.adapter is None
        vlm = self.load(spec, training=training)
        if cfg.adapter:
            vlm.load_adapter(cfg.adapter)
        symbol = str(getattr(ctx.bars, "symbol", None) or meta.get("symbol", "EURUSD"))
        timeframe = str(getattr(ctx.bars, "timeframe", None) or meta.get("timeframe", "1m"))
        fill = vlm.fill(symbol, timeframe, table.horizon)
        images = RowImages(table.path, meta)
        atr = _label_column(table, meta, f"fwd_ret_atr_{table.horizon}")
        pattern_values = _label_column(table, meta, cfg.pattern_label) if cfg.pattern_label else None
        out_dir = Path(ctx.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        log.info("vlm walk-forward", model=cfg.name_or_path, rows=len(table), folds=len(folds), finetune=cfg.finetune,
                 plan=vlm.plan.as_dict())

        n = len(table)
        proba = np.full((n, 3), np.nan)
        exp_ret = np.full(n, np.nan)  # the VLM forecasts no return size
        fold_of = np.full(n, -1, dtype=np.int64)
        seen_until = np.full(n, -1, dtype=np.int64)
        extras: list[dict[str, Any]] = []
        for f in folds:
            tf = time.perf_counter()
            extra: dict[str, Any] = {"model_id": vlm.model_id}
            if training:
                vlm.enable_lora()
                rows = f.fit.rows()
                if cfg.train.max_train_rows:
                    rows = rows[-cfg.train.max_train_rows:]
                answers = target_answers(table, rows, spec, cfg.train.confidence_scale_atr, pattern_values, atr)
                stats = fit_adapter(vlm, images.get(rows), [fill] * len(rows), answers, cfg.train,
                                    precision=getattr(ctx.trainer, "precision", None), out_dir=out_dir,
                                    seed=ctx.seed + f.index)
                if cfg.lora.merge and f.index == folds[-1].index:
                    vlm.save_adapter(out_dir / "adapters" / f"fold_{f.index}")
                    vlm.merge_adapter()
                else:
                    vlm.save_adapter(out_dir / "adapters" / f"fold_{f.index}")
                extra.update(model_id=vlm.model_id, train_steps=stats["steps"], first_loss=round(stats["first_loss"], 5),
                             last_loss=round(stats["last_loss"], 5), adapter=str(out_dir / "adapters" / f"fold_{f.index}"))
            temp = 1.0
            val_rows = f.val.rows()[-cfg.calibration.max_rows:]
            if cfg.calibration.enabled and len(val_rows):
                val_logits = vlm.direction_logits(images.get(val_rows), [fill] * len(val_rows))
                temp = fit_temperature(val_logits, table.y[val_rows])
            pred_rows = f.predict.rows()
            if cfg.max_predict_rows:
                pred_rows = pred_rows[: cfg.max_predict_rows]
            logits = vlm.direction_logits(images.get(pred_rows), [fill] * len(pred_rows))
            proba[pred_rows] = softmax(logits, temp)
            fold_of[pred_rows] = f.index
            seen_until[pred_rows] = int(table.bar_index[max(f.fit.stop, f.val.stop) - 1]) + table.horizon
            extra.update(temperature=round(float(temp), 5), seconds=round(time.perf_counter() - tf, 2))
            extras.append(extra)
            log.info("vlm fold done", fold=f.index, **{k: v for k, v in extra.items() if k != "adapter"})
        embeddings = np.concatenate([vlm.embed(images.get(np.arange(s, min(s + 256, n)))) for s in range(0, n, 256)]) \
            if n else np.zeros((0, vlm.embedding_dim), dtype=np.float32)
        metrics, fold_rows = evaluate(table, folds, proba, exp_ret, cfg.ece_bins, ctx.seed, extras)
        metrics.update({
            "model": self.name, "model_id": vlm.model_id, "base_model": cfg.name_or_path, "base_id": vlm.base_id,
            "folds": len(folds), "embargo_bars": embargo, "fold_plan": [f.as_dict() for f in folds],
            "memory_plan": vlm.plan.as_dict(), "train_seconds": round(time.perf_counter() - t0, 2),
            "config": dataclasses.asdict(cfg),
        })
        (out_dir / "vlm.json").write_text(json.dumps({"model_id": vlm.model_id, "base_id": vlm.base_id,
                                                       "plan": vlm.plan.as_dict(), "folds": extras}, indent=2))
        result = ModelResult(self.name, table, proba, exp_ret, fold_of, metrics, fold_rows, embeddings, vlm.model_id,
                             seen_until_bar=seen_until)
        write_tables(result, out_dir)
        self.vlm = vlm
        return result


def _label_column(table: Any, meta: dict[str, Any], name: str | None) -> np.ndarray | None:
    from aio.dataset.store import RowReader
    from aio.errors import ConfigError

    if not name:
        return None
    known = meta["columns"]["labels"] + meta["columns"]["features"] + meta["columns"].get("meta", [])
    if name not in known:
        if name.startswith("fwd_ret_atr_"):
            return None
        raise ConfigError(f"config key model.pattern_label={name!r} is not a dataset column; columns: {', '.join(known)}")
    t = RowReader(table.path, meta["format"]).columns([name])
    return t.column(name).to_numpy(zero_copy_only=False)


class MiniCPMVModel(VLMModel):
    name = "minicpm_v"
    family = "minicpm_v"


class HFVLMModel(VLMModel):
    name = "hf_vlm"
    family = "hf_vlm"
