"""A run's chart model, loaded for serving: a window of bars -> p_down / p_flat / p_up.

The window goes through the run's own pipeline pieces, in the run's configuration
(``config.yaml`` of the run folder): the indicator set, the dataset's causal features,
the renderer's chart of the last ``renderer.bars`` bars, the price-level features as
basis points from the close, the last fold's standardisation, its network and its
temperature. Only bars of the window are read, so the answer for a window ending at
bar t uses bars <= t only. With the run's whole history up to t as the window, the
answer is the run's own prediction for that bar (tests/test_serve.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from aio.errors import ConfigError
from aio.records import BAR_SCHEMA


class BadRequest(ValueError):
    """A request the model cannot answer; the message says why (HTTP 4xx)."""


BAR_FIELDS = ("ts_event", "ts_init", "open", "high", "low", "close", "volume", "spread_mean")


def bars_from_json(bars: Any, what: str = "bars") -> pl.DataFrame:
    """[{ts_event, ts_init, open, high, low, close, volume?, spread_mean?}, ...] -> a BAR_SCHEMA frame."""
    if not isinstance(bars, list) or not bars:
        raise BadRequest(f"{what} must be a non-empty list of bars "
                         "({ts_event, ts_init, open, high, low, close, volume, spread_mean}, ns UTC times)")
    cols: dict[str, list] = {k: [] for k in BAR_SCHEMA}
    for i, b in enumerate(bars):
        if not isinstance(b, dict):
            raise BadRequest(f"{what}[{i}] is not an object")
        for k in ("ts_event", "ts_init", "open", "high", "low", "close"):
            if k not in b:
                raise BadRequest(f"{what}[{i}] lacks {k!r}")
        try:
            cols["ts_event"].append(int(b["ts_event"]))
            cols["ts_init"].append(int(b["ts_init"]))
            for k in ("open", "high", "low", "close"):
                cols[k].append(float(b[k]))
            cols["volume"].append(float(b.get("volume", 0.0) or 0.0))
            cols["ticks"].append(int(b.get("ticks", 0) or 0))
            sm = b.get("spread_mean")
            cols["spread_mean"].append(float("nan") if sm is None else float(sm))
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"{what}[{i}]: a value is not a number ({exc})") from None
    frame = pl.DataFrame(cols, schema=BAR_SCHEMA)
    ts = frame.get_column("ts_init").to_numpy()
    if len(ts) > 1 and np.any(np.diff(ts) <= 0):
        raise BadRequest(f"{what} are not in strictly increasing ts_init order")
    px = frame.select("open", "high", "low", "close").to_numpy()
    if not np.all(np.isfinite(px)) or np.any(px <= 0):
        raise BadRequest(f"{what} have prices that are not finite and positive")
    return frame


@dataclass
class RunModel:
    run_dir: Path
    kind: str
    symbol: str
    pip: float
    net: Any
    ckpt: dict[str, Any]
    renderer: Any
    ds_cfg: Any
    ind_cfg: Any
    warmup: int
    image_size: int
    has_vlm: bool
    model_id: str | None
    timeframe: str = "1m"

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunModel":
        import torch
        from omegaconf import OmegaConf

        from aio.dataset import dataset_config
        from aio.models.chartnet import ChartNet
        from aio.models.config import ChartNetConfig
        from aio.records import pip_size
        from aio.render import make_renderer

        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise ConfigError(f"config key query.run_dir={run_dir}: no config.yaml there; point it at a run folder")
        cfg = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=False)
        model = (cfg.get("model") or {}).get("name")
        weights = sorted((run_dir / "model" / "weights").glob("fold_*.pt"),
                         key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
        has_vlm = (run_dir / "model" / "vlm.json").is_file()
        if model != "chartnet" or not weights:
            if has_vlm:
                weights = []
            else:
                raise ConfigError(f"config key query.run_dir={run_dir}: the run has no served model (model={model}); "
                                  "serve a run trained with model=chartnet (e.g. +experiment=eurusd_14d_ai)")
        rsec = cfg.get("renderer") or {"name": "candles"}
        renderer = make_renderer(rsec.get("name", "candles"), rsec)
        ds_cfg = dataset_config(cfg.get("dataset") or {})
        symbol = str((cfg.get("data") or {}).get("symbol", "EURUSD"))
        net, ckpt, size = None, {}, 0
        if weights:
            ckpt = torch.load(weights[-1], map_location="cpu", weights_only=False)
            mcfg = ChartNetConfig(**{k: v for k, v in ckpt["config"].items()
                                     if k in ChartNetConfig.__dataclass_fields__})
            net = ChartNet(int(ckpt["n_features"]), mcfg)
            net.load_state_dict(ckpt["state_dict"])
            net.eval()
            size = int(mcfg.image_size)
        metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
        model_id = (metrics.get("model") or {}).get("model_id")
        timeframe = str((cfg.get("bars") or {}).get("timeframe", "1m"))
        emb = run_dir / "embeddings.parquet"
        if emb.is_file():
            head = pl.read_parquet(emb, columns=["timeframe", "symbol"], n_rows=1)
            if head.height:
                timeframe, symbol = str(head["timeframe"][0]), str(head["symbol"][0])
        return cls(run_dir, model or "none", symbol, pip_size(symbol), net, ckpt, renderer, ds_cfg,
                   cfg.get("indicators") or {}, renderer.warmup(), size, has_vlm, model_id, timeframe)

    # -- one window -> model inputs ---------------------------------------------------------
    def inputs(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 (3, S, S), standardised features) of the window's last bar."""
        import torch

        from aio.dataset.features import compute_features
        from aio.indicators import compute_indicator_set
        from aio.models.baselines import CLIP
        from aio.models.data import resize_images
        from aio.render.png import decode_png

        n = frame.height
        if n < self.renderer.bars:
            raise BadRequest(f"the window has {n} bars; the model's chart needs at least {self.renderer.bars}")
        arrays = {k: frame.get_column(k).to_numpy().astype(np.float64)
                  for k in ("open", "high", "low", "close", "volume", "spread_mean")}
        arrays["ts_event"] = frame.get_column("ts_event").to_numpy().astype(np.int64)
        arrays["ts_init"] = frame.get_column("ts_init").to_numpy().astype(np.int64)
        indicators = compute_indicator_set(frame, self.ind_cfg) if self.ds_cfg.features.indicators else {}
        feats, _ = compute_features(arrays, arrays["ts_init"], indicators, self.ds_cfg, self.pip)
        names = list(self.ckpt["feature_names"])
        c = arrays["close"][-1]
        x = np.empty(len(names))
        for j, name in enumerate(names):
            base = name[:-4] if name.endswith("_bps") and name not in feats else name
            if base not in feats:
                raise BadRequest(f"feature {base!r} of the model cannot be computed from the request")
            v = feats[base][-1]
            x[j] = (v / c - 1.0) * 1e4 if base != name else v
        if np.isnan(x).sum() > len(x) // 2:
            raise BadRequest(f"the window of {n} bars is too short for the model's features (indicators still warm "
                             "up); send more history")
        z = np.nan_to_num((x - self.ckpt["feat_mean"]) / self.ckpt["feat_std"], nan=0.0, posinf=0.0, neginf=0.0)
        z = np.clip(z, -CLIP, CLIP)
        series = self.renderer.series(arrays)
        png = self.renderer.render_png(series.windows(np.array([n - 1]), self.renderer.bars))[0]
        img = decode_png(png)[..., :3]
        t = resize_images(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None])), self.image_size)
        return t[0].numpy(), z.astype(np.float32)

    def forward(self, frames: list[pl.DataFrame]) -> dict[str, Any]:
        import torch

        if self.net is None:
            raise BadRequest("this run has no chart model to predict with (it has a VLM: use /analyze)")
        imgs, feats = zip(*(self.inputs(f) for f in frames))
        with torch.no_grad():
            image = torch.from_numpy(np.stack(imgs)).float().div_(255.0)
            return self.net(image, torch.from_numpy(np.stack(feats)))

    def embed(self, frames: list[pl.DataFrame]) -> np.ndarray:
        """The windows' last bars in the pattern library's embedding space (same model)."""
        return self.forward(frames)["embedding"].float().numpy()

    def predict(self, frames: list[pl.DataFrame]) -> list[dict[str, Any]]:
        """One batched forward pass over the windows' last bars."""
        from aio.models.calibration import softmax

        out = self.forward(frames)
        logits = out["logits"].double().numpy()
        proba = softmax(logits, float(self.ckpt.get("temperature", 1.0)))
        ret = out["ret"].double().numpy().reshape(-1) * float(self.ckpt["ret_std"]) + float(self.ckpt["ret_mean"])
        res = []
        for f, p, r in zip(frames, proba, ret):
            res.append({"ts_init": int(f.get_column("ts_init")[-1]), "p_down": float(p[0]), "p_flat": float(p[1]),
                        "p_up": float(p[2]), "exp_return": float(r), "model_id": self.model_id,
                        "label": self.ckpt.get("label")})
        return res
