"""The model stages inside `python -m aio`, as a user runs them (subprocesses, real components,
small data: 3 days of synthetic M1 bars, 32 px charts, one epoch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

REPO = Path(__file__).resolve().parent.parent
SMALL = ["data.end=2024-03-07", "renderer.width=32", "renderer.height=32", "renderer.bars=16", "dataset.horizons=[5]",
         "dataset.progress=false"]


def aio(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "aio", *args], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"aio {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def ai_run(small_ai_run):
    return small_ai_run


def test_ai_preset_trains_predicts_stores_and_refuses_pine(ai_run):
    run_dir, lib = ai_run
    m = json.loads((run_dir / "metrics.json").read_text())
    model = m["model"]
    assert model["model"] == "chartnet" and model["folds"] == 2
    for name in ("model", "majority", "logreg"):  # the model next to its baselines, same rows
        assert model["oos"][name]["n"] == model["oos_rows"] > 0
        assert {"accuracy", "log_loss", "ece", "ic"} <= set(model["oos"][name])
    assert len(model["per_fold"]) == 2 and (run_dir / "model" / "model_folds.csv").is_file()
    assert model["hardware"]["chosen"]["precision"] == "32-true" and model["utilization"]["samples"] >= 1
    # predictions: one per decision bar after the first block, from the fold that had not seen it
    p = pl.read_parquet(run_dir / "predictions.parquet")
    done = p.filter(pl.col("fold") >= 0)
    assert done.height == model["predicted_bars"] > 0
    assert np.allclose((done["p_down"] + done["p_flat"] + done["p_up"]).to_numpy(), 1.0)
    assert np.allclose(done["confidence"].to_numpy(), np.maximum(done["p_up"], done["p_down"]).to_numpy())
    plan = json.loads((run_dir / "model" / "model_metrics.json").read_text())["fold_plan"]
    for k, f in enumerate(plan):
        rows = p.filter(pl.col("fold") == k)["row"].to_numpy()
        assert rows.min() == f["predict"][0] and rows.max() == f["predict"][1] - 1
        assert max(f["fit"][1], f["val"][1]) <= f["predict"][0]
    # the pattern library holds one embedding per decision bar
    from aio.store import PatternLibrary

    assert PatternLibrary(lib).count_patterns({"model_id": model["model_id"]}) == p.height
    # strategy rules read model.p_up / model.p_down: the Pine export is refused, naming the rules
    assert m["pine_export"]["exported"] is False and "AiLong" in m["pine_export"]["reason"]
    assert not (run_dir / "strategy.pine").exists()


def test_similar_returns_only_patterns_known_before_the_query(ai_run, tmp_path):
    run_dir, lib = ai_run
    emb = pl.read_parquet(run_dir / "embeddings.parquet")
    q = emb.row(emb.height * 2 // 3, named=True)
    ts = str(pl.Series([q["ts_init"]]).cast(pl.Datetime("ns", "UTC"))[0]).replace(" ", "T")[:19]
    out = tmp_path / "sim"
    proc = aio("task=similar", f"store.path={lib}", f"query.run_dir={run_dir}", f"query.ts={ts}", "query.k=5",
               f"hydra.run.dir={out}")
    assert proc.stdout.strip().splitlines()[-1] == f"run_dir: {out.resolve()}"
    sim = pl.read_csv(out / "similar.csv")
    assert sim.height == 5
    assert (sim["label_end_ts"] < q["ts_init"]).all()
    m = json.loads((out / "metrics.json").read_text())["similar"]
    assert m["query"]["ts_init"] == q["ts_init"] and m["stats"]["count"] == 5


def test_knn_analogs_with_the_exportable_preset(tmp_path):
    run_dir = tmp_path / "knn"
    # discovery and a long search are other tests' business: the model and the export are this one's
    aio("+experiment=eurusd_14d", "data=synthetic", *SMALL, "model=knn_analogs", "model.backend=memory",
        "model.folds=2", "discover=none", "optimize.n_trials=8", f"store.path={tmp_path / 'lib'}", f"hydra.run.dir={run_dir}")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["model"]["model"] == "knn_analogs" and m["model"]["oos"]["model"]["n"] > 0
    assert pl.read_parquet(run_dir / "predictions.parquet")["p_up"].is_not_nan().sum() > 0
    # eurusd_14d's rules do not read the model: it stays exportable with a model running beside it
    assert m["pine_export"]["exported"] is True and (run_dir / "strategy.pine").is_file()
