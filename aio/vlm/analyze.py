"""``task=analyze``: one chart of a run, analysed by the VLM, as one JSON object.

    python -m aio task=analyze model=minicpm_v query.run_dir=outputs/.../ query.ts=2024-03-12T14:00

The query bar is the last decision bar of the run's dataset known at ``query.ts``; its
chart is answered with constrained decoding, and the direction likelihoods are
turned into probabilities with the run's last fold temperature (when the run trained
one) and its last adapter (when it fine-tuned one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aio.errors import ConfigError


def find_dataset(run_dir: Path) -> Path:
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        path = (json.loads(metrics.read_text()).get("dataset") or {}).get("path")
        if path and Path(path).is_dir():
            return Path(path)
    hits = sorted(p.parent for p in (run_dir / "dataset").glob("*/meta.json")) if (run_dir / "dataset").is_dir() else []
    if not hits:
        raise ConfigError(f"config key query.run_dir={run_dir}: no chart dataset there; point it at a run made with "
                          f"a model (e.g. +experiment=eurusd_14d_vlm)")
    return hits[-1]


def last_fold_state(run_dir: Path) -> tuple[Path | None, float]:
    """(last adapter folder or None, last fold temperature or 1.0) of a VLM run."""
    info = run_dir / "model" / "vlm.json"
    if not info.is_file():
        return None, 1.0
    folds = json.loads(info.read_text()).get("folds") or []
    if not folds:
        return None, 1.0
    last = folds[-1]
    adapter = Path(last["adapter"]) if last.get("adapter") else None
    return (adapter if adapter and adapter.is_dir() else None), float(last.get("temperature", 1.0))


def analyze_run_bar(model_plugin: Any, run_dir: str | Path, ts: str) -> dict[str, Any]:
    from aio.dataset.store import RowReader
    from aio.dataset.torch_data import load_meta
    from aio.models.calibration import softmax
    from aio.models.similar import parse_ts
    from aio.vlm.config import DIRECTIONS
    from aio.vlm.plugin import dataset_horizons
    from aio.vlm.schema import AnswerSpec

    run_dir = Path(run_dir)
    ds = find_dataset(run_dir)
    meta = load_meta(ds)
    reader = RowReader(ds, meta["format"])
    t = reader.columns(["ts_init"]).column("ts_init").to_numpy()
    q = parse_ts(ts)
    k = int(np.searchsorted(t, q, side="right")) - 1
    if k < 0:
        raise ConfigError(f"config key query.ts={ts}: the run's first decision bar closes later")
    png = reader.take([k], ["image"]).column("image")[0].as_py()
    cfg = model_plugin.cfg
    spec = AnswerSpec.from_config(cfg.answer, dataset_horizons(meta))
    vlm = model_plugin.load(spec)
    adapter, temp = last_fold_state(run_dir)
    if cfg.adapter:
        adapter = Path(cfg.adapter)
    if adapter is not None:
        vlm.load_adapter(adapter)
    horizon = int(meta["default_label"].split("_")[1])
    fill = vlm.fill(str(meta.get("symbol", "EURUSD")), str(meta.get("timeframe", "1m")), horizon)
    answer = vlm.analyze([png], [fill])[0]
    p = softmax(vlm.direction_logits([png], [fill]), temp)[0]
    return {
        "ts_init": int(t[k]), "row": k, "model_id": vlm.model_id, "answer": answer.to_dict(),
        "calibrated": {f"p_{d}": round(float(x), 6) for d, x in zip(DIRECTIONS, p)} | {"temperature": round(temp, 6)},
    }


def stage_analyze(run: Any) -> None:
    """Pipeline stage for ``task=analyze`` (prints the JSON, writes analysis.json)."""
    from aio.appconfig import plugin_config, section
    from aio.config import build
    from aio.models.similar import QueryConfig

    q = build(QueryConfig, section(run.cfg, "query"), "query")
    if not q.run_dir or not q.ts:
        raise ConfigError("task=analyze needs query.run_dir=<a model run folder> and query.ts=<UTC time>")
    factory, mcfg = plugin_config("model", run.cfg)
    model = factory(mcfg)
    if not hasattr(model, "load"):
        raise ConfigError("task=analyze needs a vision-language model: model=minicpm_v or model=hf_vlm")
    out = analyze_run_bar(model, q.run_dir, q.ts)
    text = json.dumps(out, indent=2)
    run.artifact("analysis.json").write_text(text)
    run.metrics["analysis"] = out
    print(text, flush=True)
