"""The VLM model plugin through the model interface every model shares (walk-forward fit)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

# The VLM stack is a declared dependency (aio[vlm], installed by CI): imported plainly so a
# broken install fails here instead of skipping these tests silently.
import llguidance  # noqa: E402,F401
import peft  # noqa: E402,F401
import transformers  # noqa: E402,F401

from aio.records import NS_PER_MINUTE, Bars  # noqa: E402


def walk_bars(n: int, seed: int) -> Bars:
    rng = np.random.default_rng(seed)
    t0 = np.datetime64("2024-03-04T00:00", "ns").astype(np.int64)
    ts = t0 + np.arange(n, dtype=np.int64) * NS_PER_MINUTE
    c = 1.08 + np.cumsum(rng.normal(0, 1e-4, n))
    o = np.r_[c[0], c[:-1]]
    frame = pl.DataFrame({
        "ts_event": ts, "ts_init": ts + NS_PER_MINUTE, "open": o,
        "high": np.maximum(o, c) + np.abs(rng.normal(0, 5e-5, n)),
        "low": np.minimum(o, c) - np.abs(rng.normal(0, 5e-5, n)), "close": c,
        "volume": rng.integers(1, 300, n).astype(np.float64), "ticks": rng.integers(1, 60, n),
        "spread_mean": np.abs(rng.normal(1.5e-5, 4e-6, n)),
    })
    return Bars(frame, "EURUSD", "1m", synthetic=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from aio.dataset import build_dataset, dataset_config
    from aio.render import CandleRenderer, CandlesConfig

    root = tmp_path_factory.mktemp("vlm_ds")
    bars = walk_bars(900, seed=4)
    cfg = dataset_config({"stride": 7, "horizons": [5, 10], "atr_period": 14, "progress": False,
                          "features": {"return_lags": [1, 5, 20], "vol_window": 10, "volume_window": 20},
                          "regime": {"lookback": 20, "baseline": 100}})
    info = build_dataset(bars, {}, cfg, CandleRenderer(CandlesConfig(width=48, height=48, bars=24)), root)
    return bars, info


def test_walk_forward_fit_with_lora_gives_calibrated_model_series(dataset, tmp_path):
    from aio.config import build
    from aio.models.base import ModelContext
    from aio.registry import Registry
    from aio.vlm.lora import adapter_hash, adapter_state
    from aio.vlm.tiny import build_tiny

    bars, info = dataset
    ckpt = build_tiny("idefics3", tmp_path / "tiny")
    reg = Registry()
    plugin = reg.get_plugin("model", "hf_vlm")
    cfg = build(plugin.config, {"name_or_path": str(ckpt), "finetune": "lora", "folds": 2, "max_predict_rows": 6,
                                "train": {"max_steps": 1, "batch_size": 2, "grad_accum": 1, "max_train_rows": 4},
                                "calibration": {"max_rows": 6}, "embedding": {"dim": 8}}, "model")
    model = plugin.obj(cfg)
    result = model.fit(ModelContext(dataset_path=info.path, out_dir=tmp_path / "model", seed=1, bars=bars))
    n = len(result.table)
    assert result.proba.shape == (n, 3) and result.embeddings.shape == (n, 8)
    ok = result.predicted
    assert ok.sum() == 2 * 6  # max_predict_rows of each fold's block
    np.testing.assert_allclose(result.proba[ok].sum(axis=1), 1.0, rtol=1e-9)
    assert set(result.fold[ok]) == {0, 1}
    series = result.bar_series(len(bars))
    assert {"model.p_up", "model.confidence", "model.direction"} <= set(series)
    conf = series["model.confidence"]
    at = np.isfinite(conf)
    assert at.sum() == 12 and set(np.flatnonzero(at)) == set(result.table.bar_index[ok])
    np.testing.assert_array_equal(conf[at], np.maximum(series["model.p_up"][at], series["model.p_down"][at]))
    # The run's model id is the last fold's adapter hash, and the saved adapters are on disk.
    last = tmp_path / "model" / "adapters" / "fold_1"
    saved = json.loads((last / "aio_model.json").read_text())
    assert result.model_id == saved["model_id"] == adapter_hash(adapter_state(model.vlm.peft), model.vlm.base_id)
    assert (tmp_path / "model" / "adapters" / "fold_0" / "adapter_model.safetensors").is_file()
    folds = result.fold_rows
    assert [r["fold"] for r in folds] == [0, 1] and all(r["temperature"] > 0 for r in folds)
    assert folds[0]["model_id"] != folds[1]["model_id"]
    assert result.metrics["model"] == "hf_vlm" and result.metrics["memory_plan"]["device"] == "cpu"

    # task=analyze on that run: the last decision bar known at the query time, one JSON answer,
    # probabilities with the last fold's adapter and temperature.
    import jsonschema

    from aio.vlm.analyze import analyze_run_bar
    from aio.vlm.schema import json_schema

    run_dir = tmp_path
    (run_dir / "metrics.json").write_text(json.dumps({"dataset": {"path": str(info.path)}}))
    t = result.table.ts_init
    out = analyze_run_bar(model, run_dir, str(np.datetime64(int(t[10]) + 30 * 10**9, "ns")))
    assert out["row"] == 10 and out["ts_init"] == int(t[10])
    assert out["model_id"] == result.model_id
    jsonschema.validate(out["answer"], json_schema(model.vlm.spec))
    p = out["calibrated"]
    assert abs(p["p_down"] + p["p_flat"] + p["p_up"] - 1) < 1e-5 and p["temperature"] == folds[-1]["temperature"]
